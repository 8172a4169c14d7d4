//! The transferor's leg while its transfer runs: taken out of the call
//! ([`Detached`]), told how it goes (NOTIFY, RFC 3515 §2.4.4-5), then
//! released (BYE) or put back, and the media around it.

use super::refer::Side;
use super::*;
use crate::b2bua::refer_to;
use crate::b2bua::transfer::Party;
use crate::transaction::AcceptedInvite;

/// The transferor's leg while its transfer runs.
pub(super) struct Detached {
    pub(super) dialog: Dialog,
    pub(super) session: String,
    /// The transferor was in the A slot (the transferee moved there from B).
    pub(super) was_a: bool,
    /// The B slot's 2xx transaction and ACK (the transferor's, or, when
    /// `was_a`, the transferee's), to put the B slot back on failure.
    pub(super) accepted: Option<AcceptedInvite>,
    pub(super) ack: Request,
    /// What the A slot held before the swap (identity, local, B party).
    pub(super) saved: Option<(identity::CallerIdentity, bool, Option<Box<Party>>)>,
    /// The implicit subscription (RFC 3515 §2.4.4): NOTIFYs go out while
    /// it is active.
    pub(super) subscription: Option<u32>,
    /// The transferor sent BYE meanwhile.
    pub(super) gone: bool,
}

impl Ctl {
    /// Take the transferor's leg out; the transferee ends up in the A slot.
    pub(super) fn detach(&mut self, side: Side) -> Option<Detached> {
        if self.a_dialog.is_none() || self.a_session.is_none() || self.winner.is_none() {
            return None;
        }
        let b_party = (side == Side::A).then(|| self.party(Side::B));
        let winner = self.winner.take()?;
        let Some(b_party) = b_party else {
            return Some(Detached {
                dialog: winner.dialog,
                session: winner.session_id,
                was_a: false,
                accepted: winner.txn,
                ack: winner.ack,
                saved: None,
                subscription: None,
                gone: false,
            });
        };
        let (Some(a_dialog), Some((a_session, _))) = (self.a_dialog.take(), self.a_session.take())
        else {
            return None;
        };
        self.a_dialog = Some(winner.dialog);
        self.a_session = Some((winner.session_id, String::new()));
        let identity = std::mem::replace(&mut self.identity, b_party.identity);
        let local = std::mem::replace(&mut self.transfer.a_local, b_party.local);
        let b = self.transfer.b_party.take();
        Some(Detached {
            dialog: a_dialog,
            session: a_session,
            was_a: true,
            accepted: winner.txn,
            ack: winner.ack,
            saved: Some((identity, local, b)),
            subscription: None,
            gone: false,
        })
    }

    /// Put the transferor back where it was (the transfer failed).
    pub(super) fn reattach(&mut self, d: Detached) {
        if !d.was_a {
            self.winner = Some(Winner {
                dialog: d.dialog,
                txn: d.accepted,
                ack: d.ack,
                session_id: d.session,
            });
            return;
        }
        let (Some(tee_dialog), Some((tee_session, _))) =
            (self.a_dialog.take(), self.a_session.take())
        else {
            return;
        };
        self.winner = Some(Winner {
            dialog: tee_dialog,
            txn: d.accepted,
            ack: d.ack,
            session_id: tee_session,
        });
        self.a_dialog = Some(d.dialog);
        self.a_session = Some((d.session, String::new()));
        if let Some((identity, local, b)) = d.saved {
            self.identity = identity;
            self.transfer.a_local = local;
            self.transfer.b_party = b;
        }
    }

    /// The transferor's leg is over: BYE (unless it left), its session,
    /// its route.
    pub(super) async fn release(&mut self, mut d: Detached) {
        self.handle.unroute_dialog(&d.dialog.id);
        if !d.gone {
            self.send_bye(&mut d.dialog, d.was_a).await;
        }
        self.destroy_session(&d.session).await;
        self.record_leg(&d.dialog.id.call_id, LegState::Terminated);
    }

    pub(super) fn record_leg(&self, sip_call_id: &str, state: LegState) {
        self.handle.update(Some(CallChange::Updated), |r| {
            if let Some(l) = r.leg_mut(sip_call_id) {
                l.state = state;
            }
        });
    }

    /// A NOTIFY of the transfer's progress to the transferor (RFC 3515
    /// §2.4.4-5): `100` while it runs, then the final status, which ends
    /// the implicit subscription.
    pub(super) async fn notify(&mut self, d: &mut Detached, code: u16) {
        let Some(id) = d.subscription.filter(|_| !d.gone) else {
            return;
        };
        let done = code >= 200;
        let mut notify = d.dialog.request(Method::Notify, None);
        notify.headers.insert(Name::EVENT, format!("refer;id={id}"));
        notify.headers.insert(
            Name::SUBSCRIPTION_STATE,
            if done {
                "terminated;reason=noresource"
            } else {
                "active;expires=60"
            },
        );
        notify
            .headers
            .insert(Name::USER_AGENT, self.deps.config.sip.user_agent.clone());
        notify
            .headers
            .insert(Name::CONTENT_TYPE, "message/sipfrag;version=2.0");
        notify.body = bytes::Bytes::from(refer_to::sipfrag(code));
        if done {
            d.subscription = None;
        }
        let side = if d.was_a { Side::A } else { Side::B };
        self.log_leg(side, false, summary_req(&notify), &notify.to_bytes());
        match self.deps.layer.send_request(notify, d.dialog.target).await {
            Ok(mut txn) => {
                tokio::spawn(
                    async move {
                        if let Err(e) = txn.final_response().await {
                            tracing::debug!(error = %e, "NOTIFY unanswered");
                        }
                    }
                    .in_current_span(),
                );
            }
            Err(e) => tracing::warn!(error = %e, "cannot send NOTIFY"),
        }
    }

    /// BYE on a dialog that is no longer one of the call's two slots.
    pub(super) async fn send_bye(&self, dialog: &mut Dialog, to_a: bool) {
        let mut bye = dialog.request(Method::Bye, None);
        bye.headers
            .insert(Name::USER_AGENT, self.deps.config.sip.user_agent.clone());
        let summary = summary_req(&bye);
        let bytes = bye.to_bytes();
        self.handle
            .update(None, |r| r.log_message(to_a, false, summary, &bytes));
        match self.deps.layer.send_request(bye, dialog.target).await {
            Ok(mut txn) => {
                tokio::spawn(
                    async move {
                        if let Err(e) = txn.final_response().await {
                            tracing::debug!(error = %e, "BYE unanswered");
                        }
                    }
                    .in_current_span(),
                );
            }
            Err(e) => tracing::warn!(error = %e, "cannot send BYE"),
        }
    }

    /// Stop relaying between the A slot's session and its peer.
    pub(super) async fn unbridge_a(&mut self) {
        let Some(session_id) = self.a_session.as_ref().map(|s| s.0.clone()) else {
            return;
        };
        if let Ok(mut client) = self.media_client() {
            // Not bridged (NotBridged) is as good.
            let _ = client.unbridge(media::UnbridgeRequest { session_id }).await;
        }
    }

    /// Bridge the A and B slots again (a failed transfer).
    pub(super) async fn rebridge(&mut self) {
        let (Some(a), Some(b)) = (
            self.a_session.as_ref().map(|s| s.0.clone()),
            self.winner.as_ref().map(|w| w.session_id.clone()),
        ) else {
            return;
        };
        if let Ok(mut client) = self.media_client()
            && let Err(st) = client
                .bridge(media::BridgeRequest {
                    session_a: a,
                    session_b: b,
                })
                .await
        {
            tracing::warn!(error = %st.message(), "cannot bridge the call again after a failed transfer");
        }
    }

    /// Give the dialog inputs a transfer set aside back to the call.
    pub(super) fn requeue(&self, deferred: Vec<DialogInput>) {
        for msg in deferred {
            let _ = self.dlg_tx.send(msg);
        }
    }
}
