//! `swctl top` in a real pseudo-terminal (util-linux `script`) against a real
//! swbd: it draws in the alternate screen, quits on `q` with exit 0 and
//! leaves the alternate screen (terminal restored), and with `NO_COLOR` set
//! it writes no colour escape sequences. Skipped when `script` is missing.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{start_swbd, tempdir};

fn run_top(host: &str, no_color: bool) -> (i32, String) {
    let cmd = format!(
        "stty cols 80 rows 24; exec {} top --host {host}",
        env!("CARGO_BIN_EXE_swctl")
    );
    let mut c = Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"])
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if no_color {
        c.env("NO_COLOR", "1");
    }
    let mut child = c.spawn().expect("script");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    // Let it connect and draw a few frames, then quit.
    std::thread::sleep(Duration::from_millis(2500));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"q").expect("send q");
    stdin.flush().expect("flush");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "swctl top did not quit on q");
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(stdin);
    let out = reader.join().expect("reader");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out).into_owned(),
    )
}

#[test]
fn top_draws_quits_and_restores_the_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "a real peer this test needs is missing; in CI that is a failure (scripts/test.sh installs it)"
        );
        eprintln!("SKIP: util-linux `script` not installed");
        return;
    }
    let dir = tempdir("top-pty");
    let sock = dir.join("swbd.sock");
    let _swbd = start_swbd(&dir, &sock, "pbx-top");
    let host = format!("unix://{}", sock.display());

    let (code, out) = run_top(&host, false);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("\u{1b}[?1049h"),
        "entered the alternate screen"
    );
    assert!(out.contains("\u{1b}[?1049l"), "left the alternate screen");
    assert!(out.contains("pbx-top"), "header shows the swbd node");
    assert!(out.contains("q quit"));

    let (code, out) = run_top(&host, true);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("pbx-top"));
    for sgr in [
        "\u{1b}[31m",
        "\u{1b}[32m",
        "\u{1b}[33m",
        "\u{1b}[38;5;",
        "\u{1b}[90m",
    ] {
        assert!(!out.contains(sgr), "colour {sgr:?} with NO_COLOR");
    }
}

/// `swctl top` with stdin and stdout not a terminal (a pipe, cron, CI)
/// used to panic inside ratatui ("failed to initialize terminal"); it must
/// say what it needs and exit with the usage code instead.
#[test]
fn top_without_a_terminal_says_so_instead_of_panicking() {
    let dir = tempdir("top-notty");
    let sock = dir.join("swbd.sock");
    let _swbd = start_swbd(&dir, &sock, "pbx-notty");
    let host = format!("unix://{}", sock.display());
    let out = Command::new(env!("CARGO_BIN_EXE_swctl"))
        .args(["top", "--host", &host])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run swctl top");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("needs a terminal"), "{stderr}");
    assert_eq!(out.status.code(), Some(2), "usage exit code; {stderr}");
}
