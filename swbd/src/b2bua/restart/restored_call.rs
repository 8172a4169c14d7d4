//! A call read back from the state store after a restart (or for a dead
//! instance): minimal dialog state, so that a BYE from either phone ends
//! both legs (the other gets BYE with the next CSeq of its dialog), the
//! media sessions are destroyed and a CDR is written.
//!
//! What it does not do, documented in docs/features/restart.md: session
//! timers are not restored (a peer's refresh re-INVITE or UPDATE with an
//! offer is still answered by the media node), nor hold with music,
//! transfer or DTMF relay by INFO; those requests get a clean refusal.

use std::time::SystemTime;

use switchboard_proto::media::v1 as media;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::SavedCall;
use crate::b2bua::CallDeps;
use crate::b2bua::record::{CallRecord, CallState, LegRecord, LegState};
use crate::b2bua::table::{CallCommand, CallHandle, LegInput};
use crate::dialog::Dialog;
use crate::events::CallChange;
use crate::sip::{Method, Name};

use super::saved_call::from_unix_ms;

/// CSeq numbers skipped on each restored dialog: requests we sent after
/// the record was last saved (the save is asynchronous) must not be
/// outnumbered (RFC 3261 §12.2.1.1 only asks that it grows).
pub const CSEQ_MARGIN: u32 = 100;

/// How a restored call is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// This instance's own call after its restart: it goes on until a
    /// phone hangs up.
    Continue,
    /// A dead instance's call, taken over by this one: both legs get BYE
    /// now and the media goes (docs/features/restart.md, "kill -9").
    End,
}

/// Run a restored call (see the module docs); returns when it ended. The
/// record is deleted from the store at the end (`saved.instance`'s key).
pub async fn run(deps: CallDeps, saved: SavedCall, mode: Mode) {
    let span = tracing::info_span!("call", id = %saved.id, restored = true);
    run_inner(deps, saved, mode).instrument(span).await;
}

async fn run_inner(deps: CallDeps, saved: SavedCall, mode: Mode) {
    let (a, b) = match (
        saved.a.to_dialog(CSEQ_MARGIN),
        saved.b.to_dialog(CSEQ_MARGIN),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "stored call record unusable: its media is destroyed, its phones get no BYE");
            destroy_media(&deps, &saved, None).await;
            deps.saved_calls.delete_of(&saved.instance, &saved.id);
            return;
        }
    };
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel();
    let handle = deps.calls.insert(record_of(&saved), cmd_tx);
    let (dlg_tx, mut dlg_rx) = mpsc::unbounded_channel();
    handle.route_dialog(a.id.clone(), dlg_tx.clone());
    handle.route_dialog(b.id.clone(), dlg_tx);
    handle.add_session(&saved.node, &saved.a_session);
    handle.add_session(&saved.node, &saved.b_session);
    let mut legs = Legs {
        deps: deps.clone(),
        handle,
        saved,
        a: Some(a),
        b: Some(b),
    };
    let cause = match mode {
        Mode::End => {
            legs.bye(true).await;
            legs.bye(false).await;
            "swbd instance died (ended by a survivor)".to_string()
        }
        Mode::Continue => {
            tracing::info!("call restored after a restart");
            loop {
                tokio::select! {
                    Some(msg) = dlg_rx.recv() => {
                        if let Some(cause) = legs.on_request(*msg).await {
                            break cause;
                        }
                    }
                    Some(cmd) = cmd_rx.recv() => {
                        let reason = match *cmd {
                            CallCommand::Dtmf(_) => continue,
                            CallCommand::Migrate(order) => {
                                // A restored call keeps only what hangs it up
                                // (no re-INVITE machinery): it stays whole on
                                // its node until it ends.
                                order.answer(crate::b2bua::migrate::MigrateOutcome::Stayed(
                                    "restored after a swbd restart: not movable".into(),
                                ));
                                continue;
                            }
                            CallCommand::Hangup(r) | CallCommand::MediaLost(r) => r,
                        };
                        legs.bye(true).await;
                        legs.bye(false).await;
                        break reason;
                    }
                    else => break "call task lost its channels".to_string(),
                }
            }
        }
    };
    legs.end(cause).await;
}

/// The admin record of a restored call.
fn record_of(saved: &SavedCall) -> CallRecord {
    let mut r = CallRecord::new(
        saved.id.clone(),
        saved.caller.clone(),
        saved.destination.clone(),
    );
    r.state = CallState::Bridged;
    r.route_id.clone_from(&saved.route_id);
    r.dialplan_version.clone_from(&saved.dialplan_version);
    r.media_node.clone_from(&saved.node);
    r.created_at = from_unix_ms(saved.created_at_ms);
    r.answered_at = Some(from_unix_ms(saved.answered_at_ms));
    let leg = |is_a: bool| {
        let d = if is_a { &saved.a } else { &saved.b };
        LegRecord {
            is_a,
            sip_call_id: d.call_id.clone(),
            remote_uri: d.remote_uri.clone(),
            remote_address: format!("{} {}", d.transport, d.remote),
            state: LegState::Confirmed,
            media_session_id: if is_a {
                saved.a_session.clone()
            } else {
                saved.b_session.clone()
            },
            codec: saved.codec.clone(),
            target: if is_a {
                String::new()
            } else {
                saved.b_target.clone()
            },
        }
    };
    r.legs = vec![leg(true), leg(false)];
    r
}

struct Legs {
    deps: CallDeps,
    handle: CallHandle,
    saved: SavedCall,
    a: Option<Dialog>,
    b: Option<Dialog>,
}

impl Legs {
    fn dialog(&mut self, of_a: bool) -> Option<&mut Dialog> {
        if of_a {
            self.a.as_mut()
        } else {
            self.b.as_mut()
        }
    }

    /// An in-dialog request; `Some(cause)` when the call is over.
    async fn on_request(
        &mut self,
        (id, input): (crate::dialog::DialogId, LegInput),
    ) -> Option<String> {
        let from_a = self.a.as_ref().is_some_and(|d| d.id == id);
        match input {
            LegInput::Request(txn) => {
                let method = txn.request().method.clone();
                if let Some(d) = self.dialog(from_a)
                    && let Err(e) = d.accept_incoming(txn.request())
                {
                    let _ = txn.respond(txn.response(e.status_code(), &e.to_string()));
                    return None;
                }
                let (code, reason) = match method {
                    Method::Bye | Method::Options => (200, "OK"),
                    Method::Update => {
                        return self.on_offer_request(from_a, OfferTxn::Update(txn)).await;
                    }
                    _ => (501, "Not Implemented (call restored after a swbd restart)"),
                };
                let _ = txn.respond(txn.response(code, reason));
                if method != Method::Bye {
                    return None;
                }
                self.handle.unroute_dialog(&id);
                if from_a {
                    self.a = None;
                } else {
                    self.b = None;
                }
                self.bye(!from_a).await;
                Some(
                    if from_a {
                        "caller hung up"
                    } else {
                        "callee hung up"
                    }
                    .to_string(),
                )
            }
            LegInput::Invite(txn) => {
                if let Some(d) = self.dialog(from_a)
                    && let Err(e) = d.accept_incoming(txn.request())
                {
                    let _ = txn.respond(txn.response(e.status_code(), &e.to_string()));
                    return None;
                }
                self.on_offer_request(from_a, OfferTxn::Invite(txn)).await
            }
            LegInput::Ack(_) => None,
            LegInput::Transfer(t) => {
                t.refuse(403, "Forbidden (call restored after a swbd restart)");
                None
            }
        }
    }

    /// A re-INVITE or UPDATE: an offer is answered by the leg's media
    /// session (the phone's refresh or hold keeps working); none: 488.
    async fn on_offer_request(&mut self, from_a: bool, txn: OfferTxn) -> Option<String> {
        let request = txn.request().clone();
        let session = if from_a {
            self.saved.a_session.clone()
        } else {
            self.saved.b_session.clone()
        };
        if request.body.is_empty() {
            txn.refuse(
                488,
                "Not Acceptable Here (no offer; call restored after a swbd restart)",
            );
            return None;
        }
        let answer = match self
            .deps
            .media
            .lease_named(&self.saved.node)
            .and_then(|l| l.client())
        {
            Some(mut client) => client
                .update_session(media::UpdateSessionRequest {
                    session_id: session,
                    remote_sdp: String::from_utf8_lossy(&request.body).into_owned(),
                    ..Default::default()
                })
                .await
                .ok()
                .map(|r| r.into_inner().local_sdp)
                .filter(|s| !s.is_empty()),
            None => None,
        };
        let Some(sdp) = answer else {
            txn.refuse(
                488,
                "Not Acceptable Here (the media node refused the offer)",
            );
            return None;
        };
        let contact = self.dialog(from_a).map(|d| {
            d.refresh_target(&request);
            d.local_contact.clone()
        });
        txn.answer(sdp, contact);
        None
    }

    /// BYE on a leg still up.
    async fn bye(&mut self, to_a: bool) {
        let Some(dialog) = (if to_a { self.a.take() } else { self.b.take() }) else {
            return;
        };
        let mut dialog = dialog;
        self.handle.unroute_dialog(&dialog.id);
        let mut bye = dialog.request(Method::Bye, None);
        bye.headers
            .insert(Name::USER_AGENT, self.deps.config.sip.user_agent.clone());
        match self.deps.layer.send_request(bye, dialog.target).await {
            Ok(mut txn) => {
                tokio::spawn(
                    async move {
                        match txn.final_response().await {
                            Ok(r) => tracing::debug!(code = r.code, "BYE answered"),
                            Err(e) => tracing::debug!(error = %e, "BYE unanswered"),
                        }
                    }
                    .in_current_span(),
                );
            }
            Err(e) => tracing::warn!(error = %e, "cannot send BYE"),
        }
    }

    /// Destroy the media, write the CDR, delete the record.
    async fn end(mut self, cause: String) {
        destroy_media(&self.deps, &self.saved, Some(&self.handle)).await;
        self.a = None;
        self.b = None;
        tracing::info!(caller = %self.saved.caller, destination = %self.saved.destination, route = %self.saved.route_id, %cause, "call ended");
        let deps = self.deps.clone();
        self.handle.update(Some(CallChange::Updated), |r| {
            r.end_cause = cause;
            r.state = CallState::Ended;
            r.ended_at.get_or_insert_with(SystemTime::now);
            for l in &mut r.legs {
                l.state = LegState::Terminated;
            }
            deps.cdr.submit(r);
        });
        self.deps
            .saved_calls
            .delete_of(&self.saved.instance, &self.saved.id);
    }
}

/// Destroy the call's two sessions on its node (their final stats go to
/// the CDR when `handle` is given).
async fn destroy_media(deps: &CallDeps, saved: &SavedCall, handle: Option<&CallHandle>) {
    if let Some(h) = handle {
        h.remove_session(&saved.node, &saved.a_session);
        h.remove_session(&saved.node, &saved.b_session);
    }
    let Some(mut client) = deps.media.lease_named(&saved.node).and_then(|l| l.client()) else {
        tracing::warn!(node = %saved.node, "media node of a restored call is not configured: its sessions wait for their leases");
        return;
    };
    let ids = vec![saved.a_session.clone(), saved.b_session.clone()];
    match client
        .destroy_sessions(media::DestroySessionsRequest {
            session_ids: ids.clone(),
        })
        .await
    {
        Ok(resp) => {
            let resp = resp.into_inner();
            if let Some(h) = handle {
                h.update(None, |r| {
                    r.cdr.batch_stats(&ids, &resp.not_found, resp.stats)
                });
            }
        }
        Err(st) => {
            tracing::warn!(node = %saved.node, error = %st.message(), "cannot destroy a restored call's media sessions; they go when their leases lapse");
        }
    }
}

/// The request carrying an offer in a restored call.
enum OfferTxn {
    Invite(crate::transaction::ServerInviteTransaction),
    Update(crate::transaction::ServerTransaction),
}

impl OfferTxn {
    fn request(&self) -> &crate::sip::Request {
        match self {
            OfferTxn::Invite(t) => t.request(),
            OfferTxn::Update(t) => t.request(),
        }
    }

    fn refuse(self, code: u16, reason: &str) {
        match self {
            OfferTxn::Invite(t) => {
                let _ = t.respond(t.response(code, reason));
            }
            OfferTxn::Update(t) => {
                let _ = t.respond(t.response(code, reason));
            }
        }
    }

    fn answer(self, sdp: String, contact: Option<String>) {
        let complete = |mut resp: crate::sip::Response| {
            resp.headers.insert(Name::CONTENT_TYPE, "application/sdp");
            if let Some(c) = &contact {
                resp.headers.insert(Name::CONTACT, format!("<{c}>"));
            }
            resp.body = bytes::Bytes::from(sdp.clone());
            resp
        };
        match self {
            OfferTxn::Invite(t) => {
                let _ = t.respond(complete(t.response(200, "OK")));
            }
            OfferTxn::Update(t) => {
                let _ = t.respond(complete(t.response(200, "OK")));
            }
        }
    }
}
