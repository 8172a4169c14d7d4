//! Black-box harness for call tests: swrtp and swbd as real processes on
//! loopback, scripted SIP user agents over real UDP, and admin clients.

#![allow(dead_code)]

pub mod baresip;
pub mod baresip_phone;
pub mod pjsua2;
pub mod postgres;
pub mod raw;
pub mod redis;
pub mod swctl;
pub mod ua;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::media_admin_client::MediaAdminClient;
use switchboard_proto::admin::v1::signaling_admin_client::SignalingAdminClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// A daemon killed on drop.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `target/<profile>/swrtp`, next to the swbd binary under test.
pub fn swrtp_bin() -> PathBuf {
    let swbd = PathBuf::from(env!("CARGO_BIN_EXE_swbd"));
    let path = swbd.with_file_name("swrtp");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Disjoint RTP port ranges for the swrtp of each test in this process.
fn rtp_range() -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let base = 20_000 + (std::process::id() % 20) as u16 * 1000 + (n % 10) * 100;
    (base, base + 99)
}

pub fn tempdir(tag: &str) -> PathBuf {
    static N: AtomicU16 = AtomicU16::new(0);
    let dir = std::env::temp_dir().join(format!(
        "swbd-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tempdir");
    dir
}

/// Options for a test system.
pub struct Options {
    /// Dialplan YAML (None: the embedded default).
    pub dialplan: Option<String>,
    /// Extra top-level YAML for swbd's config.
    pub extra_config: String,
    /// Number of swrtp nodes.
    pub nodes: usize,
    /// Digest users (username, password); auth is off when empty.
    pub users: Vec<(String, String)>,
    /// swrtp RTP inactivity timeout (0: off).
    pub rtp_timeout_secs: u64,
    /// Extra `auth:` keys (flow-map entries, e.g. `identity: rewrite`).
    pub auth_extra: String,
    /// Extra `sip:` keys, as indented YAML lines (`"  rate_limit: {...}\n"`).
    pub sip_extra: String,
    /// swbd's `media.health_interval_ms` (a test that must not be helped by
    /// a health check sets it high).
    pub health_interval_ms: u64,
    /// Extra `media:` keys, as indented YAML lines (`"  lease_secs: 3\n"`).
    pub media_extra: String,
    /// swbd also listens for SIP over UDP on `[::1]` (`System::sip_v6`),
    /// and `::1` is one of its domains.
    pub listen_v6: bool,
    /// Extra YAML lines for every swrtp's config (`"metrics_listen: ...\n"`).
    pub swrtp_extra: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dialplan: None,
            extra_config: String::new(),
            nodes: 1,
            users: Vec::new(),
            rtp_timeout_secs: 0,
            auth_extra: String::new(),
            sip_extra: String::new(),
            health_interval_ms: 100,
            media_extra: String::new(),
            listen_v6: false,
            swrtp_extra: String::new(),
        }
    }
}

/// One media node.
pub struct Node {
    pub name: String,
    pub proc: Proc,
    pub control: String,
    pub admin: PathBuf,
    pub ports: (u16, u16),
    /// The media token file the node and swbd share (one per test dir, so
    /// parallel tests never share a token).
    pub token_file: PathBuf,
}

impl Node {
    /// The media token (read, or created first if the node has not yet).
    pub fn token(&self) -> switchboard_proto::support::secret::Token {
        switchboard_proto::support::secret::load_or_create_token(&self.token_file)
            .expect("media token")
    }
}

/// The media token file of the daemons started in `dir`.
pub fn media_token_file(dir: &Path) -> PathBuf {
    dir.join("media.token")
}

/// swbd + swrtp node(s).
pub struct System {
    pub dir: PathBuf,
    pub swbd: Proc,
    pub sip: std::net::SocketAddr,
    /// swbd's SIP over UDP on `[::1]` (with `Options::listen_v6`).
    pub sip_v6: Option<std::net::SocketAddr>,
    pub admin: PathBuf,
    pub nodes: Vec<Node>,
}

pub fn start_swrtp(dir: &Path, name: &str, rtp_timeout_secs: u64) -> Node {
    start_swrtp_on(dir, name, rtp_timeout_secs, free_tcp_port())
}

/// [`start_swrtp`] with its control listener on `port` (a restarted node).
pub fn start_swrtp_on(dir: &Path, name: &str, rtp_timeout_secs: u64, port: u16) -> Node {
    start_swrtp_with(dir, name, rtp_timeout_secs, port, "")
}

/// [`start_swrtp_on`] with `extra` YAML lines in the node's config.
pub fn start_swrtp_with(
    dir: &Path,
    name: &str,
    rtp_timeout_secs: u64,
    port: u16,
    extra: &str,
) -> Node {
    let control = format!("tcp://127.0.0.1:{port}");
    let admin = dir.join(format!("{name}.sock"));
    let ports = rtp_range();
    let cfg = dir.join(format!("{name}.yaml"));
    let token_file = media_token_file(dir);
    std::fs::write(
        &cfg,
        format!("rtp_timeout_secs: {rtp_timeout_secs}\n{extra}"),
    )
    .expect("write swrtp config");
    let child = Command::new(swrtp_bin())
        .args([
            "--config",
            cfg.to_str().expect("utf-8"),
            "--media-token-file",
            token_file.to_str().expect("utf-8"),
            "--listen",
            &control,
            "--admin",
            &format!("unix://{}", admin.display()),
            "--rtp-ports",
            &format!("{}-{}", ports.0, ports.1),
            "--node-id",
            name,
            "--audio-dir",
            repo().join("testdata/audio").to_str().expect("utf-8"),
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn swrtp");
    Node {
        name: name.to_string(),
        proc: Proc { child },
        control,
        admin,
        ports,
        token_file,
    }
}

impl System {
    pub async fn start(opts: Options) -> System {
        Self::start_with_node_addresses(opts, |nodes| {
            nodes.iter().map(|n| n.control.clone()).collect()
        })
        .await
    }

    /// As [`System::start`], but swbd's `media.nodes` addresses come from
    /// `addresses` (given the started swrtp nodes, one address per node), so a
    /// test can put something (a proxy) between swbd and its nodes.
    pub async fn start_with_node_addresses(
        opts: Options,
        addresses: impl FnOnce(&[Node]) -> Vec<String>,
    ) -> System {
        let dir = tempdir("sys");
        let nodes: Vec<Node> = (0..opts.nodes)
            .map(|i| {
                start_swrtp_with(
                    &dir,
                    &format!("rtp-{}", (b'a' + i as u8) as char),
                    opts.rtp_timeout_secs,
                    free_tcp_port(),
                    &opts.swrtp_extra,
                )
            })
            .collect();
        // Nodes listening before swbd's first health check: with a long
        // `health_interval_ms`, a node missed then stays down for the test.
        for n in &nodes {
            let addr = n.control.trim_start_matches("tcp://").to_string();
            eventually(20, "swrtp listening", || {
                let addr = addr.clone();
                async move { std::net::TcpStream::connect(addr).ok().map(drop) }
            })
            .await;
        }
        let sip_port = free_udp_port();
        let sip_v6 = opts.listen_v6.then(|| {
            let port = std::net::UdpSocket::bind("[::1]:0")
                .and_then(|s| s.local_addr())
                .map(|a| a.port())
                .expect("free port on ::1");
            std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))
        });
        let (listen_v6, domain_v6) = match sip_v6 {
            Some(a) => (format!(", \"udp:{a}\""), ", \"::1\""),
            None => (String::new(), ""),
        };
        let admin = dir.join("swbd.sock");
        let extra = if opts.auth_extra.is_empty() {
            String::new()
        } else {
            format!(", {}", opts.auth_extra)
        };
        let auth = if opts.users.is_empty() {
            format!("auth: {{ enabled: false{extra} }}\n")
        } else {
            let mut users = String::from("users:\n");
            for (u, p) in &opts.users {
                users.push_str(&format!("  - {{ username: \"{u}\", password: \"{p}\" }}\n"));
            }
            std::fs::write(dir.join("users.yaml"), users).expect("write users");
            format!(
                "auth: {{ enabled: true, realm: switchboard, users_file: users.yaml, algorithms: [md5]{extra} }}\n"
            )
        };
        let mut cfg = format!(
            "{auth}sip:\n  listen: [\"udp:127.0.0.1:{sip_port}\"{listen_v6}]\n  domains: [\"127.0.0.1\", \"localhost\"{domain_v6}]\n{}\
             admin: {{ socket: \"{}\" }}\nmedia:\n  token_file: \"{}\"\n  health_interval_ms: {}\n{}  nodes:\n",
            opts.sip_extra,
            admin.display(),
            media_token_file(&dir).display(),
            opts.health_interval_ms,
            opts.media_extra
        );
        let node_addresses = addresses(&nodes);
        assert_eq!(node_addresses.len(), nodes.len(), "one address per node");
        for (n, address) in nodes.iter().zip(&node_addresses) {
            cfg.push_str(&format!(
                "    - {{ name: {}, address: \"{address}\" }}\n",
                n.name
            ));
        }
        if let Some(plan) = &opts.dialplan {
            std::fs::write(dir.join("dialplan.yaml"), plan).expect("write dialplan");
            cfg.push_str("dialplan: { file: dialplan.yaml }\n");
        }
        if !opts.extra_config.starts_with("cdr:") && !opts.extra_config.contains("\ncdr:") {
            // CDRs stay in the test's directory, not the user's state directory.
            cfg.push_str("cdr: { file: { path: cdr.jsonl } }\n");
        }
        cfg.push_str(&opts.extra_config);
        let cfg_path = dir.join("swbd.yaml");
        std::fs::write(&cfg_path, cfg).expect("write config");
        let sys = System {
            swbd: spawn_swbd(&dir),
            dir,
            sip: std::net::SocketAddr::from(([127, 0, 0, 1], sip_port)),
            sip_v6,
            admin,
            nodes,
        };
        sys.wait_ready().await;
        sys
    }

    /// Start swbd again with the same config (after `self.swbd.kill()`:
    /// a crash and restart), and wait until it is up with all its nodes.
    pub async fn restart_swbd(&mut self) {
        self.swbd.kill();
        self.swbd = spawn_swbd(&self.dir);
        self.wait_ready().await;
    }

    /// Ready when admin answers and every node is up.
    async fn wait_ready(&self) {
        let sys = self;
        let want = sys.nodes.len();
        eventually(30, "swbd up with all media nodes", || async {
            let mut c = sys.signaling().await.ok()?;
            let s = c
                .get_status(pb::GetStatusRequest {})
                .await
                .ok()?
                .into_inner();
            (s.media_nodes_up as usize == want).then_some(())
        })
        .await;
    }

    pub async fn signaling(
        &self,
    ) -> Result<SignalingAdminClient<Channel>, tonic::transport::Error> {
        Ok(SignalingAdminClient::new(unix_channel(&self.admin).await?))
    }

    /// swbd's `GetStatus`, failing the test when admin does not answer.
    pub async fn status(&self) -> pb::Status {
        self.signaling()
            .await
            .expect("admin")
            .get_status(pb::GetStatusRequest {})
            .await
            .expect("status")
            .into_inner()
    }

    pub async fn media_admin(&self, i: usize) -> MediaAdminClient<Channel> {
        let path = self.nodes.get(i).expect("node").admin.clone();
        eventually(20, "swrtp admin", || {
            let path = path.clone();
            async move { unix_channel(&path).await.ok() }
        })
        .await;
        MediaAdminClient::new(unix_channel(&path).await.expect("swrtp admin"))
    }

    pub async fn active_calls(&self) -> Vec<pb::Call> {
        self.signaling()
            .await
            .expect("admin")
            .list_calls(pb::ListCallsRequest {
                include_ended: false,
            })
            .await
            .expect("list calls")
            .into_inner()
            .calls
    }

    /// Wait until swbd has no call and every node no session and a full pool.
    pub async fn assert_clean(&self) {
        eventually(20, "no active calls", || async {
            self.active_calls().await.is_empty().then_some(())
        })
        .await;
        for i in 0..self.nodes.len() {
            let mut m = self.media_admin(i).await;
            eventually(20, "swrtp back to an empty, full pool", || {
                let mut m = m.clone();
                async move {
                    let s = m
                        .get_status(pb::GetMediaStatusRequest {})
                        .await
                        .ok()?
                        .into_inner();
                    (s.active_sessions == 0 && s.free_port_pairs == s.total_port_pairs)
                        .then_some(())
                }
            })
            .await;
            let _ = &mut m;
        }
    }
}

/// swbd with `dir/swbd.yaml`.
fn spawn_swbd(dir: &Path) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_swbd"))
        .args(["--config", dir.join("swbd.yaml").to_str().expect("utf-8")])
        .env(
            "RUST_LOG",
            std::env::var("SWBD_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn swbd");
    Proc { child }
}

pub async fn unix_channel(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                tokio::net::UnixStream::connect(path)
                    .await
                    .map(hyper_util::rt::TokioIo::new)
            }
        }))
        .await
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Energy of `samples` (8 kHz) at `freq` (Goertzel).
pub fn goertzel(samples: &[f64], freq: f64) -> f64 {
    let k = 2.0 * (2.0 * std::f64::consts::PI * freq / 8000.0).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in samples {
        let s = x + k * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - k * s1 * s2
}
