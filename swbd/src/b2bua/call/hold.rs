//! Hold on a bridged call (issue #15, "Hold that lasts"): what the call
//! does after a leg's re-INVITE was answered, by the call's hold settings
//! ([`HoldSettings`]: `media.hold`, `media.music_on_hold`, or the route's
//! `hold` / `music_on_hold` variables).
//!
//! - `moh` (default): while either party holds, the media bridge is down
//!   and the music loops into the other party's session (both get it when
//!   both hold); when nobody holds any more the legs are bridged again
//!   (which stops the music).
//! - `pass`: the other leg is re-INVITEd with what the holder said
//!   (`sendonly`, `inactive`, and `sendrecv` again on resume), one
//!   re-INVITE at a time; a change that arrives meanwhile is sent once
//!   the pending one is over. `491` is retried after RFC 3261 §14.1's
//!   random wait; `408`/`481`, or no answer at all, end the call (§12.2.1.2);
//!   any other refusal leaves that leg as it was. A node without
//!   `ReofferSession` gets `moh` instead.
//!
//! The RTP timeout on the node leaves a held leg alone (swrtp `hold.rs`),
//! so neither policy needs anything from the node to keep the call up.

use std::time::Duration;

use media::Direction;
use tokio::time::Instant;

use super::*;
use crate::b2bua::hold_policy::{self, HoldSettings};
use crate::config::{HoldPolicy, MediaConfig};
use crate::dialplan::Variables;

/// Our re-INVITE on one leg, passing the other party's hold on.
#[derive(Debug)]
struct Outgoing {
    to_a: bool,
    direction: Direction,
    txn: ClientInviteTransaction,
    seq: u32,
    flow: Target,
}

/// Our answered re-INVITE: its 2xx retransmissions get the ACK again
/// until Timer M (RFC 6026 §7.2).
#[derive(Debug)]
struct Answered {
    txn: AcceptedInvite,
    ack: Request,
    flow: Target,
}

/// What wakes the call up for hold.
#[derive(Debug)]
pub(super) enum HoldEvent {
    /// A response to our pending re-INVITE (or its failure).
    Response(Result<Response, crate::transaction::Error>),
    /// A 2xx retransmission of an answered one (or Timer M).
    Retransmission(Result<Response, crate::transaction::Error>),
    /// The wait after a `491` is over.
    Retry,
}

/// The hold state of a bridged call.
#[derive(Debug, Default)]
pub(super) struct HoldState {
    settings: Option<HoldSettings>,
    /// What each party said in its last own offer (UNSPECIFIED: sendrecv).
    a_said: Direction,
    b_said: Direction,
    /// `moh`: the bridge is down for hold.
    unbridged: bool,
    /// `moh`: sessions the music plays into.
    playing: Vec<String>,
    /// `pass`: what we last offered each leg and it accepted.
    offered_a: Direction,
    offered_b: Direction,
    outgoing: Option<Box<Outgoing>>,
    answered: Option<Box<Answered>>,
    retry_at: Option<Instant>,
}

/// UNSPECIFIED is sendrecv (SDP without a direction attribute).
fn norm(d: Direction) -> Direction {
    if d == Direction::Unspecified {
        Direction::Sendrecv
    } else {
        d
    }
}

fn leg_name(to_a: bool) -> &'static str {
    if to_a { "A" } else { "B" }
}

impl HoldState {
    /// The call's settings, from the config and the route's variables
    /// (once the dialplan is done).
    pub(super) fn configure(&mut self, config: &MediaConfig, vars: &Variables) {
        self.settings = Some(HoldSettings::of_call(config, vars));
    }

    fn policy(&self) -> HoldPolicy {
        self.settings.as_ref().map(|s| s.policy).unwrap_or_default()
    }

    /// Whether there is anything to wait for ([`Self::next_event`]).
    pub(super) fn busy(&self) -> bool {
        self.outgoing.is_some() || self.answered.is_some() || self.retry_at.is_some()
    }

    /// A move to another node waits (migrate.rs): a hold re-INVITE is
    /// out or due, or the call is held (music playing, bridge down).
    pub(super) fn blocks_migration(&self) -> bool {
        self.busy()
            || self.unbridged
            || !self.playing.is_empty()
            || norm(self.a_said) != Direction::Sendrecv
            || norm(self.b_said) != Direction::Sendrecv
    }

    /// Our re-INVITE on this leg is pending: its own gets `491`.
    pub(super) fn pending_on(&self, a: bool) -> bool {
        self.outgoing.as_ref().is_some_and(|o| o.to_a == a)
    }

    /// The next thing to act on; pending forever when not [`Self::busy`].
    pub(super) async fn next_event(&mut self) -> HoldEvent {
        let Self {
            outgoing,
            answered,
            retry_at,
            ..
        } = self;
        let response = async {
            match outgoing.as_mut() {
                Some(o) => o.txn.next_response().await,
                None => std::future::pending().await,
            }
        };
        let retransmission = async {
            match answered.as_mut() {
                Some(a) => a.txn.next_response().await,
                None => std::future::pending().await,
            }
        };
        let retry = async {
            match retry_at {
                Some(t) => tokio::time::sleep_until(*t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = response => HoldEvent::Response(r),
            r = retransmission => HoldEvent::Retransmission(r),
            () = retry => HoldEvent::Retry,
        }
    }
}

impl Ctl {
    pub(super) fn a_session_id(&self) -> Option<String> {
        self.a_session.as_ref().map(|s| s.0.clone())
    }

    pub(super) fn b_session_id(&self) -> Option<String> {
        self.winner.as_ref().map(|w| w.session_id.clone())
    }

    /// A leg's re-INVITE was answered with `media` (the node's view of that
    /// leg now): apply the call's hold policy.
    pub(super) async fn after_reinvite(
        &mut self,
        from_a: bool,
        media: Option<media::NegotiatedMedia>,
    ) {
        let Some(media) = media else { return };
        let said = hold_policy::said(&media);
        let was = if from_a {
            std::mem::replace(&mut self.hold.a_said, said)
        } else {
            std::mem::replace(&mut self.hold.b_said, said)
        };
        if norm(was) != said {
            tracing::info!(
                leg = leg_name(from_a),
                said = said.as_str_name(),
                "hold: leg changed direction"
            );
        }
        match self.hold.policy() {
            HoldPolicy::Moh => self.apply_music().await,
            HoldPolicy::Pass => self.pass_on().await,
        }
    }

    /// `moh`: bridge down and music to the held party while anyone holds;
    /// bridged again when nobody does.
    async fn apply_music(&mut self) {
        let (Some(a), Some(b)) = (self.a_session_id(), self.b_session_id()) else {
            return;
        };
        let a_holds = hold_policy::holds(norm(self.hold.a_said));
        let b_holds = hold_policy::holds(norm(self.hold.b_said));
        let mut client = match self.media_client() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "hold: no media node");
                return;
            }
        };
        if !a_holds && !b_holds {
            if self.hold.unbridged {
                // Bridging stops the music on both sessions.
                match client
                    .bridge(media::BridgeRequest {
                        session_a: a,
                        session_b: b,
                    })
                    .await
                {
                    Ok(_) => {
                        self.hold.unbridged = false;
                        self.hold.playing.clear();
                        tracing::info!("hold: resumed, legs bridged again");
                    }
                    Err(st) => {
                        tracing::warn!(error = %st.message(), "hold: cannot bridge the legs again")
                    }
                }
            }
            return;
        }
        if !self.hold.unbridged {
            match client
                .unbridge(media::UnbridgeRequest {
                    session_id: a.clone(),
                })
                .await
            {
                Ok(_) => self.hold.unbridged = true,
                Err(st) => {
                    tracing::warn!(error = %st.message(), "hold: cannot unbridge for music on hold");
                    return;
                }
            }
        }
        let mut targets = Vec::with_capacity(2);
        if a_holds {
            targets.push(b);
        }
        if b_holds {
            targets.push(a);
        }
        for sid in std::mem::take(&mut self.hold.playing) {
            if targets.contains(&sid) {
                self.hold.playing.push(sid);
            } else {
                let _ = client
                    .stop_playback(media::StopPlaybackRequest { session_id: sid })
                    .await;
            }
        }
        let music = self
            .hold
            .settings
            .as_ref()
            .map(|s| s.music.clone())
            .unwrap_or_else(|| crate::config::DEFAULT_MUSIC_ON_HOLD.into());
        for sid in targets {
            if self.hold.playing.contains(&sid) {
                continue;
            }
            if start_music(&mut client, &sid, &music).await {
                self.hold.playing.push(sid);
            }
        }
    }

    /// `pass`: re-INVITE the leg whose offered direction differs from what
    /// the other party said, one at a time.
    async fn pass_on(&mut self) {
        if self.hold.outgoing.is_some() || self.hold.retry_at.is_some() {
            return; // reconciled once the pending one is over
        }
        for to_a in [false, true] {
            let (want, offered) = if to_a {
                (norm(self.hold.b_said), norm(self.hold.offered_a))
            } else {
                (norm(self.hold.a_said), norm(self.hold.offered_b))
            };
            if want != offered {
                Box::pin(self.reinvite_leg(to_a, want)).await;
                return;
            }
        }
    }

    /// Send our re-INVITE to one leg, offering `direction`.
    async fn reinvite_leg(&mut self, to_a: bool, direction: Direction) {
        let session = if to_a {
            self.a_session_id()
        } else {
            self.b_session_id()
        };
        let Some(session) = session else { return };
        let mut client = match self.media_client() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "hold: no media node");
                return;
            }
        };
        let offer = client
            .reoffer_session(media::ReofferSessionRequest {
                session_id: session.clone(),
                direction: direction as i32,
                withdraw: false,
            })
            .await;
        let sdp = match offer {
            Ok(r) => r.into_inner().local_sdp,
            Err(st) if st.code() == tonic::Code::Unimplemented => {
                tracing::warn!(
                    "hold: the media node cannot re-offer (older swrtp); music on hold instead"
                );
                if let Some(s) = self.hold.settings.as_mut() {
                    s.policy = HoldPolicy::Moh;
                }
                Box::pin(self.apply_music()).await;
                return;
            }
            Err(st) => {
                tracing::warn!(error = %st.message(), "hold: no re-offer; hold not passed on");
                return;
            }
        };
        match self.send_reinvite(to_a, sdp).await {
            Ok(sent) => {
                tracing::info!(
                    leg = leg_name(to_a),
                    direction = direction.as_str_name(),
                    "hold: passed on with a re-INVITE"
                );
                self.hold.outgoing = Some(Box::new(Outgoing {
                    to_a,
                    direction,
                    txn: sent.txn,
                    seq: sent.seq,
                    flow: sent.flow,
                }));
            }
            Err(e) => {
                tracing::warn!(error = %e, "hold: cannot send the re-INVITE");
                withdraw(&mut client, &session).await;
            }
        }
    }

    /// Act on a [`HoldEvent`]; `Some(cause)` when the call must end (the
    /// leg's dialog is gone).
    pub(super) async fn on_hold_event(&mut self, ev: HoldEvent) -> Option<String> {
        match ev {
            HoldEvent::Retry => {
                self.hold.retry_at = None;
                Box::pin(self.pass_on()).await;
                None
            }
            HoldEvent::Retransmission(Ok(resp)) if resp.is_success() => {
                if let Some(a) = &self.hold.answered {
                    let _ = self.deps.layer.send_ack(a.ack.clone(), a.flow).await;
                }
                None
            }
            HoldEvent::Retransmission(Ok(_)) => None,
            HoldEvent::Retransmission(Err(_)) => {
                self.hold.answered = None;
                None
            }
            HoldEvent::Response(r) => {
                let out = self.hold.outgoing.take()?;
                Box::pin(self.on_response(*out, r)).await
            }
        }
    }

    async fn on_response(
        &mut self,
        out: Outgoing,
        r: Result<Response, crate::transaction::Error>,
    ) -> Option<String> {
        let to_a = out.to_a;
        let session = if to_a {
            self.a_session_id()
        } else {
            self.b_session_id()
        }?;
        let resp = match r {
            Ok(resp) => resp,
            Err(e) => {
                if let Ok(mut client) = self.media_client() {
                    withdraw(&mut client, &session).await;
                }
                return Some(format!(
                    "{} leg did not answer our re-INVITE ({e})",
                    leg_name(to_a)
                ));
            }
        };
        if resp.code < 200 {
            self.hold.outgoing = Some(Box::new(out));
            return None;
        }
        self.log_reinvite_response(to_a, &resp);
        let mut client = match self.media_client() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "hold: no media node");
                return None;
            }
        };
        if !resp.is_success() {
            withdraw(&mut client, &session).await;
            let leg = leg_name(to_a);
            match resp.code {
                408 | 481 => {
                    return Some(format!(
                        "{leg} leg answered our re-INVITE with {}",
                        resp.code
                    ));
                }
                491 => {
                    // RFC 3261 §14.1: 2.1-4 s when we own the Call-ID (the
                    // B-leg's), 0-2 s when not (A's).
                    let ms = if to_a {
                        rand::random_range(0..=2000)
                    } else {
                        rand::random_range(2100..=4000)
                    };
                    self.hold.retry_at = Some(Instant::now() + Duration::from_millis(ms));
                }
                code => {
                    tracing::warn!(%leg, code, "hold: re-INVITE refused; that leg stays as it was")
                }
            }
            return None;
        }
        if let Some(ack) = self.ack_reinvite(to_a, out.seq, out.flow).await {
            self.hold.answered = Some(Box::new(Answered {
                txn: out.txn.into_accepted(),
                ack,
                flow: out.flow,
            }));
        }
        let applied = client
            .update_session(media::UpdateSessionRequest {
                session_id: session,
                remote_sdp: String::from_utf8_lossy(&resp.body).into_owned(),
                ..Default::default()
            })
            .await;
        match applied {
            Ok(_) => {
                if to_a {
                    self.hold.offered_a = out.direction;
                } else {
                    self.hold.offered_b = out.direction;
                }
            }
            Err(st) => {
                tracing::warn!(error = %st.message(), "hold: the answer to our re-INVITE is unusable")
            }
        }
        Box::pin(self.pass_on()).await;
        None
    }
}

/// Start the music on one session; whether it plays. The Play stream is
/// read up to its first event (started, or why not) and then dropped: the
/// playback goes on until it is stopped or the legs are bridged again.
async fn start_music(client: &mut crate::media::MediaClient, session: &str, music: &str) -> bool {
    let stream = client
        .play(media::PlayRequest {
            session_id: session.to_string(),
            file: music.to_string(),
            r#loop: true,
        })
        .await;
    let mut stream = match stream {
        Ok(s) => s.into_inner(),
        Err(st) => {
            tracing::warn!(error = %st.message(), "hold: music on hold refused; the held party hears silence");
            return false;
        }
    };
    match stream.message().await {
        Ok(Some(media::PlayEvent {
            event: Some(media::play_event::Event::Error(e)),
            ..
        })) => {
            tracing::warn!(error = %e.message, "hold: music on hold failed; the held party hears silence");
            false
        }
        Ok(Some(_)) => {
            tracing::info!(file = %music, "hold: music on hold");
            true
        }
        Ok(None) | Err(_) => false,
    }
}

/// Drop our unanswered re-offer (the re-INVITE failed).
async fn withdraw(client: &mut crate::media::MediaClient, session: &str) {
    let _ = client
        .reoffer_session(media::ReofferSessionRequest {
            session_id: session.to_string(),
            direction: Direction::Unspecified as i32,
            withdraw: true,
        })
        .await;
}
