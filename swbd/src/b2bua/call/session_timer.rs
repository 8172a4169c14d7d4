//! Session timers (RFC 4028) on both legs of a call (the headers and the
//! negotiation rules are in [`super::session_expires`]).
//!
//! Each leg negotiates its own session interval and refresher; a refresh
//! on one leg is answered on that leg and not relayed to the other (the
//! legs are separate SIP sessions; the point is to find a dead far end on
//! either). Config: `sip.session_timer` (`enabled`, `session_expires`,
//! `min_se`).
//!
//! **A-leg (swbd is UAS, §9).** An INVITE whose `Session-Expires` is below
//! `min_se` gets `422` with `Min-SE`; `Require: timer` with timers off gets
//! `420`. The 2xx carries `Session-Expires`: the caller's value, lowered to
//! `session_expires` (never below the caller's `Min-SE`), or
//! `session_expires` when it asked for none. The refresher is the one the
//! caller named; else the caller (`uac`, with `Require: timer`) when it
//! supports timers and asked for a timer; else swbd (`uas`), so even a
//! caller without timer support is checked.
//!
//! **B-legs (swbd is UAC, §7).** INVITEs carry `Supported: timer`,
//! `Session-Expires: session_expires` and `Min-SE: min_se` (no refresher:
//! the callee chooses, RFC 4028 §7.1's recommendation). A `422` is
//! answered once with the callee's `Min-SE`. A 2xx with `Session-Expires`
//! sets the leg's timer (refresher as it says, swbd when it says
//! nothing); a 2xx without one means no timer on that leg (§7.2).
//!
//! **Refreshing.** When swbd refreshes a leg it sends, at half the
//! interval, an UPDATE without a body when the peer allows UPDATE, else a
//! re-INVITE without SDP (the peer's 2xx then carries an offer, which the
//! media node answers in the ACK: the media stays as negotiated). A 2xx
//! restarts the interval (with the 2xx's `Session-Expires`, when it has
//! one); `422` raises the interval to its `Min-SE` and retries; `405`/`501`
//! to an UPDATE switches to re-INVITE; `408`, `481` or no answer at all
//! end the call; any other failure is retried halfway to the expiry. When
//! the peer refreshes, its re-INVITE (or UPDATE, through the UPDATE
//! handler calling [`Ctl::session_timer_refreshed`]) restarts the
//! interval and the 2xx says `Session-Expires` (and `Require: timer` when
//! the peer refreshes).
//!
//! **Expiry.** A leg whose refresh does not succeed within the interval
//! (swbd refreshes), or does not arrive by the interval minus
//! min(32 s, interval/3) (the peer refreshes, §10), ends the call: BYE to
//! both legs, end cause `session timer expired`.
//!
//! Not done: refreshes while the dialplan still runs (a call answered by
//! the dialplan and not bridged, an IVR, is not refreshed; a caller's
//! refresh there gets the dialplan phase's `488`), re-INVITE refreshes
//! without SDP from a peer (answered `488` like every offerless
//! re-INVITE), re-ACKing a retransmitted 2xx of our refresh re-INVITE.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use super::session_expires::{
    Refresher, Refusal, SessionExpires, add_answer_headers, allows_update, min_se,
    negotiate_as_uac, negotiate_as_uas, refusal, supports_timer,
};
use super::*;
use crate::config::SessionTimerConfig;
use tokio::time::Instant;

/// One leg's session timer.
#[derive(Debug)]
pub(super) struct LegTimer {
    /// Session interval, seconds.
    secs: u32,
    /// swbd refreshes (else the peer does).
    we_refresh: bool,
    /// Refresh by UPDATE (the peer allows it), else re-INVITE.
    by_update: bool,
    /// The last successful refresh (or the answer).
    refreshed_at: Instant,
    /// When to try the next refresh, when not at half the interval.
    retry_at: Option<Instant>,
    /// A refresh of ours is waiting for its answer.
    in_flight: bool,
    /// A `422` raised the interval once already.
    raised: bool,
}

impl LegTimer {
    fn new(secs: u32, we_refresh: bool, by_update: bool) -> Self {
        Self {
            secs,
            we_refresh,
            by_update,
            refreshed_at: Instant::now(),
            retry_at: None,
            in_flight: false,
            raised: false,
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.secs))
    }

    /// When the session ends on this leg without a refresh (RFC 4028 §10:
    /// the refresher's own deadline is the interval; the other side's is
    /// the interval minus min(32 s, a third of it)).
    fn expiry(&self) -> Instant {
        let i = self.interval();
        if self.we_refresh {
            self.refreshed_at + i
        } else {
            self.refreshed_at + i - (i / 3).min(Duration::from_secs(32))
        }
    }

    /// When our next refresh is due, if we refresh and none is in flight.
    fn refresh_due(&self) -> Option<Instant> {
        (self.we_refresh && !self.in_flight).then(|| {
            self.retry_at
                .unwrap_or(self.refreshed_at + self.interval() / 2)
        })
    }

    fn deadline(&self) -> Instant {
        let e = self.expiry();
        self.refresh_due().map_or(e, |r| r.min(e))
    }

    /// A refresh succeeded (either way): start the interval again.
    fn restart(&mut self, secs: u32, we_refresh: bool) {
        self.secs = secs.max(1);
        self.we_refresh = we_refresh;
        self.refreshed_at = Instant::now();
        self.retry_at = None;
    }

    /// The `Session-Expires` value for a refresh request of ours.
    fn request_value(&self) -> String {
        format!("{};refresher=uac", self.secs)
    }
}

/// The answer to one of our refreshes.
pub(super) struct RefreshOutcome {
    method: Method,
    cseq: u32,
    result: crate::transaction::Result<Response>,
}

/// `Sync` too: the call's state is borrowed across awaits by the
/// dialplan executor, which needs `&Ctl: Send`.
type RefreshFuture = Pin<Box<dyn Future<Output = RefreshOutcome> + Send + Sync>>;

/// What woke the call up.
pub(super) enum TimerEvent {
    /// A refresh or an expiry is due.
    Due,
    /// A refresh of ours was answered (or failed).
    Answered {
        /// On the A-leg (else the B-leg).
        from_a: bool,
        /// How.
        outcome: RefreshOutcome,
    },
}

/// Both legs' session timers and the refreshes in flight.
#[derive(Default)]
pub(super) struct SessionTimers {
    a: Option<LegTimer>,
    b: Option<LegTimer>,
    a_refresh: Option<RefreshFuture>,
    b_refresh: Option<RefreshFuture>,
}

impl SessionTimers {
    fn leg(&mut self, a: bool) -> Option<&mut LegTimer> {
        if a { self.a.as_mut() } else { self.b.as_mut() }
    }

    fn deadline(&self) -> Option<Instant> {
        [self.a.as_ref(), self.b.as_ref()]
            .into_iter()
            .flatten()
            .map(LegTimer::deadline)
            .min()
    }

    /// The next thing to do; cancel-safe (a refresh in flight stays).
    pub(super) async fn next_event(&mut self) -> TimerEvent {
        let deadline = self.deadline();
        let sleep = async move {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep);
        std::future::poll_fn(|cx| {
            for (from_a, slot) in [(true, &mut self.a_refresh), (false, &mut self.b_refresh)] {
                if let Some(f) = slot.as_mut()
                    && let Poll::Ready(outcome) = f.as_mut().poll(cx)
                {
                    *slot = None;
                    return Poll::Ready(TimerEvent::Answered { from_a, outcome });
                }
            }
            sleep.as_mut().poll(cx).map(|()| TimerEvent::Due)
        })
        .await
    }
}

impl Ctl {
    fn timer_config(&self) -> &SessionTimerConfig {
        &self.deps.config.sip.session_timer
    }

    /// The `Supported` value of our INVITEs and 2xx.
    pub(super) fn supported_value(&self) -> String {
        // Every option tag swbd supports (sip/capabilities.rs), but `timer`
        // only while session timers are on.
        let timers = self.timer_config().enabled;
        crate::sip::capabilities::SUPPORTED_EXTENSIONS
            .iter()
            .filter(|t| timers || **t != "timer")
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The 2xx to A's INVITE: negotiate A's session timer (module docs)
    /// and say so. Other responses pass unchanged.
    pub(super) fn session_timer_to_a(&mut self, mut resp: Response) -> Response {
        if !resp.is_success() || self.answered {
            return resp;
        }
        if !resp.headers.contains(&Name::SUPPORTED) {
            resp.headers.insert(Name::SUPPORTED, self.supported_value());
        }
        let cfg = *self.timer_config();
        if !cfg.enabled {
            return resp;
        }
        let invite = self.a.request();
        let supports = supports_timer(invite);
        let (secs, refresher) = negotiate_as_uas(
            &cfg,
            SessionExpires::of(invite),
            min_se(invite),
            supports,
            None,
        );
        let by_update = allows_update(invite);
        add_answer_headers(&mut resp, secs, refresher);
        tracing::debug!(secs, refresher = refresher.as_str(), "A-leg session timer");
        self.session_timers.a = Some(LegTimer::new(secs, refresher == Refresher::Uas, by_update));
        resp
    }

    /// Session timer headers of a B-leg INVITE (module docs).
    pub(super) fn session_timer_b_invite(&self, invite: &mut Request) {
        let cfg = self.timer_config();
        if cfg.enabled {
            invite
                .headers
                .insert(Name::SESSION_EXPIRES, cfg.session_expires.to_string());
            invite.headers.insert(Name::MIN_SE, cfg.min_se.to_string());
        }
    }

    /// B-leg `i` answered `422` (RFC 4028 §7.3): send the INVITE again
    /// with its `Min-SE`, once. `false` when it cannot be retried.
    pub(super) async fn retry_session_interval(&mut self, i: usize, resp: &Response) -> bool {
        let cfg = *self.timer_config();
        let Some(floor) = min_se(resp) else {
            return false;
        };
        let Some(leg) = self.b_legs.get_mut(i) else {
            return false;
        };
        if !cfg.enabled || leg.session_retried {
            return false;
        }
        let mut request = leg.request.clone();
        request.headers.remove(&Name::VIA);
        request.headers.remove(&Name::SESSION_EXPIRES);
        request.headers.remove(&Name::MIN_SE);
        let secs = floor.max(cfg.min_se);
        request
            .headers
            .insert(Name::SESSION_EXPIRES, secs.to_string());
        request.headers.insert(Name::MIN_SE, secs.to_string());
        let next = request
            .cseq()
            .map(|c| c.number)
            .unwrap_or(1)
            .saturating_add(1);
        request.headers.remove(&Name::CSEQ);
        request.headers.insert(Name::CSEQ, format!("{next} INVITE"));
        let flow = leg.flow;
        match self.deps.layer.send_invite(request, flow).await {
            Ok(txn) => {
                let summary = summary_req(txn.request());
                let bytes = txn.request().to_bytes();
                self.handle
                    .update(None, |r| r.log_message(false, false, summary, &bytes));
                if let Some(leg) = self.b_legs.get_mut(i) {
                    leg.request = txn.request().clone();
                    leg.txn = Some(txn);
                    leg.session_retried = true;
                    leg.reliable = Default::default();
                }
                tracing::info!(secs, "callee wants a longer session interval: INVITE again");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot resend INVITE after 422");
                false
            }
        }
    }

    /// B answered: its session timer, from the 2xx (module docs).
    pub(super) fn session_timer_b_answered(&mut self, resp: &Response) {
        let cfg = *self.timer_config();
        self.session_timers.b = None;
        if !cfg.enabled {
            return;
        }
        let asked = cfg.session_expires;
        if let Some((secs, we_refresh)) = negotiate_as_uac(asked, SessionExpires::of(resp)) {
            tracing::debug!(secs, we_refresh, "B-leg session timer");
            self.session_timers.b = Some(LegTimer::new(secs, we_refresh, allows_update(resp)));
        }
    }

    /// An INVITE or UPDATE from a confirmed leg that must be refused
    /// before anything else: `420`/`422` (module docs), or `491` when it is
    /// an INVITE crossing our own refresh re-INVITE (RFC 3261 §14.2).
    pub(super) fn session_timer_refusal(&self, from_a: bool, request: &Request) -> Option<Refusal> {
        let crossing = request.method == Method::Invite
            && (if from_a {
                &self.session_timers.a
            } else {
                &self.session_timers.b
            })
            .as_ref()
            .is_some_and(|t| t.in_flight && !t.by_update);
        if crossing {
            return Some(Refusal::request_pending());
        }
        refusal(self.timer_config(), request)
    }

    /// A 2xx to a leg's INVITE or UPDATE (a session refresh, RFC 4028 §9):
    /// restart that leg's interval and add `Session-Expires` (and
    /// `Require: timer` when the peer refreshes) to `resp`. The UPDATE
    /// handler calls this too.
    pub(super) fn session_timer_refreshed(
        &mut self,
        from_a: bool,
        request: &Request,
        resp: &mut Response,
    ) {
        let cfg = *self.timer_config();
        if !cfg.enabled || !resp.is_success() {
            return;
        }
        let se = SessionExpires::of(request);
        let current = if from_a {
            &self.session_timers.a
        } else {
            &self.session_timers.b
        };
        if current.is_none() && se.is_none() {
            // No timer on this leg, and the request asks for none.
            return;
        }
        let we_refresh_now = current.as_ref().map(|t| t.we_refresh);
        let by_update = current.as_ref().map(|t| t.by_update);
        let supports = supports_timer(request);
        let (secs, refresher) =
            negotiate_as_uas(&cfg, se, min_se(request), supports, we_refresh_now);
        add_answer_headers(resp, secs, refresher);
        let we_refresh = refresher == Refresher::Uas;
        let slot = if from_a {
            &mut self.session_timers.a
        } else {
            &mut self.session_timers.b
        };
        match slot {
            Some(t) => t.restart(secs, we_refresh),
            None => {
                *slot = Some(LegTimer::new(
                    secs,
                    we_refresh,
                    by_update.unwrap_or_else(|| allows_update(request)),
                ));
            }
        }
        tracing::debug!(from_a, secs, we_refresh, "session refreshed by the peer");
    }

    /// Act on a session timer event while bridged; `Some(cause)` when the
    /// call must end (BYE both legs).
    pub(super) async fn on_session_timer(&mut self, event: TimerEvent) -> Option<String> {
        match event {
            TimerEvent::Answered { from_a, outcome } => {
                self.refresh_answered(from_a, outcome).await
            }
            TimerEvent::Due => {
                let now = Instant::now();
                for from_a in [true, false] {
                    let Some(t) = self.session_timers.leg(from_a) else {
                        continue;
                    };
                    if now >= t.expiry() {
                        tracing::warn!(
                            leg = if from_a { "A" } else { "B" },
                            secs = t.secs,
                            we_refresh = t.we_refresh,
                            "session timer expired"
                        );
                        return Some(EXPIRED.to_string());
                    }
                    if t.refresh_due().is_some_and(|at| now >= at) {
                        t.in_flight = true;
                        if let Some(cause) = self.send_refresh(from_a).await {
                            return Some(cause);
                        }
                    }
                }
                None
            }
        }
    }

    /// Send our refresh on one leg (UPDATE or re-INVITE, module docs).
    async fn send_refresh(&mut self, from_a: bool) -> Option<String> {
        let (secs, by_update) = self
            .session_timers
            .leg(from_a)
            .map(|t| (t.request_value(), t.by_update))?;
        let min = self.timer_config().min_se.to_string();
        let supported = self.supported_value();
        let user_agent = self.deps.config.sip.user_agent.clone();
        let dialog = if from_a {
            self.a_dialog.as_mut()
        } else {
            self.winner.as_mut().map(|w| &mut w.dialog)
        };
        let Some(dialog) = dialog else {
            // The leg is gone: nothing to refresh.
            if let Some(t) = self.session_timers.leg(from_a) {
                t.in_flight = false;
            }
            return None;
        };
        let method = if by_update {
            Method::Update
        } else {
            Method::Invite
        };
        let mut request = dialog.request(method.clone(), None);
        let flow = dialog.target;
        let cseq = dialog.local_seq;
        request.headers.insert(Name::SESSION_EXPIRES, secs);
        request.headers.insert(Name::MIN_SE, min);
        request.headers.insert(Name::SUPPORTED, supported);
        request.headers.insert(Name::USER_AGENT, user_agent);
        if method == Method::Invite {
            request
                .headers
                .insert(Name::ALLOW, crate::sip::capabilities::ALLOW_IN_DIALOG);
        }
        let summary = summary_req(&request);
        let bytes = request.to_bytes();
        self.handle
            .update(None, |r| r.log_message(from_a, false, summary, &bytes));
        tracing::debug!(from_a, %method, "session refresh");
        let layer = self.deps.layer.clone();
        let future: RefreshFuture = if by_update {
            match layer.send_request(request, flow).await {
                Ok(mut txn) => Box::pin(async move {
                    RefreshOutcome {
                        method: Method::Update,
                        cseq,
                        result: txn.final_response().await,
                    }
                }),
                Err(e) => return self.refresh_failed(from_a, &e.to_string()),
            }
        } else {
            match layer.send_invite(request, flow).await {
                Ok(mut txn) => Box::pin(async move {
                    let result = loop {
                        match txn.next_response().await {
                            Ok(r) if r.is_provisional() => continue,
                            other => break other,
                        }
                    };
                    RefreshOutcome {
                        method: Method::Invite,
                        cseq,
                        result,
                    }
                }),
                Err(e) => return self.refresh_failed(from_a, &e.to_string()),
            }
        };
        if from_a {
            self.session_timers.a_refresh = Some(future);
        } else {
            self.session_timers.b_refresh = Some(future);
        }
        None
    }

    fn refresh_failed(&mut self, from_a: bool, why: &str) -> Option<String> {
        tracing::warn!(
            leg = if from_a { "A" } else { "B" },
            %why,
            "session refresh failed"
        );
        Some(EXPIRED.to_string())
    }

    /// The answer to our refresh on one leg (module docs).
    async fn refresh_answered(&mut self, from_a: bool, outcome: RefreshOutcome) -> Option<String> {
        let RefreshOutcome {
            method,
            cseq,
            result,
        } = outcome;
        if let Some(t) = self.session_timers.leg(from_a) {
            t.in_flight = false;
        }
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => return self.refresh_failed(from_a, &e.to_string()),
        };
        let summary = summary_resp(&resp);
        let bytes = resp.to_bytes();
        self.handle
            .update(None, |r| r.log_message(from_a, true, summary, &bytes));
        if method == Method::Invite && resp.is_success() {
            Box::pin(self.ack_refresh(from_a, cseq, &resp)).await;
        }
        let now = Instant::now();
        let t = self.session_timers.leg(from_a)?;
        match resp.code {
            200..=299 => {
                let (secs, we_refresh) =
                    negotiate_as_uac(t.secs, SessionExpires::of(&resp)).unwrap_or((t.secs, true));
                t.restart(secs, we_refresh);
                None
            }
            422 if !t.raised => {
                t.raised = true;
                t.secs = min_se(&resp).map_or(t.secs, |m| m.max(t.secs));
                t.retry_at = Some(now);
                None
            }
            405 | 501 if t.by_update => {
                t.by_update = false;
                t.retry_at = Some(now);
                None
            }
            408 | 481 => self.refresh_failed(from_a, &format!("{} {}", resp.code, resp.reason)),
            _ => {
                // Try again halfway to the expiry (the expiry ends it).
                let left = t.expiry().saturating_duration_since(now);
                t.retry_at = Some(now + left / 2);
                None
            }
        }
    }

    /// ACK the 2xx to our refresh re-INVITE; its offer (we sent none) is
    /// answered by the leg's media session.
    async fn ack_refresh(&mut self, from_a: bool, cseq: u32, resp: &Response) {
        let session = if from_a {
            self.a_session.as_ref().map(|s| s.0.clone())
        } else {
            self.winner.as_ref().map(|w| w.session_id.clone())
        };
        let answer = match (session, resp.body.is_empty()) {
            (Some(session_id), false) => match self.media_client() {
                Ok(mut client) => client
                    .update_session(media::UpdateSessionRequest {
                        session_id,
                        remote_sdp: String::from_utf8_lossy(&resp.body).into_owned(),
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner().local_sdp)
                    .map_err(|st| status_to_control(&st, "refresh offer")),
                Err(e) => Err(e),
            },
            _ => Ok(String::new()),
        };
        let dialog = if from_a {
            self.a_dialog.as_mut()
        } else {
            self.winner.as_mut().map(|w| &mut w.dialog)
        };
        let Some(dialog) = dialog else { return };
        let mut ack = dialog.request(Method::Ack, Some(cseq));
        let flow = dialog.target;
        match answer {
            Ok(sdp) if !sdp.is_empty() => {
                ack.headers.insert(Name::CONTENT_TYPE, "application/sdp");
                ack.body = bytes::Bytes::from(sdp);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "offer in a refresh 2xx not answered"),
        }
        let summary = summary_req(&ack);
        let bytes = ack.to_bytes();
        self.handle
            .update(None, |r| r.log_message(from_a, false, summary, &bytes));
        let _ = self.deps.layer.send_ack(ack, flow).await;
    }
}

/// The end cause of a call whose session timer ran out.
pub(super) const EXPIRED: &str = "session timer expired";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn refresher_refreshes_at_half_and_expires_at_the_interval() {
        let t = LegTimer::new(90, true, true);
        let start = Instant::now();
        assert_eq!(t.refresh_due(), Some(start + Duration::from_secs(45)));
        assert_eq!(t.expiry(), start + Duration::from_secs(90));
        assert_eq!(t.deadline(), start + Duration::from_secs(45));
    }

    #[tokio::test(start_paused = true)]
    async fn refreshee_expires_before_the_interval() {
        let start = Instant::now();
        // 90 s: a third (30 s) is less than 32 s.
        let t = LegTimer::new(90, false, true);
        assert_eq!(t.refresh_due(), None);
        assert_eq!(t.expiry(), start + Duration::from_secs(60));
        // 1800 s: 32 s before.
        let t = LegTimer::new(1800, false, true);
        assert_eq!(t.expiry(), start + Duration::from_secs(1768));
    }
}
