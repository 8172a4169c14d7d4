//! YAML loading with operator-grade errors: `FILE:LINE:COLUMN: message`.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;

/// One error located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// File name as given by the operator (or `embedded:NAME`).
    pub file: String,
    /// 1-based line; 0 when unknown.
    pub line: u32,
    /// 1-based column; 0 when unknown.
    pub column: u32,
    /// What is wrong, and what was expected.
    pub message: String,
}

impl FileError {
    /// An error with a known position.
    pub fn at(file: impl Into<String>, line: u32, column: u32, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line,
            column,
            message: message.into(),
        }
    }

    /// An error about the whole file (unreadable, ...).
    pub fn whole(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self::at(file, 0, 0, message)
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

impl std::error::Error for FileError {}

impl FileError {
    /// The same error without any text quoted from the file: every
    /// `"..."` or `` `...` `` span of the message becomes `(text omitted)`,
    /// and a message that would still carry a line of the file is replaced.
    /// For files named by a remote admin client, whose contents the client
    /// may not be allowed to read (`swctl dialplan reload --path
    /// /etc/shadow`): the position and the parser's complaint stay.
    pub fn without_source_text(mut self) -> Self {
        self.message = omit_quoted(&self.message);
        self
    }
}

/// Replace quoted spans (`"..."` with `\` escapes, `` `...` ``) by
/// `(text omitted)`. An unterminated quote omits the rest.
fn omit_quoted(message: &str) -> String {
    const OMITTED: &str = "(text omitted)";
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        if c != '"' && c != '`' {
            out.push(c);
            continue;
        }
        let mut escaped = false;
        for d in chars.by_ref() {
            if escaped {
                escaped = false;
            } else if c == '"' && d == '\\' {
                escaped = true;
            } else if d == c {
                break;
            }
        }
        out.push_str(OMITTED);
    }
    // Whatever is left unquoted comes from our own messages and the
    // parser's wording; a newline would mean a multi-line snippet.
    match out.split_once('\n') {
        Some((first, _)) => first.to_string(),
        None => out,
    }
}

impl From<FileError> for crate::admin::v1::FileError {
    fn from(e: FileError) -> Self {
        Self {
            file: e.file,
            line: e.line,
            column: e.column,
            message: e.message,
        }
    }
}

/// Parse `text` (named `file` in errors) as YAML into `T`.
pub fn from_str<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, FileError> {
    serde_saphyr::from_str::<T>(text).map_err(|e| saphyr_error(file, &e))
}

/// Read and parse a YAML file.
pub fn from_path<T: DeserializeOwned>(path: &Path) -> Result<T, FileError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| FileError::whole(&name, format!("cannot read: {}", io_reason(&e))))?;
    from_str(&name, &text)
}

/// Turn a serde-saphyr error into a located [`FileError`].
pub fn saphyr_error(file: &str, e: &serde_saphyr::Error) -> FileError {
    let plain = e.without_snippet();
    let (line, column) = plain
        .location()
        .map(|l| (clamp(l.line()), clamp(l.column())))
        .unwrap_or((0, 0));
    let options = serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
    };
    let mut message = plain.render_with_options(options);
    // The plain rendering appends the position; we print it in front instead.
    if let Some(idx) = message.rfind(" at line ") {
        message.truncate(idx);
    }
    FileError::at(file, line, column, message.trim().to_string())
}

fn clamp(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// A short, lowercase reason for an I/O error ("no such file", "permission denied").
pub fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => "no such file or directory".into(),
        PermissionDenied => "permission denied".into(),
        AddrInUse => "address already in use".into(),
        AddrNotAvailable => "address not available on this host".into(),
        ConnectionRefused => "connection refused".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        name: String,
        #[serde(default)]
        port: u16,
    }

    #[test]
    fn unknown_key_is_located() {
        let e = from_str::<Cfg>("c.yaml", "name: a\nbogus: 1\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 1), "{e}");
        assert!(e.message.contains("bogus"), "{e}");
        assert!(e.to_string().starts_with("c.yaml:2:1: "), "{e}");
    }

    #[test]
    fn wrong_type_is_located() {
        let e = from_str::<Cfg>("c.yaml", "name: a\nport: eighty\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 7), "{e}");
    }

    #[test]
    fn source_text_can_be_left_out() {
        // What /etc/shadow's first line looks like to a YAML parser: a key.
        let secret = "root:$6$Zs3cretHash:19000:0:99999:7:::";
        let e = from_str::<Cfg>("shadow", &format!("{secret}\nbin:*:19000::\n")).unwrap_err();
        assert!(e.message.contains("s3cret"), "the plain error quotes: {e}");
        let plain = e.clone().without_source_text();
        assert!(!plain.to_string().contains("s3cret"), "{plain}");
        assert!(
            plain.message.starts_with("unknown field (text omitted)"),
            "{plain}"
        );
        assert_eq!((plain.line, plain.column), (e.line, e.column));
        let e = from_str::<Cfg>("c.yaml", "name: a\npassword_s3cret: 1\n").unwrap_err();
        let plain = e.without_source_text();
        assert!(!plain.message.contains("s3cret"), "{plain}");
        assert!(plain.to_string().starts_with("c.yaml:2:1: "), "{plain}");
    }

    #[test]
    fn quoted_spans_are_omitted() {
        assert_eq!(
            omit_quoted(r#"invalid type: string "a \"b\" c", expected `x`; ok"#),
            "invalid type: string (text omitted), expected (text omitted); ok"
        );
        assert_eq!(
            omit_quoted("unterminated \"abc"),
            "unterminated (text omitted)"
        );
        assert_eq!(omit_quoted("line one\nline two"), "line one");
    }

    #[test]
    fn bad_syntax_is_located() {
        let e = from_str::<Cfg>("c.yaml", "name: [a\nport: 1\n").unwrap_err();
        assert!(e.line >= 1, "{e}");
        assert!(!e.message.is_empty());
    }
}
