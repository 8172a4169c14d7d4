//! `swbd --check-config` and start-up failures, run as a real process:
//! every bad input is one clear line on stderr and a non-zero exit, never a
//! panic backtrace.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn swbd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swbd"))
        .args(args)
        .current_dir(repo())
        .env("RUST_LOG", "error")
        .output()
        .expect("run swbd")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_clean_failure(o: &Output) {
    assert!(!o.status.success(), "should fail");
    let err = stderr(o);
    assert!(!err.contains("panicked"), "no panic: {err}");
    assert!(!err.contains("RUST_BACKTRACE"), "no backtrace hint: {err}");
}

#[test]
fn bad_configs_fail_with_file_line_column() {
    let cases = [
        (
            "testdata/config/bad-unknown-key.yaml",
            "testdata/config/bad-unknown-key.yaml:4:3: unknown field `lisen_backlog`, expected one of listen",
        ),
        (
            "testdata/config/bad-wrong-type.yaml",
            "testdata/config/bad-wrong-type.yaml:3:21: invalid u32",
        ),
        (
            "testdata/config/bad-syntax.yaml",
            "testdata/config/bad-syntax.yaml:4:10: ",
        ),
        (
            "testdata/config/bad-listen.yaml",
            "testdata/config/bad-listen.yaml:4:7: \"sctp:127.0.0.1:5060\" is not a listen address",
        ),
    ];
    for (file, expected) in cases {
        let o = swbd(&["--check-config", "--config", file]);
        assert_eq!(o.status.code(), Some(2), "{file}: {}", stderr(&o));
        assert_clean_failure(&o);
        let err = stderr(&o);
        assert!(
            err.starts_with(expected),
            "{file}: got {err:?}, want prefix {expected:?}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    }
}

#[test]
fn every_bad_config_fixture_is_covered() {
    let dir = repo().join("testdata/config");
    let n = std::fs::read_dir(&dir)
        .expect("testdata/config")
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("bad-") && !n.starts_with("bad-swrtp")
        })
        .count();
    assert_eq!(
        n, 4,
        "add the new bad-*.yaml fixture to bad_configs_fail_with_file_line_column"
    );
}

#[test]
fn good_example_configs_pass() {
    for file in [
        "testdata/config/swbd-example.yaml",
        "testdata/config/swbd-minimal.yaml",
    ] {
        let o = swbd(&["--check-config", "--config", file]);
        assert!(o.status.success(), "{file}: {}", stderr(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            format!("{file}: ok")
        );
    }
}

#[test]
fn cross_field_errors_are_reported_all_at_once() {
    let dir = std::env::temp_dir().join(format!("swbd-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let f = dir.join("c.yaml");
    std::fs::write(
        &f,
        "registrar: { min_expires_secs: 9000 }\nadmin: { tcp: \"0.0.0.0:7070\" }\n",
    )
    .expect("write");
    let o = swbd(&["--check-config", "--config", f.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("registrar: need min_expires_secs"), "{err}");
    assert!(
        err.contains("admin.tcp: 0.0.0.0:7070 needs admin.token_file"),
        "{err}"
    );
}

#[test]
fn unreadable_config_is_one_line() {
    let o = swbd(&["--config", "/nonexistent/swbd.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert_clean_failure(&o);
    assert_eq!(
        stderr(&o).trim(),
        "/nonexistent/swbd.yaml: cannot read: no such file or directory"
    );
}

#[test]
fn admin_socket_in_missing_directory_is_one_line() {
    let o = swbd(&[
        "--listen",
        "udp:127.0.0.1:0",
        "--admin-socket",
        "/nonexistent-dir/swbd.sock",
    ]);
    assert_clean_failure(&o);
    let err = stderr(&o);
    assert!(
        err.contains("cannot listen on unix:///nonexistent-dir/swbd.sock: directory /nonexistent-dir does not exist"),
        "{err}"
    );
}

#[test]
fn admin_port_in_use_is_one_line() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port();
    let dir = std::env::temp_dir().join(format!("swbd-port-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let f = dir.join("c.yaml");
    std::fs::write(
        &f,
        format!("admin: {{ socket: null, tcp: \"127.0.0.1:{port}\", token_file: admin.token }}\n"),
    )
    .expect("write");
    let o = swbd(&[
        "--config",
        f.to_str().expect("utf-8"),
        "--listen",
        "udp:127.0.0.1:0",
    ]);
    assert_clean_failure(&o);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "cannot listen on tcp://127.0.0.1:{port}: address already in use"
        )),
        "{err}"
    );
}

#[test]
fn check_config_also_checks_the_dialplan_and_users_file() {
    let dir = std::env::temp_dir().join(format!("swbd-cfg-deps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let plan = repo().join("testdata/dialplans/bad-regex.yaml");
    let f = dir.join("c.yaml");
    std::fs::write(
        &f,
        format!(
            "dialplan: {{ file: \"{}\" }}\nauth: {{ users_file: missing-users.yaml }}\n",
            plan.display()
        ),
    )
    .expect("write");
    let o = swbd(&["--check-config", "--config", f.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("missing-users.yaml: cannot read"), "{err}");
    assert!(err.contains("bad-regex.yaml:5:26: bad regex"), "{err}");
}

#[test]
fn check_dialplan_reports_every_error_with_positions() {
    let o = swbd(&["--check-dialplan", "testdata/dialplans/bad-many.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.lines().count() >= 2,
        "all errors, not just the first: {err}"
    );
    for line in err.lines() {
        assert!(
            line.starts_with("testdata/dialplans/bad-many.yaml:"),
            "located: {line}"
        );
    }
    let o = swbd(&["--check-dialplan", "dialplans/default.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn sip_port_in_use_is_one_line() {
    let held = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port();
    let sock = std::env::temp_dir().join(format!("swbd-sip-in-use-{}.sock", std::process::id()));
    let o = swbd(&[
        "--listen",
        &format!("udp:127.0.0.1:{port}"),
        "--admin-socket",
        sock.to_str().expect("utf-8"),
    ]);
    assert_clean_failure(&o);
    assert_eq!(
        stderr(&o).trim(),
        format!("swbd: cannot listen on udp:127.0.0.1:{port}: address already in use")
    );
}

#[test]
fn stale_admin_socket_is_replaced_and_a_live_one_refused() {
    use std::process::Stdio;
    let dir = std::env::temp_dir().join(format!("swbd-sock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let sock = dir.join("swbd.sock");
    // A stale socket file: bound, then its owner gone.
    drop(std::os::unix::net::UnixListener::bind(&sock).expect("bind stale"));
    assert!(sock.exists());
    let mut first = Command::new(env!("CARGO_BIN_EXE_swbd"))
        .args([
            "--listen",
            "udp:127.0.0.1:0",
            "--admin-socket",
            sock.to_str().expect("utf-8"),
        ])
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "first swbd never served its socket"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sock).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "admin socket is 0660");

    let second = swbd(&[
        "--listen",
        "udp:127.0.0.1:0",
        "--admin-socket",
        sock.to_str().expect("utf-8"),
    ]);
    assert_clean_failure(&second);
    assert!(
        stderr(&second).contains("another process is serving this socket"),
        "{}",
        stderr(&second)
    );
    let _ = first.kill();
    let _ = first.wait();
}

/// `worker_threads` (config) and `--worker-threads` (CLI, wins) size the
/// runtime: several swbd on one box each take the cores they are given.
#[test]
fn worker_threads_size_the_runtime() {
    use std::process::Stdio;
    let dir = std::env::temp_dir().join(format!("swbd-threads-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let config = dir.join("swbd.yaml");
    std::fs::write(&config, "worker_threads: 3\nmetrics:\n  enabled: false\n").expect("config");
    for (cli, expected) in [(None, 3), (Some("1"), 1)] {
        let sock = dir.join(format!("swbd-{expected}.sock"));
        let mut args = vec![
            "--config".to_string(),
            config.display().to_string(),
            "--listen".into(),
            "udp:127.0.0.1:0".into(),
            "--admin-socket".into(),
            sock.display().to_string(),
        ];
        if let Some(n) = cli {
            args.extend(["--worker-threads".to_string(), n.to_string()]);
        }
        // The start-up line reads the count from the running runtime
        // (tokio's RuntimeMetrics), not from the config.
        let mut child = Command::new(env!("CARGO_BIN_EXE_swbd"))
            .args(&args)
            .args(["--log-level", "info"])
            .env_remove("RUST_LOG")
            .env_remove("TOKIO_WORKER_THREADS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&sock).is_err()
            && std::time::Instant::now() < deadline
            && child.try_wait().ok().flatten().is_none()
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait");
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let line = log
            .lines()
            .find(|l| l.contains(" runtime") && l.contains("worker_threads="))
            .unwrap_or_else(|| panic!("no runtime line with {args:?}: {log}"));
        assert!(
            line.contains(&format!("worker_threads={expected} "))
                && line.contains(&format!("udp_workers={expected}")),
            "{line}"
        );
    }
    let big = dir.join("big.yaml");
    std::fs::write(&big, "worker_threads: 100000\n").expect("config");
    let o = swbd(&["--check-config", "--config", big.to_str().expect("utf-8")]);
    assert_clean_failure(&o);
    assert!(
        stderr(&o).contains("worker_threads: 100000 is more than 256"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
