//! The admin socket is the security boundary on a box: mode 0660, so a user
//! who is neither root nor in the socket's group is refused by the kernel,
//! and swctl says so with exit code 3.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, bin};

#[test]
fn a_non_admin_user_is_refused_on_the_socket() {
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if !is_root || Command::new("setpriv").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "a real peer this test needs is missing; in CI that is a failure (scripts/test.sh installs it)"
        );
        eprintln!("SKIP: needs root and setpriv to run swctl as another user");
        return;
    }
    let dir = std::env::temp_dir().join(format!("swctl-perm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp");
    // The directory is open to everyone: only the socket's mode protects it.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let sock = dir.join("swbd.sock");
    let cfg = dir.join("swbd.yaml");
    std::fs::write(&cfg, "auth: { enabled: false }\n").expect("config");
    let _swbd = Daemon::start(
        "swbd",
        &[
            "--config",
            cfg.to_str().expect("utf-8"),
            "--listen",
            "udp:127.0.0.1:0",
            "--admin-socket",
            sock.to_str().expect("utf-8"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "swbd socket never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A copy of swctl that `nobody` may execute.
    let swctl = dir.join("swctl");
    std::fs::copy(bin("swctl"), &swctl).expect("copy swctl");
    std::fs::set_permissions(&swctl, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let host = format!("unix://{}", sock.display());

    let as_root = Command::new(&swctl)
        .args(["--host", &host, "status"])
        .output()
        .expect("run swctl");
    assert!(
        as_root.status.success(),
        "{}",
        String::from_utf8_lossy(&as_root.stderr)
    );

    let as_nobody = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&swctl)
        .args(["--host", &host, "status"])
        .env("HOME", &dir)
        .output()
        .expect("run swctl as nobody");
    let err = String::from_utf8_lossy(&as_nobody.stderr);
    assert_eq!(as_nobody.status.code(), Some(3), "{err}");
    assert!(err.contains("permission denied"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
