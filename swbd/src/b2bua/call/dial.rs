//! The dialplan's view of the call: the [`CallControl`] actions (answer,
//! play, dial, hangup).

use super::*;
use crate::dialplan::DialOptions;

/// What ended one wait of a ringing dial.
enum Ringing {
    /// The dial's timeout.
    Timeout,
    /// B-leg `i` answered (or failed).
    Response(usize, crate::transaction::Result<Response>),
    /// An UPDATE with SDP in an early dialog (update.rs).
    Update(DialogInput),
}

impl CallControl for Ctl {
    async fn answer(&mut self) -> Result<(), ControlError> {
        self.answer_a().await
    }

    async fn play(&mut self, file: &str, looped: bool) -> Result<(), ControlError> {
        self.answer_a().await?;
        let (sid, _) = self.ensure_a_session().await?;
        let mut client = self.media_client()?;
        let mut stream = client
            .play(media::PlayRequest {
                session_id: sid,
                file: file.to_string(),
                r#loop: looped,
            })
            .await
            .map_err(|st| status_to_control(&st, "playback"))?
            .into_inner();
        self.playing = true;
        self.handle.update(Some(CallChange::Updated), |_| {});
        let result = loop {
            match stream.message().await {
                Ok(Some(ev)) => match ev.event {
                    Some(media::play_event::Event::Completed(_))
                    | Some(media::play_event::Event::Stopped(_)) => break Ok(()),
                    Some(media::play_event::Event::Error(e)) => {
                        break Err(ControlError::new(
                            500,
                            format!("playback failed: {}", e.message),
                        ));
                    }
                    _ => {}
                },
                Ok(None) => break Ok(()),
                Err(st) => break Err(status_to_control(&st, "playback")),
            }
        };
        self.playing = false;
        result
    }

    async fn dial(&mut self, targets: &[DialTarget], timeout: Duration) -> DialOutcome {
        // The caller's SDP is checked by the media node before anything
        // rings (with the first B-leg's session, see `start_b_leg`): an
        // unusable offer gets 488 with a Warning saying why, instead of a
        // callee who answers and is hung up on (issue #13).
        if self.a_warning.is_some() {
            return DialOutcome::Failed(488);
        }
        if self.a_session.is_none()
            && self.a_offer.trim().is_empty()
            && let Err(e) = self.ensure_a_session().await
        {
            return DialOutcome::Failed(e.code);
        }
        let max_branches = self.deps.config.b2bua.max_branches;
        let mut first_error: Option<u16> = None;
        for target in targets {
            match self.resolve(target).await {
                Ok(attempts) => {
                    for (uri, to, flow, fallbacks) in attempts {
                        let ringing = self.b_legs.iter().filter(|b| b.txn.is_some()).count();
                        if ringing >= max_branches {
                            tracing::warn!(
                                %target,
                                max_branches,
                                "b2bua.max_branches reached: target not called"
                            );
                            break;
                        }
                        if let Err(e) = self
                            .start_b_leg(target.clone(), &uri, &to, flow, fallbacks)
                            .await
                        {
                            tracing::info!(%target, error = %e, "B-leg not started");
                            if e.code == 488 && self.a_session.is_none() {
                                // A's offer, not this target, is the problem.
                                tracing::info!(error = %e, "caller SDP refused");
                                self.a_warning = Some(warning_value(&e.reason));
                                return DialOutcome::Failed(488);
                            }
                            first_error.get_or_insert(e.code);
                            if e.code == 503 && self.lease.is_none() {
                                return DialOutcome::Failed(503);
                            }
                        }
                    }
                }
                Err(code) => {
                    tracing::info!(%target, code, "dial target unavailable");
                    let text = target.to_string();
                    self.handle
                        .update(None, |r| r.cdr.target_failed(text, code));
                    first_error.get_or_insert(code);
                }
            }
        }
        if self.b_legs.is_empty() {
            return DialOutcome::Failed(first_error.unwrap_or(404));
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            let active: Vec<usize> = self
                .b_legs
                .iter()
                .enumerate()
                .filter(|(_, b)| b.txn.is_some())
                .map(|(i, _)| i)
                .collect();
            if active.is_empty() {
                let codes: Vec<u16> = self.b_legs.iter().filter_map(|b| b.failed).collect();
                return aggregate(&codes);
            }
            let step = {
                let futs = self.b_legs.iter_mut().enumerate().filter_map(|(i, b)| {
                    b.txn
                        .as_mut()
                        .map(|t| async move { (i, t.next_response().await) }.boxed())
                });
                let next = futures::future::select_all(futs);
                tokio::select! {
                    _ = &mut deadline => Ringing::Timeout,
                    ((i, result), _, _) = next => Ringing::Response(i, result),
                    Some(update) = self.updates.early.recv() => Ringing::Update(update),
                }
            };
            match step {
                Ringing::Timeout => {
                    tracing::info!("dial timeout");
                    let layer = self.deps.layer.clone();
                    let mut sessions = Vec::new();
                    for leg in self.b_legs.iter_mut() {
                        if let Some(t) = leg.txn.take() {
                            t.cancel();
                            tokio::spawn(
                                reap(layer.clone(), t, leg.contact.clone(), leg.flow)
                                    .in_current_span(),
                            );
                            leg.failed = Some(408);
                            sessions.push(leg.session_id.clone());
                        }
                    }
                    for s in sessions {
                        self.destroy_session(&s).await;
                    }
                    self.early_bridge = None;
                    return DialOutcome::NoAnswer;
                }
                Ringing::Response(i, Ok(resp)) => {
                    if let Some(t) = self.on_b_response(i, resp).await {
                        return DialOutcome::Answered(t);
                    }
                }
                Ringing::Response(i, Err(e)) => self.b_failed(i, e.status_code()).await,
                Ringing::Update(update) => self.early_update(update).await,
            }
            if self.end_cause.is_some() {
                // A failure ended both legs (late_offer.rs): stop here.
                return DialOutcome::Cancelled;
            }
        }
    }

    async fn read_digits(
        &mut self,
        read: &crate::dialplan::ReadRequest,
    ) -> Result<String, ControlError> {
        self.read_dtmf(read).await
    }

    async fn dial_with(
        &mut self,
        targets: &[DialTarget],
        timeout: Duration,
        options: DialOptions,
    ) -> DialOutcome {
        if self.end_cause.is_some() {
            // The call is over (late_offer.rs): nothing more rings.
            return DialOutcome::Cancelled;
        }
        self.redirect.begin(options.redirect);
        let dialing = self.updates.dialing();
        let outcome = self.dial(targets, timeout).await;
        drop(dialing);
        self.refuse_early_updates();
        self.redirect.end(&outcome);
        outcome
    }

    async fn hangup(&mut self, code: u16, reason: &str) {
        if self.pass_redirect() {
            // The route passes 3xx to the caller (redirect.rs).
            return;
        }
        if self.answered {
            self.bye_a().await;
        } else if self.a_warning.is_some() {
            // The caller's SDP was refused: that, not what the dialplan
            // tried next, is why the call cannot go on.
            self.final_to_a(488, "Not Acceptable Here");
        } else if self.no_media_node.is_some() {
            // No media node could take the call: the dialplan's catch-all
            // after a failed dial (480) would hide that; try again later.
            self.final_to_a(503, "Service Unavailable");
        } else {
            self.final_to_a(code, reason);
        }
    }

    fn waiting(&mut self) {
        // A `sleep` in the dialplan: the call waits on purpose.
        self.work = None;
    }
}

/// The dial outcome for a set of failed B-legs (RFC 3261 §16.7 spirit:
/// busy wins, then a timeout, then the lowest 4xx, then anything).
pub(super) fn aggregate(codes: &[u16]) -> DialOutcome {
    if codes.iter().any(|c| matches!(c, 486 | 600 | 603)) {
        return DialOutcome::Busy;
    }
    if !codes.is_empty() && codes.iter().all(|c| matches!(c, 408 | 480 | 487)) {
        return DialOutcome::NoAnswer;
    }
    let best = codes
        .iter()
        .copied()
        .filter(|c| (400..500).contains(c))
        .min()
        .or_else(|| codes.first().copied())
        .unwrap_or(480);
    DialOutcome::Failed(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_aggregate_busy_first() {
        assert_eq!(aggregate(&[404, 486]), DialOutcome::Busy);
        assert_eq!(aggregate(&[408, 487]), DialOutcome::NoAnswer);
        assert_eq!(aggregate(&[503, 404]), DialOutcome::Failed(404));
        assert_eq!(aggregate(&[503]), DialOutcome::Failed(503));
    }
}
