//! Walks a call through its route's actions against [`CallControl`], the
//! trait the B2BUA implements, so the engine runs (and is tested) without
//! SIP.
//!
//! The caller hanging up is a [`CancellationToken`]: the executor races
//! every action against it, drops the action in progress and returns
//! [`CallOutcome::CallerHungUp`] at once. Dropping a [`CallControl`]
//! future therefore means "abandon this action": the B2BUA, which
//! cancelled the token, tears down whatever the action had started
//! (ringing B-legs, a playback) in its own call task.

use std::future::Future;
use std::path::{Component, Path};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::file::{OnFailure, Redirect};
use super::plan::{Action, CallInfo, Dialplan, ReadRequest, Target, reason_phrase};
use super::template::{Variables, escape_reason};

/// A [`CallControl`] operation that could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}")]
pub struct ControlError {
    /// SIP status the caller should get if the call is not answered yet.
    pub code: u16,
    /// Why.
    pub reason: String,
}

impl ControlError {
    /// An error with a status and reason.
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// How a `dial` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialOutcome {
    /// A target answered; the B2BUA has bridged the call to it.
    Answered(Target),
    /// Every target was busy (486/600).
    Busy,
    /// Nobody answered before the timeout.
    NoAnswer,
    /// Failed with this final status (404, 503, ...).
    Failed(u16),
    /// Cancelled by something other than the caller (admin hangup, drain).
    Cancelled,
}

impl DialOutcome {
    /// The SIP status to give the caller for a dial that did not connect.
    pub fn status(&self) -> u16 {
        match self {
            DialOutcome::Answered(_) => 200,
            DialOutcome::Busy => 486,
            DialOutcome::NoAnswer => 480,
            DialOutcome::Failed(code) => *code,
            DialOutcome::Cancelled => 487,
        }
    }
}

/// How a `dial` action treats what its B-legs answer, beyond its targets
/// and timeout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DialOptions {
    /// A B-leg's 3xx: followed, or passed to the caller.
    pub redirect: Redirect,
}

/// What the executor asks of the call. The B2BUA implements it on its
/// call task; tests implement it with a script.
///
/// Futures may be dropped before they finish (caller hung up, see the
/// module docs).
pub trait CallControl: Send {
    /// Answer the caller (200 OK, media on a media node).
    fn answer(&mut self) -> impl Future<Output = Result<(), ControlError>> + Send;

    /// Play `file` (relative to the media nodes' audio directory) to the
    /// caller; with `looped`, repeat until dropped. Resolves when playback
    /// ends.
    fn play(
        &mut self,
        file: &str,
        looped: bool,
    ) -> impl Future<Output = Result<(), ControlError>> + Send;

    /// Ring `targets` in parallel for at most `timeout`; the first to
    /// answer is bridged to the caller and the others are cancelled.
    fn dial(
        &mut self,
        targets: &[Target],
        timeout: Duration,
    ) -> impl Future<Output = DialOutcome> + Send;

    /// [`CallControl::dial`] with the `dial` action's [`DialOptions`]. The
    /// default ignores them.
    fn dial_with(
        &mut self,
        targets: &[Target],
        timeout: Duration,
        options: DialOptions,
    ) -> impl Future<Output = DialOutcome> + Send {
        let _ = options;
        self.dial(targets, timeout)
    }

    /// End the call: a final response before answer, BYE after.
    fn hangup(&mut self, code: u16, reason: &str) -> impl Future<Output = ()> + Send;

    /// The dialplan is about to wait on purpose (`sleep`): whatever the call
    /// waits on now is not the platform's load (overload control's setup
    /// work, `swbd/src/overload/work.rs`).
    fn waiting(&mut self) {}

    /// Collect the caller's DTMF digits (`read`, see `plan/read.rs`): answer
    /// if needed, play the prompt, return what was pressed (possibly
    /// nothing). Implementations without DTMF refuse.
    fn read_digits(
        &mut self,
        read: &ReadRequest,
    ) -> impl Future<Output = Result<String, ControlError>> + Send {
        let _ = read;
        async { Err(ControlError::new(501, "Not Implemented: read")) }
    }
}

/// How the dialplan left the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// No route matched; the executor already called `hangup` with this.
    NoRoute {
        /// Status (the plan's `no_match`).
        code: u16,
        /// Reason phrase.
        reason: String,
    },
    /// A dial was answered; the call now belongs to the bridge.
    Bridged(Target),
    /// A `hangup` action ended the call.
    HungUp {
        /// Status sent.
        code: u16,
        /// Reason sent.
        reason: String,
    },
    /// A dial failed with `on_failure: stop`; the executor already called
    /// `hangup` with the dial's status.
    DialFailed(DialOutcome),
    /// The caller hung up (the token was cancelled) during the route.
    CallerHungUp,
    /// A dial reported [`DialOutcome::Cancelled`] (admin hangup, drain);
    /// nothing more was sent.
    Cancelled,
    /// A [`CallControl`] operation failed; the executor already called
    /// `hangup` with its status.
    Failed(ControlError),
    /// The actions ran out without ending the call; the executor already
    /// called `hangup` (480 unless a dial failure says otherwise).
    Exhausted,
}

/// The result of [`execute`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// How it ended.
    pub outcome: CallOutcome,
    /// Route taken.
    pub route_id: Option<String>,
    /// Version of the plan it ran under.
    pub dialplan_version: String,
    /// Variables at the end (built-ins, captures, `set` ones).
    pub variables: Variables,
}

/// Route `call` with `plan` and run the route's actions.
///
/// The caller holds the `Arc<Dialplan>` it got from
/// [`DialplanStore::current`](super::DialplanStore::current) for the whole
/// call, so a reload never changes a call in progress.
pub async fn execute<C: CallControl>(
    plan: &Dialplan,
    call: &CallInfo,
    control: &mut C,
    cancel: &CancellationToken,
) -> Execution {
    execute_in(plan, None, call, &[], control, cancel).await
}

/// [`execute`] among the routes of `context` (`None`: the default one),
/// with `extra` variables set before the first action (a transfer's
/// `referrer`, see [`super::transfer`]).
pub async fn execute_in<C: CallControl>(
    plan: &Dialplan,
    context: Option<&str>,
    call: &CallInfo,
    extra: &[(&str, String)],
    control: &mut C,
    cancel: &CancellationToken,
) -> Execution {
    let dialplan_version = plan.version().hash.clone();
    let Some(routed) = plan.route_in(context, call) else {
        let nm = plan.no_match();
        if !cancel.is_cancelled() {
            let _ = race(cancel, control.hangup(nm.code, &nm.reason)).await;
        }
        return Execution {
            outcome: CallOutcome::NoRoute {
                code: nm.code,
                reason: nm.reason.clone(),
            },
            route_id: None,
            dialplan_version,
            variables: call.variables(),
        };
    };
    let mut vars = routed.variables;
    for (name, value) in extra {
        vars.insert((*name).to_string(), value.clone());
    }
    let outcome = run_actions(&routed.route.actions, &mut vars, control, cancel).await;
    Execution {
        outcome,
        route_id: Some(routed.route.id.clone()),
        dialplan_version,
        variables: vars,
    }
}

/// `None` when the token fired first.
async fn race<T>(cancel: &CancellationToken, fut: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => None,
        v = fut => Some(v),
    }
}

async fn run_actions<C: CallControl>(
    actions: &[Action],
    vars: &mut Variables,
    control: &mut C,
    cancel: &CancellationToken,
) -> CallOutcome {
    let mut last_failure: Option<DialOutcome> = None;
    for action in actions {
        if cancel.is_cancelled() {
            return CallOutcome::CallerHungUp;
        }
        match action {
            Action::Answer => match race(cancel, control.answer()).await {
                None => return CallOutcome::CallerHungUp,
                Some(Ok(())) => {}
                Some(Err(e)) => return fail(control, cancel, e).await,
            },
            Action::Playback { file, looped } => {
                let file = file.render(vars);
                if !stays_inside(&file) {
                    let e = ControlError::new(
                        500,
                        format!("playback file {file:?} escapes the audio directory"),
                    );
                    return fail(control, cancel, e).await;
                }
                match race(cancel, control.play(&file, *looped)).await {
                    None => return CallOutcome::CallerHungUp,
                    Some(Ok(())) => {}
                    Some(Err(e)) => return fail(control, cancel, e).await,
                }
            }
            Action::Dial {
                targets,
                timeout,
                on_failure,
                redirect,
            } => {
                let resolved: Vec<Target> = targets.iter().map(|t| t.resolve(vars)).collect();
                let options = DialOptions {
                    redirect: *redirect,
                };
                match race(cancel, control.dial_with(&resolved, *timeout, options)).await {
                    None => return CallOutcome::CallerHungUp,
                    Some(DialOutcome::Answered(t)) => return CallOutcome::Bridged(t),
                    Some(DialOutcome::Cancelled) => return CallOutcome::Cancelled,
                    Some(other) => {
                        if *on_failure == OnFailure::Stop {
                            let code = other.status();
                            let _ = race(cancel, control.hangup(code, reason_phrase(code))).await;
                            return CallOutcome::DialFailed(other);
                        }
                        last_failure = Some(other);
                    }
                }
            }
            Action::Hangup { code, reason } => {
                let reason = reason.render_escaped(vars, escape_reason);
                if race(cancel, control.hangup(*code, &reason)).await.is_none() {
                    return CallOutcome::CallerHungUp;
                }
                return CallOutcome::HungUp {
                    code: *code,
                    reason,
                };
            }
            Action::Sleep(d) => {
                control.waiting();
                if race(cancel, tokio::time::sleep(*d)).await.is_none() {
                    return CallOutcome::CallerHungUp;
                }
            }
            Action::Set(pairs) => {
                for (k, v) in pairs {
                    let value = v.render(vars);
                    vars.insert(k.clone(), value);
                }
            }
            Action::Read(read) => {
                let request = read.request(vars);
                if let Some(p) = &request.prompt
                    && !stays_inside(p)
                {
                    let e = ControlError::new(
                        500,
                        format!("prompt file {p:?} escapes the audio directory"),
                    );
                    return fail(control, cancel, e).await;
                }
                match race(cancel, control.read_digits(&request)).await {
                    None => return CallOutcome::CallerHungUp,
                    // The caller's input: only DTMF digits are kept.
                    Some(Ok(digits)) => {
                        vars.insert(read.var.clone(), read.sanitize(&digits));
                    }
                    Some(Err(e)) => return fail(control, cancel, e).await,
                }
            }
        }
    }
    let code = last_failure.as_ref().map_or(480, DialOutcome::status);
    if race(cancel, control.hangup(code, reason_phrase(code)))
        .await
        .is_none()
    {
        return CallOutcome::CallerHungUp;
    }
    CallOutcome::Exhausted
}

async fn fail<C: CallControl>(
    control: &mut C,
    cancel: &CancellationToken,
    e: ControlError,
) -> CallOutcome {
    if race(cancel, control.hangup(e.code, &e.reason))
        .await
        .is_none()
    {
        return CallOutcome::CallerHungUp;
    }
    CallOutcome::Failed(e)
}

/// A rendered playback path must stay relative and inside the directory
/// (variables come from the caller's INVITE).
fn stays_inside(file: &str) -> bool {
    let p = Path::new(file);
    !file.is_empty()
        && !p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::dialplan::plan::DialplanContext;

    /// Records calls; dial outcomes come from a script; `play` of a looped
    /// file never ends.
    #[derive(Default)]
    struct Script {
        log: Vec<String>,
        dials: VecDeque<DialOutcome>,
        answer_error: Option<ControlError>,
        /// What each `read` returns (as pressed, before sanitizing).
        reads: VecDeque<String>,
    }

    impl CallControl for Script {
        async fn answer(&mut self) -> Result<(), ControlError> {
            self.log.push("answer".into());
            match self.answer_error.take() {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }
        async fn play(&mut self, file: &str, looped: bool) -> Result<(), ControlError> {
            self.log.push(format!("play {file} loop={looped}"));
            if looped {
                std::future::pending::<()>().await;
            }
            Ok(())
        }
        async fn dial(&mut self, targets: &[Target], timeout: Duration) -> DialOutcome {
            let t: Vec<String> = targets.iter().map(ToString::to_string).collect();
            self.log
                .push(format!("dial {} {}s", t.join(","), timeout.as_secs()));
            self.dials.pop_front().unwrap_or(DialOutcome::NoAnswer)
        }
        async fn hangup(&mut self, code: u16, reason: &str) {
            self.log.push(format!("hangup {code} {reason}"));
        }
        async fn read_digits(&mut self, read: &ReadRequest) -> Result<String, ControlError> {
            self.log.push(format!(
                "read {} {:?} {:?}",
                read.max_digits, read.terminator, read.prompt
            ));
            Ok(self.reads.pop_front().unwrap_or_default())
        }
    }

    fn plan(routes: &str) -> Dialplan {
        let yaml = format!("version: 1\nroutes:\n{routes}");
        let ctx = DialplanContext {
            gateways: vec!["a".into(), "b".into()],
            audio_dir: None,
        };
        Dialplan::parse("t.yaml", &yaml, &ctx).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn call(dest: &str) -> CallInfo {
        CallInfo {
            destination: dest.into(),
            caller: "1001".into(),
            ..Default::default()
        }
    }

    async fn run(p: &Dialplan, dest: &str, s: &mut Script) -> Execution {
        execute(p, &call(dest), s, &CancellationToken::new()).await
    }

    const FAILOVER: &str = "  - id: out\n    match: {destination_regex: '9(?P<n>\\d+)'}\n    actions:\n      - set: {num: \"+1${n}\"}\n      - dial: {target: \"gateway/a/${num}\", timeout: 5s}\n      - dial: {targets: [\"gateway/b\", \"sip:${n}@example.com\"], timeout: 7s}\n      - hangup: {code: 503, reason: \"no way to ${n}\"}\n";

    #[tokio::test]
    async fn failover_dials_in_sequence_then_bridges() {
        let p = plan(FAILOVER);
        let mut s = Script {
            dials: [
                DialOutcome::Failed(503),
                DialOutcome::Answered(Target::User("x".into())),
            ]
            .into(),
            ..Default::default()
        };
        let ex = run(&p, "9555", &mut s).await;
        assert_eq!(ex.outcome, CallOutcome::Bridged(Target::User("x".into())));
        assert_eq!(ex.route_id.as_deref(), Some("out"));
        assert_eq!(ex.variables.get("num").map(String::as_str), Some("+1555"));
        assert_eq!(
            s.log,
            [
                "dial gateway/a/+1555 5s",
                "dial gateway/b/9555,sip:555@example.com 7s"
            ]
        );
    }

    #[tokio::test]
    async fn all_failed_reaches_the_hangup_action() {
        let p = plan(FAILOVER);
        let mut s = Script {
            dials: [DialOutcome::Busy, DialOutcome::NoAnswer].into(),
            ..Default::default()
        };
        let ex = run(&p, "9555", &mut s).await;
        assert_eq!(
            ex.outcome,
            CallOutcome::HungUp {
                code: 503,
                reason: "no way to 555".into()
            }
        );
        assert_eq!(
            s.log.last().map(String::as_str),
            Some("hangup 503 no way to 555")
        );
    }

    #[tokio::test]
    async fn on_failure_stop_ends_with_the_dial_status() {
        let p = plan(
            "  - id: x\n    match: {}\n    actions:\n      - dial: {target: user/1, on_failure: stop}\n      - answer\n",
        );
        let mut s = Script {
            dials: [DialOutcome::Busy].into(),
            ..Default::default()
        };
        let ex = run(&p, "1", &mut s).await;
        assert_eq!(ex.outcome, CallOutcome::DialFailed(DialOutcome::Busy));
        assert_eq!(s.log, ["dial user/1 30s", "hangup 486 Busy Here"]);
    }

    #[tokio::test]
    async fn running_out_of_actions_hangs_up_with_the_last_failure() {
        let p = plan("  - id: x\n    match: {}\n    actions:\n      - dial: {target: user/1}\n");
        let mut s = Script {
            dials: [DialOutcome::Failed(404)].into(),
            ..Default::default()
        };
        let ex = run(&p, "1", &mut s).await;
        assert_eq!(ex.outcome, CallOutcome::Exhausted);
        assert_eq!(
            s.log.last().map(String::as_str),
            Some("hangup 404 Not Found")
        );
    }

    #[tokio::test]
    async fn no_route_gets_the_plans_no_match_status() {
        let yaml = "version: 1\nno_match: {code: 484}\nroutes: []\n";
        let p = Dialplan::parse("t.yaml", yaml, &DialplanContext::default()).expect("ok");
        let mut s = Script::default();
        let ex = run(&p, "1", &mut s).await;
        assert_eq!(
            ex.outcome,
            CallOutcome::NoRoute {
                code: 484,
                reason: "Address Incomplete".into()
            }
        );
        assert_eq!(s.log, ["hangup 484 Address Incomplete"]);
    }

    #[tokio::test]
    async fn control_errors_end_the_call_with_their_status() {
        let p =
            plan("  - id: x\n    match: {}\n    actions: [answer, {playback: {file: a.wav}}]\n");
        let mut s = Script {
            answer_error: Some(ControlError::new(503, "no media node")),
            ..Default::default()
        };
        let ex = run(&p, "1", &mut s).await;
        assert_eq!(
            ex.outcome,
            CallOutcome::Failed(ControlError::new(503, "no media node"))
        );
        assert_eq!(s.log, ["answer", "hangup 503 no media node"]);
    }

    #[tokio::test]
    async fn playback_paths_from_caller_input_cannot_escape() {
        let p = plan(
            "  - id: x\n    match: {}\n    actions: [{playback: {file: \"${destination}\"}}]\n",
        );
        let mut s = Script::default();
        let ex = run(&p, "../../etc/passwd", &mut s).await;
        assert!(
            matches!(ex.outcome, CallOutcome::Failed(ref e) if e.code == 500),
            "{ex:?}"
        );
        assert!(!s.log.iter().any(|l| l.starts_with("play")));
    }

    #[tokio::test(start_paused = true)]
    async fn caller_hangup_cancels_a_looped_playback() {
        let p = plan(
            "  - id: x\n    match: {}\n    actions: [answer, {playback: {file: moh.wav, loop: true}}, {hangup: {code: 480}}]\n",
        );
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            c2.cancel();
        });
        let mut s = Script::default();
        let ex = execute(&p, &call("1"), &mut s, &cancel).await;
        assert_eq!(ex.outcome, CallOutcome::CallerHungUp);
        assert_eq!(
            s.log,
            ["answer", "play moh.wav loop=true"],
            "no hangup after the caller left"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn caller_hangup_cancels_a_sleep_and_a_dial() {
        let p = plan("  - id: x\n    match: {}\n    actions: [{sleep: 10m}, answer]\n");
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            c2.cancel();
        });
        let mut s = Script::default();
        let ex = execute(&p, &call("1"), &mut s, &cancel).await;
        assert_eq!(ex.outcome, CallOutcome::CallerHungUp);
        assert!(s.log.is_empty());

        struct Hangs;
        impl CallControl for Hangs {
            async fn answer(&mut self) -> Result<(), ControlError> {
                Ok(())
            }
            async fn play(&mut self, _: &str, _: bool) -> Result<(), ControlError> {
                Ok(())
            }
            async fn dial(&mut self, _: &[Target], _: Duration) -> DialOutcome {
                std::future::pending().await
            }
            async fn hangup(&mut self, _: u16, _: &str) {}
        }
        let p = plan("  - id: x\n    match: {}\n    actions: [{dial: {target: user/1}}]\n");
        let cancel = CancellationToken::new();
        cancel.cancel();
        let ex = execute(&p, &call("1"), &mut Hangs, &cancel).await;
        assert_eq!(ex.outcome, CallOutcome::CallerHungUp);
    }

    #[tokio::test]
    async fn caller_input_cannot_rewrite_a_dial_uri_or_a_reason() {
        let p = plan(
            "  - id: x\n    match: {}\n    actions:\n      - dial: {target: \"sip:${destination}@pbx.example.com\"}\n      - hangup: {code: 480, reason: \"gone ${destination}\"}\n",
        );
        let mut s = Script::default();
        let ex = run(&p, "1@evil.example>\r\nX: y", &mut s).await;
        assert_eq!(
            s.log,
            [
                "dial sip:1%40evil.example%3E%0D%0AX%3A%20y@pbx.example.com 30s",
                "hangup 480 gone 1@evil.example>  X: y"
            ]
        );
        assert!(matches!(ex.outcome, CallOutcome::HungUp { code: 480, .. }));
    }

    #[test]
    fn execution_can_be_spawned() {
        fn assert_send<T: Send>(_: &T) {}
        let p = plan("  - id: x\n    match: {}\n    actions: [answer]\n");
        let mut s = Script::default();
        let cancel = CancellationToken::new();
        let c = call("1");
        let fut = execute(&p, &c, &mut s, &cancel);
        assert_send(&fut);
    }

    const IVR: &str = "  - id: ivr\n    match: {destination: \"700\"}\n    actions:\n      - read: {var: pin, max_digits: 4, timeout: 5s, terminator: \"#\", prompt: \"pin-${caller}.wav\"}\n      - dial: {target: \"user/${pin}\", on_failure: stop}\n";

    #[tokio::test]
    async fn read_digits_drive_the_next_dial() {
        let p = plan(IVR);
        let mut s = Script {
            reads: ["1002".to_string()].into(),
            dials: [DialOutcome::Answered(Target::User("1002".into()))].into(),
            ..Default::default()
        };
        let ex = run(&p, "700", &mut s).await;
        assert_eq!(
            ex.outcome,
            CallOutcome::Bridged(Target::User("1002".into()))
        );
        assert_eq!(
            s.log,
            [
                "read 4 Some('#') Some(\"pin-1001.wav\")",
                "dial user/1002 30s"
            ]
        );
        assert_eq!(ex.variables.get("pin").map(String::as_str), Some("1002"));
    }

    #[tokio::test]
    async fn read_keeps_only_dtmf_digits_of_what_it_is_given() {
        let p = plan(IVR);
        let mut s = Script {
            reads: ["9@evil.example>\r\nX: 1234567".to_string()].into(),
            dials: [DialOutcome::Failed(404)].into(),
            ..Default::default()
        };
        let ex = run(&p, "700", &mut s).await;
        assert_eq!(ex.variables.get("pin").map(String::as_str), Some("9A12"));
        assert_eq!(s.log.get(1).map(String::as_str), Some("dial user/9A12 30s"));
        assert_eq!(
            ex.outcome,
            CallOutcome::DialFailed(DialOutcome::Failed(404))
        );
    }

    #[tokio::test]
    async fn nothing_pressed_leaves_the_variable_empty_and_a_prompt_cannot_escape() {
        let p = plan(IVR);
        let mut s = Script::default();
        let ex = run(&p, "700", &mut s).await;
        assert_eq!(ex.variables.get("pin").map(String::as_str), Some(""));
        let p = plan(
            "  - id: x\n    match: {}\n    actions: [{read: {var: d, prompt: \"${destination}\"}}]\n",
        );
        let mut s = Script::default();
        let ex = run(&p, "../../etc/passwd", &mut s).await;
        assert!(
            matches!(ex.outcome, CallOutcome::Failed(ref e) if e.code == 500),
            "{ex:?}"
        );
        assert!(!s.log.iter().any(|l| l.starts_with("read")));
    }

    #[tokio::test]
    async fn execute_in_routes_in_the_context_with_the_extra_variables() {
        let p = plan(
            "  - id: ext\n    match: {destination: \"1*\"}\n    transfer: desk\n    actions: [{dial: {target: user/x}}]\n  - id: front\n    context: desk\n    match: {destination: \"0\"}\n    actions: [{dial: {target: \"user/op-for-${referrer}\"}}]\n",
        );
        let mut s = Script {
            dials: [DialOutcome::Answered(Target::User("op".into()))].into(),
            ..Default::default()
        };
        let extra = [("referrer", "1002".to_string())];
        let cancel = CancellationToken::new();
        let ex = execute_in(&p, Some("desk"), &call("0"), &extra, &mut s, &cancel).await;
        assert_eq!(ex.route_id.as_deref(), Some("front"));
        assert_eq!(s.log, ["dial user/op-for-1002 30s"]);
        // New calls do not reach the context, and `${referrer}` is empty.
        let ex = execute(&p, &call("0"), &mut Script::default(), &cancel).await;
        assert!(matches!(ex.outcome, CallOutcome::NoRoute { code: 404, .. }));
    }

    #[tokio::test]
    async fn dial_cancelled_by_swbd_is_not_a_caller_hangup() {
        let p = plan("  - id: x\n    match: {}\n    actions: [{dial: {target: user/1}}, answer]\n");
        let mut s = Script {
            dials: [DialOutcome::Cancelled].into(),
            ..Default::default()
        };
        let ex = run(&p, "1", &mut s).await;
        assert_eq!(ex.outcome, CallOutcome::Cancelled);
    }
}
