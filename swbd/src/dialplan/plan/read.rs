//! `read`: collect the caller's DTMF digits into a variable, for IVR menus
//! and PINs.
//!
//! ```yaml
//! - read: {var: pin, max_digits: 4, timeout: 5s, terminator: "#", prompt: enter-pin.wav}
//! - dial: {target: "user/${pin}", on_failure: stop}
//! ```
//!
//! The call is answered if it is not yet (digits need media). `prompt`, if
//! given, is played first, and the first digit stops it (barge-in) and
//! counts. Digits come from the caller as RFC 4733 or as SIP INFO, and
//! collecting stops at `max_digits` (1-32, default 1), at the `terminator`
//! (one of `0-9 * # A-D`, not stored; none by default; quote `"#"` in YAML),
//! or after `timeout` (default 5 s, at most 5 min) without a digit, before
//! the first or between two. `var` then holds what was collected, possibly
//! nothing, and is defined for the actions after the `read`.
//!
//! The value is the caller's input: it only ever holds characters of the
//! DTMF alphabet (`0-9 * # A-D`), at most `max_digits` of them, whatever
//! the B2BUA hands back; used in a dial target it is escaped like every
//! variable.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Action, Validator};
use crate::dialplan::error::Error;
use crate::dialplan::file::{DurationValue, ReadFile};
use crate::dialplan::template::{BUILTIN_VARIABLES, Template, Variables, is_variable_name};
use crate::sip::dtmf::normalize_digit;

/// Most digits one `read` collects.
pub const MAX_READ_DIGITS: u32 = 32;
/// Wait for a digit when `timeout` is not given.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest `timeout`.
pub const MAX_READ_TIMEOUT: Duration = Duration::from_secs(300);

/// A compiled `read`.
#[derive(Debug, Clone)]
pub struct Read {
    /// Variable the digits go into.
    pub var: String,
    /// Stop after this many.
    pub max_digits: usize,
    /// Wait for the first digit and between digits.
    pub timeout: Duration,
    /// Ends the input early; not stored.
    pub terminator: Option<char>,
    /// Played first; may use variables.
    pub prompt: Option<Template>,
}

/// What the B2BUA is asked to do for a `read` (variables substituted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    /// File to play first, relative to the audio directory.
    pub prompt: Option<String>,
    /// Stop after this many digits.
    pub max_digits: usize,
    /// Wait for the first digit and between digits.
    pub timeout: Duration,
    /// Ends the input early; not stored.
    pub terminator: Option<char>,
}

impl Read {
    /// The request for this call.
    pub fn request(&self, vars: &Variables) -> ReadRequest {
        ReadRequest {
            prompt: self.prompt.as_ref().map(|t| t.render(vars)),
            max_digits: self.max_digits,
            timeout: self.timeout,
            terminator: self.terminator,
        }
    }

    /// What may be stored of `digits` (module docs): the DTMF alphabet
    /// only, at most `max_digits`, the terminator never.
    pub fn sanitize(&self, digits: &str) -> String {
        digits
            .chars()
            .filter_map(normalize_digit)
            .take_while(|d| Some(*d) != self.terminator)
            .take(self.max_digits)
            .collect()
    }

    /// One line for `TestRoute` and `dialplan show`.
    pub fn describe(&self, vars: &Variables) -> String {
        let mut out = format!(
            "{} digit(s) into ${{{}}}, timeout {}",
            self.max_digits,
            self.var,
            DurationValue(self.timeout)
        );
        if let Some(t) = self.terminator {
            out.push_str(&format!(", terminator {t}"));
        }
        if let Some(p) = &self.prompt {
            out.push_str(&format!(", prompt {}", p.render(vars)));
        }
        out
    }
}

impl Validator<'_> {
    /// Check a `read` (every error located), define its variable.
    pub(super) fn read(&mut self, r: ReadFile, defined: &mut BTreeSet<String>) -> Option<Action> {
        let before = self.errors.len();
        let var = r.var.value.clone();
        if BUILTIN_VARIABLES.contains(&var.as_str()) {
            self.push(&r.var.referenced, Error::SetBuiltin { name: var.clone() });
        } else if !is_variable_name(&var) {
            self.push(
                &r.var.referenced,
                Error::BadVariableName { name: var.clone() },
            );
        }
        let max_digits = match &r.max_digits {
            Some(m) if (1..=MAX_READ_DIGITS).contains(&m.value) => m.value,
            Some(m) => {
                self.push(
                    &m.referenced,
                    Error::BadRead(format!(
                        "max_digits {} is out of range (expected 1 to {MAX_READ_DIGITS})",
                        m.value
                    )),
                );
                1
            }
            None => 1,
        };
        let timeout = match &r.timeout {
            Some(t) if t.value.0.is_zero() || t.value.0 > MAX_READ_TIMEOUT => {
                self.push(
                    &t.referenced,
                    Error::BadDuration("a read timeout must be above 0 and at most 5m".into()),
                );
                DEFAULT_READ_TIMEOUT
            }
            Some(t) => t.value.0,
            None => DEFAULT_READ_TIMEOUT,
        };
        let terminator = match &r.terminator {
            Some(t) => {
                let mut chars = t.value.chars();
                match (chars.next().and_then(normalize_digit), chars.next()) {
                    (Some(d), None) => Some(d),
                    _ => {
                        self.push(
                            &t.referenced,
                            Error::BadRead(format!(
                                "terminator {:?} is not one DTMF digit (expected one of 0-9 * # A-D, quoted: \"#\")",
                                t.value
                            )),
                        );
                        None
                    }
                }
            }
            None => None,
        };
        let prompt = match &r.prompt {
            Some(p) => {
                let t = self.template(p, defined)?;
                if t.is_literal() {
                    self.check_audio(p)?;
                }
                Some(t)
            }
            None => None,
        };
        defined.insert(var.clone());
        (self.errors.len() == before).then_some(Action::Read(Read {
            var,
            max_digits: usize::try_from(max_digits).unwrap_or(1),
            timeout,
            terminator,
            prompt,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialplan::{Dialplan, DialplanContext};

    fn compile(actions: &str) -> Result<Dialplan, Vec<String>> {
        let yaml =
            format!("version: 1\nroutes:\n  - id: ivr\n    match: {{}}\n    actions:\n{actions}");
        // Both readers: the fast path and serde must agree.
        let fast = Dialplan::parse_fast("t.yaml", &yaml, &DialplanContext::default());
        let slow = Dialplan::parse_sequential("t.yaml", &yaml, &DialplanContext::default());
        let render = |r: Result<Dialplan, Vec<switchboard_proto::support::yaml::FileError>>| {
            r.map_err(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        let slow = render(slow);
        if let Some(fast) = fast {
            assert_eq!(
                render(fast).map(|p| p.routes().len()),
                slow.as_ref()
                    .map(|p| p.routes().len())
                    .map_err(Clone::clone),
                "fast path and serde differ"
            );
        }
        slow
    }

    fn the_read(p: &Dialplan) -> Read {
        match p.routes().first().and_then(|r| r.actions.first()) {
            Some(Action::Read(r)) => r.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_read_compiles_with_defaults_and_defines_its_variable() {
        let p = compile(
            "      - read: {var: pin, max_digits: 4, timeout: 3s, terminator: \"#\", prompt: \"p-${caller}.wav\"}\n      - dial: {target: \"user/${pin}\"}\n",
        )
        .expect("valid");
        let r = the_read(&p);
        assert_eq!(
            (r.var.as_str(), r.max_digits, r.timeout, r.terminator),
            ("pin", 4, Duration::from_secs(3), Some('#'))
        );
        let p = compile("      - read: {var: choice}\n").expect("valid");
        let r = the_read(&p);
        assert_eq!(
            (r.max_digits, r.timeout, r.terminator, r.prompt.is_none()),
            (1, DEFAULT_READ_TIMEOUT, None, true)
        );
    }

    #[test]
    fn bad_reads_are_located() {
        let cases = [
            (
                "      - read: {var: destination}\n",
                "t.yaml:6:21:",
                "built-in",
            ),
            (
                "      - read: {var: 9lives}\n",
                "t.yaml:6:21:",
                "bad variable name",
            ),
            (
                "      - read: {var: p, max_digits: 0}\n",
                "t.yaml:6:36:",
                "max_digits 0",
            ),
            (
                "      - read: {var: p, max_digits: 33}\n",
                "t.yaml:6:36:",
                "max_digits 33",
            ),
            (
                "      - read: {var: p, timeout: 0s}\n",
                "t.yaml:6:33:",
                "timeout",
            ),
            (
                "      - read: {var: p, timeout: 10m}\n",
                "t.yaml:6:33:",
                "timeout",
            ),
            (
                "      - read: {var: p, terminator: \"##\"}\n",
                "t.yaml:6:36:",
                "terminator",
            ),
            (
                "      - read: {var: p, terminator: x}\n",
                "t.yaml:6:36:",
                "terminator",
            ),
            (
                "      - read: {var: p, prompt: \"../x.wav\"}\n",
                "t.yaml:6:32:",
                "audio directory",
            ),
            (
                "      - read: {var: p, prompt: \"${nope}.wav\"}\n",
                "t.yaml:6:32:",
                "undefined",
            ),
            (
                "      - read: {var: p, digits: 3}\n",
                "t.yaml:6:",
                "unknown field",
            ),
            (
                "      - dial: {target: \"user/${pin}\"}\n      - read: {var: pin}\n",
                "t.yaml:6:",
                "undefined",
            ),
        ];
        for (actions, at, what) in cases {
            let errors = compile(actions).expect_err(actions);
            let e = errors.first().expect("an error");
            assert!(e.starts_with(at), "{actions}: {e}");
            assert!(e.contains(what), "{actions}: {e}");
        }
    }

    #[test]
    fn only_dtmf_digits_are_stored() {
        let r = Read {
            var: "pin".into(),
            max_digits: 4,
            timeout: DEFAULT_READ_TIMEOUT,
            terminator: Some('#'),
            prompt: None,
        };
        assert_eq!(r.sanitize("12a4"), "12A4");
        assert_eq!(r.sanitize("1@evil\r\n23456"), "1234");
        assert_eq!(r.sanitize("12#34"), "12");
        assert_eq!(r.sanitize("${x}"), "");
    }
}
