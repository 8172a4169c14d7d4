//! The `swrtp` binary as an operator runs it: config checking, start-up
//! errors, serving, and graceful shutdown on SIGTERM.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use switchboard_proto::media::v1 as pb;
use switchboard_proto::media::v1::media_service_client::MediaServiceClient;

const BIN: &str = env!("CARGO_BIN_EXE_swrtp");

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata")
        .join(rel)
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("swrtp-proc-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn check_config_accepts_the_example() {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(testdata("config/swrtp-example.yaml"))
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.trim_end().ends_with("swrtp-example.yaml: ok"),
        "{stdout}"
    );
}

#[test]
fn check_config_refuses_bad_files_with_exit_2_and_a_location() {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(testdata("config/bad-swrtp-unknown-key.yaml"))
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad-swrtp-unknown-key.yaml:3:1:"),
        "{stderr}"
    );
    assert!(stderr.contains("rtp_port"), "{stderr}");

    let out = Command::new(BIN)
        .arg("--config")
        .arg(testdata("config/bad-swrtp-odd-ports.yaml"))
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("even"));

    let out = Command::new(BIN)
        .args(["--rtp-ports", "9-3", "--check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "flags are validated too");
}

#[test]
fn listen_port_in_use_is_one_clear_line_and_a_failure() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let dir = tmpdir("inuse");
    let out = Command::new(BIN)
        .args(["--listen", &format!("tcp://127.0.0.1:{port}")])
        .arg("--admin")
        .arg(format!("unix://{}", dir.join("a.sock").display()))
        .args(["--rtp-ports", "7720-7729", "--log-level", "error"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("address already in use"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn serves_and_stops_cleanly_on_sigterm() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let runtime = tmpdir("xdg");
    let mut child = tokio::process::Command::new(BIN)
        .args(["--listen", &format!("tcp://127.0.0.1:{port}")])
        .args(["--rtp-ports", "7730-7739", "--node-id", "proc-node"])
        .arg("--audio-dir")
        .arg(testdata("audio"))
        .env("XDG_RUNTIME_DIR", &runtime)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let mut channel = None;
    for _ in 0..200 {
        if let Ok(c) = tonic::transport::Endpoint::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
        {
            channel = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let channel = channel.expect("swrtp came up");
    // The default media token: created 0600 next to the admin socket.
    let token_file = runtime.join("switchboard/media.token");
    let token_mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(token_mode & 0o777, 0o600);
    let token = switchboard_proto::support::secret::load_token(&token_file).unwrap();
    let mut client = MediaServiceClient::with_interceptor(
        channel,
        switchboard_proto::support::grpc::BearerToken::new(&token),
    );
    let h = client
        .health(pb::HealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.node_id, "proc-node");
    assert_eq!(h.total_port_pairs, 5);

    // The default admin socket lives in $XDG_RUNTIME_DIR/switchboard (0700).
    let sock = runtime.join("switchboard/swrtp.sock");
    assert!(sock.exists(), "admin socket at {}", sock.display());
    let mode = std::fs::metadata(runtime.join("switchboard"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);

    // A session with a looping playback must not hold shutdown up.
    let peer = common::Peer::new().await;
    let created = client
        .create_session(pb::CreateSessionRequest {
            call_id: "p".into(),
            leg: "a".into(),
            negotiation: Some(pb::create_session_request::Negotiation::RemoteOfferSdp(
                common::offer_sdp(peer.sdp_port, "0", ""),
            )),
            peer: None,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = client
        .play(pb::PlayRequest {
            session_id: created.session_id,
            file: "beep-440.wav".into(),
            r#loop: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(peer.recv().await.is_some());

    let pid = child.id().unwrap();
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(common::WAIT, child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(!sock.exists(), "admin socket removed");
    let mut last = None;
    while let Ok(Some(e)) = events.message().await {
        last = e.event;
    }
    assert!(
        matches!(last, Some(pb::play_event::Event::Stopped(ref s)) if s.reason == "session destroyed"),
        "{last:?}"
    );
    // Every RTP port is free again.
    for p in (7730..7739).step_by(2) {
        std::net::UdpSocket::bind(("127.0.0.1", p)).expect("port freed");
    }
}
