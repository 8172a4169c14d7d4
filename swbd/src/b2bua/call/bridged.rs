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
        // Digits A sent by INFO between its 200 and the bridge (the call
        // task answered them while the dialplan finished): pass them on now.
        Box::pin(self.relay_early_info_digits()).await;
        // The call spends its life here: everything awaited below is rare
        // (teardown, re-INVITE) and boxed, so this state stays small.
        let mut a_events_open = true;
        loop {
            // Saved when bridged and whenever the dialogs changed (saved.rs).
            self.save_call();
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
                    Some(ServerInviteEvent::PrackTimeout) => {
                        // Our 2xx was held for a PRACK that never came; A
                        // got a 500 instead: only B has a dialog.
                        if let Some(d) = self.a_dialog.take() {
                            self.handle.unroute_dialog(&d.id);
                        }
                        Box::pin(self.bye(false)).await;
                        return "no PRACK from caller".into();
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
                Some(msg) = self.deferred.next(dlg_rx) => {
                    // REFER, Replaces, legs a transfer released: refer.rs.
                    let msg = match Box::pin(self.transfer_hook(msg, a_events, dlg_rx, cmd_rx)).await {
                        refer::Hook::Pass(msg) => msg,
                        refer::Hook::Done => continue,
                        refer::Hook::Ended(cause) => return cause,
                    };
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
                    let input = match input {
                        LegInput::Request(t) if t.request().method == Method::Info => {
                            Box::pin(self.on_info(from_a, t)).await;
                            continue;
                        }
                        other => other,
                    };
                    if let LegInput::Invite(txn) = input {
                        if self.offer_pending(from_a) {
                            // Our relayed offer to this leg waits (update.rs).
                            let _ = txn.respond(txn.response(491, "Request Pending"));
                            continue;
                        }
                        Box::pin(self.reinvite(from_a, txn)).await;
                        continue;
                    }
                    let input = match input {
                        LegInput::Request(t) if t.request().method == Method::Update => {
                            Box::pin(self.on_update(from_a, t)).await;
                            continue;
                        }
                        other => other,
                    };
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
                ev = self.session_timers.next_event() => {
                    if let Some(cause) = Box::pin(self.on_session_timer(ev)).await {
                        Box::pin(self.bye(true)).await;
                        Box::pin(self.bye(false)).await;
                        return cause;
                    }
                }
                ev = self.hold.next_event(), if self.hold.busy() => {
                    if let Some(cause) = Box::pin(self.on_hold_event(ev)).await {
                        Box::pin(self.bye(true)).await;
                        Box::pin(self.bye(false)).await;
                        return cause;
                    }
                }
                Some(cmd) = cmd_rx.recv() => {
                    let reason = match *cmd {
                        CallCommand::Dtmf(d) => {
                            Box::pin(self.on_media_dtmf(d)).await;
                            continue;
                        }
                        CallCommand::Migrate(order) => {
                            match Box::pin(self.migrate(order, dlg_rx)).await {
                                Some(cause) => cause,
                                None => continue,
                            }
                        }
                        CallCommand::Hangup(r) | CallCommand::MediaLost(r) => r,
                    };
                    Box::pin(self.bye(true)).await;
                    Box::pin(self.bye(false)).await;
                    return reason;
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
        if self.hold.pending_on(from_a) {
            // RFC 3261 §14.2: our own re-INVITE on this dialog is pending.
            let _ = txn.respond(txn.response(491, "Request Pending"));
            return;
        }
        if let Some(r) = self.session_timer_refusal(from_a, &request) {
            let _ = txn.respond(r.complete(txn.response(r.code, r.reason)));
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
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner())
                .map_err(|st| status_to_control(&st, "re-INVITE")),
            Err(e) => Err(e),
        };
        match answer {
            Ok(media::UpdateSessionResponse {
                local_sdp: sdp,
                media,
            }) if !sdp.is_empty() => {
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
                self.session_timer_refreshed(from_a, &request, &mut resp);
                let summary = summary_resp(&resp);
                let bytes = resp.to_bytes();
                self.handle
                    .update(None, |r| r.log_message(from_a, false, summary, &bytes));
                let _ = txn.respond(resp);
                Box::pin(self.after_reinvite(from_a, media)).await;
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
        self.unroute_early();
        self.lease = None;
    }
}
