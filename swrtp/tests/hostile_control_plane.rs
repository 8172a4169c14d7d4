//! swrtp against another local user (issue #13): the `swrtp` binary as a
//! real process. MediaService answers only calls carrying the media token;
//! a listener beyond loopback without an explicit token file, a token file
//! others can read, and a runtime directory that is not ours and private
//! all stop swrtp at start with a message that says what to fix (and never
//! shows the token).
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use switchboard_proto::admin::v1 as admin_pb;
use switchboard_proto::admin::v1::media_admin_client::MediaAdminClient;
use switchboard_proto::media::v1 as pb;
use switchboard_proto::media::v1::media_service_client::MediaServiceClient;
use switchboard_proto::support::grpc::BearerToken;
use switchboard_proto::support::secret::{self, Token};
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_swrtp");

/// swrtp killed on drop.
struct Swrtp(Child);

impl Drop for Swrtp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("swrtp-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn is_root() -> bool {
    switchboard_proto::support::paths::euid().unwrap() == 0
}

/// Run swrtp expecting it to refuse to start; its stderr.
fn refused(args: &[&str], env: &[(&str, &Path)]) -> String {
    let out: Output = Command::new(BIN)
        .args(args)
        .args(["--log-level", "error"])
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "swrtp started: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// Wait until `port` accepts TCP connections.
async fn channel(port: u16) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(c) = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
        {
            return c;
        }
        assert!(Instant::now() < deadline, "swrtp never listened on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn create_request() -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        call_id: "hostile".into(),
        leg: "a".into(),
        negotiation: Some(pb::create_session_request::Negotiation::RemoteOfferSdp(
            common::offer_sdp(40000, "0", ""),
        )),
        peer: None,
        ..Default::default()
    }
}

#[tokio::test]
async fn media_service_answers_only_calls_with_the_media_token() {
    let dir = tmpdir("token");
    let token_file = dir.join("media.token");
    let port = free_port();
    let _swrtp = Swrtp(
        Command::new(BIN)
            .args(["--listen", &format!("tcp://127.0.0.1:{port}")])
            .arg("--admin")
            .arg(format!("unix://{}", dir.join("a.sock").display()))
            .arg("--media-token-file")
            .arg(&token_file)
            .args(["--rtp-ports", "7900-7909", "--log-level", "error"])
            .arg("--audio-dir")
            .arg(common::audio_dir())
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let channel = channel(port).await;
    // swrtp created the token file: private, 64 hex characters.
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = secret::load_token(&token_file).unwrap();
    assert_eq!(token.as_str().len(), 64);

    // No token: every RPC, streams included, is refused.
    let mut anonymous = MediaServiceClient::new(channel.clone());
    let e = anonymous
        .create_session(create_request())
        .await
        .expect_err("no token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("requires a bearer token"), "{e:?}");
    let e = anonymous
        .health(pb::HealthRequest {})
        .await
        .expect_err("no token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let e = anonymous
        .control(tokio_stream::iter(Vec::<pb::ControlRequest>::new()))
        .await
        .expect_err("no token on the Control stream");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");

    // A wrong token (same length, one character off) is refused too.
    let mut wrong_text = token.as_str().to_string();
    let last = if wrong_text.ends_with('0') { "1" } else { "0" };
    wrong_text.replace_range(63.., last);
    let wrong = Token::new(&wrong_text).unwrap();
    let mut guesser =
        MediaServiceClient::with_interceptor(channel.clone(), BearerToken::new(&wrong));
    let e = guesser
        .create_session(create_request())
        .await
        .expect_err("wrong token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    assert!(!e.message().contains(token.as_str()), "{e:?}");

    // The right token works.
    let mut swbd = MediaServiceClient::with_interceptor(channel, BearerToken::new(&token));
    let created = swbd
        .create_session(create_request())
        .await
        .expect("the token is accepted")
        .into_inner();
    assert!(!created.session_id.is_empty());
    swbd.destroy_session(pb::DestroySessionRequest {
        session_id: created.session_id,
    })
    .await
    .expect("destroy");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_listener_beyond_loopback_needs_an_explicit_token_file() {
    let dir = tmpdir("wildcard");
    let stderr = refused(
        &[
            "--listen",
            "tcp://0.0.0.0:0",
            "--admin",
            &format!("unix://{}", dir.join("a.sock").display()),
        ],
        &[("XDG_RUNTIME_DIR", &dir)],
    );
    assert!(
        stderr.contains("listen: 0.0.0.0:0 is not loopback, so media_token_file must be set"),
        "{stderr}"
    );
    assert!(
        stderr.contains("every swbd as media.token_file"),
        "{stderr}"
    );
    assert!(!dir.join("switchboard").exists(), "refused before anything");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_token_file_others_can_read_is_refused_without_showing_it() {
    let dir = tmpdir("mode");
    let token_file = dir.join("media.token");
    std::fs::write(&token_file, "planted-s3cret-token\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let stderr = refused(
        &[
            "--listen",
            &format!("tcp://127.0.0.1:{}", free_port()),
            "--admin",
            &format!("unix://{}", dir.join("a.sock").display()),
            "--media-token-file",
            token_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(stderr.contains("mode 0644"), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    assert!(!dir.join("a.sock").exists(), "nothing served");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_open_runtime_dir_is_refused() {
    let dir = tmpdir("open-rt");
    let runtime = dir.join("switchboard");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o777)).unwrap();
    let stderr = refused(
        &["--listen", &format!("tcp://127.0.0.1:{}", free_port())],
        &[("XDG_RUNTIME_DIR", &dir)],
    );
    assert!(stderr.contains("runtime directory"), "{stderr}");
    assert!(stderr.contains("has mode 0777"), "{stderr}");
    assert!(!runtime.join("swrtp.sock").exists());
    assert!(!runtime.join("media.token").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_runtime_dir_of_another_user_is_refused() {
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "this test needs root (to chown a directory to another user)"
        );
        eprintln!("SKIP: needs root to chown a directory to another user");
        return;
    }
    let dir = tmpdir("foreign-rt");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let runtime = dir.join("switchboard");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&runtime, Some(65534), Some(65534)).unwrap();
    let stderr = refused(
        &["--listen", &format!("tcp://127.0.0.1:{}", free_port())],
        &[("XDG_RUNTIME_DIR", &dir)],
    );
    assert!(stderr.contains("owned by uid 65534"), "{stderr}");
    assert!(!runtime.join("swrtp.sock").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_tcp_admin_needs_a_token_file_and_then_the_token() {
    let dir = tmpdir("admin-tcp");
    let media = dir.join("media.token");
    let admin_port = free_port();
    let stderr = refused(
        &[
            "--listen",
            &format!("tcp://127.0.0.1:{}", free_port()),
            "--admin",
            &format!("tcp://127.0.0.1:{admin_port}"),
            "--media-token-file",
            media.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        stderr.contains(&format!(
            "admin: tcp://127.0.0.1:{admin_port} needs admin_token_file"
        )),
        "{stderr}"
    );

    let admin_token = dir.join("admin.token");
    let _swrtp = Swrtp(
        Command::new(BIN)
            .args(["--listen", &format!("tcp://127.0.0.1:{}", free_port())])
            .args(["--admin", &format!("tcp://127.0.0.1:{admin_port}")])
            .arg("--media-token-file")
            .arg(&media)
            .arg("--admin-token-file")
            .arg(&admin_token)
            .args(["--rtp-ports", "7910-7919", "--log-level", "error"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let channel = channel(admin_port).await;
    let e = MediaAdminClient::new(channel.clone())
        .get_status(admin_pb::GetMediaStatusRequest {})
        .await
        .expect_err("no token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    // The media token is not the admin token.
    let e = MediaAdminClient::with_interceptor(
        channel.clone(),
        BearerToken::new(&secret::load_token(&media).unwrap()),
    )
    .get_status(admin_pb::GetMediaStatusRequest {})
    .await
    .expect_err("media token on admin");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let status = MediaAdminClient::with_interceptor(
        channel,
        BearerToken::new(&secret::load_token(&admin_token).unwrap()),
    )
    .get_status(admin_pb::GetMediaStatusRequest {})
    .await
    .expect("admin token accepted")
    .into_inner();
    assert_eq!(status.total_port_pairs, 5);
    let _ = std::fs::remove_dir_all(dir);
}
