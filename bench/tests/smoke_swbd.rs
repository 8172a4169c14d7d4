//! Smoke run of the load generator against a real swbd + swrtp (started
//! here, binaries from target/<profile>/ next to this test's executable,
//! as swbd/tests/support does): digest REGISTER (401), calls answered by our
//! UAS with INVITE auth (407), RTP both ways through swrtp. Few calls, a few
//! seconds; no timing assertions (speed is measured by scripts/bench.sh).
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use swbench::calls::CallsOpts;
use swbench::endpoint::Timers;
use swbench::register::RegisterOpts;
use swbench::runner::{Common, UserRange};

/// A daemon killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `target/<profile>/NAME`: the test executable lives in `target/<profile>/deps/`.
fn sibling_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build -p swbd -p swrtp`, or scripts/test.sh)",
        path.display()
    );
    path
}

fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .expect("port")
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .expect("port")
    }
}

struct System {
    _swrtp: Proc,
    _swbd: Proc,
    sip: SocketAddr,
    _dir: PathBuf,
}

fn start(users: UserRange) -> System {
    let dir = std::env::temp_dir().join(format!("swbench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tempdir");
    let mut file = String::from("users:\n");
    for i in 0..users.len() {
        let u = users.nth(i);
        file.push_str(&format!(
            "  - {{ username: \"{u}\", password: \"pw{u}\" }}\n"
        ));
    }
    std::fs::write(dir.join("users.yaml"), file).expect("users");
    std::fs::write(dir.join("swrtp.yaml"), "rtp_timeout_secs: 0\n").expect("swrtp config");
    let control = format!("tcp://127.0.0.1:{}", free_port(false));
    let rtp_base = 40_000 + (std::process::id() % 50) as u16 * 100;
    let swrtp = Command::new(sibling_bin("swrtp"))
        .args([
            "--config",
            dir.join("swrtp.yaml").to_str().expect("utf-8"),
            "--listen",
            &control,
            "--media-token-file",
            dir.join("media.token").to_str().expect("utf-8"),
            "--admin",
            &format!("unix://{}", dir.join("swrtp.sock").display()),
            "--rtp-ports",
            &format!("{}-{}", rtp_base, rtp_base + 99),
            "--node-id",
            "rtp-a",
        ])
        .env(
            "RUST_LOG",
            std::env::var("SWBENCH_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn swrtp");
    let swrtp = Proc(swrtp);
    let sip_port = free_port(true);
    let admin = dir.join("swbd.sock");
    let cfg = format!(
        "auth: {{ enabled: true, realm: switchboard, users_file: users.yaml, algorithms: [md5] }}\n\
         sip:\n  listen: [\"udp:127.0.0.1:{sip_port}\"]\n  domains: [\"127.0.0.1\"]\n\
         admin: {{ socket: \"{}\" }}\n\
         media:\n  token_file: media.token\n  health_interval_ms: 100\n  nodes:\n    - {{ name: rtp-a, address: \"{control}\" }}\n",
        admin.display()
    );
    std::fs::write(dir.join("swbd.yaml"), cfg).expect("swbd config");
    let swbd = Command::new(sibling_bin("swbd"))
        .args(["--config", dir.join("swbd.yaml").to_str().expect("utf-8")])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn swbd");
    let swbd = Proc(swbd);
    let t0 = Instant::now();
    while !admin.exists() {
        assert!(t0.elapsed() < Duration::from_secs(30), "swbd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    System {
        _swrtp: swrtp,
        _swbd: swbd,
        sip: SocketAddr::from(([127, 0, 0, 1], sip_port)),
        _dir: dir,
    }
}

fn common(server: SocketAddr) -> Common {
    Common {
        server,
        also_servers: Vec::new(),
        bind_ip: "127.0.0.1".parse().expect("ip"),
        domain: "127.0.0.1".into(),
        password: "pw{user}".into(),
        timers: Timers::default(),
        max_seconds: Duration::from_secs(40),
        rcvbuf: 8 << 20,
        progress: false,
        watch: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_and_calls_with_rtp_against_swbd() {
    let users = UserRange::parse("1000-1009").expect("range");
    let sys = start(users);

    let reg = swbench::register::run(
        common(sys.sip),
        RegisterOpts {
            users,
            rate: 20.0,
            total: Some(10),
            duration: None,
            max_concurrent: 10,
            expires: 600,
        },
    )
    .await
    .expect("register run");
    assert_eq!(reg.succeeded, 10, "{reg:#?}");
    assert_eq!(reg.failures.total(), 0, "{reg:#?}");
    // Every registration was challenged: two transactions each.
    assert!(reg.transactions_per_s.is_some());

    // The media node may still be coming up: allow a few tries of one call.
    let mut opts = CallsOpts {
        callers: UserRange::parse("1005-1009").expect("range"),
        callees: UserRange::parse("1000-1004").expect("range"),
        register_callees: true,
        rate: 5.0,
        total: Some(1),
        duration: None,
        hold: Duration::from_millis(200),
        max_concurrent: 10,
        rtp: false,
        ramp: None,
        answer_delay: Duration::ZERO,
        relay_stats: None,
    };
    let t0 = Instant::now();
    loop {
        let r = swbench::calls::run(common(sys.sip), opts.clone())
            .await
            .expect("calls run");
        if r.phases.first().is_some_and(|p| p.succeeded == 1) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no call got through: {r:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    opts.total = Some(6);
    opts.hold = Duration::from_secs(2);
    opts.rtp = true;
    let r = swbench::calls::run(common(sys.sip), opts)
        .await
        .expect("calls run");
    assert_eq!(r.registered_callees, 5, "{r:#?}");
    let p = r.phases.first().expect("one phase");
    assert_eq!(p.started, 6, "{r:#?}");
    assert_eq!(p.succeeded, 6, "{r:#?}");
    assert_eq!(p.failures.total(), 0, "{r:#?}");
    assert_eq!(p.setup_latency.count, 6);
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    let rtp = r.rtp_report.expect("rtp report");
    // 12 streams (both ways), each ~100 packets; every one heard something.
    assert_eq!(rtp.streams, 12, "{rtp:#?}");
    assert_eq!(rtp.silent_streams, 0, "{rtp:#?}");
    assert!(rtp.packets_received > 0);
    assert!(rtp.one_way_delay.p50_ms.is_some());
}
