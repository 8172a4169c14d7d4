//! Default filesystem locations shared by daemons and swctl, and the checks
//! that keep another local user out of them.
//!
//! The runtime directory holds the admin sockets and the media token. A
//! directory another user created first (in `/tmp`, anyone can) would let
//! that user replace a socket or read the token, so an existing directory
//! is used only when it is ours and private (owner = our effective uid,
//! no group/other permission bits, not a symlink). A directory named
//! explicitly for a socket or a secret (`admin.socket`, a token file) may
//! be shared, but not writable by others unless sticky (like `/tmp`), and
//! owned by us or root.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::yaml::io_reason;

/// `$XDG_RUNTIME_DIR/switchboard`, or `/tmp/switchboard-$UID` when unset.
/// Admin sockets and the default media token live here.
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("switchboard"),
        _ => {
            let uid = euid()
                .map(|u| u.to_string())
                .unwrap_or_else(|_| "user".into());
            PathBuf::from(format!("/tmp/switchboard-{uid}"))
        }
    }
}

/// Default admin socket of swbd.
pub fn swbd_socket() -> PathBuf {
    runtime_dir().join("swbd.sock")
}

/// Default admin socket of swrtp.
pub fn swrtp_socket() -> PathBuf {
    runtime_dir().join("swrtp.sock")
}

/// Default media token file (shared by swbd and swrtp on one host).
pub fn media_token() -> PathBuf {
    runtime_dir().join("media.token")
}

/// Our effective uid: the owner of `/proc/self` (no libc, no unsafe).
pub fn euid() -> std::io::Result<u32> {
    std::fs::metadata("/proc/self").map(|m| m.uid())
}

/// A directory we refuse to use, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirError {
    /// Creating it failed.
    #[error("cannot create directory {path}: {reason}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// stat failed.
    #[error("cannot check directory {path}: {reason}")]
    Stat {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Not a directory (or a symlink where we want a real directory).
    #[error("{path} is not a directory{}", if *.symlink { " (it is a symbolic link; refusing it)" } else { "" })]
    NotADirectory {
        /// The path.
        path: PathBuf,
        /// It is a symlink.
        symlink: bool,
    },
    /// Owned by someone else.
    #[error(
        "directory {path} is owned by uid {owner}, not by this user (uid {me}): another user may have created it to take over the sockets in it; remove it or use a directory of your own"
    )]
    ForeignOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Us.
        me: u32,
    },
    /// Group or others have permissions on a directory that must be private.
    #[error(
        "directory {path} has mode {mode:04o}: group and others must have no access (chmod 700 {path})"
    )]
    NotPrivate {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Writable by group or others without the sticky bit: anyone could
    /// replace a file in it.
    #[error(
        "directory {path} has mode {mode:04o}: group or others may replace files in it (remove their write permission, or use a sticky directory like /tmp)"
    )]
    WritableByOthers {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

fn stat_err(path: &Path, e: &std::io::Error) -> DirError {
    DirError::Stat {
        path: path.to_path_buf(),
        reason: io_reason(e),
    }
}

/// Create the runtime directory (mode 0700) when it is missing; an
/// existing one must be ours and private (see the module docs).
pub fn ensure_runtime_dir(path: &Path) -> Result<(), DirError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
            {
                Ok(()) => {}
                // Created by a daemon starting at the same time: checked below.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(DirError::Create {
                        path: path.to_path_buf(),
                        reason: io_reason(&e),
                    });
                }
            }
        }
        Err(e) => return Err(stat_err(path, &e)),
    }
    check_private_dir(path)
}

/// `path` is a real directory (not a symlink), owned by us, with no
/// group/other permission bits.
pub fn check_private_dir(path: &Path) -> Result<(), DirError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| stat_err(path, &e))?;
    if !meta.file_type().is_dir() {
        return Err(DirError::NotADirectory {
            path: path.to_path_buf(),
            symlink: meta.file_type().is_symlink(),
        });
    }
    let me = euid().map_err(|e| stat_err(Path::new("/proc/self"), &e))?;
    if meta.uid() != me {
        return Err(DirError::ForeignOwner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(DirError::NotPrivate {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// The directory a configured socket or secret file lives in: owned by us
/// or root, and not writable by group/other unless sticky. An empty path
/// (a bare file name) means the current directory.
pub fn check_parent_dir(file: &Path) -> Result<(), DirError> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let meta = std::fs::metadata(dir).map_err(|e| stat_err(dir, &e))?;
    if !meta.is_dir() {
        return Err(DirError::NotADirectory {
            path: dir.to_path_buf(),
            symlink: false,
        });
    }
    let me = euid().map_err(|e| stat_err(Path::new("/proc/self"), &e))?;
    if meta.uid() != me && meta.uid() != 0 {
        return Err(DirError::ForeignOwner {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky {
        return Err(DirError::WritableByOthers {
            path: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sb-paths-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn runtime_dir_is_created_private_and_reused() {
        let base = scratch("create");
        let dir = base.join("a/b");
        ensure_runtime_dir(&dir).expect("created");
        let mode = std::fs::metadata(&dir).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        ensure_runtime_dir(&dir).expect("reused");
        let _ = std::fs::remove_dir_all(base);
    }

    #[test]
    fn an_open_runtime_dir_is_refused() {
        let base = scratch("open");
        let dir = base.join("rt");
        std::fs::create_dir(&dir).expect("mkdir");
        chmod(&dir, 0o777);
        let e = ensure_runtime_dir(&dir).expect_err("0777 refused");
        assert!(matches!(e, DirError::NotPrivate { mode: 0o777, .. }), "{e}");
        assert!(e.to_string().contains("chmod 700"), "{e}");
        chmod(&dir, 0o750);
        assert!(ensure_runtime_dir(&dir).is_err(), "group bits refused too");
        let _ = std::fs::remove_dir_all(base);
    }

    #[test]
    fn a_symlinked_runtime_dir_is_refused() {
        let base = scratch("link");
        let real = base.join("real");
        ensure_runtime_dir(&real).expect("real");
        let link = base.join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let e = ensure_runtime_dir(&link).expect_err("symlink refused");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let _ = std::fs::remove_dir_all(base);
    }

    #[test]
    fn parent_dirs_writable_by_others_need_the_sticky_bit() {
        let base = scratch("parent");
        let sock = base.join("x.sock");
        chmod(&base, 0o755);
        check_parent_dir(&sock).expect("0755 is fine");
        chmod(&base, 0o777);
        let e = check_parent_dir(&sock).expect_err("0777 refused");
        assert!(matches!(e, DirError::WritableByOthers { .. }), "{e}");
        chmod(&base, 0o1777);
        check_parent_dir(&sock).expect("sticky is fine");
        chmod(&base, 0o755);
        let _ = std::fs::remove_dir_all(base);
    }
}
