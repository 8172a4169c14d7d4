//! REFER on a bridged call (RFC 3515, RFC 3891 in the Refer-To): the
//! call-task side of [`crate::b2bua::transfer`].
//!
//! The transferor's leg is taken out of the call ([`Detached`],
//! transferor.rs) and the
//! transferee put in the A slot, so the dialplan's `dial` places the new
//! B-leg from the transferee's session exactly as it would for a caller.
//! On failure the transferor goes back where it was and the media is
//! bridged again; on success it gets the final NOTIFY and a BYE.
//!
//! While a transfer runs the call task serves its dialogs
//! ([`watch`], transfer_watch.rs): a BYE from the transferee cancels the transfer and ends
//! the call; a BYE from the transferor is answered and the transfer goes
//! on (the transferee is released if it then fails); another REFER or a
//! re-INVITE gets `491 Request Pending`.

use super::transfer_watch::{Ids, Seen, Transferring, answer_released, failure_code, watch};
use super::transferor::Detached;
use super::*;
use crate::b2bua::refer_to::{self, ReferTo, Replaces};
use crate::b2bua::transfer::{
    HANDOFF_WAIT, HandedOver, Handoff, MAX_TRANSFERS, Party, TransferInput, refer_sub,
};
use crate::dialplan::{Execution, execute_in};
use crate::transaction::ServerTransaction;
use tokio::sync::oneshot;

/// What the bridged loop does after [`Ctl::transfer_hook`].
pub(super) enum Hook {
    /// Not a transfer matter: the bridged loop handles it.
    Pass(DialogInput),
    /// Handled; the call goes on.
    Done,
    /// Handled; the call is over, for this reason.
    Ended(String),
}

/// One of the two legs of a bridged call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    /// The A slot (the caller, or whoever a transfer put there).
    A,
    /// The B slot (the winning B-leg, or whoever a transfer put there).
    B,
}

/// The call task's inputs, lent to a transfer while it runs.
pub(super) struct Inputs<'a> {
    pub(super) a_events: &'a mut mpsc::UnboundedReceiver<ServerInviteEvent>,
    pub(super) dlg_rx: &'a mut mpsc::UnboundedReceiver<DialogInput>,
    pub(super) cmd_rx: &'a mut mpsc::UnboundedReceiver<Box<CallCommand>>,
}

/// How a transfer ended.
enum Outcome {
    /// The transferee is bridged with a new party in the B slot.
    Connected,
    /// It failed with this status; nothing changed for the transferee.
    Failed(u16),
}

impl Ctl {
    /// First look at an in-dialog input of a bridged call: REFERs and
    /// other calls' transfer requests are handled here, inputs for a
    /// dialog a transfer released are answered here, the rest passes.
    pub(super) async fn transfer_hook(
        &mut self,
        msg: DialogInput,
        a_events: &mut mpsc::UnboundedReceiver<ServerInviteEvent>,
        dlg_rx: &mut mpsc::UnboundedReceiver<DialogInput>,
        cmd_rx: &mut mpsc::UnboundedReceiver<Box<CallCommand>>,
    ) -> Hook {
        let Some(side) = self.side_of(&msg.0) else {
            let (_, input) = *msg;
            answer_released(input);
            return Hook::Done;
        };
        let (dialog, input) = *msg;
        match input {
            LegInput::Transfer(t) => match *t {
                TransferInput::Handoff(h) => self.hand_over(side, h).await,
                TransferInput::Replacing(txn) => self.replacing_invite(side, txn).await,
            },
            LegInput::Request(txn) if txn.request().method == Method::Refer => {
                let mut inputs = Inputs {
                    a_events,
                    dlg_rx,
                    cmd_rx,
                };
                self.refer(side, txn, &mut inputs).await
            }
            input => Hook::Pass(Box::new((dialog, input))),
        }
    }

    pub(super) fn side_of(&self, dialog: &DialogId) -> Option<Side> {
        if self.a_dialog.as_ref().is_some_and(|d| d.id == *dialog) {
            Some(Side::A)
        } else if self.winner.as_ref().is_some_and(|w| w.dialog.id == *dialog) {
            Some(Side::B)
        } else {
            None
        }
    }

    pub(super) fn dialog_mut(&mut self, side: Side) -> Option<&mut Dialog> {
        match side {
            Side::A => self.a_dialog.as_mut(),
            Side::B => self.winner.as_mut().map(|w| &mut w.dialog),
        }
    }

    /// Who is on `side`.
    pub(super) fn party(&self, side: Side) -> Party {
        match side {
            Side::A => Party {
                identity: self.identity.clone(),
                local: self.transfer.a_local,
            },
            Side::B => {
                if let Some(p) = &self.transfer.b_party {
                    return Party::clone(p);
                }
                let call_id = self
                    .winner
                    .as_ref()
                    .map(|w| w.dialog.id.call_id.clone())
                    .unwrap_or_default();
                let mut target = String::new();
                self.handle.update(None, |r| {
                    if let Some(l) = r.leg_mut(&call_id) {
                        target = l.target.clone();
                    }
                });
                Party::of_target(&target)
            }
        }
    }

    pub(super) fn log_leg(&self, side: Side, inbound: bool, summary: String, bytes: &[u8]) {
        self.handle.update(None, |r| {
            r.log_message(side == Side::A, inbound, summary, bytes)
        });
    }

    /// A REFER from `side` (the transferor).
    async fn refer(&mut self, side: Side, txn: ServerTransaction, inputs: &mut Inputs<'_>) -> Hook {
        let request = txn.request().clone();
        self.log_leg(side, true, summary_req(&request), &request.to_bytes());
        if let Some(Err(e)) = self.dialog_mut(side).map(|d| d.accept_incoming(&request)) {
            let _ = txn.respond(txn.response(e.status_code(), &e.to_string()));
            return Hook::Done;
        }
        let target = match refer_to::refer_to(&request) {
            Ok(t) => t,
            Err(r) => {
                tracing::info!(code = r.code, reason = r.reason, "REFER refused");
                let _ = txn.respond(txn.response(r.code, r.reason));
                return Hook::Done;
            }
        };
        if !target.dropped.is_empty() {
            tracing::warn!(headers = ?target.dropped, "headers embedded in Refer-To dropped");
        }
        let transferor = self.party(side);
        let refusal = if self.transfer.count >= MAX_TRANSFERS {
            Some("Forbidden (too many transfers on this call)")
        } else if !self.transfer.policy.permits(transferor.local) {
            Some("Forbidden (transfer not allowed on this route)")
        } else if self.transfer.plan.is_none()
            || self.a_dialog.is_none()
            || self.a_session.is_none()
            || self.winner.is_none()
        {
            Some("Forbidden (the call cannot be transferred now)")
        } else {
            None
        };
        if let Some(reason) = refusal {
            tracing::info!(transferor = ?transferor.identity.user, reason, "REFER refused");
            let _ = txn.respond(txn.response(403, reason));
            return Hook::Done;
        }
        self.transfer.count += 1;
        let no_subscription = request
            .raw(&refer_sub())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
        let mut accepted = txn.response(202, "Accepted");
        if let Some(d) = self.dialog_mut(side) {
            accepted
                .headers
                .insert(Name::CONTACT, format!("<{}>", d.local_contact));
        }
        if no_subscription {
            accepted.headers.insert(refer_sub(), "false");
        }
        self.log_leg(side, false, summary_resp(&accepted), &accepted.to_bytes());
        let _ = txn.respond(accepted);
        tracing::info!(
            transferor = ?transferor.identity.user,
            target = ?target.user,
            attended = target.replaces.is_some(),
            "transfer accepted"
        );

        let transferee = match side {
            Side::A => self.winner.as_ref().map(|w| w.dialog.id.clone()),
            Side::B => self.a_dialog.as_ref().map(|d| d.id.clone()),
        };
        // Both legs are up (checked above): neither can be missing here.
        let Some(transferee) = transferee else {
            return Hook::Done;
        };
        let Some(mut detached) = self.detach(side) else {
            return Hook::Done;
        };
        detached.subscription =
            (!no_subscription).then(|| request.cseq().map(|c| c.number).unwrap_or(0));
        self.notify(&mut detached, 100).await;
        let ids = Ids {
            transferee,
            transferor: detached.dialog.id.clone(),
        };
        let (outcome, seen) = match &target.replaces {
            None => self.blind(&target, &transferor, &ids, inputs).await,
            Some(r) => self.attended(r, &ids, inputs).await,
        };
        self.finish(detached, outcome, seen).await
    }

    /// Blind transfer: route `target` as a call from the transferee.
    async fn blind(
        &mut self,
        target: &ReferTo,
        transferor: &Party,
        ids: &Ids,
        inputs: &mut Inputs<'_>,
    ) -> (Outcome, Seen) {
        let Some(plan) = self.transfer.plan.clone() else {
            return (Outcome::Failed(500), Seen::default());
        };
        // The transferee waits alone (the transferor is leaving).
        self.unbridge_a().await;
        let domain = if target.host.is_empty() {
            self.deps
                .config
                .sip
                .domains
                .first()
                .cloned()
                .unwrap_or_default()
        } else {
            target.host.clone()
        };
        let info = CallInfo {
            destination: target.user.clone(),
            caller: self.identity.user.clone(),
            domain,
            from_domain: String::new(),
            source_ip: self.a_dialog.as_ref().map(|d| d.target.remote.ip()),
        };
        let context = self.transfer.policy.context().map(str::to_string);
        let extra = [("referrer", transferor.identity.user.clone())];
        self.transfer.referrer = Some(Box::new(transferor.identity.clone()));
        self.b_legs = Vec::new();
        let token = CancellationToken::new();
        let (execution, hung_up, seen) = {
            let mut control = Transferring {
                ctl: self,
                hung_up: None,
            };
            let exec = execute_in(
                &plan,
                context.as_deref(),
                &info,
                &extra,
                &mut control,
                &token,
            );
            let (execution, seen) = watch(exec, ids, inputs, &token).await;
            (execution, control.hung_up, seen)
        };
        let mut seen = seen;
        self.transfer.referrer = None;
        self.requeue(std::mem::take(&mut seen.deferred));
        let Execution {
            outcome, route_id, ..
        } = execution;
        tracing::info!(?outcome, route = ?route_id, "transfer dialplan finished");
        match outcome {
            CallOutcome::Bridged(t) => {
                self.transfer.b_party = Some(Box::new(Party::of_dial_target(&t)));
                if let Some(route) = route_id
                    .as_ref()
                    .and_then(|id| plan.routes().iter().find(|r| &r.id == id))
                {
                    self.transfer.policy = route.transfer.clone();
                }
                (Outcome::Connected, seen)
            }
            other => {
                // Ringing legs (a cancelled transfer) stay for the teardown.
                if self.b_legs.iter().all(|b| b.txn.is_none()) {
                    self.b_legs = Vec::new();
                }
                (Outcome::Failed(failure_code(&other, hung_up)), seen)
            }
        }
    }

    /// Attended transfer: the call owning the replaced dialog hands its
    /// other party over.
    async fn attended(
        &mut self,
        replaces: &Replaces,
        ids: &Ids,
        inputs: &mut Inputs<'_>,
    ) -> (Outcome, Seen) {
        let id = replaces.dialog_id();
        if replaces.early_only {
            // Only confirmed dialogs are replaced (the others are ringing).
            return (Outcome::Failed(486), Seen::default());
        }
        if id == ids.transferee || id == ids.transferor {
            return (Outcome::Failed(403), Seen::default());
        }
        let Some(tx) = self.deps.calls.dialog_route(&id) else {
            tracing::info!(call_id = ?id.call_id, "Replaces names no dialog of ours");
            return (Outcome::Failed(481), Seen::default());
        };
        let (reply, rx) = oneshot::channel();
        let ask = Handoff {
            node: self.node_name(),
            by: self.handle.id().to_string(),
            reply,
        };
        let input = LegInput::Transfer(Box::new(TransferInput::Handoff(ask)));
        if tx.send(Box::new((id, input))).is_err() {
            return (Outcome::Failed(481), Seen::default());
        }
        let token = CancellationToken::new();
        let (got, mut seen) =
            watch(tokio::time::timeout(HANDOFF_WAIT, rx), ids, inputs, &token).await;
        self.requeue(std::mem::take(&mut seen.deferred));
        let handed = match got {
            Ok(Ok(Ok(handed))) => handed,
            Ok(Ok(Err(refusal))) => {
                tracing::info!(
                    code = refusal.code,
                    reason = refusal.reason,
                    "handoff refused"
                );
                return (Outcome::Failed(refusal.code), seen);
            }
            Ok(Err(_)) => return (Outcome::Failed(481), seen),
            Err(_) => return (Outcome::Failed(408), seen),
        };
        // Ours now, whatever happened meanwhile: the teardown releases it.
        (self.adopt(handed).await, seen)
    }

    /// Put a party handed over by another call in the B slot and bridge
    /// it with the transferee.
    async fn adopt(&mut self, h: HandedOver) -> Outcome {
        let HandedOver {
            dialog,
            session_id,
            accepted,
            ack,
            party,
            mut leg,
        } = h;
        let node = self.node_name();
        self.sessions.push(session_id.clone());
        self.handle.add_session(&node, &session_id);
        self.handle
            .route_dialog(dialog.id.clone(), self.dlg_tx.clone());
        let ack = ack.unwrap_or_else(|| {
            let mut d = dialog.clone();
            d.request(Method::Ack, Some(d.local_seq))
        });
        leg.is_a = false;
        leg.state = LegState::Confirmed;
        self.handle
            .update(Some(CallChange::Updated), |r| r.legs.push(leg));
        self.winner = Some(Winner {
            dialog,
            txn: accepted,
            ack,
            session_id: session_id.clone(),
        });
        self.transfer.b_party = Some(Box::new(party));
        self.unbridge_a().await;
        let a_sid = self
            .a_session
            .as_ref()
            .map(|s| s.0.clone())
            .unwrap_or_default();
        let bridged = match self.media_client() {
            Ok(mut client) => client
                .bridge(media::BridgeRequest {
                    session_a: a_sid,
                    session_b: session_id.clone(),
                })
                .await
                .map(drop)
                .map_err(|st| status_to_control(&st, "bridge")),
            Err(e) => Err(e),
        };
        if let Err(e) = bridged {
            tracing::warn!(error = %e, "attended transfer: bridge failed");
            if let Some(mut w) = self.winner.take() {
                self.handle.unroute_dialog(&w.dialog.id);
                self.send_bye(&mut w.dialog, false).await;
                self.record_leg(&w.dialog.id.call_id, LegState::Terminated);
            }
            self.transfer.b_party = None;
            self.destroy_session(&session_id).await;
            return Outcome::Failed(500);
        }
        Outcome::Connected
    }

    /// The end of a transfer, whatever happened.
    async fn finish(&mut self, mut d: Detached, outcome: Outcome, seen: Seen) -> Hook {
        d.gone |= seen.transferor_left;
        if let Some(reason) = seen.command {
            self.release(d).await;
            if self.a_dialog.is_some() {
                self.bye(true).await;
            }
            if self.winner.is_some() {
                self.bye(false).await;
            }
            return Hook::Ended(reason);
        }
        if seen.transferee_left {
            // Its BYE was answered; nothing more goes to it.
            if let Some(tee) = self.a_dialog.take() {
                self.handle.unroute_dialog(&tee.id);
                self.record_leg(&tee.id.call_id, LegState::Terminated);
            }
            if self.winner.is_some() {
                self.bye(false).await;
            }
            self.notify(&mut d, 487).await;
            self.release(d).await;
            return Hook::Ended("transferee hung up during the transfer".into());
        }
        match outcome {
            Outcome::Connected => {
                tracing::info!("transfer done");
                self.notify(&mut d, 200).await;
                self.release(d).await;
                Hook::Done
            }
            Outcome::Failed(code) if d.gone => {
                tracing::info!(code, "transfer failed and the transferor has left");
                self.release(d).await;
                self.bye(true).await;
                Hook::Ended(format!(
                    "transfer failed ({code}) after the transferor hung up"
                ))
            }
            Outcome::Failed(code) => {
                tracing::info!(code, "transfer failed; the call goes on");
                self.notify(&mut d, code).await;
                self.reattach(d);
                self.rebridge().await;
                Hook::Done
            }
        }
    }
}
