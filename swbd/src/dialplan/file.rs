//! The dialplan YAML as written: serde types with `deny_unknown_fields` and
//! [`Spanned`] on every value the loader validates, so semantic errors can
//! name `FILE:LINE:COLUMN` too.
//!
//! ```yaml
//! version: 1
//! no_match: {code: 404, reason: Not Found}
//! routes:
//!   - id: extensions
//!     priority: 100            # lower runs first; file order breaks ties
//!     match: {destination: "1???"}
//!     actions:
//!       - dial: {target: "user/${destination}", timeout: 30s}
//!       - hangup: {code: 480}
//! ```

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_saphyr::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialplanFile {
    /// Format version; only `1` exists.
    pub version: Spanned<u32>,
    /// What a call gets when no route matches (404 Not Found by default).
    #[serde(default)]
    pub no_match: Option<NoMatchFile>,
    /// Routes, in file order.
    #[serde(default)]
    pub routes: Vec<RouteFile>,
}

/// `no_match:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoMatchFile {
    /// SIP status, 400-699.
    pub code: Spanned<u16>,
    /// Reason phrase; the standard one when absent.
    #[serde(default)]
    pub reason: Option<String>,
}

fn default_priority() -> i32 {
    100
}

fn default_true() -> bool {
    true
}

/// One route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// Unique id (shown in calls and events).
    pub id: Spanned<String>,
    /// Human name.
    #[serde(default)]
    pub name: Option<String>,
    /// Lower first; 100 when absent.
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// Disabled routes are kept (and shown) but never match.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Conditions, all of which must hold.
    #[serde(rename = "match")]
    pub match_: MatchFile,
    /// What a REFER (call transfer) from either leg of a call on this
    /// route may do: `allow`, `deny`, or the name of a context the
    /// transfer target is routed in. Absent: allowed for local users only
    /// (see [`super::transfer`]).
    #[serde(default)]
    pub transfer: Option<Spanned<String>>,
    /// The context this route belongs to: only transfers whose policy
    /// names it are routed here, never new calls. Absent: the default
    /// context (new calls, and transfers under `allow`).
    #[serde(default)]
    pub context: Option<Spanned<String>>,
    /// What to do, in order.
    pub actions: Spanned<Vec<Spanned<ActionFile>>>,
}

/// `match:`. Absent conditions always hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchFile {
    /// Request-URI user part, as a glob (`500`, `1*`, `1???`, `[2-4]*`).
    #[serde(default)]
    pub destination: Option<Spanned<String>>,
    /// Request-URI user part, as a regex (anchored; captures become
    /// `${1}`, `${name}`).
    #[serde(default)]
    pub destination_regex: Option<Spanned<String>>,
    /// From user part, as a glob.
    #[serde(default)]
    pub caller: Option<Spanned<String>>,
    /// Request domain (Request-URI / To host), as a case-insensitive glob
    /// (`*.example.com`).
    #[serde(default)]
    pub domain: Option<Spanned<String>>,
    /// From domain (the caller's host), as a case-insensitive glob.
    #[serde(default)]
    pub from_domain: Option<Spanned<String>>,
    /// Source address of the INVITE: any of these networks.
    #[serde(default)]
    pub source: Option<Vec<Spanned<String>>>,
}

/// One action. `- answer`, `- playback: {file: x.wav}`, `- sleep: 2s`, ...
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionFile {
    /// Answer the call (200 OK with media).
    Answer,
    /// Play a file to the caller.
    Playback(PlaybackFile),
    /// Ring one or more targets in parallel.
    Dial(DialFile),
    /// End the call with a status.
    Hangup(HangupFile),
    /// Wait.
    Sleep(Spanned<DurationValue>),
    /// Set variables: `set: {name: value}`.
    Set(SetFile),
    /// Collect DTMF digits into a variable.
    Read(ReadFile),
}

impl ActionFile {
    /// The action's YAML name.
    pub fn name(&self) -> &'static str {
        match self {
            ActionFile::Answer => "answer",
            ActionFile::Playback(_) => "playback",
            ActionFile::Dial(_) => "dial",
            ActionFile::Hangup(_) => "hangup",
            ActionFile::Sleep(_) => "sleep",
            ActionFile::Set(_) => "set",
            ActionFile::Read(_) => "read",
        }
    }
}

/// `playback:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybackFile {
    /// Path relative to the audio directory; may use variables.
    pub file: Spanned<String>,
    /// Repeat until the caller hangs up.
    #[serde(default, rename = "loop")]
    pub looped: bool,
}

/// What a failed dial does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Go on with the next action (failover).
    #[default]
    Next,
    /// End the call with the dial's failure.
    Stop,
}

/// What a dial does with a B-leg's redirect (3xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Redirect {
    /// Call the 3xx's Contacts, each through the same rules as a `dial`
    /// target (at most 5 redirects in a row).
    #[default]
    Follow,
    /// Give the 3xx to the caller with its Contact intact, when no other
    /// target of the dial answers.
    Pass,
}

/// `dial:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialFile {
    /// One target.
    #[serde(default)]
    pub target: Option<Spanned<String>>,
    /// Several targets, rung in parallel; the first to answer wins.
    #[serde(default)]
    pub targets: Option<Vec<Spanned<String>>>,
    /// Ring timeout; 30 s when absent.
    #[serde(default)]
    pub timeout: Option<Spanned<DurationValue>>,
    /// What to do when nobody answers.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// What to do with a 3xx (follow it, or pass it to the caller).
    #[serde(default)]
    pub redirect: Redirect,
}

/// `hangup:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HangupFile {
    /// SIP status, 400-699.
    pub code: Spanned<u16>,
    /// Reason phrase; the standard one when absent. May use variables.
    #[serde(default)]
    pub reason: Option<Spanned<String>>,
}

/// `read: {var: pin, max_digits: 4, timeout: 5s, terminator: "#", prompt: enter-pin.wav}`
/// (see `plan/read.rs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadFile {
    /// Variable the digits go into.
    pub var: Spanned<String>,
    /// Stop after this many digits, 1-32; 1 when absent.
    #[serde(default)]
    pub max_digits: Option<Spanned<u32>>,
    /// How long to wait for the first digit and between digits; 5 s when absent.
    #[serde(default)]
    pub timeout: Option<Spanned<DurationValue>>,
    /// A digit that ends the input early (not stored), like `"#"`.
    #[serde(default)]
    pub terminator: Option<Spanned<String>>,
    /// A file played first; a digit stops it. May use variables.
    #[serde(default)]
    pub prompt: Option<Spanned<String>>,
}

/// `set: {a: x, b: "${a}-y"}`, in file order.
#[derive(Debug)]
pub struct SetFile(pub Vec<(Spanned<String>, Spanned<String>)>);

impl<'de> Deserialize<'de> for SetFile {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SetFile;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a map of variable names to values, like {greeting: \"hello-${caller}\"}",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SetFile, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<Spanned<String>>()? {
                    let v = map.next_value::<Spanned<String>>()?;
                    out.push((k, v));
                }
                Ok(SetFile(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A duration: `30s`, `500ms`, `2m`, `1.5s`, or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

/// The longest duration a dialplan may ask for (one day).
const MAX_DURATION: Duration = Duration::from_secs(86_400);

impl DurationValue {
    /// Parse the text form.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
            (n, 0.001)
        } else if let Some(n) = t.strip_suffix('s') {
            (n, 1.0)
        } else if let Some(n) = t.strip_suffix('m') {
            (n, 60.0)
        } else if let Some(n) = t.strip_suffix('h') {
            (n, 3600.0)
        } else {
            (t, 1.0)
        };
        let value: f64 = num
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a duration (expected like 30s, 500ms, 2m)"))?;
        let secs = value * scale;
        if !secs.is_finite() || secs < 0.0 || secs > MAX_DURATION.as_secs_f64() {
            return Err(format!(
                "{text:?} is out of range (expected 0 to 24h, like 30s)"
            ));
        }
        Ok(Self(Duration::from_secs_f64(secs)))
    }
}

impl fmt::Display for DurationValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration like 30s, 500ms or 2m")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationValue, E> {
                DurationValue::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationValue, E> {
                DurationValue::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationValue, E> {
                DurationValue::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationValue, E> {
                DurationValue::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let ok = [
            ("30s", 30_000),
            ("500ms", 500),
            ("2m", 120_000),
            ("1.5s", 1500),
            ("7", 7000),
            ("1h", 3_600_000),
        ];
        for (t, ms) in ok {
            let d = DurationValue::parse(t).expect(t);
            assert_eq!(d.0.as_millis(), ms, "{t}");
        }
        for t in ["", "s", "-1s", "2d", "25h", "nan", "infs"] {
            assert!(DurationValue::parse(t).is_err(), "{t:?}");
        }
        assert_eq!(
            DurationValue(Duration::from_millis(1500)).to_string(),
            "1500ms"
        );
    }

    #[test]
    fn spans_reach_inside_actions() {
        let yaml = "version: 1\nroutes:\n  - id: a\n    match: {destination: \"1*\"}\n    actions:\n      - answer\n      - set: {x: \"${caller}\"}\n      - playback: {file: a.wav}\n      - sleep: 2s\n";
        let f: DialplanFile = serde_saphyr::from_str(yaml).expect("parses");
        let r = f.routes.first().expect("route");
        assert_eq!(r.id.referenced.line(), 3);
        let dest = r.match_.destination.as_ref().expect("dest");
        assert_eq!((dest.referenced.line(), dest.referenced.column()), (4, 26));
        let acts = &r.actions.value;
        assert!(matches!(
            acts.first().map(|a| &a.value),
            Some(ActionFile::Answer)
        ));
        match acts.get(1).map(|a| &a.value) {
            Some(ActionFile::Set(SetFile(pairs))) => {
                let (k, v) = pairs.first().expect("pair");
                assert_eq!(k.value, "x");
                assert_eq!((k.referenced.line(), k.referenced.column()), (7, 15));
                assert_eq!((v.referenced.line(), v.referenced.column()), (7, 18));
            }
            other => panic!("{other:?}"),
        }
        match acts.get(2).map(|a| &a.value) {
            Some(ActionFile::Playback(p)) => {
                assert_eq!(
                    (p.file.referenced.line(), p.file.referenced.column()),
                    (8, 26)
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(acts.get(3).map(|a| a.referenced.line()), Some(9));
    }
}
