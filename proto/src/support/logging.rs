//! tracing-subscriber setup shared by the daemons.
//!
//! # Peer data in logs
//!
//! Log fields carry what peers sent (SIP users, Call-IDs, reasons, errors
//! quoting a header). A CR or LF in such a value would start a line the
//! peer wrote (a forged log entry), and an ESC or a C1 control would reach
//! the operator's terminal as a command (recolouring, retitling, worse). So:
//!
//! - **Text format**: every field value and the message go through
//!   [`EscapedFields`], a field formatter that writes control characters as
//!   escapes (`\n`, `\r`, `\t`, `\x1b`, `\x7f`, `\u{9b}`), as well as the
//!   Unicode line separators and bidirectional overrides that make a line
//!   read differently than it is. Everything else, non-ASCII letters
//!   included, is written as is. The formatter is the seam, not the writer:
//!   the writer sees the whole line, with the final newline and (on a
//!   terminal) the formatter's own colour codes, and can no longer tell them
//!   from a peer's; the field formatter sees exactly the values, and wraps
//!   `%display` and `?debug` fields alike. Tracing-subscriber's own
//!   sanitizing covers the message only, and not CR or LF.
//! - **JSON format**: serde_json escapes what JSON requires (every C0
//!   control); [`JsonEscaping`] also writes DEL, C1 controls, the line
//!   separators and the bidi overrides as `\uXXXX`, which is the same JSON
//!   string, so a JSON log shown by `cat` or `tail` cannot command a
//!   terminal either.
//! - **Colours** only when stderr is a terminal and `NO_COLOR` is unset or
//!   empty (<https://no-color.org>): a log file or pipe gets plain text.

use std::fmt::{self, Write as _};
use std::io::{self, IsTerminal};

use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::{RecordFields, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::{FormatFields, Writer};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected text or json)"
            )),
        }
    }
}

/// Install the global subscriber. `RUST_LOG` wins over `level` when set.
/// Logs go to stderr so stdout stays free for machine-readable output.
pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = use_colour(
        io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    // A second init (tests running several daemons in one process) is not an error.
    let _ = match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(io::stderr)
            .with_ansi(ansi)
            .fmt_fields(EscapedFields)
            .try_init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(JsonEscaping(io::stderr))
            .with_ansi(false)
            .json()
            .try_init(),
    };
}

/// Colour only on a terminal, and never when `NO_COLOR` is set to a
/// non-empty value.
pub fn use_colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Whether `c` is written escaped in a log line: C0 controls, DEL, C1
/// controls, the Unicode line and paragraph separators, and the
/// bidirectional marks, embeddings, overrides and isolates.
pub fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Write `s` with every [`must_escape`] character escaped: `\n`, `\r`,
/// `\t`, `\xNN` for the other ASCII controls (ESC is `\x1b`), `\u{NNNN}`
/// for the rest. Runs of plain characters are written in one piece.
pub fn write_escaped(out: &mut dyn fmt::Write, s: &str) -> fmt::Result {
    let mut plain = 0;
    for (i, c) in s.char_indices() {
        if !must_escape(c) {
            continue;
        }
        out.write_str(s.get(plain..i).unwrap_or_default())?;
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c.is_ascii() => write!(out, "\\x{:02x}", u32::from(c))?,
            c => write!(out, "\\u{{{:x}}}", u32::from(c))?,
        }
        plain = i + c.len_utf8();
    }
    out.write_str(s.get(plain..).unwrap_or_default())
}

/// A `fmt::Write` that escapes what goes through it (see [`write_escaped`]).
struct Escaper<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaper<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_escaped(&mut *self.0, s)
    }
}

/// The text format's field formatter: the layout of tracing-subscriber's
/// `DefaultFields` (`message name=value name=value`, names in italics when
/// colours are on), with every value and the message escaped by
/// [`write_escaped`]. See the module docs for why the seam is here.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = EscapingVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.finish()
    }
}

struct EscapingVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl EscapingVisitor<'_> {
    fn field(&mut self, field: &Field, value: fmt::Arguments<'_>) -> fmt::Result {
        let name = field.name();
        // Metadata of events bridged from the `log` crate, printed by the
        // event formatter already.
        if name.starts_with("log.") {
            return Ok(());
        }
        if !self.first {
            self.writer.write_char(' ')?;
        }
        self.first = false;
        if name != "message" {
            let name = name.strip_prefix("r#").unwrap_or(name);
            if self.writer.has_ansi_escapes() {
                write!(self.writer, "\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m")?;
            } else {
                write!(self.writer, "{name}=")?;
            }
        }
        Escaper(&mut self.writer).write_fmt(value)
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_ok() {
            // As DefaultFields: a string field is quoted, the message is not.
            self.result = if field.name() == "message" {
                self.field(field, format_args!("{value}"))
            } else {
                self.field(field, format_args!("{value:?}"))
            };
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_ok() {
            self.result = self.field(field, format_args!("{value}"));
            let mut source = value.source();
            while let Some(s) = source
                && self.result.is_ok()
            {
                self.result = self
                    .writer
                    .write_str(": ")
                    .and_then(|()| Escaper(&mut self.writer).write_fmt(format_args!("{s}")));
                source = s.source();
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_ok() {
            self.result = self.field(field, format_args!("{value:?}"));
        }
    }
}

impl VisitOutput<fmt::Result> for EscapingVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for EscapingVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

/// The JSON format's writer: passes the formatter's lines on with DEL, C1
/// controls, line separators and bidi overrides written as `\uXXXX`
/// (serde_json leaves them raw; JSON allows both). In a JSON line such a
/// character can only stand inside a string, where the escape means the same
/// character, so the document is unchanged for a JSON reader.
#[derive(Debug, Clone, Copy)]
pub struct JsonEscaping<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for JsonEscaping<M> {
    type Writer = JsonEscapingWriter<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        JsonEscapingWriter(self.0.make_writer())
    }
}

/// Writer made by [`JsonEscaping`].
#[derive(Debug)]
pub struct JsonEscapingWriter<W>(W);

impl<W: io::Write> io::Write for JsonEscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The formatter hands over whole lines of UTF-8. Should a character
        // ever be split across calls, the valid prefix is taken now and the
        // rest comes back in the next call; bytes that are no UTF-8 at all
        // pass unchanged.
        let text = match std::str::from_utf8(buf) {
            Ok(t) => t,
            Err(e) => match buf.get(..e.valid_up_to()).map(std::str::from_utf8) {
                Some(Ok(t)) if !t.is_empty() => t,
                _ => return self.0.write(buf),
            },
        };
        if !text.chars().any(must_escape) {
            self.0.write_all(text.as_bytes())?;
            return Ok(text.len());
        }
        let mut out = String::with_capacity(text.len() + 16);
        for c in text.chars() {
            // C0 controls other than the line's own final newline were
            // escaped by serde_json already.
            if (must_escape(c) && !c.is_ascii_control()) || c == '\x7f' {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            } else {
                out.push(c);
            }
        }
        self.0.write_all(out.as_bytes())?;
        Ok(text.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// A `MakeWriter` into a shared buffer.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).expect("utf-8 log")
        }
    }

    /// What the daemons' text subscriber writes for `f`'s events.
    fn text_log(ansi: bool, f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(buf.clone())
            .with_ansi(ansi)
            .without_time()
            .with_target(false)
            .fmt_fields(EscapedFields);
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
        buf.text()
    }

    fn json_log(f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(JsonEscaping(buf.clone()))
            .with_ansi(false)
            .json();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
        buf.text()
    }

    const HOSTILE: &str = "bob\r\nINFO forged: admin logged in\x1b[31mred\x1b]0;title\x07\u{9b}2J\x7f\u{202e}gnp.exe\u{2028}x\t\0end";

    #[derive(Debug)]
    struct Peer {
        #[allow(dead_code)]
        user: String,
    }

    fn hostile_events() {
        let user = HOSTILE.to_string();
        let span = tracing::info_span!("call", id = %user);
        let _e = span.enter();
        tracing::info!(from = %user, ua = ?user, raw = user.as_str(), peer = ?Peer { user: user.clone() }, "message {user}");
        let err = io::Error::other(user.clone());
        tracing::warn!(error = &err as &(dyn std::error::Error + 'static), "failed");
    }

    fn assert_clean_line(log: &str) {
        let body = log.strip_suffix('\n').expect("ends with a newline");
        assert!(!body.contains('\n'), "a value broke the line: {log:?}");
        for c in body.chars() {
            assert!(!must_escape(c), "raw {c:?} in {log:?}");
        }
    }

    #[test]
    fn text_fields_and_message_are_escaped() {
        let log = text_log(false, hostile_events);
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "{log}");
        for line in log.split_inclusive('\n') {
            assert_clean_line(line);
        }
        let first = lines.first().expect("first line");
        // %display: escaped, unquoted; ?debug and str: Debug-quoted as before.
        assert!(
            first.contains(r"from=bob\r\nINFO forged: admin logged in\x1b[31mred\x1b]0;title\x07\u{9b}2J\x7f\u{202e}gnp.exe\u{2028}x\t\x00end"),
            "{first}"
        );
        assert!(first.contains(r#"ua="bob\r\nINFO"#), "{first}");
        assert!(first.contains(r#"raw="bob\r\nINFO"#), "{first}");
        assert!(
            first.contains(r#"peer=Peer { user: "bob\r\nINFO"#),
            "{first}"
        );
        assert!(first.contains(r"message bob\r\nINFO forged"), "{first}");
        // Span fields go through the same formatter.
        assert!(first.contains(r"call{id=bob\r\nINFO forged"), "{first}");
        let second = lines.get(1).expect("second line");
        assert!(second.contains(r"failed error=bob\r\nINFO"), "{second}");
    }

    #[test]
    fn plain_text_is_left_alone() {
        let log = text_log(false, || {
            tracing::info!(user = %"Jürgen Ωmega", n = 3, path = ?"C:\\x", "registered 100%");
        });
        assert!(
            log.contains(r#"registered 100% user=Jürgen Ωmega n=3 path="C:\\x""#),
            "{log}"
        );
    }

    #[test]
    fn colours_only_frame_names_and_values_stay_escaped() {
        let log = text_log(true, hostile_events);
        // The formatter's own colours are there ...
        assert!(log.contains("\x1b[3mfrom\x1b[0m\x1b[2m=\x1b[0m"), "{log:?}");
        // ... but no ESC of the peer's: every ESC starts one of our SGR codes.
        for (i, _) in log.match_indices('\x1b') {
            let rest = log.get(i..).unwrap_or_default();
            assert!(
                [
                    "\x1b[3m", "\x1b[0m", "\x1b[2m", "\x1b[32m", "\x1b[33m", "\x1b[1m"
                ]
                .iter()
                .any(|sgr| rest.starts_with(sgr)),
                "foreign ESC at {i}: {:?}",
                rest.get(..12)
            );
        }
        assert!(!log.contains("\x1b[31mred"), "{log:?}");
        assert!(!log.contains('\r'), "{log:?}");
    }

    #[test]
    fn json_lines_escape_every_control() {
        let log = json_log(hostile_events);
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "{log}");
        for line in log.split_inclusive('\n') {
            assert_clean_line(line);
        }
        for line in &lines {
            let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
            if let Some(from) = v.pointer("/fields/from") {
                // Escaping is transparent to a JSON reader.
                assert_eq!(from.as_str(), Some(HOSTILE), "{line}");
            }
        }
    }

    #[test]
    fn json_writer_takes_a_split_character_whole() {
        let mut out = Vec::new();
        let mut w = JsonEscapingWriter(&mut out);
        let bytes = "\"a\u{9b}b\"".as_bytes();
        // Split inside the two bytes of U+009B.
        let split = 3;
        let n = io::Write::write(&mut w, bytes.get(..split).unwrap()).unwrap();
        assert_eq!(n, 2, "only the complete characters are taken");
        io::Write::write_all(&mut w, bytes.get(n..).unwrap()).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "\"a\\u009bb\"");
    }

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        use std::ffi::OsStr;
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }
}
