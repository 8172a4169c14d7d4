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
    fn bad_syntax_is_located() {
        let e = from_str::<Cfg>("c.yaml", "name: [a\nport: 1\n").unwrap_err();
        assert!(e.line >= 1, "{e}");
        assert!(!e.message.is_empty());
    }
}
