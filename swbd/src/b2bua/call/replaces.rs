//! A call giving up one of its legs to a transfer: handing its other
//! party to another call (the far end of an attended transfer), or letting
//! an INVITE with Replaces take a leg's place (RFC 3891 §3).

use super::refer::{Hook, Side};
use super::*;
use crate::b2bua::refer_to::{Refusal, parse_replaces};
use crate::b2bua::transfer::{HandedOver, Handoff, Party};

impl Side {
    fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

impl Ctl {
    /// Another call's attended transfer replaces the leg on `side`: hand
    /// the other party over, release that leg, and end this call.
    pub(super) async fn hand_over(&mut self, side: Side, h: Handoff) -> Hook {
        let refuse = |h: Handoff, code, reason| {
            let _ = h.reply.send(Err(Refusal { code, reason }));
            Hook::Done
        };
        if !self.transfer.policy.permits(self.party(side).local) {
            return refuse(h, 403, "Forbidden (transfer not allowed on this route)");
        }
        if h.node != self.node_name() {
            return refuse(
                h,
                488,
                "Not Acceptable Here (the calls are on different media nodes)",
            );
        }
        let party = self.party(side.other());
        let (Some(winner), Some(a_dialog), Some((a_sid, _))) = (
            self.winner.take(),
            self.a_dialog.take(),
            self.a_session.take(),
        ) else {
            // `side_of` found the leg, so both slots were set; nothing moved.
            return refuse(h, 403, "Forbidden (the call is not bridged)");
        };
        let (mut replaced, replaced_sid, kept, kept_sid, accepted, ack) = match side {
            Side::A => (
                a_dialog,
                a_sid,
                winner.dialog,
                winner.session_id,
                winner.txn,
                Some(winner.ack),
            ),
            Side::B => (
                winner.dialog,
                winner.session_id,
                a_dialog,
                a_sid,
                None,
                None,
            ),
        };
        self.handle.unroute_dialog(&replaced.id);
        self.handle.unroute_dialog(&kept.id);
        // The kept party's session leaves with it: this call's teardown
        // must not destroy it.
        let node = self.node_name();
        self.sessions.retain(|s| *s != kept_sid);
        self.handle.remove_session(&node, &kept_sid);
        let mut leg = None;
        let kept_call_id = kept.id.call_id.clone();
        self.handle.update(Some(CallChange::Updated), |r| {
            if let Some(l) = r.leg_mut(&kept_call_id) {
                leg = Some(l.clone());
                l.state = LegState::Terminated;
            }
        });
        let leg = leg.unwrap_or_else(|| LegRecord {
            is_a: false,
            sip_call_id: kept_call_id,
            remote_uri: kept.remote_uri.uri.to_string(),
            remote_address: format!("{} {}", kept.target.transport, kept.target.remote),
            state: LegState::Confirmed,
            media_session_id: kept_sid.clone(),
            codec: String::new(),
            target: String::new(),
        });
        // Releasing the replaced leg's session unbridges the kept one.
        self.destroy_session(&replaced_sid).await;
        self.send_bye(&mut replaced, side == Side::A).await;
        self.record_leg(&replaced.id.call_id, LegState::Terminated);
        let handed = HandedOver {
            dialog: kept,
            session_id: kept_sid,
            accepted,
            ack,
            party,
            leg,
        };
        if let Err(Ok(mut back)) = h.reply.send(Ok(handed)) {
            // The asking call is gone: the party is still ours to release.
            tracing::warn!("the transferring call went away; releasing the other party");
            self.send_bye(&mut back.dialog, side == Side::B).await;
            self.destroy_session(&back.session_id).await;
        }
        tracing::info!(to = %h.by, "other party handed over (attended transfer)");
        Hook::Ended(format!("transferred: the other party joined call {}", h.by))
    }

    /// An INVITE with Replaces naming the leg on `side`: answer it, bridge
    /// it with the other party, release the replaced leg.
    pub(super) async fn replacing_invite(
        &mut self,
        side: Side,
        mut txn: ServerInviteTransaction,
    ) -> Hook {
        let principal = txn.take_principal();
        let request = txn.request().clone();
        self.log_leg(side, true, summary_req(&request), &request.to_bytes());
        let local = Party::local_principal(principal.as_ref());
        let early_only = request
            .raw(&Name::REPLACES)
            .and_then(parse_replaces)
            .is_some_and(|r| r.early_only);
        let refusal = if early_only {
            Some((486, "Busy Here (the dialog is confirmed)"))
        } else if !self.transfer.policy.permits(local) {
            Some((
                403,
                "Forbidden (replacing a call is not allowed on this route)",
            ))
        } else if request.body.is_empty() {
            Some((
                488,
                "Not Acceptable Here (an INVITE with Replaces needs an SDP offer)",
            ))
        } else {
            None
        };
        if let Some((code, reason)) = refusal {
            tracing::info!(code, reason, "INVITE with Replaces refused");
            let _ = txn.respond(txn.response(code, reason));
            return Hook::Done;
        }
        let (Some(a_sid), Some(b_sid)) = (
            self.a_session.as_ref().map(|s| s.0.clone()),
            self.winner.as_ref().map(|w| w.session_id.clone()),
        ) else {
            let _ = txn.respond(txn.response(403, "Forbidden (the call is not bridged)"));
            return Hook::Done;
        };
        let (kept_sid, replaced_sid) = match side {
            Side::A => (b_sid, a_sid),
            Side::B => (a_sid, b_sid),
        };
        let offer = String::from_utf8_lossy(&request.body).into_owned();
        let created = match self
            .create_session(
                "replaces",
                media::create_session_request::Negotiation::RemoteOfferSdp(offer),
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                let mut resp = txn.response(488, "Not Acceptable Here");
                resp.headers.insert(Name::WARNING, warning_value(&e.reason));
                let _ = txn.respond(resp);
                return Hook::Done;
            }
        };
        let new_sid = created.session_id.clone();
        let bridged = match self.media_client() {
            Ok(mut client) => {
                let _ = client
                    .unbridge(media::UnbridgeRequest {
                        session_id: kept_sid.clone(),
                    })
                    .await;
                client
                    .bridge(media::BridgeRequest {
                        session_a: kept_sid.clone(),
                        session_b: new_sid.clone(),
                    })
                    .await
                    .map(drop)
                    .map_err(|st| status_to_control(&st, "bridge"))
            }
            Err(e) => Err(e),
        };
        let (responder, mut events) = txn.split();
        let source = *responder.source();
        let flow = Target::reply_to(&source, source.remote);
        let contact = self.local_contact(&flow);
        let dialog = bridged.and_then(|()| {
            Dialog::as_uas(&request, responder.to_tag(), contact.clone(), flow)
                .map_err(|e| ControlError::new(e.status_code(), e.to_string()))
        });
        let dialog = match dialog {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "INVITE with Replaces failed");
                let _ = responder.respond(responder.response(e.code, "Replacing the call failed"));
                self.destroy_session(&new_sid).await;
                self.rebridge_sessions(&kept_sid, &replaced_sid).await;
                return Hook::Done;
            }
        };
        self.handle
            .route_dialog(dialog.id.clone(), self.dlg_tx.clone());
        let mut ok = with_sdp(responder.response(200, "OK"), &created.local_sdp);
        ok.headers.insert(Name::CONTACT, format!("<{contact}>"));
        ok.headers
            .insert(Name::ALLOW, crate::sip::capabilities::ALLOW_IN_DIALOG);
        self.log_leg(side, false, summary_resp(&ok), &ok.to_bytes());
        let _ = responder.respond(ok);
        // The transaction retransmits the 2xx until the ACK; keep its
        // responder until then.
        tokio::spawn(
            async move {
                let _responder = responder;
                while let Some(ev) = events.recv().await {
                    if matches!(ev, ServerInviteEvent::NoAck) {
                        tracing::warn!("no ACK for the 200 to an INVITE with Replaces");
                    }
                }
            }
            .in_current_span(),
        );
        let leg = LegRecord {
            is_a: side == Side::A,
            sip_call_id: dialog.id.call_id.clone(),
            remote_uri: dialog.remote_uri.uri.to_string(),
            remote_address: format!("{} {}", flow.transport, flow.remote),
            state: LegState::Confirmed,
            media_session_id: new_sid.clone(),
            codec: created
                .media
                .as_ref()
                .map(|m| codec_name(m.codec))
                .unwrap_or_default(),
            target: "replaces".into(),
        };
        self.handle
            .update(Some(CallChange::Updated), |r| r.legs.push(leg));
        let identity = identity::CallerIdentity::of(&request, principal.as_ref());
        let mut replaced = match side {
            Side::A => {
                self.a_session = Some((new_sid, String::new()));
                self.identity = identity;
                self.transfer.a_local = local;
                self.a_dialog.replace(dialog)
            }
            Side::B => {
                let ack = {
                    let mut d = dialog.clone();
                    d.request(Method::Ack, Some(d.local_seq))
                };
                self.transfer.b_party = Some(Box::new(Party { identity, local }));
                self.winner
                    .replace(Winner {
                        dialog,
                        txn: None,
                        ack,
                        session_id: new_sid,
                    })
                    .map(|w| w.dialog)
            }
        };
        if let Some(old) = replaced.as_mut() {
            self.handle.unroute_dialog(&old.id);
            self.send_bye(old, side == Side::A).await;
            self.record_leg(&old.id.call_id, LegState::Terminated);
        }
        self.destroy_session(&replaced_sid).await;
        tracing::info!("leg replaced (INVITE with Replaces)");
        Hook::Done
    }

    async fn rebridge_sessions(&mut self, a: &str, b: &str) {
        if let Ok(mut client) = self.media_client() {
            let _ = client
                .bridge(media::BridgeRequest {
                    session_a: a.to_string(),
                    session_b: b.to_string(),
                })
                .await;
        }
    }
}
