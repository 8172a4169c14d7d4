//! Helpers shared by swctl's black-box tests: find the workspace binaries and
//! run daemons as real processes that die with the test.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point
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
/// A loopback port free for both UDP and TCP right now (SIP listens on
/// both; probing TCP alone handed out ports that media sockets of other
/// tests held on UDP).
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp bind");
        let port = udp.local_addr().expect("udp addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1")
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
        .env_remove("SWCTL_TOKEN")
        .env_remove("SWCTL_TOKEN_FILE")
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

/// swbd with one swrtp media node and a dialplan, for tests that place calls.
pub struct Pbx {
    pub swrtp: Daemon,
    pub swbd: Daemon,
    pub swbd_socket: PathBuf,
    pub swrtp_socket: PathBuf,
    pub sip_port: u16,
}

/// A dialplan that answers 7777, holds the call `hold` (e.g. "4s"), then hangs up.
pub fn hold_dialplan(dir: &Path, hold: &str) -> PathBuf {
    let plan = dir.join("hold.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nroutes:\n  - id: hold\n    match: {{ destination: \"7777\" }}\n    actions:\n      - answer\n      - sleep: {hold}\n      - hangup: {{ code: 480, reason: Done }}\n"
        ),
    )
    .expect("dialplan");
    plan
}

/// Start swrtp and swbd (using it as media node `rtp-a`) with `dialplan`.
pub fn start_pbx(dir: &Path, dialplan: &Path) -> Pbx {
    let sip_port = free_port();
    let media_port = free_port();
    let swrtp_socket = dir.join("swrtp.sock");
    let swbd_socket = dir.join("swbd.sock");
    let rtp_base = 20_000 + (std::process::id() % 400) as u16 * 100;
    // The media token both daemons share, private to this test.
    let token = dir.join("media.token");
    let swrtp = Daemon::start(
        "swrtp",
        &[
            "--media-token-file",
            token.to_str().expect("utf-8"),
            "--listen",
            &format!("tcp://127.0.0.1:{media_port}"),
            "--admin",
            &format!("unix://{}", swrtp_socket.display()),
            "--rtp-ports",
            &format!("{rtp_base}-{}", rtp_base + 99),
            "--node-id",
            "rtp-a",
        ],
    );
    wait_for_socket(&swrtp_socket);
    let cfg = dir.join("swbd.yaml");
    std::fs::write(
        &cfg,
        format!(
            "auth: {{ enabled: false }}\nmedia: {{ token_file: \"{}\", nodes: [{{ name: rtp-a, address: \"tcp://127.0.0.1:{media_port}\" }}] }}\ncdr: {{ file: {{ path: cdr.jsonl }} }}\n",
            token.display()
        ),
    )
    .expect("config");
    let swbd = Daemon::start(
        "swbd",
        &[
            "--config",
            cfg.to_str().expect("utf-8"),
            "--listen",
            &format!("udp:127.0.0.1:{sip_port}"),
            "--admin-socket",
            swbd_socket.to_str().expect("utf-8"),
            "--dialplan",
            dialplan.to_str().expect("utf-8"),
            "--node-id",
            "pbx-calls",
        ],
    );
    wait_for_socket(&swbd_socket);
    // Let the pool see the node up before calls are placed.
    std::thread::sleep(Duration::from_secs(1));
    Pbx {
        swrtp,
        swbd,
        swbd_socket,
        swrtp_socket,
        sip_port,
    }
}

/// A minimal UDP SIP phone: INVITE with SDP, wait for 200 OK, ACK. The call
/// is from `4321` to `dest`.
pub fn place_call(sip_port: u16, dest: &str) -> std::net::UdpSocket {
    let phone = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let me = phone.local_addr().expect("addr");
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        free_port()
    );
    let call_id = format!("swctl-test-{}@127.0.0.1", me.port());
    let invite = format!(
        "INVITE sip:{dest}@127.0.0.1:{sip_port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-swctl-1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:4321@127.0.0.1>;tag=swctltest\r\nTo: <sip:{dest}@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:4321@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    phone
        .send_to(invite.as_bytes(), ("127.0.0.1", sip_port))
        .expect("send INVITE");
    phone
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let to = loop {
        let mut buf = [0u8; 65535];
        let (n, _) = phone.recv_from(&mut buf).expect("a response to the INVITE");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let first = text.lines().next().unwrap_or_default().to_string();
        if first.starts_with("SIP/2.0 2") {
            break text
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("to:"))
                .and_then(|l| l.get(3..))
                .map(|l| l.trim().to_string())
                .expect("To header");
        }
        assert!(
            first.starts_with("SIP/2.0 1"),
            "the call was refused: {first}"
        );
    };
    let ack = format!(
        "ACK sip:{dest}@127.0.0.1:{sip_port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-swctl-2;rport\r\nMax-Forwards: 70\r\nFrom: <sip:4321@127.0.0.1>;tag=swctltest\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    phone
        .send_to(ack.as_bytes(), ("127.0.0.1", sip_port))
        .expect("send ACK");
    phone
}
