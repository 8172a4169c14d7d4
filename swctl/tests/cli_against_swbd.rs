//! The swctl binary against a real swbd process: `status` in every output
//! format, contexts, several backends, and errors that say what to do.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod common;

use common::{start_swbd, swctl, tempdir};

#[test]
fn status_in_every_format_against_a_running_swbd() {
    let dir = tempdir("status");
    let sock = dir.join("swbd.sock");
    let _swbd = start_swbd(&dir, &sock, "pbx-test");
    let host = format!("unix://{}", sock.display());

    let (code, out, err) = swctl(&["--host", &host, "status"]);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    assert!(lines.next().is_some_and(|h| h.starts_with("HOST")), "{out}");
    let row = lines.next().expect("one row");
    assert!(row.contains("swbd") && row.contains("pbx-test"), "{out}");
    assert!(out.lines().all(|l| l.chars().count() <= 80), "{out}");

    let (code, out, err) = swctl(&["--host", &host, "status", "-o", "wide"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pbx-test"), "{out}");

    let (code, out, err) = swctl(&["--host", &host, "-o", "json", "status"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v[0]["daemon"], "swbd");
    assert_eq!(v[0]["node_id"], "pbx-test");
    assert!(v[0]["uptime_secs"].is_i64());
    assert_eq!(v[0]["active"], 0);

    let (code, out, err) = swctl(&["--host", &host, "-o", "yaml", "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("node_id: pbx-test"), "{out}");
    assert!(out.contains("daemon: swbd"), "{out}");
}

#[test]
fn several_backends_and_contexts() {
    let dir = tempdir("ctx");
    let a = dir.join("a").join("swbd.sock");
    let b = dir.join("b").join("swbd.sock");
    std::fs::create_dir_all(a.parent().expect("dir")).expect("mkdir");
    std::fs::create_dir_all(b.parent().expect("dir")).expect("mkdir");
    let _a = start_swbd(&dir, &a, "pbx-a");
    let _b = start_swbd(&dir, &b, "pbx-b");

    // Repeated --host: one row each, labelled.
    let (code, out, err) = swctl(&[
        "-H",
        &format!("unix://{}", a.display()),
        "-H",
        &format!("unix://{}", b.display()),
        "status",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v[0]["host"], "swbd");
    assert_eq!(v[0]["node_id"], "pbx-a");
    assert_eq!(v[1]["host"], "swbd#2");
    assert_eq!(v[1]["node_id"], "pbx-b");

    // The same through a named context in $XDG_CONFIG_HOME/swctl/config.yaml.
    let xdg = dir.join("xdg");
    std::fs::create_dir_all(xdg.join("swctl")).expect("mkdir");
    std::fs::write(
        xdg.join("swctl/config.yaml"),
        format!(
            "current_context: one\ncontexts:\n  one:\n    swbd: [\"unix://{}\"]\n  both:\n    swbd: [\"unix://{}\", \"unix://{}\"]\n",
            a.display(),
            a.display(),
            b.display()
        ),
    )
    .expect("write config");
    let xdg_s = xdg.to_str().expect("utf-8");
    let (code, out, err) = common::swctl_env(
        &["--context", "both", "status", "-o", "json"],
        &[("XDG_CONFIG_HOME", xdg_s)],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{out}");
    // current_context when no --context.
    let (code, out, err) =
        common::swctl_env(&["status", "-o", "json"], &[("XDG_CONFIG_HOME", xdg_s)]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v[0]["node_id"], "pbx-a");
    // An unknown context is a usage error naming the known ones.
    let (code, _, err) = common::swctl_env(
        &["--context", "nope", "status"],
        &[("XDG_CONFIG_HOME", xdg_s)],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("no context \"nope\"") && err.contains("both, one"),
        "{err}"
    );
}

#[test]
fn errors_say_what_to_do_with_documented_exit_codes() {
    let dir = tempdir("errors");
    // Unreachable: exit 3 and the hint.
    let sock = dir.join("nothing.sock");
    let (code, _, err) = swctl(&["--host", &format!("unix://{}", sock.display()), "status"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!("cannot reach daemon at unix://{}", sock.display()))
            && err.contains("no such file")
            && err.contains("see --host"),
        "{err}"
    );
    // Malformed --host: exit 2.
    for bad in [
        "pbx1",
        "tcp://nohost",
        "ssh://",
        "unix://",
        "ssh://ops@pbx1:port",
    ] {
        let (code, _, err) = swctl(&["--host", bad, "status"]);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains("invalid --host"), "{bad}: {err}");
    }
    // Unknown output format: clap usage error.
    let (code, _, _) = swctl(&["-o", "xml", "status"]);
    assert_eq!(code, 2);
    // ssh:// whose ssh fails: exit 3 with ssh's own words.
    let fake_ssh = dir.join("fake-ssh");
    std::fs::write(
        &fake_ssh,
        "#!/bin/sh\necho 'ops@pbx1: Permission denied (publickey).' >&2\nexit 255\n",
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake_ssh, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (code, _, err) = swctl(&[
        "--ssh-command",
        fake_ssh.to_str().expect("utf-8"),
        "--host",
        "ssh://ops@pbx1",
        "status",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("cannot reach daemon at ssh://ops@pbx1")
            && err.contains("Permission denied (publickey)."),
        "{err}"
    );
}

#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = swctl(&["completions", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("swctl"), "{shell}");
        assert!(out.contains("registrations"), "{shell}");
    }
    let (code, out, _) = swctl(&["man"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(".ie") || out.contains(".TH swctl"),
        "{}",
        &out[..80.min(out.len())]
    );
    assert!(
        !out.contains("dial-stdio"),
        "hidden subcommand stays hidden"
    );
}

/// Every call/registration/node/dialplan verb against swbd. Today swbd
/// answers UNIMPLEMENTED for these, which swctl must turn into exit 1 and a
/// hint, never a panic.
#[test]
fn verbs_swbd_does_not_offer_yet_fail_cleanly() {
    let dir = tempdir("verbs");
    let sock = dir.join("swbd.sock");
    let _swbd = start_swbd(&dir, &sock, "pbx-verbs");
    let host = format!("unix://{}", sock.display());
    for args in [
        vec!["calls", "list"],
        vec!["calls", "show", "abc"],
        vec!["calls", "hangup", "abc"],
        vec!["registrations", "list"],
        vec!["nodes", "list"],
        vec!["nodes", "drain", "rtp-a"],
        vec!["dialplan", "show"],
        vec!["dialplan", "reload"],
        vec!["dialplan", "test", "1002", "--from", "1001"],
    ] {
        let mut full = vec!["--host", host.as_str()];
        full.extend(&args);
        let (code, out, err) = swctl(&full);
        assert!(code == 0 || code == 1, "{args:?}: exit {code}: {err}");
        if code == 1 {
            assert!(err.starts_with("swctl: "), "{args:?}: {err}");
            assert!(!err.contains("panicked"), "{args:?}: {err}");
        } else {
            assert!(!out.is_empty(), "{args:?}");
        }
    }
}

#[test]
fn listings_against_swbd() {
    let dir = tempdir("listings");
    let sock = dir.join("swbd.sock");
    let _swbd = start_swbd(&dir, &sock, "pbx-list");
    let host = format!("unix://{}", sock.display());
    for verb in [
        ["calls", "list"],
        ["registrations", "list"],
        ["nodes", "list"],
    ] {
        for fmt in ["table", "wide", "json", "yaml"] {
            let (code, out, err) = swctl(&["--host", &host, verb[0], verb[1], "-o", fmt]);
            assert_eq!(code, 0, "{verb:?} {fmt}: {err}");
            if fmt == "json" {
                let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
                assert!(v.is_array());
            }
        }
    }
}

/// `swctl dialplan check FILE` runs the swbd next to it when no swbd
/// daemon answers.
#[test]
fn dialplan_check_uses_the_swbd_next_to_swctl() {
    let swbd = common::bin("swbd");
    let help = std::process::Command::new(&swbd)
        .arg("--help")
        .output()
        .expect("swbd --help");
    // The swbd next to swctl is built from this workspace: it has the flag.
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("--check-dialplan"),
        "{} has no --check-dialplan",
        swbd.display()
    );
    let dir = tempdir("check");
    let good = dir.join("good.yaml");
    std::fs::write(
        &good,
        "version: 1\nroutes:\n  - id: ext\n    match: { destination: \"1???\" }\n    actions:\n      - dial: { target: \"user/${destination}\", timeout: 30s }\n",
    )
    .expect("write");
    // No swbd to ask in this runtime directory: the local check runs.
    let runtime = dir.join("runtime");
    let env = [("XDG_RUNTIME_DIR", runtime.to_str().expect("utf-8"))];
    let (code, out, err) =
        common::swctl_env(&["dialplan", "check", good.to_str().expect("utf-8")], &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("valid"), "{out}");

    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\nroutes:\n  - id: ext\n    match: { destination: \"1[0-9\" }\n    actions: [answer]\n",
    )
    .expect("write");
    let (code, _, err) =
        common::swctl_env(&["dialplan", "check", bad.to_str().expect("utf-8")], &env);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains(&format!("{}:4:", bad.display())),
        "file:line:column: {err}"
    );
}
