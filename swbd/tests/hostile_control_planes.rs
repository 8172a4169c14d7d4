//! swbd's control planes against another local user (issue #13), with real
//! swbd and swrtp processes:
//! - a swbd without the node's media token gets nothing from swrtp (the node
//!   stays down and says why), a per-node token file gets in;
//! - `admin.tcp` needs a token, loopback included, and a running TCP admin
//!   refuses clients without it;
//! - token files others can read and runtime directories that are not ours
//!   and private stop swbd at start;
//! - `ReloadDialplan { path }` (swbd may be root) never returns text of the
//!   file it was pointed at, and reads regular files only.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Proc, eventually, free_tcp_port, free_udp_port, start_swrtp, tempdir, unix_channel};
use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::signaling_admin_client::SignalingAdminClient;
use switchboard_proto::support::grpc::BearerToken;
use switchboard_proto::support::secret::{self, Token};
use tonic::transport::Channel;

const SWBD: &str = env!("CARGO_BIN_EXE_swbd");

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn is_root() -> bool {
    switchboard_proto::support::paths::euid().expect("euid") == 0
}

/// swbd with `config` (YAML, written to `dir/swbd.yaml`), running.
fn spawn_swbd(dir: &Path, config: &str, env: &[(&str, &Path)]) -> Proc {
    let cfg = dir.join("swbd.yaml");
    std::fs::write(&cfg, config).expect("write config");
    let child = Command::new(SWBD)
        .args(["--config", cfg.to_str().expect("utf-8")])
        .args(["--listen", &format!("udp:127.0.0.1:{}", free_udp_port())])
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn swbd");
    Proc { child }
}

/// swbd with `config` must refuse to start; its stderr.
fn swbd_refuses_captured(dir: &Path, config: &str, env: &[(&str, &Path)]) -> String {
    let cfg = dir.join("swbd.yaml");
    std::fs::write(&cfg, config).expect("write config");
    let out = Command::new(SWBD)
        .args(["--config", cfg.to_str().expect("utf-8")])
        .args(["--listen", &format!("udp:127.0.0.1:{}", free_udp_port())])
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .expect("run swbd");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "swbd started: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

async fn signaling(socket: &Path) -> SignalingAdminClient<Channel> {
    let channel = eventually(30, "swbd admin socket", || async {
        unix_channel(socket).await.ok()
    })
    .await;
    SignalingAdminClient::new(channel)
}

#[tokio::test]
async fn a_swbd_without_the_media_token_gets_nothing_from_swrtp() {
    let dir = tempdir("hostile-media");
    let node = start_swrtp(&dir, "rtp-a", 0);
    // Another user's swbd: its own token file, not the node's.
    let other = tempdir("hostile-media-other");
    let socket = dir.join("swbd.sock");
    let _swbd = spawn_swbd(
        &dir,
        &format!(
            "auth: {{ enabled: false }}\nadmin: {{ socket: \"{}\" }}\n\
             media:\n  token_file: \"{}\"\n  health_interval_ms: 100\n  nodes:\n\
             \x20   - {{ name: stranger, address: \"{addr}\" }}\n\
             \x20   - {{ name: keyholder, address: \"{addr}\", token_file: \"{}\" }}\n",
            socket.display(),
            other.join("media.token").display(),
            node.token_file.display(),
            addr = node.control,
        ),
        &[],
    );
    let mut admin = signaling(&socket).await;
    let nodes = eventually(30, "both nodes checked", || {
        let mut admin = admin.clone();
        async move {
            let nodes = admin
                .list_media_nodes(pb::ListMediaNodesRequest {})
                .await
                .ok()?
                .into_inner()
                .nodes;
            let checked = nodes
                .iter()
                .all(|n| n.state != pb::MediaNodeState::Unspecified as i32);
            checked.then_some(nodes)
        }
    })
    .await;
    let get = |name: &str| {
        nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("node {name} listed"))
    };
    let stranger = get("stranger");
    assert_eq!(
        stranger.state,
        pb::MediaNodeState::Down as i32,
        "{stranger:?}"
    );
    assert!(
        stranger
            .last_error
            .contains("wrong bearer token for MediaService"),
        "{stranger:?}"
    );
    assert!(
        stranger.last_error.contains("media.token_file"),
        "the error says what to fix: {stranger:?}"
    );
    // The per-node override carries the node's token: that one is up.
    assert_eq!(get("keyholder").state, pb::MediaNodeState::Up as i32);
    let status = admin
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.media_nodes_up, 1);
    let _ = std::fs::remove_dir_all(other);
}

#[test]
fn admin_tcp_without_a_token_refuses_to_start() {
    let dir = tempdir("hostile-admin-notoken");
    let port = free_tcp_port();
    let stderr = swbd_refuses_captured(
        &dir,
        &format!(
            "auth: {{ enabled: false }}\nadmin: {{ socket: null, tcp: \"127.0.0.1:{port}\" }}\n"
        ),
        &[],
    );
    assert!(
        stderr.contains(&format!(
            "admin.tcp: 127.0.0.1:{port} needs admin.token_file"
        )),
        "{stderr}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens"
    );
}

#[tokio::test]
async fn a_tcp_admin_refuses_clients_without_its_token() {
    let dir = tempdir("hostile-admin-tcp");
    chmod(&dir, 0o700);
    let port = free_tcp_port();
    let token_file = dir.join("admin.token");
    let _swbd = spawn_swbd(
        &dir,
        &format!(
            "auth: {{ enabled: false }}\nadmin: {{ socket: null, tcp: \"127.0.0.1:{port}\", token_file: admin.token }}\n\
             media: {{ token_file: media.token, nodes: [{{ name: rtp-a, address: \"tcp://127.0.0.1:1\" }}] }}\n"
        ),
        &[],
    );
    let channel = eventually(30, "swbd TCP admin", || async {
        Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .expect("uri")
            .connect()
            .await
            .ok()
    })
    .await;
    // swbd created the token file, private.
    let mode = std::fs::metadata(&token_file)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = secret::load_token(&token_file).expect("token");

    let e = SignalingAdminClient::new(channel.clone())
        .get_status(pb::GetStatusRequest {})
        .await
        .expect_err("no token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let e = SignalingAdminClient::with_interceptor(
        channel.clone(),
        BearerToken::new(&Token::new("guess").expect("token")),
    )
    .reload_dialplan(pb::ReloadDialplanRequest {
        path: "/etc/shadow".into(),
    })
    .await
    .expect_err("wrong token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let status = SignalingAdminClient::with_interceptor(channel, BearerToken::new(&token))
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("the token is accepted")
        .into_inner();
    assert_eq!(status.media_nodes_total, 1);
}

#[test]
fn token_files_others_can_read_are_refused_without_showing_them() {
    let dir = tempdir("hostile-token-mode");
    let planted = dir.join("planted.token");
    std::fs::write(&planted, "planted-s3cret\n").expect("write");
    chmod(&planted, 0o644);
    for config in [
        format!(
            "admin: {{ socket: null, tcp: \"127.0.0.1:{}\", token_file: planted.token }}\n",
            free_tcp_port()
        ),
        "admin: { socket: null }\nmedia: { token_file: planted.token }\n".to_string(),
        "admin: { socket: null }\nmedia: { token_file: own.token, nodes: [{ name: n, address: \"tcp://127.0.0.1:1\", token_file: planted.token }] }\n".to_string(),
    ] {
        let stderr = swbd_refuses_captured(&dir, &config, &[]);
        assert!(stderr.contains("mode 0644"), "{config}: {stderr}");
        assert!(stderr.contains("chmod 600"), "{config}: {stderr}");
        assert!(!stderr.contains("s3cret"), "{config}: {stderr}");
    }
}

#[test]
fn runtime_dirs_that_are_not_ours_and_private_are_refused() {
    let base = tempdir("hostile-runtime");
    chmod(&base, 0o755);
    let xdg = base.join("xdg");
    let runtime = xdg.join("switchboard");
    std::fs::create_dir_all(&runtime).expect("mkdir");
    let config = "auth: { enabled: false }\nmedia: { nodes: [] }\n";

    // Ours, but open to everyone (planted before we ran, or a bad chmod).
    chmod(&runtime, 0o777);
    let stderr = swbd_refuses_captured(&base, config, &[("XDG_RUNTIME_DIR", &xdg)]);
    assert!(stderr.contains("runtime directory"), "{stderr}");
    assert!(stderr.contains("has mode 0777"), "{stderr}");
    assert!(!runtime.join("swbd.sock").exists());

    // Another user's, however private.
    chmod(&runtime, 0o700);
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "this test needs root (to chown a directory to another user)"
        );
        eprintln!("SKIP (foreign owner part): needs root");
        return;
    }
    std::os::unix::fs::chown(&runtime, Some(65534), Some(65534)).expect("chown");
    let stderr = swbd_refuses_captured(&base, config, &[("XDG_RUNTIME_DIR", &xdg)]);
    assert!(stderr.contains("owned by uid 65534"), "{stderr}");
    assert!(!runtime.join("swbd.sock").exists());

    // A private one of ours is fine (created when missing).
    let fresh = base.join("fresh");
    std::fs::create_dir_all(&fresh).expect("mkdir");
    let mut swbd = spawn_swbd(&base, config, &[("XDG_RUNTIME_DIR", &fresh)]);
    let sock = fresh.join("switchboard/swbd.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(
            Instant::now() < deadline,
            "swbd never served {}",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mode = std::fs::metadata(fresh.join("switchboard"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    swbd.kill();
}

/// Every error text of a reload response, one per line.
fn errors_text(r: &pb::ReloadDialplanResponse) -> String {
    r.errors
        .iter()
        .map(|e| format!("{}:{}:{}: {}", e.file, e.line, e.column, e.message))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn reload_from_a_path_never_shows_the_file() {
    let dir = tempdir("hostile-reload");
    let socket = dir.join("swbd.sock");
    let _swbd = spawn_swbd(
        &dir,
        &format!(
            "auth: {{ enabled: false }}\nadmin: {{ socket: \"{}\" }}\nmedia: {{ token_file: media.token, nodes: [] }}\n",
            socket.display()
        ),
        &[],
    );
    let mut admin = signaling(&socket).await;
    let before = admin
        .get_dialplan(pb::GetDialplanRequest {})
        .await
        .expect("dialplan")
        .into_inner();
    let reload = |path: PathBuf| {
        let mut admin = admin.clone();
        async move {
            admin
                .reload_dialplan(pb::ReloadDialplanRequest {
                    path: path.to_str().expect("utf-8").into(),
                })
                .await
                .expect("reload answers")
                .into_inner()
        }
    };

    // A shadow-like file: to YAML its first line is a mapping key.
    let shadow = dir.join("shadow");
    std::fs::write(
        &shadow,
        "root:$6$S3cretSalt$S3cretHashS3cretHash:19700:0:99999:7:::\ndaemon:*:19700:0:99999:7:::\n",
    )
    .expect("write");
    chmod(&shadow, 0o600);
    let r = reload(shadow.clone()).await;
    assert!(!r.applied);
    let text = errors_text(&r);
    assert!(!text.contains("S3cret"), "{text}");
    assert!(!text.contains("root"), "{text}");
    let e = r.errors.first().expect("an error");
    assert_eq!(e.file, shadow.display().to_string());
    assert_eq!((e.line, e.column), (1, 1), "{text}");
    assert!(e.message.contains("unknown field (text omitted)"), "{text}");

    // A key=value secrets file.
    let env_file = dir.join("secrets.env");
    std::fs::write(&env_file, "DB_PASSWORD=hunter2-S3cret\n").expect("write");
    let text = errors_text(&reload(env_file).await);
    assert!(!text.is_empty());
    assert!(
        !text.contains("S3cret") && !text.contains("hunter2"),
        "{text}"
    );

    // A file that parses as a dialplan: semantic errors quote values too.
    let plan = dir.join("plan.yaml");
    std::fs::write(
        &plan,
        "version: 1\nroutes:\n  - id: x\n    match: {destination_regex: 'S3cret(('}\n    actions: [answer]\n",
    )
    .expect("write");
    let text = errors_text(&reload(plan).await);
    assert!(text.contains(":4:"), "still located: {text}");
    assert!(text.contains("bad regex"), "{text}");
    assert!(!text.contains("S3cret"), "{text}");

    // Not a regular file: refused before reading.
    for path in [PathBuf::from("/dev/null"), dir.clone()] {
        let r = reload(path.clone()).await;
        assert!(!r.applied);
        let text = errors_text(&r);
        assert!(
            text.contains("not a regular file"),
            "{}: {text}",
            path.display()
        );
    }

    // The plan in force never changed.
    let after = admin
        .get_dialplan(pb::GetDialplanRequest {})
        .await
        .expect("dialplan")
        .into_inner();
    assert_eq!(after.version, before.version);
}
