//! Helpers shared by swctl's black-box tests: find the workspace binaries and
//! run daemons as real processes that die with the test.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>/NAME` next to this test binary.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A free TCP port on loopback (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A daemon process killed on drop.
pub struct Daemon {
    pub child: Child,
    pub name: String,
}

impl Daemon {
    pub fn start(name: &str, args: &[&str]) -> Daemon {
        let child = Command::new(bin(name))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Daemon {
            child,
            name: name.to_string(),
        }
    }

    /// Send SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop on SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `f` until it returns `Some`, or panic after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh temporary directory for one test.
pub fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "swctl-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("tempdir");
    dir
}

/// Start swbd with auth off, SIP on a free loopback port and its admin socket
/// at `socket`; returns once the socket accepts connections.
pub fn start_swbd(dir: &Path, socket: &Path, node_id: &str) -> Daemon {
    let cfg = dir.join(format!("{node_id}.yaml"));
    std::fs::write(&cfg, "auth: { enabled: false }\n").expect("write config");
    let d = Daemon::start(
        "swbd",
        &[
            "--config",
            cfg.to_str().expect("utf-8 path"),
            "--listen",
            &format!("udp:127.0.0.1:{}", free_port()),
            "--admin-socket",
            socket.to_str().expect("utf-8 path"),
            "--node-id",
            node_id,
        ],
    );
    wait_for_socket(socket);
    d
}

/// Wait until a unix socket accepts connections (20 s).
pub fn wait_for_socket(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "{} never came up",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run the swctl binary; returns (exit code, stdout, stderr).
pub fn swctl(args: &[&str]) -> (i32, String, String) {
    swctl_env(args, &[])
}

/// Run the swctl binary with extra environment.
pub fn swctl_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_swctl"))
        .args(args)
        .env_remove("SWCTL_HOST")
        .env_remove("SWCTL_CONTEXT")
        .env_remove("SWCTL_CONFIG")
        .env_remove("SWCTL_SSH")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run swctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
