//! The swctl binary, run against a test system's admin socket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `target/<profile>/swctl`, next to the swbd binary under test.
pub fn bin() -> PathBuf {
    let swbd = PathBuf::from(env!("CARGO_BIN_EXE_swbd"));
    let path = swbd.with_file_name("swctl");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

fn command(admin: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("-H")
        .arg(format!("unix://{}", admin.display()))
        .args(args)
        .env_remove("SWCTL_HOST")
        .env_remove("SWCTL_CONTEXT")
        .env_remove("SWCTL_CONFIG")
        .env_remove("SWCTL_TOKEN")
        .env_remove("SWCTL_TOKEN_FILE")
        .stdin(Stdio::null());
    c
}

/// Run `swctl -H unix://ADMIN ARGS...`: (exit code, stdout bytes, stderr).
pub fn run(admin: &Path, args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = command(admin, args).output().expect("run swctl");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`run`], expecting success and UTF-8 output.
pub fn ok(admin: &Path, args: &[&str]) -> String {
    let (code, out, err) = run(admin, args);
    assert_eq!(code, 0, "swctl {args:?} failed: {err}");
    String::from_utf8(out).expect("utf-8 output")
}

/// `swctl ARGS...` left running with its stdout piped (a follower).
pub fn spawn(admin: &Path, args: &[&str]) -> Child {
    command(admin, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn swctl")
}
