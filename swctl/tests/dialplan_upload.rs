//! `swctl dialplan check` and `reload --path` as an operator uses them
//! (issue #16): check must judge a plan the way a reload on that swbd would
//! (its gateways, its audio directory), and a relative `--path` means the
//! file in the operator's current directory, not one in swbd's.
#![allow(clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use std::process::{Command, Stdio};

use common::{Daemon, free_port, tempdir, wait_for_socket};

/// swbd whose config has a gateway `carrier-x` and an audio directory with
/// `hello.wav` only.
fn start(dir: &std::path::Path, node_id: &str) -> (Daemon, String) {
    let audio = dir.join("audio");
    std::fs::create_dir_all(&audio).expect("audio dir");
    // Any bytes will do: the plan check only looks for the file.
    std::fs::write(audio.join("hello.wav"), b"RIFF").expect("wav");
    // The embedded default plan plays this one.
    std::fs::write(audio.join("tone-1khz-2s.wav"), b"RIFF").expect("wav");
    let cfg = dir.join("swbd.yaml");
    std::fs::write(
        &cfg,
        format!(
            "auth: {{ enabled: false }}\ndialplan: {{ audio_dir: {} }}\ngateways:\n  - name: carrier-x\n    addresses: [\"127.0.0.1:5999\"]\n    transport: udp\n",
            audio.display()
        ),
    )
    .expect("config");
    let sock = dir.join("swbd.sock");
    let d = Daemon::start(
        "swbd",
        &[
            "--config",
            cfg.to_str().expect("utf-8"),
            "--listen",
            &format!("udp:127.0.0.1:{}", free_port()),
            "--admin-socket",
            sock.to_str().expect("utf-8"),
            "--node-id",
            node_id,
        ],
    );
    wait_for_socket(&sock);
    (d, format!("unix://{}", sock.display()))
}

fn plan(gateway: &str, wav: &str) -> String {
    format!(
        "version: 1\nroutes:\n  - id: out\n    match: {{ destination: \"9.\" }}\n    actions:\n      - playback: {{ file: {wav} }}\n      - dial: {{ target: gateway/{gateway}, timeout: 30s }}\n"
    )
}

fn swctl_in(cwd: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_swctl"))
        .args(args)
        .current_dir(cwd)
        .env_remove("SWCTL_HOST")
        .env_remove("SWCTL_CONTEXT")
        .env("XDG_RUNTIME_DIR", cwd.join("no-runtime"))
        .env("XDG_CONFIG_HOME", cwd.join("no-config"))
        .stdin(Stdio::null())
        .output()
        .expect("run swctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_uses_the_daemons_gateways_and_audio_directory() {
    let dir = tempdir("check-remote");
    let (_swbd, host) = start(&dir, "pbx-check");
    let work = dir.join("work");
    std::fs::create_dir_all(&work).expect("work dir");

    // Valid on this swbd: its gateway, its prompt.
    std::fs::write(work.join("good.yaml"), plan("carrier-x", "hello.wav")).expect("write");
    let (code, out, err) = swctl_in(&work, &["--host", &host, "dialplan", "check", "good.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("valid (checked by swbd"), "{out}");

    // A prompt missing from swbd's audio directory: what a reload refuses.
    std::fs::write(work.join("nowav.yaml"), plan("carrier-x", "missing.wav")).expect("write");
    let (code, out, err) = swctl_in(&work, &["--host", &host, "dialplan", "check", "nowav.yaml"]);
    assert_eq!(code, 4, "{out}{err}");
    assert!(err.contains("nowav.yaml:6:"), "FILE:LINE:COLUMN: {err}");
    assert!(err.contains("missing.wav"), "{err}");

    // A gateway this swbd does not have.
    std::fs::write(work.join("nogw.yaml"), plan("carrier-z", "hello.wav")).expect("write");
    let (code, _, err) = swctl_in(&work, &["--host", &host, "dialplan", "check", "nogw.yaml"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("nogw.yaml:7:"), "{err}");

    // Checking changed nothing on the daemon.
    let (code, out, _) = swctl_in(&work, &["--host", &host, "dialplan", "show", "-o", "json"]);
    assert_eq!(code, 0);
    assert!(
        !out.contains("carrier-z") && !out.contains("missing.wav"),
        "{out}"
    );
}

#[test]
fn reload_with_a_relative_path_sends_the_operators_file() {
    let dir = tempdir("reload-relative");
    let (_swbd, host) = start(&dir, "pbx-reload");
    let work = dir.join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    std::fs::write(work.join("new.yaml"), plan("carrier-x", "hello.wav")).expect("write");

    let (code, out, err) = swctl_in(
        &work,
        &["--host", &host, "dialplan", "reload", "--path", "new.yaml"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("in force"), "{out}");
    let (_, shown, _) = swctl_in(&work, &["--host", &host, "dialplan", "show", "-o", "json"]);
    assert!(
        shown.contains("carrier-x"),
        "the uploaded plan is in force: {shown}"
    );
    assert!(
        shown.contains("new.yaml"),
        "its source names the file: {shown}"
    );

    // A relative path that is not here is an error here, not a guess on swbd.
    let (code, _, err) = swctl_in(
        &work,
        &[
            "--host",
            &host,
            "dialplan",
            "reload",
            "--path",
            "absent.yaml",
        ],
    );
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("absent.yaml: no such file here"), "{err}");
}
