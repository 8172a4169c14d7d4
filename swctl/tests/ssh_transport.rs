//! `ssh://` against a real OpenSSH server started by the test on a loopback
//! port, with throwaway host and user keys: swctl runs `ssh ... swctl
//! dial-stdio --socket PATH` and speaks gRPC over the pipe to a real swbd.
//! Skipped (with a message) when `/usr/sbin/sshd` is not installed
//! (Debian package `openssh-server`).
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, free_port, start_swbd, swctl, tempdir};

const SSHD: &str = "/usr/sbin/sshd";

struct Sshd {
    child: std::process::Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "swctl-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
}

fn start_sshd(dir: &Path) -> Sshd {
    // Privilege separation directory sshd insists on.
    let _ = std::fs::create_dir_all("/run/sshd");
    keygen(&dir.join("host_key"));
    keygen(&dir.join("user_key"));
    keygen(&dir.join("wrong_key"));
    std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).expect("authorized_keys");
    let port = free_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress 127.0.0.1\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
             PermitRootLogin yes\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nLogLevel ERROR\n",
            d = dir.display()
        ),
    )
    .expect("sshd_config");
    let child = Command::new(SSHD)
        .args(["-D", "-e", "-p", &port.to_string(), "-f"])
        .arg(&config)
        .arg("-h")
        .arg(dir.join("host_key"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start sshd");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Sshd {
        child,
        port,
        dir: dir.to_path_buf(),
    }
}

fn ssh_command(sshd: &Sshd, key: &str) -> String {
    format!(
        "ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR -o IdentitiesOnly=yes -i {}",
        sshd.dir.join(key).display()
    )
}

fn have_sshd() -> bool {
    if Path::new(SSHD).exists() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "a real peer this test needs is missing; in CI that is a failure (scripts/test.sh installs it)"
    );
    eprintln!("SKIP: {SSHD} not installed (apt-get install openssh-server)");
    false
}

#[test]
fn status_over_ssh_against_a_real_sshd() {
    if !have_sshd() {
        return;
    }
    let dir = tempdir("ssh");
    let sock = dir.join("swbd.sock");
    let _swbd: Daemon = start_swbd(&dir, &sock, "pbx-over-ssh");
    let sshd = start_sshd(&dir);
    let remote_swctl = env!("CARGO_BIN_EXE_swctl");
    let host = format!("ssh://root@127.0.0.1:{}{}", sshd.port, sock.display());

    let (code, out, err) = swctl(&[
        "--ssh-command",
        &ssh_command(&sshd, "user_key"),
        "--remote-swctl",
        remote_swctl,
        "--host",
        &host,
        "status",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v[0]["daemon"], "swbd");
    assert_eq!(v[0]["node_id"], "pbx-over-ssh");
    assert_eq!(v[0]["host"], "127.0.0.1");

    // SWCTL_SSH works like --ssh-command.
    let (code, out, err) = common::swctl_env(
        &["--remote-swctl", remote_swctl, "--host", &host, "status"],
        &[("SWCTL_SSH", &ssh_command(&sshd, "user_key"))],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pbx-over-ssh"), "{out}");
}

#[test]
fn wrong_key_fails_with_sshs_own_message() {
    if !have_sshd() {
        return;
    }
    let dir = tempdir("ssh-wrong");
    let sshd = start_sshd(&dir);
    let (code, _, err) = swctl(&[
        "--ssh-command",
        &ssh_command(&sshd, "wrong_key"),
        "--host",
        &format!("ssh://root@127.0.0.1:{}", sshd.port),
        "status",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("Permission denied (publickey"), "{err}");
    assert!(err.contains("cannot reach"), "{err}");
}

#[test]
fn remote_side_errors_come_back_verbatim() {
    if !have_sshd() {
        return;
    }
    let dir = tempdir("ssh-remote");
    let sshd = start_sshd(&dir);
    // Good key, but no daemon behind the remote socket.
    let (code, _, err) = swctl(&[
        "--ssh-command",
        &ssh_command(&sshd, "user_key"),
        "--remote-swctl",
        env!("CARGO_BIN_EXE_swctl"),
        "--host",
        &format!(
            "ssh://root@127.0.0.1:{}{}/none.sock",
            sshd.port,
            dir.display()
        ),
        "status",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("none.sock") && err.contains("no such file"),
        "{err}"
    );
    // No swctl on the remote PATH.
    let (code, _, err) = swctl(&[
        "--ssh-command",
        &ssh_command(&sshd, "user_key"),
        "--remote-swctl",
        "/nonexistent/swctl",
        "--host",
        &format!("ssh://root@127.0.0.1:{}", sshd.port),
        "status",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("/nonexistent/swctl"), "{err}");
}

#[test]
fn calls_list_over_ssh() {
    if !have_sshd() {
        return;
    }
    let dir = tempdir("ssh-calls");
    let plan = common::hold_dialplan(&dir, "5s");
    let pbx = common::start_pbx(&dir, &plan);
    let sshd = start_sshd(&dir);
    let _phone = common::place_call(pbx.sip_port, "7777");
    let (code, out, err) = swctl(&[
        "--ssh-command",
        &ssh_command(&sshd, "user_key"),
        "--remote-swctl",
        env!("CARGO_BIN_EXE_swctl"),
        "--host",
        &format!(
            "ssh://root@127.0.0.1:{}{}",
            sshd.port,
            pbx.swbd_socket.display()
        ),
        "calls",
        "list",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v[0]["caller"], "4321", "{out}");
}

#[test]
fn calls_history_over_ssh() {
    if !have_sshd() {
        return;
    }
    let dir = tempdir("ssh-history");
    let plan = common::hold_dialplan(&dir, "200ms");
    let pbx = common::start_pbx(&dir, &plan);
    let sshd = start_sshd(&dir);
    let _phone = common::place_call(pbx.sip_port, "7777");
    let host = format!(
        "ssh://root@127.0.0.1:{}{}",
        sshd.port,
        pbx.swbd_socket.display()
    );
    let ssh = ssh_command(&sshd, "user_key");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, out, err) = swctl(&[
            "--ssh-command",
            &ssh,
            "--remote-swctl",
            env!("CARGO_BIN_EXE_swctl"),
            "--host",
            &host,
            "calls",
            "history",
            "-o",
            "json",
        ]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        if v[0]["destination"] == "7777" {
            assert_eq!(v[0]["caller"], "4321", "{out}");
            assert_eq!(v[0]["status"], "answered", "{out}");
            break;
        }
        assert!(Instant::now() < deadline, "no record over ssh: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
