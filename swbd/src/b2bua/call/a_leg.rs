//! Talking to the caller (A-leg): provisional and final responses, the
//! answer, BYE.

use super::*;

impl Ctl {
    pub(super) fn send_a(&mut self, resp: Response) {
        let resp = self.reliable_to_a(resp);
        let mut resp = self.session_timer_to_a(resp);
        self.dialog_headers(&mut resp);
        let summary = summary_resp(&resp);
        let bytes = ladder_bytes_of_response(&resp);
        self.handle
            .update(None, |r| r.log_message(true, false, summary, &bytes));
        if resp.code >= 200 {
            self.final_sent = true;
        }
        if resp.code >= 180 {
            // Ringing, early media or an answer: A waits on a callee or a
            // prompt now, not on swbd.
            self.work = None;
        }
        let _ = self.a.respond(resp);
    }

    /// A final error response to A (once; nothing after a 2xx).
    pub(super) fn final_to_a(&mut self, code: u16, reason: &str) {
        if self.final_sent {
            return;
        }
        let reason = reason.replace(['\r', '\n'], " ");
        let mut resp = self.a.response(code, &reason);
        if let Some(warning) = self.a_warning.take() {
            resp.headers.insert(Name::WARNING, warning);
        }
        if code == 503
            && let Some(secs) = self.no_media_node
        {
            resp.headers.insert(Name::RETRY_AFTER, secs.to_string());
        }
        self.send_a(resp);
        self.handle.update(None, |r| {
            r.end_status = code;
            if let Some(l) = r.legs.first_mut() {
                l.state = LegState::Terminated;
            }
        });
    }

    pub(super) fn local_contact(&self, flow: &Target) -> String {
        let local = flow.local.or_else(|| {
            self.deps
                .layer
                .transports()
                .local_for(flow.transport, flow.remote)
        });
        local
            .map(|l| contact_uri(l, flow.transport))
            .unwrap_or_else(|| "sip:swbd@127.0.0.1".into())
    }

    /// Send 200 OK with our SDP to A and set up A's dialog.
    pub(super) async fn answer_a(&mut self) -> Result<(), ControlError> {
        if self.answered {
            return Ok(());
        }
        let (_, sdp) = self.ensure_a_session().await?;
        let source = *self.a.source();
        let flow = Target::reply_to(&source, source.remote);
        let contact = self.local_contact(&flow);
        let dialog = Dialog::as_uas(self.a.request(), self.a.to_tag(), contact.clone(), flow)
            .map_err(|e| ControlError::new(e.status_code(), e.to_string()))?;
        self.handle
            .route_dialog(dialog.id.clone(), self.dlg_tx.clone());
        let mut resp = with_sdp(self.a.response(200, "OK"), &sdp);
        resp.headers.insert(Name::CONTACT, format!("<{contact}>"));
        self.send_a(resp);
        self.a_dialog = Some(dialog);
        self.answered = true;
        // Our SDP answer went out with the 200; nothing sends it again
        // (re-INVITEs are answered by the node), so do not keep it.
        if let Some((_, sdp)) = self.a_session.as_mut() {
            *sdp = String::new();
        }
        self.handle.update(Some(CallChange::Answered), |r| {
            r.answered_at = Some(SystemTime::now());
            if r.state == CallState::Routing || r.state == CallState::Ringing {
                r.state = CallState::Answered;
            }
            if let Some(l) = r.legs.first_mut() {
                l.state = LegState::Confirmed;
            }
        });
        if self.late.a {
            // Our 200 carried the offer: the answer is in A's ACK.
            self.answer_from_ack().await?;
        }
        Ok(())
    }

    pub(super) async fn bye(&mut self, to_a: bool) {
        let dialog = if to_a {
            self.a_dialog.as_mut()
        } else {
            self.winner.as_mut().map(|w| &mut w.dialog)
        };
        let Some(dialog) = dialog else { return };
        let mut bye = dialog.request(Method::Bye, None);
        bye.headers
            .insert(Name::USER_AGENT, self.deps.config.sip.user_agent.clone());
        let flow = dialog.target;
        let summary = summary_req(&bye);
        let bytes = bye.to_bytes();
        self.handle
            .update(None, |r| r.log_message(to_a, false, summary, &bytes));
        match self.deps.layer.send_request(bye, flow).await {
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
        if to_a {
            self.a_dialog = None;
        } else if let Some(w) = self.winner.as_mut() {
            w.txn = None;
        }
    }

    pub(super) async fn bye_a(&mut self) {
        self.bye(true).await;
    }
}
