//! Default filesystem locations shared by daemons and swctl.

use std::path::PathBuf;

/// `$XDG_RUNTIME_DIR/switchboard`, or `/tmp/switchboard-$UID` when unset.
/// Admin sockets live here by default.
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("switchboard"),
        _ => {
            use std::os::unix::fs::MetadataExt;
            // The owner of /proc/self is our effective uid (no libc needed).
            let uid = std::fs::metadata("/proc/self")
                .map(|m| m.uid().to_string())
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

/// Create the runtime directory (mode 0700) when it is missing.
pub fn ensure_runtime_dir(path: &std::path::Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}
