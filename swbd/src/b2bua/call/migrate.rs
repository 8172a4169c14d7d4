//! One bridged call moving to another media node (drain with migration,
//! `crate::b2bua::migrate` orders it).
//!
//! 1. Two sessions on the target node, each making its own offer (one per
//!    leg, in that leg's address family); the old sessions keep relaying.
//! 2. A re-INVITE to A and to B at once, each with its new session's offer
//!    (`reinvite.rs`, the path hold uses). A `491` is retried after RFC
//!    3261 §14.1's random wait (0-2 s toward A, whose Call-ID is not ours;
//!    2.1-4 s toward B), at most [`MAX_491_RETRIES`] times.
//! 3. Both accepted: the answers go to the new sessions, they are bridged,
//!    the old ones destroyed; the call's node is the target.
//!
//! Never half-moved: a leg that refuses (any other final response, or an
//! answer the node cannot use) keeps the call on the old node. If the
//! other leg had accepted, it is re-INVITEd back to its old session (a new
//! offer from that session, `ReofferSession`); the new sessions are
//! destroyed. Should the leg also refuse to come back, the call cannot be
//! bridged on either node and ends (BYE both legs). A leg whose dialog is
//! gone (`408`, `481`, no answer: RFC 3261 §12.2.1.2) ends the call too.
//!
//! While the re-INVITEs are out, a leg's own re-INVITE gets `491`, a BYE
//! is answered and ends the call, and other in-dialog requests wait in
//! order until the move is over. A call on hold (or with a hold
//! re-INVITE or an UPDATE pending) is not moved: it stays, and a later
//! drain can try again.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::reinvite::SentReinvite;
use super::*;
use crate::b2bua::migrate::{MigrateOrder, MigrateOutcome};

/// `491` answers retried per leg before the move is given up.
pub const MAX_491_RETRIES: u32 = 3;

/// In-dialog requests that arrived while a move was under way, handed to
/// the bridged loop afterwards in arrival order.
#[derive(Debug, Default)]
pub(super) struct Deferred {
    inputs: VecDeque<DialogInput>,
}

impl Deferred {
    /// The next input: a deferred one first, then the channel.
    pub(super) async fn next(
        &mut self,
        dlg_rx: &mut mpsc::UnboundedReceiver<DialogInput>,
    ) -> Option<DialogInput> {
        match self.inputs.pop_front() {
            Some(i) => Some(i),
            None => dlg_rx.recv().await,
        }
    }
}

/// One leg's re-INVITE during a move.
#[derive(Debug)]
struct LegMove {
    to_a: bool,
    /// The offer it carries.
    offer: String,
    sent: Option<SentReinvite>,
    retry_at: Option<Instant>,
    retries: u32,
    result: Option<LegResult>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LegResult {
    /// 2xx, with its SDP answer.
    Accepted(bytes::Bytes),
    /// Refused (status code; 0: not sent).
    Refused(u16),
    /// The leg's dialog is gone (why).
    Gone(String),
}

enum LegEvent {
    Response(Result<Response, crate::transaction::Error>),
    Retry,
}

impl LegMove {
    fn new(to_a: bool, offer: String) -> Self {
        Self {
            to_a,
            offer,
            sent: None,
            retry_at: None,
            retries: 0,
            result: None,
        }
    }

    async fn next_event(&mut self) -> LegEvent {
        if let Some(t) = self.retry_at {
            tokio::time::sleep_until(t).await;
            return LegEvent::Retry;
        }
        match self.sent.as_mut() {
            Some(s) => LegEvent::Response(s.txn.next_response().await),
            None => std::future::pending().await,
        }
    }
}

/// Why the wait for the legs stopped early: a leg hung up.
struct HungUp(String);

impl Ctl {
    /// Move the call off `order.from` and report how it went; `Some(cause)`
    /// when the call must end (the bridged loop sends the BYEs).
    pub(super) async fn migrate(
        &mut self,
        order: MigrateOrder,
        dlg_rx: &mut mpsc::UnboundedReceiver<DialogInput>,
    ) -> Option<String> {
        let outcome = self.migrate_call(&order.from, dlg_rx).await;
        let end = match &outcome {
            MigrateOutcome::Ended(cause) => Some(cause.clone()),
            _ => None,
        };
        match &outcome {
            MigrateOutcome::Moved { target } => tracing::info!(%target, "media moved"),
            other => tracing::info!(outcome = ?other, "media not moved"),
        }
        order.answer(outcome);
        end
    }

    async fn migrate_call(
        &mut self,
        from: &str,
        dlg_rx: &mut mpsc::UnboundedReceiver<DialogInput>,
    ) -> MigrateOutcome {
        let (Some(a_old), Some(b_old)) = (self.a_session_id(), self.b_session_id()) else {
            return MigrateOutcome::NotBridged;
        };
        let (Some(a_flow), Some(b_flow)) = (
            self.a_dialog.as_ref().map(|d| d.target.remote),
            self.winner.as_ref().map(|w| w.dialog.target.remote),
        ) else {
            return MigrateOutcome::NotBridged;
        };
        if self.node_name() != from {
            return MigrateOutcome::Stayed(format!("not on {from} (on {})", self.node_name()));
        }
        if self.hold.blocks_migration() || self.offer_pending(true) || self.offer_pending(false) {
            return MigrateOutcome::Stayed("on hold, or an offer is pending".into());
        }
        let lease = match self.deps.media.pick_excluding(&[from.to_string()]) {
            Ok(l) => l,
            Err(e) => return MigrateOutcome::Stayed(e.to_string()),
        };
        let target = lease.name().to_string();
        let Some(mut client) = lease.client() else {
            return MigrateOutcome::Stayed("target node gone".into());
        };
        // 1. New sessions, each making its own leg's offer.
        let mut created: Vec<(String, String)> = Vec::with_capacity(2);
        for (leg, remote) in [("a", a_flow), ("b", b_flow)] {
            let request = media::CreateSessionRequest {
                call_id: self.handle.id().to_string(),
                leg: leg.to_string(),
                negotiation: Some(media::create_session_request::Negotiation::Offer(
                    media::OfferOptions {
                        codecs: Vec::new(),
                        telephone_event: true,
                        ptime_ms: 0,
                    },
                )),
                peer: None,
                address_family: self.offer_family(remote) as i32,
            };
            match client.create_session(request).await {
                Ok(r) => {
                    let r = r.into_inner();
                    self.handle.add_session(&target, &r.session_id);
                    created.push((r.session_id, r.local_sdp));
                }
                Err(st) => {
                    self.drop_new_sessions(&mut client, &target, &created).await;
                    let msg = st.message().replace(['\r', '\n'], " ");
                    return MigrateOutcome::Stayed(format!("no session on {target}: {msg}"));
                }
            }
        }
        let [(a_new, a_offer), (b_new, b_offer)] = match created.as_slice() {
            [a, b] => [a.clone(), b.clone()],
            _ => {
                self.drop_new_sessions(&mut client, &target, &created).await;
                return MigrateOutcome::Stayed("sessions not created".into());
            }
        };
        // 2. Both legs at once.
        let mut legs = [
            LegMove::new(true, a_offer.clone()),
            LegMove::new(false, b_offer),
        ];
        for l in &mut legs {
            self.send_leg(l).await;
        }
        if let Err(HungUp(cause)) = self.wait_legs(&mut legs, dlg_rx).await {
            self.drop_new_sessions(&mut client, &target, &created).await;
            return MigrateOutcome::Ended(cause);
        }
        let [ra, rb] = [legs[0].result.clone(), legs[1].result.clone()];
        // 3. Both accepted: apply, bridge, switch.
        if let (Some(LegResult::Accepted(ans_a)), Some(LegResult::Accepted(ans_b))) = (&ra, &rb) {
            let mut codecs = Vec::with_capacity(2);
            let mut unusable = None;
            for (sid, ans, to_a) in [(&a_new, ans_a, true), (&b_new, ans_b, false)] {
                let applied = client
                    .update_session(media::UpdateSessionRequest {
                        session_id: sid.clone(),
                        remote_sdp: String::from_utf8_lossy(ans).into_owned(),
                        ..Default::default()
                    })
                    .await;
                match applied {
                    Ok(r) => codecs.push(
                        r.into_inner()
                            .media
                            .map(|m| codec_name(m.codec))
                            .unwrap_or_default(),
                    ),
                    Err(st) => {
                        unusable = Some((to_a, st.message().replace(['\r', '\n'], " ")));
                        break;
                    }
                }
            }
            let bridged = match unusable {
                None => client
                    .bridge(media::BridgeRequest {
                        session_a: a_new.clone(),
                        session_b: b_new.clone(),
                    })
                    .await
                    .map_err(|st| st.message().replace(['\r', '\n'], " ")),
                Some((_, why)) => Err(why),
            };
            if let Err(why) = bridged {
                // Both legs moved but the new node cannot carry them: bring
                // both back, or end the call.
                let back_a = self.put_back(true, &a_old, dlg_rx).await;
                let back_b = self.put_back(false, &b_old, dlg_rx).await;
                self.drop_new_sessions(&mut client, &target, &created).await;
                return match (back_a, back_b) {
                    (Ok(()), Ok(())) => {
                        MigrateOutcome::Stayed(format!("{target} refused the answers: {why}"))
                    }
                    (Err(e), _) | (_, Err(e)) => MigrateOutcome::Ended(e),
                };
            }
            self.switch_to(lease, (a_new, a_offer), b_new, codecs).await;
            return MigrateOutcome::Moved { target };
        }
        // Not both: nothing stays on the new node.
        let gone = [&ra, &rb].into_iter().find_map(|r| match r {
            Some(LegResult::Gone(why)) => Some(why.clone()),
            _ => None,
        });
        if let Some(why) = gone {
            self.drop_new_sessions(&mut client, &target, &created).await;
            return MigrateOutcome::Ended(why);
        }
        let refusal = |r: &Option<LegResult>, leg: &str| match r {
            Some(LegResult::Refused(0)) => Some(format!("{leg} leg: re-INVITE not sent")),
            Some(LegResult::Refused(code)) => Some(format!("{leg} leg refused ({code})")),
            _ => None,
        };
        let why = [refusal(&ra, "A"), refusal(&rb, "B")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
        let mut result = MigrateOutcome::Stayed(why.clone());
        for (r, to_a, old) in [(&ra, true, &a_old), (&rb, false, &b_old)] {
            if matches!(r, Some(LegResult::Accepted(_))) {
                let leg = if to_a { "A" } else { "B" };
                result = match self.put_back(to_a, old, dlg_rx).await {
                    Ok(()) => MigrateOutcome::Stayed(format!("{why}; {leg} leg put back")),
                    Err(e) => MigrateOutcome::Ended(format!("{why}; {e}")),
                };
            }
        }
        self.drop_new_sessions(&mut client, &target, &created).await;
        result
    }

    /// Send (or send again) a leg's re-INVITE.
    async fn send_leg(&mut self, l: &mut LegMove) {
        match self.send_reinvite(l.to_a, l.offer.clone()).await {
            Ok(sent) => l.sent = Some(sent),
            Err(e) => {
                tracing::warn!(leg = if l.to_a { "A" } else { "B" }, error = %e, "migration: re-INVITE not sent");
                l.result = Some(LegResult::Refused(0));
            }
        }
    }

    /// Drive every leg's re-INVITE to a result, answering the legs'
    /// in-dialog requests meanwhile (module docs).
    async fn wait_legs(
        &mut self,
        legs: &mut [LegMove],
        dlg_rx: &mut mpsc::UnboundedReceiver<DialogInput>,
    ) -> Result<(), HungUp> {
        enum Woke {
            Leg(usize, LegEvent),
            Input(Option<DialogInput>),
        }
        loop {
            let waiting: Vec<_> = legs
                .iter_mut()
                .enumerate()
                .filter(|(_, l)| l.result.is_none())
                .map(|(i, l)| Box::pin(async move { (i, l.next_event().await) }))
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            let woke = tokio::select! {
                ((i, ev), _, _) = futures::future::select_all(waiting) => Woke::Leg(i, ev),
                msg = dlg_rx.recv() => Woke::Input(msg),
            };
            match woke {
                Woke::Leg(i, ev) => {
                    if let Some(l) = legs.get_mut(i) {
                        self.on_leg_event(l, ev).await;
                    }
                }
                Woke::Input(Some(msg)) => {
                    if let Some(cause) = self.during_move(msg) {
                        return Err(HungUp(cause));
                    }
                }
                // The call's routes are gone: nothing more will come.
                Woke::Input(None) => return Err(HungUp("dialog routes closed".into())),
            }
        }
    }

    /// A leg's request while a move is under way: its re-INVITE gets
    /// `491` (ours is pending, RFC 3261 §14.2), a BYE is answered and
    /// ends the call (`Some(cause)`), the rest waits for the bridged loop.
    fn during_move(&mut self, msg: DialogInput) -> Option<String> {
        let (dialog, input) = *msg;
        let from_a = self.a_dialog.as_ref().is_some_and(|d| d.id == dialog);
        match input {
            LegInput::Invite(txn) => {
                let _ = txn.respond(txn.response(491, "Request Pending"));
                None
            }
            LegInput::Request(t) if t.request().method == Method::Bye => {
                let _ = t.respond(t.response(200, "OK"));
                self.handle.unroute_dialog(&dialog);
                if from_a {
                    self.a_dialog = None;
                    Some("caller hung up".into())
                } else {
                    if let Some(w) = self.winner.as_mut() {
                        w.txn = None;
                    }
                    self.winner_gone();
                    Some("callee hung up".into())
                }
            }
            other => {
                self.deferred.inputs.push_back(Box::new((dialog, other)));
                None
            }
        }
    }

    /// A response to a leg's re-INVITE, or its `491` wait is over.
    async fn on_leg_event(&mut self, l: &mut LegMove, ev: LegEvent) {
        let resp = match ev {
            LegEvent::Retry => {
                l.retry_at = None;
                l.retries += 1;
                self.send_leg(l).await;
                return;
            }
            LegEvent::Response(Ok(resp)) => resp,
            LegEvent::Response(Err(e)) => {
                l.sent = None;
                l.result = Some(LegResult::Gone(format!(
                    "{} leg did not answer the re-INVITE ({e})",
                    leg_label(l.to_a)
                )));
                return;
            }
        };
        if resp.code < 200 {
            return;
        }
        self.log_reinvite_response(l.to_a, &resp);
        let Some(sent) = l.sent.take() else { return };
        if resp.is_success() {
            if let Some(ack) = self.ack_reinvite(l.to_a, sent.seq, sent.flow).await {
                // Its 2xx retransmissions get the ACK again until Timer M.
                let layer = self.deps.layer.clone();
                let mut accepted = sent.txn.into_accepted();
                tokio::spawn(
                    async move {
                        while let Ok(r) = accepted.next_response().await {
                            if r.is_success() {
                                let _ = layer.send_ack(ack.clone(), sent.flow).await;
                            }
                        }
                    }
                    .in_current_span(),
                );
            }
            l.result = Some(LegResult::Accepted(resp.body.clone()));
            return;
        }
        l.result = Some(match resp.code {
            491 if l.retries < MAX_491_RETRIES => {
                // RFC 3261 §14.1.
                let ms = if l.to_a {
                    rand::random_range(0..=2000)
                } else {
                    rand::random_range(2100..=4000)
                };
                l.retry_at = Some(Instant::now() + Duration::from_millis(ms));
                return;
            }
            408 | 481 => LegResult::Gone(format!(
                "{} leg answered the re-INVITE with {}",
                leg_label(l.to_a),
                resp.code
            )),
            code => LegResult::Refused(code),
        });
    }

    /// Re-INVITE a leg back to its old session `old` (a new offer from it);
    /// `Err` says why it did not come back (the call must end).
    async fn put_back(
        &mut self,
        to_a: bool,
        old: &str,
        dlg_rx: &mut mpsc::UnboundedReceiver<DialogInput>,
    ) -> Result<(), String> {
        let leg = leg_label(to_a);
        let mut client = self.media_client().map_err(|e| e.reason)?;
        let offer = client
            .reoffer_session(media::ReofferSessionRequest {
                session_id: old.to_string(),
                direction: media::Direction::Sendrecv as i32,
                withdraw: false,
            })
            .await
            .map_err(|st| format!("{leg} leg cannot be put back: {}", st.message()))?
            .into_inner()
            .local_sdp;
        let mut leg_move = LegMove::new(to_a, offer);
        self.send_leg(&mut leg_move).await;
        let mut legs = [leg_move];
        if let Err(HungUp(cause)) = self.wait_legs(&mut legs, dlg_rx).await {
            return Err(cause);
        }
        let [mut back] = legs;
        match back.result.take() {
            Some(LegResult::Accepted(answer)) => client
                .update_session(media::UpdateSessionRequest {
                    session_id: old.to_string(),
                    remote_sdp: String::from_utf8_lossy(&answer).into_owned(),
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(|st| {
                    format!(
                        "{leg} leg's answer to come back is unusable: {}",
                        st.message()
                    )
                }),
            other => {
                let _ = client
                    .reoffer_session(media::ReofferSessionRequest {
                        session_id: old.to_string(),
                        direction: media::Direction::Unspecified as i32,
                        withdraw: true,
                    })
                    .await;
                Err(match other {
                    Some(LegResult::Gone(why)) => why,
                    Some(LegResult::Refused(code)) => {
                        format!("{leg} leg moved but refused to come back ({code})")
                    }
                    _ => format!("{leg} leg moved but did not come back"),
                })
            }
        }
    }

    /// Destroy the sessions a failed move made on `target`.
    async fn drop_new_sessions(
        &mut self,
        client: &mut crate::media::MediaClient,
        target: &str,
        created: &[(String, String)],
    ) {
        for (sid, _) in created {
            self.handle.remove_session(target, sid);
            let _ = client
                .destroy_session(media::DestroySessionRequest {
                    session_id: sid.clone(),
                })
                .await;
        }
    }

    /// Both legs are on the new sessions, bridged: destroy the old ones
    /// (their final stats go to the CDR) and make the new node the call's.
    async fn switch_to(
        &mut self,
        lease: NodeLease,
        a: (String, String),
        b_new: String,
        codecs: Vec<String>,
    ) {
        let (old_a, old_b) = (self.a_session_id(), self.b_session_id());
        let old = std::mem::take(&mut self.sessions);
        self.destroy_sessions(old).await;
        let target = lease.name().to_string();
        // Dropping the old lease releases the call from the old node.
        self.lease = Some(lease);
        self.sessions = vec![a.0.clone(), b_new.clone()];
        self.a_session = Some(a.clone());
        if let Some(w) = self.winner.as_mut() {
            w.session_id = b_new.clone();
        }
        let (codec_a, codec_b) = match codecs.as_slice() {
            [x, y] => (x.clone(), y.clone()),
            _ => Default::default(),
        };
        self.handle.update(Some(CallChange::Updated), |r| {
            r.media_node = target;
            for l in r.legs.iter_mut() {
                if old_a.as_deref() == Some(l.media_session_id.as_str()) {
                    l.media_session_id = a.0.clone();
                    l.codec = codec_a.clone();
                } else if old_b.as_deref() == Some(l.media_session_id.as_str()) {
                    l.media_session_id = b_new.clone();
                    l.codec = codec_b.clone();
                }
            }
        });
    }
}

fn leg_label(to_a: bool) -> &'static str {
    if to_a { "A" } else { "B" }
}
