//! A bridged call: in-dialog requests from both legs, re-INVITEs, teardown.

use super::*;

impl Ctl {
    /// After the dialplan bridged the call: relay teardown between legs.
    pub(super) async fn bridged(
        &mut self,
        a_events: &mut mpsc::UnboundedReceiver<ServerInviteEvent>,
        dlg_rx: &mut mpsc::UnboundedReceiver<DialogInput>,
        cmd_rx: &mut mpsc::UnboundedReceiver<Box<CallCommand>>,
    ) -> String {
        // The call spends its life here: everything awaited below is rare
        // (teardown, re-INVITE) and boxed, so this state stays small.
        let mut a_events_open = true;
        loop {
            let winner_response = async {
                match self.winner.as_mut().and_then(|w| w.txn.as_mut()) {
                    Some(txn) => Some(txn.next_response().await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = a_events.recv(), if a_events_open => match ev {
                    Some(ServerInviteEvent::NoAck) => {
                        Box::pin(self.bye(true)).await;
                        Box::pin(self.bye(false)).await;
                        return "no ACK from caller".into();
                    }
                    Some(_) => {}
                    None => a_events_open = false,
                },
                r = winner_response => match r {
                    Some(Ok(resp)) if resp.is_success() => {
                        // A retransmitted 2xx: the ACK was lost, send it again.
                        if let Some(w) = &self.winner {
                            let _ = Box::pin(self.deps.layer.send_ack(w.ack.clone(), w.dialog.target)).await;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        if let Some(w) = self.winner.as_mut() {
                            w.txn = None;
                        }
                    }
                },
                Some(msg) = dlg_rx.recv() => {
                    let (dialog, input) = *msg;
                    let from_a = self.a_dialog.as_ref().is_some_and(|d| d.id == dialog);
                    let in_dialog = match (&input, from_a) {
                        (LegInput::Request(t), true) => self.a_dialog.as_mut().map(|d| d.accept_incoming(t.request())),
                        (LegInput::Request(t), false) => self.winner.as_mut().map(|w| w.dialog.accept_incoming(t.request())),
                        _ => None,
                    };
                    if let (Some(Err(e)), LegInput::Request(t)) = (&in_dialog, &input) {
                        let _ = t.respond(t.response(e.status_code(), &e.to_string()));
                        continue;
                    }
                    if let LegInput::Request(t) = &input {
                        let summary = summary_req(t.request());
                        let bytes = t.request().to_bytes();
                        self.handle.update(None, |r| r.log_message(from_a, true, summary, &bytes));
                    }
                    if let LegInput::Invite(txn) = input {
                        Box::pin(self.reinvite(from_a, txn)).await;
                        continue;
                    }
                    if answer_in_dialog(&dialog, input) == InDialog::Bye {
                        self.handle.unroute_dialog(&dialog);
                        if from_a {
                            self.a_dialog = None;
                            Box::pin(self.bye(false)).await;
                            return "caller hung up".into();
                        }
                        if let Some(w) = self.winner.as_mut() {
                            w.txn = None;
                        }
                        self.winner_gone();
                        Box::pin(self.bye(true)).await;
                        return "callee hung up".into();
                    }
                }
                Some(cmd) = cmd_rx.recv() => {
                    Box::pin(self.bye(true)).await;
                    Box::pin(self.bye(false)).await;
                    return match *cmd {
                        CallCommand::Hangup(r) => r,
                        CallCommand::MediaLost(r) => r,
                    };
                }
            }
        }
    }

    /// A re-INVITE on a confirmed leg (hold, resume, codec change): the
    /// media node answers the new offer for that leg's session; the other
    /// leg is not involved. No offer, or one the node refuses: `488`, and
    /// the session stays as it was (RFC 3261 §14.2).
    pub(super) async fn reinvite(&mut self, from_a: bool, txn: ServerInviteTransaction) {
        let request = txn.request().clone();
        let summary = summary_req(&request);
        let bytes = request.to_bytes();
        self.handle
            .update(None, |r| r.log_message(from_a, true, summary, &bytes));
        let checked = if from_a {
            self.a_dialog.as_mut().map(|d| d.accept_incoming(&request))
        } else {
            self.winner
                .as_mut()
                .map(|w| w.dialog.accept_incoming(&request))
        };
        if let Some(Err(e)) = checked {
            let _ = txn.respond(txn.response(e.status_code(), &e.to_string()));
            return;
        }
        let session = if from_a {
            self.a_session.as_ref().map(|s| s.0.clone())
        } else {
            self.winner.as_ref().map(|w| w.session_id.clone())
        };
        let (Some(session), false) = (session, request.body.is_empty()) else {
            let _ =
                txn.respond(txn.response(488, "Not Acceptable Here (re-INVITE without an offer)"));
            return;
        };
        let answer = match self.media_client() {
            Ok(mut client) => client
                .update_session(media::UpdateSessionRequest {
                    session_id: session,
                    remote_sdp: String::from_utf8_lossy(&request.body).into_owned(),
                })
                .await
                .map(|r| r.into_inner().local_sdp)
                .map_err(|st| status_to_control(&st, "re-INVITE")),
            Err(e) => Err(e),
        };
        match answer {
            Ok(sdp) if !sdp.is_empty() => {
                let dialog = if from_a {
                    self.a_dialog.as_mut()
                } else {
                    self.winner.as_mut().map(|w| &mut w.dialog)
                };
                let contact = dialog.map(|d| {
                    d.refresh_target(&request);
                    d.local_contact.clone()
                });
                let mut resp = with_sdp(txn.response(200, "OK"), &sdp);
                if let Some(c) = contact {
                    resp.headers.insert(Name::CONTACT, format!("<{c}>"));
                }
                let summary = summary_resp(&resp);
                let bytes = resp.to_bytes();
                self.handle
                    .update(None, |r| r.log_message(from_a, false, summary, &bytes));
                let _ = txn.respond(resp);
            }
            Ok(_) => {
                let _ = txn.respond(txn.response(488, "Not Acceptable Here (not an offer)"));
            }
            Err(e) => {
                let _ = txn.respond(txn.response(488, &e.reason));
            }
        }
    }

    pub(super) fn winner_gone(&mut self) {
        if let Some(w) = self.winner.take() {
            // Keep the session id for cleanup; the dialog is over.
            drop(w.dialog);
        }
    }

    /// Tear down whatever is left: CANCEL ringing B-legs (late 2xx get
    /// ACK + BYE), destroy every media session.
    pub(super) async fn cleanup(&mut self) {
        let layer = self.deps.layer.clone();
        for leg in self.b_legs.drain(..) {
            if let Some(txn) = leg.txn {
                txn.cancel();
                tokio::spawn(reap(layer.clone(), txn, leg.contact, leg.flow).in_current_span());
            }
        }
        if self.a_dialog.is_some() && self.winner.is_some() {
            // Both still up (interrupted elsewhere): end both.
            self.bye(true).await;
            self.bye(false).await;
        }
        let sessions = std::mem::take(&mut self.sessions);
        self.destroy_sessions(sessions).await;
        if let Some(d) = &self.a_dialog {
            self.handle.unroute_dialog(&d.id);
        }
        if let Some(w) = &self.winner {
            self.handle.unroute_dialog(&w.dialog.id);
        }
        self.lease = None;
    }
}
