//! DTMF in SIP INFO bodies, the legacy way phones and SBCs send it (INFO
//! without an Info-Package, RFC 6086 §2): `application/dtmf-relay`
//! (`Signal=5` and `Duration=160` lines, milliseconds) and
//! `application/dtmf` (the digit alone). Parsed strictly, bounded, and
//! built from typed values only, never from the peer's bytes.
//!
//! Accepted digits are `0`-`9`, `*`, `#`, `A`-`D` (`a`-`d` too), and, in a
//! `Signal=` line, the RFC 4733 event codes `10`-`15` for `*`, `#`, `A`-`D`
//! (some devices send those). Anything else (hook flash `!`/`16`, two
//! digits, a second `Signal=`, more than [`MAX_LINES`] lines or
//! [`MAX_BODY`] bytes, a non-numeric `Duration=`) is a bad body.

/// The DTMF alphabet (RFC 4733 §3.2 event codes 0-15 in order).
pub const DIGITS: &str = "0123456789*#ABCD";
/// The body type swbd sends.
pub const RELAY_CONTENT_TYPE: &str = "application/dtmf-relay";
/// The body types swbd accepts (an `Accept` header value).
pub const ACCEPTED: &str = "application/dtmf-relay, application/dtmf";
/// Longest body looked at.
pub const MAX_BODY: usize = 256;
/// Most lines in an `application/dtmf-relay` body.
pub const MAX_LINES: usize = 8;
/// Duration of a digit whose body gives none.
pub const DEFAULT_DURATION_MS: u32 = 160;
/// Durations are clamped into this range (RFC 4733 §2.5.1.2: at least 40 ms).
pub const MIN_DURATION_MS: u32 = 40;
/// See [`MIN_DURATION_MS`].
pub const MAX_DURATION_MS: u32 = 5000;

/// One key press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tone {
    /// One of [`DIGITS`].
    pub digit: char,
    /// How long, in milliseconds (clamped, see [`MIN_DURATION_MS`]).
    pub duration_ms: u32,
}

/// Why an INFO body is not a DTMF key press.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtmfBodyError {
    /// Another Content-Type.
    #[error("Unsupported Media Type (INFO carries DTMF as {ACCEPTED} only)")]
    NotDtmf,
    /// A DTMF type, but not a well-formed body.
    #[error("Bad Request (DTMF body: {0})")]
    Bad(&'static str),
}

impl DtmfBodyError {
    /// The SIP status the INFO is answered with.
    pub fn status_code(&self) -> u16 {
        match self {
            DtmfBodyError::NotDtmf => 415,
            DtmfBodyError::Bad(_) => 400,
        }
    }
}

/// A digit of the alphabet, upper case.
pub fn normalize_digit(c: char) -> Option<char> {
    let c = c.to_ascii_uppercase();
    DIGITS.contains(c).then_some(c)
}

fn clamp_duration(ms: u32) -> u32 {
    ms.clamp(MIN_DURATION_MS, MAX_DURATION_MS)
}

/// Whether `content_type` (a Content-Type value) is one of the DTMF types.
pub fn is_dtmf_type(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    media.eq_ignore_ascii_case("application/dtmf-relay")
        || media.eq_ignore_ascii_case("application/dtmf")
}

/// The key press in an INFO body of `content_type`.
pub fn parse(content_type: &str, body: &[u8]) -> Result<Tone, DtmfBodyError> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let relay = media.eq_ignore_ascii_case("application/dtmf-relay");
    if !relay && !media.eq_ignore_ascii_case("application/dtmf") {
        return Err(DtmfBodyError::NotDtmf);
    }
    if body.len() > MAX_BODY {
        return Err(DtmfBodyError::Bad("longer than 256 bytes"));
    }
    let text = std::str::from_utf8(body).map_err(|_| DtmfBodyError::Bad("not text"))?;
    if relay {
        parse_relay(text)
    } else {
        let mut chars = text.trim().chars();
        match (chars.next().and_then(normalize_digit), chars.next()) {
            (Some(digit), None) => Ok(Tone {
                digit,
                duration_ms: DEFAULT_DURATION_MS,
            }),
            _ => Err(DtmfBodyError::Bad("expected one digit of 0-9 * # A-D")),
        }
    }
}

fn parse_relay(text: &str) -> Result<Tone, DtmfBodyError> {
    let mut signal: Option<char> = None;
    let mut duration: Option<u32> = None;
    let lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty());
    for (n, line) in lines.enumerate() {
        if n >= MAX_LINES {
            return Err(DtmfBodyError::Bad("more than 8 lines"));
        }
        let (key, value) = line
            .split_once('=')
            .ok_or(DtmfBodyError::Bad("a line without `=`"))?;
        let (key, value) = (key.trim(), value.trim());
        if key.eq_ignore_ascii_case("Signal") {
            if signal.is_some() {
                return Err(DtmfBodyError::Bad("two Signal lines"));
            }
            signal = Some(signal_digit(value)?);
        } else if key.eq_ignore_ascii_case("Duration") {
            if duration.is_some() {
                return Err(DtmfBodyError::Bad("two Duration lines"));
            }
            if value.is_empty() || value.len() > 6 || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(DtmfBodyError::Bad(
                    "Duration is not a number of milliseconds",
                ));
            }
            duration = value.parse().ok();
        } else if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(DtmfBodyError::Bad("a line that is not Key=Value"));
        }
        // Other keys (Volume=...) are ignored.
    }
    let digit = signal.ok_or(DtmfBodyError::Bad("no Signal line"))?;
    Ok(Tone {
        digit,
        duration_ms: clamp_duration(duration.unwrap_or(DEFAULT_DURATION_MS)),
    })
}

/// A `Signal=` value: one digit, or an RFC 4733 code `10`-`15`.
fn signal_digit(value: &str) -> Result<char, DtmfBodyError> {
    let bad = DtmfBodyError::Bad("Signal is not one of 0-9 * # A-D");
    let mut chars = value.chars();
    match (chars.next(), chars.next(), chars.next()) {
        (Some(c), None, _) => normalize_digit(c).ok_or(bad),
        (Some('1'), Some(d @ '0'..='5'), None) => {
            let code = usize::from(d as u8 - b'0') + 10;
            DIGITS.chars().nth(code).ok_or(bad)
        }
        _ => Err(bad),
    }
}

/// The `application/dtmf-relay` body swbd sends for `tone`.
pub fn relay_body(tone: Tone) -> String {
    let digit = normalize_digit(tone.digit).unwrap_or('0');
    format!(
        "Signal={digit}\r\nDuration={}\r\n",
        clamp_duration(tone.duration_ms)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELAY: &str = "application/dtmf-relay";

    fn tone(digit: char, duration_ms: u32) -> Result<Tone, DtmfBodyError> {
        Ok(Tone { digit, duration_ms })
    }

    #[test]
    fn bodies_real_devices_send() {
        let cases: &[(&str, &str, Result<Tone, DtmfBodyError>)] = &[
            (RELAY, "Signal=5\r\nDuration=160\r\n", tone('5', 160)),
            (RELAY, "Signal=*\nDuration=250", tone('*', 250)),
            (RELAY, "signal= #\r\nduration= 100\r\n\r\n", tone('#', 100)),
            (RELAY, "Signal=a\r\n", tone('A', 160)),
            (RELAY, "Signal=11\r\nDuration=160\r\n", tone('#', 160)),
            (RELAY, "Signal=12\r\n", tone('A', 160)),
            (RELAY, "Signal=1\r\nDuration=20\r\n", tone('1', 40)),
            (RELAY, "Signal=1\r\nDuration=999999\r\n", tone('1', 5000)),
            (
                RELAY,
                "Signal=1\r\nVolume=10\r\nDuration=80\r\n",
                tone('1', 80),
            ),
            (
                "Application/DTMF-Relay; charset=x",
                "Signal=0\r\n",
                tone('0', 160),
            ),
            ("application/dtmf", "7", tone('7', 160)),
            ("application/dtmf", " 9\r\n", tone('9', 160)),
        ];
        for (ct, body, want) in cases {
            assert_eq!(&parse(ct, body.as_bytes()), want, "{ct} {body:?}");
        }
    }

    #[test]
    fn hostile_bodies_are_refused() {
        let bad: &[(&str, &[u8])] = &[
            (RELAY, b""),
            (RELAY, b"Duration=160\r\n"),
            (RELAY, b"Signal=16\r\n"),
            (RELAY, b"Signal=!\r\n"),
            (RELAY, b"Signal=55\r\n"),
            (RELAY, b"Signal=5\r\nSignal=6\r\n"),
            (RELAY, b"Signal=5\r\nDuration=-1\r\n"),
            (RELAY, b"Signal=5\r\nDuration=1e9\r\n"),
            (RELAY, b"Signal=5\r\nDuration=160\r\nDuration=1\r\n"),
            (RELAY, b"Signal=5\r\nno equals sign\r\n"),
            (RELAY, b"Signal=5\r\nX Y=1\r\n"),
            (RELAY, b"Signal=\xff\r\n"),
            (RELAY, b"a=1\nb=2\nc=3\nd=4\ne=5\nf=6\ng=7\nh=8\nSignal=1\n"),
            ("application/dtmf", b"12"),
            ("application/dtmf", b""),
            ("application/dtmf", b"\x00"),
        ];
        for (ct, body) in bad {
            let e = parse(ct, body).expect_err(&format!("{ct} {body:?}"));
            assert_eq!(e.status_code(), 400, "{ct} {body:?}: {e}");
        }
        let long = format!("Signal=1\r\n{}", "X=1\r\n".repeat(60));
        assert_eq!(
            parse(RELAY, long.as_bytes()).map_err(|e| e.status_code()),
            Err(400)
        );
        for ct in [
            "application/sdp",
            "text/plain",
            "application/media_control+xml",
            "",
        ] {
            assert_eq!(
                parse(ct, b"Signal=1").map_err(|e| e.status_code()),
                Err(415),
                "{ct}"
            );
        }
    }

    #[test]
    fn bodies_we_send_parse_back() {
        for d in DIGITS.chars() {
            let t = Tone {
                digit: d,
                duration_ms: 120,
            };
            assert_eq!(parse(RELAY, relay_body(t).as_bytes()), Ok(t));
        }
        assert_eq!(
            relay_body(Tone {
                digit: '5',
                duration_ms: 1
            }),
            "Signal=5\r\nDuration=40\r\n"
        );
    }
}
