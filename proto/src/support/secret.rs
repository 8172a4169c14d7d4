//! Bearer tokens kept in files: the media token swbd and swrtp share, and
//! admin tokens for TCP admin listeners.
//!
//! A daemon reads its token file only when it is a regular file owned by
//! the user the daemon runs as, with no group/other permission bits, in a
//! directory another user cannot swap files in
//! ([`check_parent_dir`](super::paths::check_parent_dir)). Anything else is
//! refused at start with a message that names the file and the fix, never
//! its contents.
//!
//! [`load_or_create_token`] creates a missing file atomically: 32 random
//! bytes, hex, written to a private temporary file (mode 0600) and then
//! hard-linked to the final name. `link(2)` fails when the name exists, so
//! when swbd and swrtp start together exactly one file wins and the other
//! daemon reads it: both end up with the same token.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::metadata::{AsciiMetadataValue, MetadataValue};

use super::paths::{self, DirError};
use super::yaml::io_reason;

/// Longest token file accepted (a token is 64 hex characters; this leaves
/// room for operator-chosen ones).
const MAX_TOKEN_BYTES: u64 = 4096;

/// A bearer token. `Debug` never prints it.
#[derive(Clone)]
pub struct Token {
    text: Arc<str>,
    header: AsciiMetadataValue,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A token from text (leading/trailing whitespace is trimmed). It must
    /// be 1 to 4096 visible ASCII characters (it travels in an HTTP/2
    /// header).
    pub fn new(text: &str) -> Result<Self, TokenTextError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TokenTextError::Empty);
        }
        if text.len() as u64 > MAX_TOKEN_BYTES || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenTextError::Malformed);
        }
        let mut header: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {text}"))
            .map_err(|_| TokenTextError::Malformed)?;
        // Not kept in HPACK tables (RFC 7541 §7.1.3: never-indexed literal).
        header.set_sensitive(true);
        Ok(Self {
            text: text.into(),
            header,
        })
    }

    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The `authorization` header value: `Bearer TOKEN`, marked sensitive.
    pub fn bearer(&self) -> AsciiMetadataValue {
        self.header.clone()
    }
}

/// What is wrong with a token's text (the text itself is never shown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenTextError {
    /// Nothing but whitespace.
    #[error("the token is empty")]
    Empty,
    /// Not 1-4096 visible ASCII characters.
    #[error("the token must be 1 to 4096 visible ASCII characters (no spaces or control bytes)")]
    Malformed,
}

/// A token file that cannot be used. Messages name the file and the fix;
/// they never contain the file's contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// open/read/stat failed.
    #[error("token file {path}: cannot read: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Creating a missing file failed.
    #[error("token file {path}: cannot create: {reason}")]
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A directory, device, FIFO...
    #[error("token file {path}: not a regular file")]
    NotRegular {
        /// The file.
        path: PathBuf,
    },
    /// Owned by another user.
    #[error(
        "token file {path}: owned by uid {owner}, not by this user (uid {me}); a secret must belong to the daemon that uses it (chown it)"
    )]
    ForeignOwner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Us.
        me: u32,
    },
    /// Group or others may read or write it.
    #[error("token file {path}: mode {mode:04o} lets group or others access it (chmod 600 {path})")]
    NotPrivate {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Larger than any token.
    #[error("token file {path}: larger than {MAX_TOKEN_BYTES} bytes, not a token file")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Empty or not a usable token.
    #[error("token file {path}: {problem}")]
    BadText {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: TokenTextError,
    },
    /// The directory it is in is not safe.
    #[error("token file {path}: {dir}")]
    Directory {
        /// The file.
        path: PathBuf,
        /// The directory problem.
        dir: DirError,
    },
}

/// Read a token file that must already exist, with the ownership and mode
/// checks of the module docs.
pub fn load_token(path: &Path) -> Result<Token, SecretError> {
    paths::check_parent_dir(path).map_err(|dir| SecretError::Directory {
        path: path.to_path_buf(),
        dir,
    })?;
    read_checked(path, true)
}

/// Read a token file that a client (swctl) was pointed at: a regular,
/// non-empty file; ownership and mode are the operator's business (root's
/// token may be readable by an operators' group), so they are not checked.
pub fn read_client_token(path: &Path) -> Result<Token, SecretError> {
    read_checked(path, false)
}

/// [`load_token`], creating the file first when it does not exist (see the
/// module docs for how two daemons starting together agree).
pub fn load_or_create_token(path: &Path) -> Result<Token, SecretError> {
    paths::check_parent_dir(path).map_err(|dir| SecretError::Directory {
        path: path.to_path_buf(),
        dir,
    })?;
    match std::fs::symlink_metadata(path) {
        Ok(_) => return read_checked(path, true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(SecretError::Read {
                path: path.to_path_buf(),
                reason: io_reason(&e),
            });
        }
    }
    create(path)?;
    read_checked(path, true)
}

fn create(path: &Path) -> Result<(), SecretError> {
    let create_err = |e: &std::io::Error| SecretError::Create {
        path: path.to_path_buf(),
        reason: io_reason(e),
    };
    // 32 bytes of token, then 4 for the temporary file's name.
    let mut random = [0u8; 36];
    // /dev/urandom is the kernel's CSPRNG (the source getrandom(2) draws
    // from); reading it keeps this crate free of unsafe and of a rand
    // dependency.
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(|e| create_err(&e))?;
    let (secret, salt) = random.split_at(32);
    let text: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "token".into());
    let nonce: String = salt.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_file_name(format!(".{name}.{}.{nonce}.tmp", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(create_err(&e));
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(file = %path.display(), "created a new token file (mode 0600)");
            Ok(())
        }
        // Another daemon created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(create_err(&e)),
    }
}

fn read_checked(path: &Path, private: bool) -> Result<Token, SecretError> {
    let read_err = |e: &std::io::Error| SecretError::Read {
        path: path.to_path_buf(),
        reason: io_reason(e),
    };
    // stat before open: opening a FIFO would block.
    let meta = std::fs::metadata(path).map_err(|e| read_err(&e))?;
    if !meta.is_file() {
        return Err(SecretError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    let file = std::fs::File::open(path).map_err(|e| read_err(&e))?;
    // The checks that count are on what was opened.
    let meta = file.metadata().map_err(|e| read_err(&e))?;
    if !meta.is_file() {
        return Err(SecretError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    if private {
        let me = paths::euid().map_err(|e| read_err(&e))?;
        if meta.uid() != me {
            return Err(SecretError::ForeignOwner {
                path: path.to_path_buf(),
                owner: meta.uid(),
                me,
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SecretError::NotPrivate {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    if meta.len() > MAX_TOKEN_BYTES {
        return Err(SecretError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| read_err(&e))?;
    if bytes.len() as u64 > MAX_TOKEN_BYTES {
        return Err(SecretError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| SecretError::BadText {
        path: path.to_path_buf(),
        problem: TokenTextError::Malformed,
    })?;
    Token::new(text).map_err(|problem| SecretError::BadText {
        path: path.to_path_buf(),
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sb-secret-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        d
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_missing_token_is_created_private_and_then_reused() {
        let d = scratch("create");
        let f = d.join("media.token");
        let a = load_or_create_token(&f).expect("created");
        assert_eq!(a.as_str().len(), 64);
        assert!(a.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        let mode = std::fs::metadata(&f).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = load_or_create_token(&f).expect("read back");
        assert_eq!(a.as_str(), b.as_str());
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(&d).expect("ls").collect();
        assert_eq!(left.len(), 1);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn daemons_starting_together_agree_on_one_token() {
        let d = scratch("race");
        let f = d.join("media.token");
        let tokens: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create_token(&f).map(|t| t.as_str().to_string())))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread").expect("token"))
                .collect()
        });
        assert!(tokens.iter().all(|t| t == &tokens[0]), "{tokens:?}");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn an_open_token_file_is_refused_without_showing_it() {
        let d = scratch("mode");
        let f = d.join("t");
        write(&f, "sup3r-s3cret\n", 0o644);
        let e = load_token(&f).expect_err("0644 refused").to_string();
        assert!(e.contains("mode 0644"), "{e}");
        assert!(e.contains("chmod 600"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        write(&f, "sup3r-s3cret\n", 0o600);
        assert_eq!(load_token(&f).expect("0600 ok").as_str(), "sup3r-s3cret");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn empty_and_malformed_tokens_are_refused() {
        let d = scratch("text");
        let f = d.join("t");
        write(&f, " \n", 0o600);
        let e = load_token(&f).expect_err("empty").to_string();
        assert!(e.contains("empty"), "{e}");
        write(&f, "two words-s3cret", 0o600);
        let e = load_token(&f).expect_err("space").to_string();
        assert!(e.contains("visible ASCII"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        let e = load_token(&d).expect_err("a directory").to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_token_in_a_world_writable_directory_is_refused() {
        let d = scratch("dir");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let f = d.join("t");
        let e = load_or_create_token(&f).expect_err("refused").to_string();
        assert!(e.contains("group or others may replace files"), "{e}");
        assert!(!f.exists(), "nothing created there");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn debug_hides_the_token() {
        let t = Token::new("abc123").expect("token");
        assert_eq!(format!("{t:?}"), "Token(..)");
        assert_eq!(t.bearer().to_str().expect("ascii"), "Bearer abc123");
    }
}
