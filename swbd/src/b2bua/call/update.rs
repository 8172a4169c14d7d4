//! UPDATE (RFC 3311) in early and confirmed dialogs.
//!
//! **Without SDP** (a target refresh, a session-timer refresh): `200 OK`
//! with our Contact at once, in any dialog of the call; in a confirmed
//! dialog the remote target is refreshed.
//!
//! **With SDP, confirmed dialog**: the offer is answered by the media node
//! for that leg's session, as a re-INVITE is (bridged.rs), and relayed:
//! the other leg's session makes a new offer (`UpdateSession` with
//! `reoffer`), sent to the other leg in an UPDATE of our own, and its
//! answer is applied to that session when it comes; a refused or
//! unanswered UPDATE withdraws the offer (`withdraw_offer`) and the
//! session stays as it was. The leg that sent the UPDATE is answered
//! without waiting for the other. While our offer toward a leg waits, an
//! offer from that leg (UPDATE or re-INVITE) gets `491 Request Pending`
//! (RFC 3311 §5.2, RFC 3261 §14.2). No relay toward a leg whose `Allow`
//! leaves UPDATE out or that refused one (405/501), nor with a media node
//! that cannot re-offer (it predates `reoffer`).
//!
//! **With SDP, early dialog** (A's INVITE not answered yet, a B-leg sent
//! an 18x with a To tag): answered by the dial, with the media node
//! answering for that leg's session: A's (the node answered A's offer
//! before anything rang), or the B-leg's once its 18x answer was applied
//! (early media). Not relayed: the other side's initial offer/answer is
//! not complete, and an UPDATE offer needs it (§5.1). Refused with `491`
//! while the B-leg's session still waits for the answer to our INVITE's
//! offer, `488` when there is no session to update (a delayed offer: A's
//! INVITE or a trunk's without SDP), and `500` with `Retry-After` when no
//! dial is running (nothing rings: between dialplan actions, playback).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::media::MediaClient;
use crate::transaction::{ClientTransaction, ServerTransaction};

/// A call's early dialogs and UPDATE relay state.
#[derive(Debug)]
pub(super) struct Updates {
    /// Early dialogs routed to this call (A's, B-legs'), unrouted when it
    /// ends (early.rs).
    pub(super) early_routes: Vec<DialogId>,
    /// A's early dialog is routed.
    pub(super) a_early_routed: bool,
    /// UPDATEs with SDP in early dialogs, for the running dial to answer.
    pub(super) early: mpsc::UnboundedReceiver<DialogInput>,
    /// Set while a dial runs (only it answers them).
    dialing: Arc<AtomicBool>,
    /// B-legs' dialogs that are still early (shared with the inbox).
    pub(super) b_early: EarlyDialogs,
    /// Our relayed offer toward A.
    to_a: Arc<Relay>,
    /// Our relayed offer toward the answered B-leg.
    to_b: Arc<Relay>,
}

/// Our UPDATE offers toward one leg.
#[derive(Debug, Default)]
struct Relay {
    /// One waits for its answer.
    pending: AtomicBool,
    /// The leg answered 405/501: it gets no more.
    refused: AtomicBool,
}

/// The call task's side: takes UPDATEs (and BYEs in callees' early
/// dialogs) before anything else sees them.
#[derive(Debug)]
pub(super) struct EarlyInbox {
    tx: mpsc::UnboundedSender<DialogInput>,
    dialing: Arc<AtomicBool>,
    b_early: EarlyDialogs,
}

/// The B-legs' early dialogs (at most one per leg), which the call task
/// checks a BYE against while the dialplan runs: a callee's BYE in an
/// early dialog (RFC 3261 §15 leaves BYE there to the caller) must not end
/// the whole call as the caller's BYE does. A std mutex: a short lookup or
/// edit, never held across an `.await`, between two halves of one task.
#[derive(Debug, Clone, Default)]
pub(super) struct EarlyDialogs(Arc<Mutex<Vec<DialogId>>>);

impl EarlyDialogs {
    pub(super) fn add(&self, id: DialogId) {
        if let Ok(mut v) = self.0.lock() {
            v.push(id);
        }
    }

    pub(super) fn remove(&self, id: &DialogId) {
        if let Ok(mut v) = self.0.lock() {
            v.retain(|d| d != id);
        }
    }

    pub(super) fn clear(&self) {
        if let Ok(mut v) = self.0.lock() {
            v.clear();
        }
    }

    fn contains(&self, id: &DialogId) -> bool {
        self.0.lock().is_ok_and(|v| v.contains(id))
    }
}

/// While it lives, early UPDATEs with SDP go to the dial.
pub(super) struct Dialing(Arc<AtomicBool>);

impl Drop for Dialing {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Updates {
    /// The state and the call task's inbox.
    pub(super) fn new() -> (Self, EarlyInbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        let dialing = Arc::new(AtomicBool::new(false));
        let b_early = EarlyDialogs::default();
        (
            Self {
                early_routes: Vec::new(),
                a_early_routed: false,
                early: rx,
                dialing: dialing.clone(),
                b_early: b_early.clone(),
                to_a: Arc::default(),
                to_b: Arc::default(),
            },
            EarlyInbox {
                tx,
                dialing,
                b_early,
            },
        )
    }

    /// A dial runs until the guard is dropped.
    pub(super) fn dialing(&self) -> Dialing {
        self.dialing.store(true, Ordering::Release);
        Dialing(self.dialing.clone())
    }
}

fn blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

/// `500` with `Retry-After` (RFC 3311 §5.2): the offer cannot be taken now.
fn retry_later(txn: &ServerTransaction) {
    let mut resp = txn.response(500, "Server Internal Error (no session to update now)");
    resp.headers.insert(Name::RETRY_AFTER, "1");
    let _ = txn.respond(resp);
}

/// Whether `request`'s `Allow` (absent: assume so) lists UPDATE.
fn allows_update(request: &Request) -> bool {
    let mut values = request.raw_values(&Name::ALLOW).peekable();
    if values.peek().is_none() {
        return true;
    }
    values
        .flat_map(|v| v.split(','))
        .any(|m| m.trim().eq_ignore_ascii_case("UPDATE"))
}

/// Our Contact on the flow a request came over.
fn contact_on(deps: &CallDeps, source: &crate::transport::Source) -> String {
    let flow = Target::reply_to(source, source.remote);
    flow.local
        .or_else(|| {
            deps.layer
                .transports()
                .local_for(flow.transport, flow.remote)
        })
        .map(|l| contact_uri(l, flow.transport))
        .unwrap_or_else(|| "sip:swbd@127.0.0.1".into())
}

/// `200 OK` to an UPDATE, with our Contact (a target refresh's 2xx carries
/// one, RFC 3311 §5.2) and, when given, our SDP answer.
fn ok_response(txn: &ServerTransaction, contact: &str, sdp: Option<&str>) -> Response {
    let mut resp = txn.response(200, "OK");
    resp.headers.insert(Name::CONTACT, format!("<{contact}>"));
    match sdp {
        Some(sdp) => with_sdp(resp, sdp),
        None => resp,
    }
}

impl EarlyInbox {
    /// Take what only this module answers out of the call task's dialog
    /// input while the dialplan runs: UPDATE without SDP is answered here,
    /// with SDP handed to the running dial (or refused for now); a BYE in
    /// a callee's early dialog is answered and ends nothing (that callee's
    /// INVITE still gets its final response). Anything else is given back.
    pub(super) fn screen(
        &self,
        deps: &CallDeps,
        msg: (DialogId, LegInput),
    ) -> Option<(DialogId, LegInput)> {
        let (dialog, input) = msg;
        let txn = match input {
            LegInput::Request(txn) if txn.request().method == Method::Update => txn,
            LegInput::Request(txn)
                if txn.request().method == Method::Bye && self.b_early.contains(&dialog) =>
            {
                tracing::info!("BYE in a callee's early dialog: answered, the call goes on");
                let _ = txn.respond(txn.response(200, "OK"));
                return None;
            }
            other => return Some((dialog, other)),
        };
        if blank(&txn.request().body) {
            let contact = contact_on(deps, txn.source());
            let _ = txn.respond(ok_response(&txn, &contact, None));
            return None;
        }
        if !self.dialing.load(Ordering::Acquire) {
            retry_later(&txn);
            return None;
        }
        if let Err(back) = self.tx.send(Box::new((dialog, LegInput::Request(txn))))
            && let (_, LegInput::Request(txn)) = *back.0
        {
            retry_later(&txn);
        }
        None
    }
}

impl Ctl {
    /// Log a response to a request in one of the call's dialogs and send it.
    fn respond_logged(&self, from_a: bool, txn: &ServerTransaction, resp: Response) {
        let summary = summary_resp(&resp);
        let bytes = resp.to_bytes();
        self.handle
            .update(None, |r| r.log_message(from_a, false, summary, &bytes));
        let _ = txn.respond(resp);
    }

    /// The media node answers the offer in `txn` for `session`; `true`
    /// when our `200` with the answer went out (else `488` did).
    async fn answer_offer(
        &mut self,
        from_a: bool,
        txn: &ServerTransaction,
        session: String,
        contact: &str,
    ) -> bool {
        let answer = match self.media_client() {
            Ok(mut client) => client
                .update_session(media::UpdateSessionRequest {
                    session_id: session,
                    remote_sdp: String::from_utf8_lossy(&txn.request().body).into_owned(),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().local_sdp)
                .map_err(|st| status_to_control(&st, "UPDATE")),
            Err(e) => Err(e),
        };
        match answer {
            Ok(sdp) if !sdp.is_empty() => {
                let mut resp = ok_response(txn, contact, Some(&sdp));
                if self.answered {
                    // A confirmed dialog's UPDATE is a session refresh too.
                    self.session_timer_refreshed(from_a, txn.request(), &mut resp);
                }
                self.respond_logged(from_a, txn, resp);
                true
            }
            Ok(_) => {
                let resp = txn.response(488, "Not Acceptable Here (not an offer)");
                self.respond_logged(from_a, txn, resp);
                false
            }
            Err(e) => {
                let resp = txn.response(488, &e.reason);
                self.respond_logged(from_a, txn, resp);
                false
            }
        }
    }

    /// An UPDATE with SDP in an early dialog, while the dial runs.
    pub(super) async fn early_update(&mut self, msg: DialogInput) {
        let (dialog, input) = *msg;
        let LegInput::Request(txn) = input else {
            return;
        };
        let from_a = self
            .a
            .request()
            .call_id()
            .is_ok_and(|c| c == dialog.call_id)
            && dialog.local_tag == self.a.to_tag();
        let summary = summary_req(txn.request());
        let bytes = txn.request().to_bytes();
        self.handle
            .update(None, |r| r.log_message(from_a, true, summary, &bytes));
        let target: Result<(String, String), (u16, &str)> = if from_a {
            match &self.a_session {
                Some((sid, _)) if !self.late.a => {
                    Ok((sid.clone(), contact_on(&self.deps, txn.source())))
                }
                _ => Err((488, "Not Acceptable Here (no session to update yet)")),
            }
        } else {
            match self
                .b_legs
                .iter()
                .find(|b| b.early_dialog.as_ref() == Some(&dialog))
            {
                None => Err((481, "Call/Transaction Does Not Exist")),
                Some(b) if b.txn.is_none() => Err((481, "Call/Transaction Does Not Exist")),
                Some(b) if b.session_id.is_empty() => {
                    Err((488, "Not Acceptable Here (no session to update yet)"))
                }
                Some(b) if !b.early => Err((491, "Request Pending")),
                Some(b) => Ok((b.session_id.clone(), b.contact.clone())),
            }
        };
        match target {
            Ok((session, contact)) => {
                self.answer_offer(from_a, &txn, session, &contact).await;
            }
            Err((code, reason)) => {
                let resp = txn.response(code, reason);
                self.respond_logged(from_a, &txn, resp);
            }
        }
    }

    /// The dial is over: early UPDATEs it did not get to wait no more.
    pub(super) fn refuse_early_updates(&mut self) {
        while let Ok(msg) = self.updates.early.try_recv() {
            if let (_, LegInput::Request(txn)) = *msg {
                retry_later(&txn);
            }
        }
    }

    /// Whether our offer toward the leg (A when `to_a`) waits for its
    /// answer: an offer from that leg meanwhile gets `491`.
    pub(super) fn offer_pending(&self, to_a: bool) -> bool {
        let relay = if to_a {
            &self.updates.to_a
        } else {
            &self.updates.to_b
        };
        relay.pending.load(Ordering::Acquire)
    }

    /// An UPDATE in a confirmed dialog (the call is bridged), already
    /// checked against the dialog (CSeq) and logged.
    pub(super) async fn on_update(&mut self, from_a: bool, txn: ServerTransaction) {
        let contact = if from_a {
            self.a_dialog.as_ref().map(|d| d.local_contact.clone())
        } else {
            self.winner.as_ref().map(|w| w.dialog.local_contact.clone())
        };
        let Some(contact) = contact else {
            let resp = txn.response(481, "Call/Transaction Does Not Exist");
            self.respond_logged(from_a, &txn, resp);
            return;
        };
        // RFC 4028: an UPDATE refreshes the session (pjsua2 refreshes by
        // UPDATE once it is allowed): the same checks and bookkeeping as a
        // refresh re-INVITE (bridged.rs), or swbd ends the call at expiry.
        if let Some(r) = self.session_timer_refusal(from_a, txn.request()) {
            let resp = r.complete(txn.response(r.code, r.reason));
            self.respond_logged(from_a, &txn, resp);
            return;
        }
        if blank(&txn.request().body) {
            self.refresh_target(from_a, txn.request());
            let mut resp = ok_response(&txn, &contact, None);
            self.session_timer_refreshed(from_a, txn.request(), &mut resp);
            self.respond_logged(from_a, &txn, resp);
            return;
        }
        if self.offer_pending(from_a) {
            let resp = txn.response(491, "Request Pending");
            self.respond_logged(from_a, &txn, resp);
            return;
        }
        let session = if from_a {
            self.a_session.as_ref().map(|s| s.0.clone())
        } else {
            self.winner.as_ref().map(|w| w.session_id.clone())
        };
        let Some(session) = session else {
            let resp = txn.response(488, "Not Acceptable Here (no media session)");
            self.respond_logged(from_a, &txn, resp);
            return;
        };
        if self.answer_offer(from_a, &txn, session, &contact).await {
            self.refresh_target(from_a, txn.request());
            self.relay_offer(!from_a).await;
        }
    }

    fn refresh_target(&mut self, from_a: bool, request: &Request) {
        let dialog = if from_a {
            self.a_dialog.as_mut()
        } else {
            self.winner.as_mut().map(|w| &mut w.dialog)
        };
        if let Some(d) = dialog {
            d.refresh_target(request);
        }
    }

    /// The other side's media changed: offer anew to the leg (A when
    /// `to_a`) in an UPDATE of our own; its answer is applied when it
    /// comes (module docs).
    async fn relay_offer(&mut self, to_a: bool) {
        let relay = if to_a {
            self.updates.to_a.clone()
        } else {
            self.updates.to_b.clone()
        };
        if relay.refused.load(Ordering::Acquire) || (to_a && !allows_update(self.a.request())) {
            return;
        }
        if relay.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let session = if to_a {
            self.a_session.as_ref().map(|s| s.0.clone())
        } else {
            self.winner.as_ref().map(|w| w.session_id.clone())
        };
        let (Some(session), Ok(mut client)) = (session, self.media_client()) else {
            relay.pending.store(false, Ordering::Release);
            return;
        };
        let offer = client
            .update_session(media::UpdateSessionRequest {
                session_id: session.clone(),
                reoffer: Some(late_offer::node_offer()),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().local_sdp);
        let sdp = match offer {
            Ok(sdp) if !sdp.is_empty() => sdp,
            Ok(_) | Err(_) => {
                // A node that predates `reoffer`: the leg keeps its media.
                tracing::debug!("media node made no new offer: UPDATE not relayed");
                relay.pending.store(false, Ordering::Release);
                return;
            }
        };
        let dialog = if to_a {
            self.a_dialog.as_mut()
        } else {
            self.winner.as_mut().map(|w| &mut w.dialog)
        };
        let Some(dialog) = dialog else {
            withdraw(&mut client, &session).await;
            relay.pending.store(false, Ordering::Release);
            return;
        };
        let mut update = dialog.request(Method::Update, None);
        let flow = dialog.target;
        update
            .headers
            .insert(Name::USER_AGENT, self.deps.config.sip.user_agent.clone());
        update
            .headers
            .insert(Name::ALLOW, crate::sip::capabilities::ALLOW_IN_DIALOG);
        let update = with_sdp_request(update, &sdp);
        let summary = summary_req(&update);
        let bytes = update.to_bytes();
        self.handle
            .update(None, |r| r.log_message(to_a, false, summary, &bytes));
        match self.deps.layer.send_request(update, flow).await {
            Ok(txn) => {
                tokio::spawn(complete_relay(txn, client, session, relay).in_current_span());
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot relay UPDATE");
                withdraw(&mut client, &session).await;
                relay.pending.store(false, Ordering::Release);
            }
        }
    }
}

fn with_sdp_request(mut request: Request, sdp: &str) -> Request {
    request
        .headers
        .insert(Name::CONTENT_TYPE, "application/sdp");
    request.body = bytes::Bytes::from(sdp.to_string());
    request
}

/// Our offer was not answered: the session keeps its media.
async fn withdraw(client: &mut MediaClient, session: &str) {
    let _ = client
        .update_session(media::UpdateSessionRequest {
            session_id: session.to_string(),
            withdraw_offer: true,
            ..Default::default()
        })
        .await;
}

/// Wait for the answer to a relayed UPDATE and apply it (or withdraw the
/// offer). Runs beside the call task so a slow leg never stalls it; one
/// per leg at a time (`Relay::pending`).
async fn complete_relay(
    mut txn: ClientTransaction,
    mut client: MediaClient,
    session: String,
    relay: Arc<Relay>,
) {
    match txn.final_response().await {
        Ok(resp) if resp.is_success() && !blank(&resp.body) => {
            let applied = client
                .update_session(media::UpdateSessionRequest {
                    session_id: session.clone(),
                    remote_sdp: String::from_utf8_lossy(&resp.body).into_owned(),
                    ..Default::default()
                })
                .await;
            match applied {
                Ok(_) => tracing::debug!("relayed UPDATE answered"),
                Err(st) => {
                    tracing::warn!(error = %st.message(), "answer to our UPDATE refused by the media node");
                    withdraw(&mut client, &session).await;
                }
            }
        }
        Ok(resp) => {
            tracing::info!(code = resp.code, "relayed UPDATE not answered with SDP");
            if matches!(resp.code, 405 | 501) {
                relay.refused.store(true, Ordering::Release);
            }
            withdraw(&mut client, &session).await;
        }
        Err(e) => {
            tracing::info!(error = %e, "relayed UPDATE failed");
            withdraw(&mut client, &session).await;
        }
    }
    relay.pending.store(false, Ordering::Release);
}
