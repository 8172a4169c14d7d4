//! Serving a call's dialogs while one of its transfers runs, and the
//! dialplan's view of the call meanwhile ([`Transferring`]).

use super::refer::Inputs;
use super::*;

/// What happened on the call's dialogs while a transfer ran.
#[derive(Debug, Default)]
pub(super) struct Seen {
    pub(super) transferee_left: bool,
    pub(super) transferor_left: bool,
    pub(super) command: Option<String>,
    /// Inputs for the call's other dialogs, for after the transfer.
    pub(super) deferred: Vec<DialogInput>,
}

/// The call's two dialogs during a transfer.
pub(super) struct Ids {
    pub(super) transferee: DialogId,
    pub(super) transferor: DialogId,
}

/// The dialplan's view of a call while a transfer is routed: the
/// transferee is answered already, nothing is played to it, and a hangup
/// only records the status (the NOTIFY carries it).
pub(super) struct Transferring<'a> {
    pub(super) ctl: &'a mut Ctl,
    pub(super) hung_up: Option<u16>,
}

impl CallControl for Transferring<'_> {
    async fn answer(&mut self) -> Result<(), ControlError> {
        Ok(())
    }

    async fn play(&mut self, _file: &str, _looped: bool) -> Result<(), ControlError> {
        Err(ControlError::new(
            488,
            "Not Acceptable Here (a transfer target is dialled, not played)",
        ))
    }

    async fn dial(&mut self, targets: &[DialTarget], timeout: Duration) -> DialOutcome {
        CallControl::dial(&mut *self.ctl, targets, timeout).await
    }

    async fn hangup(&mut self, code: u16, _reason: &str) {
        self.hung_up.get_or_insert(code);
    }
}

/// The status a transfer that did not connect reports.
pub(super) fn failure_code(outcome: &CallOutcome, hung_up: Option<u16>) -> u16 {
    let code = match outcome {
        CallOutcome::NoRoute { code, .. } | CallOutcome::HungUp { code, .. } => *code,
        CallOutcome::DialFailed(d) => d.status(),
        CallOutcome::Failed(e) => e.code,
        CallOutcome::Exhausted => hung_up.unwrap_or(480),
        CallOutcome::CallerHungUp | CallOutcome::Cancelled => 487,
        CallOutcome::Bridged(_) => 500,
    };
    if (300..700).contains(&code) {
        code
    } else {
        500
    }
}

/// Inputs for a dialog the call no longer has (a transferor released a
/// moment ago): BYE is answered `200`, the rest `481`.
pub(super) fn answer_released(input: LegInput) {
    match input {
        LegInput::Request(t) => {
            let (code, reason) = if t.request().method == Method::Bye {
                (200, "OK")
            } else {
                (481, "Call/Transaction Does Not Exist")
            };
            let _ = t.respond(t.response(code, reason));
        }
        LegInput::Invite(t) => {
            let _ = t.respond(t.response(481, "Call/Transaction Does Not Exist"));
        }
        LegInput::Ack(_) => {}
        LegInput::Transfer(t) => t.refuse(481, "Call/Transaction Does Not Exist"),
    }
}

/// Inputs of other dialogs set aside during a transfer (the new B-leg's,
/// arriving just after it answered), at most.
const MAX_DEFERRED: usize = 32;

const PENDING: &str = "Request Pending (a transfer is in progress)";

/// Drive `fut` (the transfer) while serving the call's dialogs: see the
/// module docs. Inputs for other dialogs are set aside in `seen.deferred`.
pub(super) async fn watch<F: std::future::Future>(
    fut: F,
    ids: &Ids,
    inputs: &mut Inputs<'_>,
    token: &CancellationToken,
) -> (F::Output, Seen) {
    tokio::pin!(fut);
    let mut seen = Seen::default();
    let mut a_open = true;
    loop {
        tokio::select! {
            biased;
            out = &mut fut => return (out, seen),
            Some(msg) = inputs.dlg_rx.recv() => {
                let tee = msg.0 == ids.transferee;
                let tor = msg.0 == ids.transferor;
                if !tee && !tor {
                    if seen.deferred.len() < MAX_DEFERRED {
                        seen.deferred.push(msg);
                    } else {
                        answer_released(msg.1);
                    }
                    continue;
                }
                match msg.1 {
                    LegInput::Request(t) => {
                        let method = t.request().method.clone();
                        let (code, reason) = match method {
                            Method::Bye | Method::Options => (200, "OK"),
                            Method::Refer => (491, PENDING),
                            _ => (501, "Not Implemented"),
                        };
                        let _ = t.respond(t.response(code, reason));
                        if method == Method::Bye && tee {
                            tracing::info!("the transferee hung up during the transfer");
                            seen.transferee_left = true;
                            token.cancel();
                        } else if method == Method::Bye {
                            tracing::info!("the transferor hung up; the transfer goes on");
                            seen.transferor_left = true;
                        }
                    }
                    LegInput::Invite(t) => {
                        let _ = t.respond(t.response(491, PENDING));
                    }
                    LegInput::Ack(_) => {}
                    LegInput::Transfer(t) => t.refuse(491, PENDING),
                }
            }
            Some(cmd) = inputs.cmd_rx.recv(), if seen.command.is_none() => {
                seen.command = Some(match *cmd {
                    CallCommand::Hangup(r) => r,
                    CallCommand::MediaLost(r) => r,
                    // Digits while the transfer runs go nowhere.
                    CallCommand::Dtmf(_) => continue,
                    // A transfer in progress: not moved this time.
                    CallCommand::Migrate(order) => {
                        order.answer(crate::b2bua::migrate::MigrateOutcome::Stayed(
                            "a transfer is in progress".into(),
                        ));
                        continue;
                    }
                });
                token.cancel();
            }
            ev = inputs.a_events.recv(), if a_open => {
                if ev.is_none() {
                    a_open = false;
                }
            }
        }
    }
}
