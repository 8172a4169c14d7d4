//! swctl against a swbd whose admin listens on TCP: every local user can
//! reach the port, so the token is what keeps them out. swctl sends it from
//! `--token-file`, `$SWCTL_TOKEN_FILE`, `$SWCTL_TOKEN` or a context's
//! `token_file`; without it the refusal says which option to use. The
//! default local sockets are trusted only in a runtime directory that is
//! ours and private.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{Daemon, free_port, swctl, swctl_env, tempdir};

#[test]
fn tcp_admin_needs_the_token_and_swctl_sends_it() {
    let dir = tempdir("admin-token");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let port = free_port();
    let cfg = dir.join("swbd.yaml");
    std::fs::write(
        &cfg,
        format!(
            "auth: {{ enabled: false }}\nadmin: {{ socket: null, tcp: \"127.0.0.1:{port}\", token_file: admin.token }}\n\
             media: {{ token_file: media.token, nodes: [{{ name: rtp-a, address: \"tcp://127.0.0.1:1\" }}] }}\n"
        ),
    )
    .expect("config");
    let _swbd = Daemon::start(
        "swbd",
        &[
            "--config",
            cfg.to_str().expect("utf-8"),
            "--listen",
            &format!("udp:127.0.0.1:{}", free_port()),
            "--node-id",
            "tokened",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "swbd TCP admin never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let host = format!("tcp://127.0.0.1:{port}");
    let token_file = dir.join("admin.token");
    let token_path = token_file.to_str().expect("utf-8");
    let token = std::fs::read_to_string(&token_file).expect("swbd created the token file");
    let token = token.trim();

    // No token: the daemon refuses (exit 1) and swctl says what to give.
    let (code, _, err) = swctl(&["--host", &host, "status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("requires a bearer token"), "{err}");
    assert!(err.contains("--token-file"), "{err}");

    // A wrong token is refused too.
    let (code, _, err) = swctl_env(&["--host", &host, "status"], &[("SWCTL_TOKEN", "guess")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("wrong bearer token"), "{err}");

    // Each way of giving the token works.
    for (args, env) in [
        (vec!["--token-file", token_path], vec![]),
        (vec![], vec![("SWCTL_TOKEN_FILE", token_path)]),
        (vec![], vec![("SWCTL_TOKEN", token)]),
    ] {
        let mut argv = vec!["--host", host.as_str(), "-o", "json"];
        argv.extend(args.iter().copied());
        argv.push("status");
        let (code, out, err) = swctl_env(&argv, &env);
        assert_eq!(code, 0, "{args:?} {env:?}: {err}");
        assert!(out.contains("tokened"), "{out}");
    }

    // A context naming the token file (relative to the config file).
    let swctl_cfg = dir.join("swctl.yaml");
    std::fs::write(
        &swctl_cfg,
        format!("contexts:\n  lab:\n    swbd: [\"{host}\"]\n    token_file: admin.token\n"),
    )
    .expect("swctl config");
    let (code, out, err) = swctl(&[
        "--config",
        swctl_cfg.to_str().expect("utf-8"),
        "--context",
        "lab",
        "-o",
        "json",
        "status",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tokened"), "{out}");

    // A token file that cannot be read is a local file problem (exit 4).
    let (code, _, err) = swctl(&["--host", &host, "--token-file", "/nonexistent/t", "status"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("/nonexistent/t"), "{err}");
}

#[test]
fn default_sockets_in_an_open_runtime_dir_are_not_used() {
    let dir = tempdir("open-runtime");
    let runtime = dir.join("xdg/switchboard");
    std::fs::create_dir_all(&runtime).expect("mkdir");
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let xdg = dir.join("xdg");
    let env = [
        ("XDG_RUNTIME_DIR", xdg.to_str().expect("utf-8")),
        ("XDG_CONFIG_HOME", dir.to_str().expect("utf-8")),
    ];
    let (code, _, err) = swctl_env(&["status"], &env);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("has mode 0777"), "{err}");
    let (code, _, err) = swctl_env(&["dial-stdio"], &env);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("has mode 0777"), "{err}");
}
