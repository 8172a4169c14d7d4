//! Why a call ended, as a machine-readable reason and who ended it, read
//! from the end cause the call task writes (`b2bua/call/mod.rs`,
//! `bridged.rs`, `session_timer.rs`, `refer.rs`, ...) plus the facts it
//! noted (an operator's hangup).
//!
//! The human cause stays in the record as written (`end_cause`); the
//! reason is one of a fixed set, so a query can group by it:
//!
//! | reason | cause text | `hangup_by` |
//! |---|---|---|
//! | `caller_bye` | `caller hung up` | caller |
//! | `callee_bye` | `callee hung up` | callee |
//! | `caller_cancel` | `caller cancelled` | caller |
//! | `rtp_timeout` | `RTP timeout` | swbd |
//! | `node_lost` | `media node NAME lost` | swbd |
//! | `session_timer_expired` | `session timer expired` | swbd |
//! | `no_ack`, `no_prack` | `no ACK from caller`, `no PRACK from caller` | swbd |
//! | `no_route` | `no route: CODE REASON` | dialplan |
//! | `dialplan_hangup` | `dialplan hangup: CODE REASON` | dialplan |
//! | `dial_failed` | `dial failed: ...` | callee when a B-leg answered with a failure, else swbd |
//! | `transfer` | `transferred: ...`, `... transfer ...` | transfer |
//! | `operator_hangup` | the operator's reason | operator |
//! | `shutdown` | `swbd shutting down` | swbd |
//! | `failed` | `failed: ...`, `delayed offer: ...` | swbd |
//! | `other` | anything else | swbd |

use super::facts::CallFacts;

/// The shutdown hangup's reason (`server.rs`).
const SHUTDOWN: &str = "swbd shutting down";
/// `b2bua/call/session_timer.rs`'s end cause.
const SESSION_TIMER_EXPIRED: &str = "session timer expired";

/// `(end_reason, hangup_by)` of a call (module docs).
pub fn classify(
    cause: &str,
    facts: &CallFacts,
    b_leg_failed: bool,
) -> (&'static str, &'static str) {
    let c = cause.trim();
    if c == SHUTDOWN {
        return ("shutdown", "swbd");
    }
    if facts.operator_hangup {
        return ("operator_hangup", "operator");
    }
    match c {
        "caller hung up" => return ("caller_bye", "caller"),
        "callee hung up" => return ("callee_bye", "callee"),
        "caller cancelled" => return ("caller_cancel", "caller"),
        "RTP timeout" => return ("rtp_timeout", "swbd"),
        "no ACK from caller" => return ("no_ack", "swbd"),
        "no PRACK from caller" => return ("no_prack", "swbd"),
        _ => {}
    }
    if c == SESSION_TIMER_EXPIRED {
        return ("session_timer_expired", "swbd");
    }
    if c.starts_with("media node ") && c.ends_with(" lost") {
        return ("node_lost", "swbd");
    }
    if c.starts_with("no route:") {
        return ("no_route", "dialplan");
    }
    if c.starts_with("dialplan hangup:") {
        return ("dialplan_hangup", "dialplan");
    }
    if c.starts_with("dial failed:") || c == "Exhausted" {
        return ("dial_failed", if b_leg_failed { "callee" } else { "swbd" });
    }
    if c.starts_with("transferred") || c.contains("transfer") {
        return ("transfer", "transfer");
    }
    if c.starts_with("failed:") || c.starts_with("delayed offer:") {
        return ("failed", "swbd");
    }
    ("other", "swbd")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_causes_get_their_reason() {
        let f = CallFacts::default();
        let cases = [
            ("caller hung up", "caller_bye", "caller"),
            ("callee hung up", "callee_bye", "callee"),
            ("caller cancelled", "caller_cancel", "caller"),
            ("RTP timeout", "rtp_timeout", "swbd"),
            ("media node rtp-a lost", "node_lost", "swbd"),
            ("session timer expired", "session_timer_expired", "swbd"),
            ("no route: 404 Not Found", "no_route", "dialplan"),
            (
                "dialplan hangup: 404 Not Found",
                "dialplan_hangup",
                "dialplan",
            ),
            ("dial failed: Failed(404)", "dial_failed", "swbd"),
            (
                "transferred: the other party joined call x",
                "transfer",
                "transfer",
            ),
            (
                "transferee hung up during the transfer",
                "transfer",
                "transfer",
            ),
            ("swbd shutting down", "shutdown", "swbd"),
            ("failed: 503 Service Unavailable", "failed", "swbd"),
            ("something new", "other", "swbd"),
        ];
        for (cause, reason, by) in cases {
            assert_eq!(classify(cause, &f, false), (reason, by), "{cause}");
        }
        assert_eq!(
            classify("dial failed: Busy", &f, true),
            ("dial_failed", "callee")
        );
    }

    #[test]
    fn an_operator_hangup_wins_over_its_free_text_reason() {
        let mut f = CallFacts::default();
        f.operator_hangup = true;
        assert_eq!(
            classify("caller hung up", &f, false),
            ("operator_hangup", "operator"),
            "an operator's reason may read like anything"
        );
        assert_eq!(classify("swbd shutting down", &f, false).0, "shutdown");
    }
}
