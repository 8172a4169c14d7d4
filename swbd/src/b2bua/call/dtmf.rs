//! DTMF in a call: SIP INFO and RFC 4733, converted per leg, and the
//! digits the dialplan's `read` collects from the caller.
//!
//! # Bridged calls
//!
//! Each leg carries DTMF its own way; swbd converts where they differ:
//! - An INFO with a DTMF body (`application/dtmf-relay`, `application/dtmf`,
//!   parsed by [`crate::sip::dtmf`]) from one leg gets `200 OK`; the digit
//!   goes to the other leg as RFC 4733 when its media session negotiated
//!   telephone-event (`SendDtmf` on the node), otherwise as an INFO of ours
//!   (`application/dtmf-relay`). Other INFO bodies get `415` with `Accept`,
//!   malformed DTMF bodies `400`, and an INFO without a body `200` (legacy
//!   keep-alive probes).
//! - RFC 4733 from a leg is relayed by the node to a peer that negotiated
//!   telephone-event; the node reports every digit, and one the peer did
//!   not get (`relayed: false`) goes to the peer as an INFO.
//!
//! Digits are rate limited per call ([`BURST`], then one per [`REFILL`]):
//! past that an INFO gets `503` and a digit from the node is dropped, so a
//! peer cannot make swbd flood the other leg.
//!
//! # While the dialplan runs
//!
//! The call task's loop feeds the caller's digits (INFO on A's dialog, and
//! every digit the node reports) into a bounded queue ([`DigitSink`],
//! [`QUEUE`] digits, the rest dropped); `read` takes those of A (INFO, or
//! A's media session) and ignores the others. What `read` stores is built
//! from the DTMF alphabet only.

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::dialplan::ReadRequest;
use crate::media::MediaDtmf;
use crate::sip::dtmf::{self as body, Tone};
use crate::transaction::ServerTransaction;

/// Digits queued for `read` at most.
pub const QUEUE: usize = 32;
/// Digits a call may convert at once...
pub const BURST: u32 = 20;
/// ...and then one more per this long.
pub const REFILL: Duration = Duration::from_millis(100);

/// A digit for `read`, and where it came from (`None`: an INFO on A's
/// dialog; `Some(session)`: a media session of the call).
type Keyed = (Option<String>, char);

/// The call's DTMF state (the `dtmf` field of [`Ctl`]).
#[derive(Debug)]
pub(super) struct Dtmf {
    /// Digits fed while the dialplan runs, for `read`.
    digits: mpsc::Receiver<Keyed>,
    tokens: u32,
    refilled_at: Instant,
}

/// The feeding end of [`Dtmf`]'s queue, kept by the call task's loop while
/// the dialplan (which holds the [`Ctl`]) runs.
#[derive(Debug, Clone)]
pub(super) struct DigitSink {
    tx: mpsc::Sender<Keyed>,
}

/// A queue for the caller's digits.
pub(super) fn channel() -> (DigitSink, Dtmf) {
    let (tx, digits) = mpsc::channel(QUEUE);
    (
        DigitSink { tx },
        Dtmf {
            digits,
            tokens: BURST,
            refilled_at: Instant::now(),
        },
    )
}

impl Dtmf {
    /// Take one digit from the budget (see the module docs).
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let earned =
            now.saturating_duration_since(self.refilled_at).as_millis() / REFILL.as_millis().max(1);
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(BURST);
            self.refilled_at = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Answer an INFO: `Ok(Some(tone))` for a key press (answered 200),
/// `Ok(None)` for an INFO without body (answered 200), `Err(())` when it
/// was refused (answered 4xx).
fn answer_info(txn: &ServerTransaction) -> Result<Option<Tone>, ()> {
    let request = txn.request();
    if request.body.is_empty() {
        let _ = txn.respond(txn.response(200, "OK"));
        return Ok(None);
    }
    let content_type = request.raw(&Name::CONTENT_TYPE).unwrap_or_default();
    match body::parse(content_type, &request.body) {
        Ok(tone) => {
            let _ = txn.respond(txn.response(200, "OK"));
            Ok(Some(tone))
        }
        Err(e) => {
            tracing::debug!(error = %e, "INFO refused");
            let mut resp = txn.response(e.status_code(), &e.to_string());
            if e.status_code() == 415 {
                resp.headers.insert(Name::ACCEPT, body::ACCEPTED);
            }
            let _ = txn.respond(resp);
            Err(())
        }
    }
}

impl DigitSink {
    /// While the dialplan runs: an INFO on A's dialog is answered here and
    /// its digit queued; anything else is handed back.
    pub(super) fn take_info(&self, input: LegInput) -> Option<LegInput> {
        match input {
            LegInput::Request(txn) if txn.request().method == Method::Info => {
                if let Ok(Some(tone)) = answer_info(&txn) {
                    self.push(None, tone.digit);
                }
                None
            }
            other => Some(other),
        }
    }

    /// While the dialplan runs: a digit from a media session is queued;
    /// other commands are handed back.
    pub(super) fn take_command(&self, cmd: Box<CallCommand>) -> Option<Box<CallCommand>> {
        match *cmd {
            CallCommand::Dtmf(d) => {
                self.push(Some(d.session_id), d.digit);
                None
            }
            _ => Some(cmd),
        }
    }

    fn push(&self, from: Option<String>, digit: char) {
        if self.tx.try_send((from, digit)).is_err() {
            tracing::debug!("DTMF queue full: digit dropped");
        }
    }
}

impl Ctl {
    /// An INFO on a confirmed leg of a bridged call (CSeq already checked).
    pub(super) async fn on_info(&mut self, from_a: bool, txn: ServerTransaction) {
        let Ok(Some(tone)) = answer_info(&txn) else {
            return;
        };
        if !self.dtmf.allow() {
            // Answered already; the digit is not passed on.
            tracing::warn!(digit = %tone.digit, "DTMF rate limit: INFO digit dropped");
            return;
        }
        tracing::debug!(digit = %tone.digit, from_a, "DTMF by INFO");
        self.tone_to(!from_a, tone).await;
    }

    /// A digit one of the call's media sessions received as RFC 4733.
    pub(super) async fn on_media_dtmf(&mut self, d: MediaDtmf) {
        if d.relayed {
            return;
        }
        let from_a = self.a_session.as_ref().is_some_and(|s| s.0 == d.session_id);
        let from_b = self
            .winner
            .as_ref()
            .is_some_and(|w| w.session_id == d.session_id);
        if !(from_a || from_b) || !self.dtmf.allow() {
            return;
        }
        tracing::debug!(digit = %d.digit, from_a, "DTMF by RFC 4733, peer has no telephone-event");
        let tone = Tone {
            digit: d.digit,
            duration_ms: d.duration_ms,
        };
        self.send_info(from_b, tone).await;
    }

    /// Give `tone` to A (`to_a`) or B: as RFC 4733 when that leg's session
    /// can take it, else as INFO.
    async fn tone_to(&mut self, to_a: bool, tone: Tone) {
        let session = if to_a {
            self.a_session.as_ref().map(|s| s.0.clone())
        } else {
            self.winner.as_ref().map(|w| w.session_id.clone())
        };
        if let Some(session_id) = session
            && let Ok(mut client) = self.media_client()
        {
            let sent = client
                .send_dtmf(media::SendDtmfRequest {
                    session_id,
                    digits: tone.digit.to_string(),
                    duration_ms: tone.duration_ms,
                })
                .await;
            match sent {
                Ok(_) => return,
                Err(st) => {
                    tracing::debug!(code = ?st.code(), reason = %st.message(), "no RFC 4733 on that leg: INFO");
                }
            }
        }
        self.send_info(to_a, tone).await;
    }

    /// Send `tone` to A or B as an INFO (`application/dtmf-relay`).
    async fn send_info(&mut self, to_a: bool, tone: Tone) {
        let dialog = if to_a {
            self.a_dialog.as_mut()
        } else {
            self.winner.as_mut().map(|w| &mut w.dialog)
        };
        let Some(dialog) = dialog else { return };
        let mut info = dialog.request(Method::Info, None);
        let flow = dialog.target;
        info.headers
            .insert(Name::USER_AGENT, self.deps.config.sip.user_agent.clone());
        info.headers
            .insert(Name::CONTENT_TYPE, body::RELAY_CONTENT_TYPE);
        info.body = bytes::Bytes::from(body::relay_body(tone));
        let summary = summary_req(&info);
        let bytes = info.to_bytes();
        self.handle
            .update(None, |r| r.log_message(to_a, false, summary, &bytes));
        match self.deps.layer.send_request(info, flow).await {
            Ok(mut txn) => {
                tokio::spawn(
                    async move {
                        match txn.final_response().await {
                            Ok(r) if r.is_success() => {}
                            Ok(r) => {
                                tracing::info!(code = r.code, "DTMF INFO refused by the far end")
                            }
                            Err(e) => tracing::debug!(error = %e, "DTMF INFO unanswered"),
                        }
                    }
                    .in_current_span(),
                );
            }
            Err(e) => tracing::warn!(error = %e, "cannot send DTMF INFO"),
        }
    }

    /// The dialplan's `read`: answer, play the prompt (a digit stops it),
    /// collect the caller's digits until `max_digits`, the terminator, or
    /// `timeout` without a digit. Returns the digits, terminator excluded.
    pub(super) async fn read_dtmf(&mut self, read: &ReadRequest) -> Result<String, ControlError> {
        self.answer_a().await?;
        let (sid, _) = self.ensure_a_session().await?;
        // Digits pressed before this `read` are not its answer.
        while self.dtmf.digits.try_recv().is_ok() {}
        let mut first = None;
        if let Some(file) = &read.prompt {
            first = self.prompt(&sid, file).await?;
        }
        let mut got = String::new();
        let mut next = first;
        loop {
            let digit = match next.take() {
                Some(d) => d,
                None => {
                    if got.chars().count() >= read.max_digits {
                        break;
                    }
                    match tokio::time::timeout(read.timeout, self.next_digit(&sid)).await {
                        Ok(Some(d)) => d,
                        Ok(None) | Err(_) => break,
                    }
                }
            };
            if Some(digit) == read.terminator {
                break;
            }
            got.push(digit);
            if got.chars().count() >= read.max_digits {
                break;
            }
        }
        tracing::info!(digits = got.chars().count(), "read collected");
        Ok(got)
    }

    /// The next digit of the caller (INFO, or A's session `sid`).
    async fn next_digit(&mut self, sid: &str) -> Option<char> {
        loop {
            let (from, digit) = self.dtmf.digits.recv().await?;
            if from.as_deref().is_none_or(|s| s == sid)
                && let Some(d) = body::normalize_digit(digit)
            {
                return Some(d);
            }
        }
    }

    /// Play `file` to A's session `sid` until it ends or a digit comes (the
    /// digit is returned, the playback stopped).
    async fn prompt(&mut self, sid: &str, file: &str) -> Result<Option<char>, ControlError> {
        let mut client = self.media_client()?;
        let mut stream = client
            .play(media::PlayRequest {
                session_id: sid.to_string(),
                file: file.to_string(),
                r#loop: false,
            })
            .await
            .map_err(|st| status_to_control(&st, "prompt"))?
            .into_inner();
        self.playing = true;
        let result = loop {
            tokio::select! {
                ev = stream.message() => match ev {
                    Ok(Some(ev)) => match ev.event {
                        Some(media::play_event::Event::Completed(_))
                        | Some(media::play_event::Event::Stopped(_)) => break Ok(None),
                        Some(media::play_event::Event::Error(e)) => {
                            break Err(ControlError::new(500, format!("prompt failed: {}", e.message)));
                        }
                        _ => {}
                    },
                    Ok(None) => break Ok(None),
                    Err(st) => break Err(status_to_control(&st, "prompt")),
                },
                digit = self.next_digit(sid) => {
                    let _ = client
                        .stop_playback(media::StopPlaybackRequest {
                            session_id: sid.to_string(),
                        })
                        .await;
                    break Ok(digit);
                }
            }
        };
        self.playing = false;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_refills() {
        let (_sink, mut d) = channel();
        let allowed = (0..50).filter(|_| d.allow()).count();
        assert_eq!(allowed, BURST as usize);
        tokio::time::advance(REFILL).await;
        assert!(d.allow());
        assert!(!d.allow());
    }

    #[tokio::test]
    async fn the_queue_is_bounded_and_keeps_other_commands() {
        let (sink, mut d) = channel();
        for _ in 0..(QUEUE + 10) {
            let cmd = CallCommand::Dtmf(MediaDtmf {
                session_id: "s1".into(),
                digit: '5',
                duration_ms: 100,
                relayed: false,
            });
            assert!(sink.take_command(Box::new(cmd)).is_none());
        }
        let mut n = 0;
        while d.digits.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, QUEUE);
        let hangup = Box::new(CallCommand::Hangup("x".into()));
        assert_eq!(
            sink.take_command(hangup),
            Some(Box::new(CallCommand::Hangup("x".into())))
        );
    }
}
