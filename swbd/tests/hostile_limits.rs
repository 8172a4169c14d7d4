//! Resource limits against hostile peers (issue #13), on a real swbd
//! process over loopback: the contact cap per AOR, TCP connections per
//! source, the slowloris head deadline (keepalive CRLFs still fine), and the
//! TCP cap fitted to a low open-file limit so the admin socket keeps
//! answering. The counters behind them are checked on an in-process
//! endpoint at the end.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod common;
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use bytes::BytesMut;
use common::{TcpPeer, UdpPeer, WAIT, authorization, challenge, register, request};
use swbd::auth::digest::Algorithm;
use swbd::sip::message::HeaderAccess;
use swbd::sip::{Name, Response, SipMessage};
use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::signaling_admin_client::SignalingAdminClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const USERS: &str = "users:\n  - { username: alice, password: secret-a }\n";
const URI: &str = "sip:example.com";

/// A swbd process with UDP and TCP on loopback, digest auth (MD5) for
/// alice, an admin unix socket and no media node.
struct Swbd {
    _proc: support::Proc,
    udp: SocketAddr,
    tcp: SocketAddr,
    admin: PathBuf,
    /// swbd's stderr (JSON log lines), read by a thread.
    log: std_mpsc::Receiver<String>,
}

impl Swbd {
    /// Start with `sip_extra` (indented `sip:` keys) added to the config and,
    /// when `nofile` is set, under `ulimit -n nofile` (soft and hard).
    async fn start(tag: &str, sip_extra: &str, nofile: Option<u64>) -> Swbd {
        let dir = support::tempdir(tag);
        let udp_port = support::free_udp_port();
        let tcp_port = support::free_tcp_port();
        let admin = dir.join("swbd.sock");
        std::fs::write(dir.join("users.yaml"), USERS).expect("write users");
        let cfg = dir.join("swbd.yaml");
        std::fs::write(
            &cfg,
            format!(
                "auth: {{ enabled: true, realm: switchboard, users_file: users.yaml, algorithms: [md5] }}\n\
                 sip:\n  listen: [\"udp:127.0.0.1:{udp_port}\", \"tcp:127.0.0.1:{tcp_port}\"]\n  \
                 domains: [\"example.com\", \"127.0.0.1\"]\n{sip_extra}\
                 admin: {{ socket: \"{}\" }}\nmedia: {{ nodes: [] }}\n",
                admin.display()
            ),
        )
        .expect("write config");
        let swbd = env!("CARGO_BIN_EXE_swbd");
        let args = [
            "--config",
            cfg.to_str().expect("utf-8"),
            "--log-format",
            "json",
        ];
        // `ulimit` is a POSIX shell builtin: no third-party program needed.
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$@\""), "sh", swbd]);
                c.args(args);
                c
            }
            None => {
                let mut c = Command::new(swbd);
                c.args(args);
                c
            }
        };
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn swbd");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, log) = std_mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                eprintln!("swbd: {line}");
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let swbd = Swbd {
            _proc: support::Proc { child },
            udp: SocketAddr::from(([127, 0, 0, 1], udp_port)),
            tcp: SocketAddr::from(([127, 0, 0, 1], tcp_port)),
            admin,
            log,
        };
        support::eventually(30, "swbd admin answers", || async {
            swbd.status().await.ok().map(|_| ())
        })
        .await;
        swbd
    }

    async fn admin(&self) -> SignalingAdminClient<tonic::transport::Channel> {
        SignalingAdminClient::new(
            support::unix_channel(&self.admin)
                .await
                .expect("admin socket connects"),
        )
    }

    async fn status(&self) -> Result<pb::Status, String> {
        let channel = support::unix_channel(&self.admin)
            .await
            .map_err(|e| e.to_string())?;
        SignalingAdminClient::new(channel)
            .get_status(pb::GetStatusRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(|e| e.to_string())
    }

    async fn registrations(&self) -> Vec<pb::Registration> {
        self.admin()
            .await
            .list_registrations(pb::ListRegistrationsRequest { aor: String::new() })
            .await
            .expect("list registrations")
            .into_inner()
            .registrations
    }

    /// Wait for a log line containing every one of `parts`.
    fn log_line(&self, parts: &[&str]) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if parts.iter().all(|p| line.contains(p)) => return line,
                Ok(_) => continue,
                Err(_) => panic!("no swbd log line with {parts:?}"),
            }
        }
    }
}

/// A TCP connection to `server` from the local address `from`.
async fn connect_from(from: &str, server: SocketAddr) -> TcpPeer {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(from.parse().expect("local addr"))
        .expect("bind the client socket");
    TcpPeer {
        stream: socket.connect(server).await.expect("connect"),
        buf: BytesMut::new(),
    }
}

/// Send an OPTIONS over `peer` and return the answer (None: the connection
/// closed or nothing came).
async fn options(peer: &mut TcpPeer, call_id: &str) -> Option<Response> {
    let addr = peer.addr();
    let msg = request(
        "OPTIONS", URI, "TCP", addr, "alice", "alice", call_id, 1, "",
    );
    peer.stream.write_all(msg.as_bytes()).await.ok()?;
    match peer.recv_within(WAIT).await? {
        SipMessage::Response(r) => Some(r),
        SipMessage::Request(r) => panic!("unexpected request {}", r.method),
    }
}

/// Whether the server closes `stream` (EOF or reset) within WAIT; data it
/// sends first is skipped.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 512];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut byte)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// The challenge for a REGISTER from `peer`: (realm, nonce).
async fn challenged(peer: &UdpPeer, call_id: &str) -> (String, String) {
    peer.send(&register("UDP", peer.addr(), "alice", call_id, 1, ""))
        .await;
    let r = peer.response(false).await;
    assert_eq!(r.code, 401, "challenged first: {r:?}");
    challenge(&r, Algorithm::Md5.as_str())
}

fn auth_line(realm: &str, nonce: &str, nc: u32) -> String {
    authorization(
        "Authorization",
        Algorithm::Md5,
        realm,
        nonce,
        "alice",
        "secret-a",
        "REGISTER",
        URI,
        nc,
    )
}

#[tokio::test]
async fn register_with_500_contacts_is_refused_and_the_11th_binding_too() {
    let swbd = Swbd::start("contacts", "", None).await;
    let peer = UdpPeer::new(swbd.udp).await;
    let (realm, nonce) = challenged(&peer, "cap-1").await;

    let contacts: String = (0..500)
        .map(|i| format!("Contact: <sip:alice@127.0.0.1:{}>\r\n", 20_000 + i))
        .collect();
    let auth = auth_line(&realm, &nonce, 1);
    peer.send(&register(
        "UDP",
        peer.addr(),
        "alice",
        "cap-1",
        2,
        &format!("{auth}{contacts}"),
    ))
    .await;
    let r = peer.response(false).await;
    assert_eq!(r.code, 403, "{r:?}");
    assert!(
        r.reason.contains("too many contacts: at most 10"),
        "the reason says why: {:?}",
        r.reason
    );
    let warning = r.raw(&Name::WARNING).expect("a Warning header");
    assert!(warning.starts_with("399 "), "{warning}");
    assert!(
        warning.contains("at most 10 per address of record"),
        "{warning}"
    );
    assert!(
        swbd.registrations().await.is_empty(),
        "none of the 500 was bound"
    );

    // One contact per REGISTER: ten fit, the eleventh is refused.
    for i in 0..11u32 {
        let auth = auth_line(&realm, &nonce, 2 + i);
        let contact = format!("Contact: <sip:alice@127.0.0.1:{}>\r\n", 30_000 + i);
        peer.send(&register(
            "UDP",
            peer.addr(),
            "alice",
            "cap-1",
            3 + i,
            &format!("{auth}{contact}"),
        ))
        .await;
        let r = peer.response(false).await;
        if i < 10 {
            assert_eq!(r.code, 200, "REGISTER {i}: {r:?}");
            assert_eq!(r.raw_values(&Name::CONTACT).count(), i as usize + 1);
        } else {
            assert_eq!(r.code, 403, "REGISTER {i}: {r:?}");
            assert!(r.reason.contains("too many contacts"), "{:?}", r.reason);
        }
    }
    let bound = swbd.registrations().await;
    assert_eq!(bound.len(), 10);
    assert!(
        bound.iter().all(|b| !b.contact.contains(":30010")),
        "the refused contact is not bound: {bound:?}"
    );
}

#[tokio::test]
async fn tcp_connections_beyond_the_per_source_cap_are_closed_other_sources_connect() {
    let swbd = Swbd::start("persource", "  tcp_max_connections_per_source: 4\n", None).await;
    let mut held = Vec::new();
    for i in 0..4 {
        let mut peer = connect_from("127.0.0.1:0", swbd.tcp).await;
        let r = options(&mut peer, &format!("ps-{i}"))
            .await
            .expect("served within the cap");
        assert_eq!(r.code, 200);
        held.push(peer);
    }
    let mut extra = TcpStream::connect(swbd.tcp).await.expect("connect");
    assert!(
        closed_by_server(&mut extra).await,
        "the fifth connection from 127.0.0.1 is closed at once"
    );

    let mut other = connect_from("127.0.0.2:0", swbd.tcp).await;
    let r = options(&mut other, "ps-other")
        .await
        .expect("another source address is served");
    assert_eq!(r.code, 200);

    // The held ones still work, and a freed slot can be used again.
    let r = options(&mut held[0], "ps-0b").await.expect("still served");
    assert_eq!(r.code, 200);
    drop(held.pop());
    support::eventually(20, "a freed slot is usable", || async {
        let mut peer = connect_from("127.0.0.1:0", swbd.tcp).await;
        options(&mut peer, "ps-again").await.map(|r| r.code)
    })
    .await;
}

#[tokio::test]
async fn a_slow_head_is_cut_off_while_keepalives_then_a_request_are_served() {
    let swbd = Swbd::start("slowloris", "  tcp_head_timeout_secs: 2\n", None).await;

    let slow = async {
        let mut stream = TcpStream::connect(swbd.tcp).await.expect("connect");
        let local = stream.local_addr().expect("local addr");
        let head = request(
            "OPTIONS", URI, "TCP", local, "alice", "alice", "slow", 1, "",
        );
        // Everything but the final CRLF: the head is never complete.
        let bytes = head.as_bytes();
        let bytes = bytes.get(..bytes.len() - 2).expect("a head");
        for (i, b) in bytes.iter().enumerate() {
            if stream.write_all(std::slice::from_ref(b)).await.is_err() {
                return i;
            }
            let mut buf = [0u8; 64];
            match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return i,
                Ok(Ok(n)) => panic!(
                    "swbd answered an incomplete head: {:?}",
                    String::from_utf8_lossy(buf.get(..n).unwrap_or_default())
                ),
                Err(_) => {}
            }
        }
        panic!("a head sent a byte a second was never cut off")
    };

    let keepalive = async {
        let mut peer = TcpPeer::connect(swbd.tcp).await;
        // RFC 5626 §4.4.1 keepalives across more than the head deadline.
        for _ in 0..4 {
            peer.stream
                .write_all(b"\r\n\r\n")
                .await
                .expect("keepalive accepted");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        options(&mut peer, "after-keepalives").await
    };

    let (sent, answer) = tokio::join!(slow, keepalive);
    assert!(sent > 0, "the connection was open to begin with");
    let answer = answer.expect("the connection with keepalives is still served");
    assert_eq!(answer.code, 200);
}

#[tokio::test]
async fn at_a_low_open_file_limit_the_tcp_cap_bites_first_and_admin_still_answers() {
    // 256 descriptors: the cap becomes 256 - 64 (reserve) = 192.
    let swbd = Swbd::start("nofile", "  tcp_max_connections_per_source: 0\n", Some(256)).await;
    swbd.log_line(&["tcp_max_connections lowered", "\"cap\":192"]);

    // More connections than swbd has descriptors for.
    let mut conns = Vec::new();
    for i in 0..300 {
        let stream = TcpStream::connect(swbd.tcp)
            .await
            .unwrap_or_else(|e| panic!("connect {i}: {e}"));
        conns.push(stream);
    }
    let status = tokio::time::timeout(WAIT, swbd.status())
        .await
        .expect("admin answers in time")
        .expect("admin answers at the TCP cap");
    assert_eq!(status.registrations, 0);
    for (i, stream) in conns.iter_mut().enumerate().skip(192) {
        assert!(
            closed_by_server(stream).await,
            "connection {i} is beyond the cap and closed"
        );
    }
    // Those within the cap are served.
    let first = conns.swap_remove(0);
    let mut peer = TcpPeer {
        stream: first,
        buf: BytesMut::new(),
    };
    let r = options(&mut peer, "nofile-0")
        .await
        .expect("a connection within the cap is served");
    assert_eq!(r.code, 200);
    // And admin still answers after all that.
    swbd.status().await.expect("admin still answers");
}

/// The counters behind the refusals, on an in-process endpoint.
#[tokio::test]
async fn refusals_and_message_timeouts_are_counted() {
    let s = common::start_with("limits-counters", |c| {
        c.sip.tcp_max_connections_per_source = 1;
        c.sip.tcp_head_timeout_secs = 1;
        c.sip.tcp_body_timeout_secs = 1;
    })
    .await;
    let mut first = TcpPeer::connect(s.tcp()).await;
    first.send("OPT").await;
    let mut second = TcpStream::connect(s.tcp()).await.expect("connect");
    assert!(
        closed_by_server(&mut second).await,
        "over the per-source cap"
    );
    common::wait_for("per-source refusal counted", || {
        s.endpoint.counters().tcp_refused_per_source == 1
    })
    .await;
    assert!(
        closed_by_server(&mut first.stream).await,
        "an incomplete head is cut off"
    );
    common::wait_for("head timeout counted", || {
        s.endpoint.counters().tcp_message_timeouts == 1
    })
    .await;

    // A complete head whose body never comes.
    let mut peer = TcpPeer::connect(s.tcp()).await;
    let addr = peer.addr();
    let msg = request("OPTIONS", URI, "TCP", addr, "a", "b", "body", 1, "")
        .replace("Content-Length: 0", "Content-Length: 10");
    peer.send(&msg).await;
    peer.send("12345").await;
    assert!(
        closed_by_server(&mut peer.stream).await,
        "an incomplete body is cut off"
    );
    common::wait_for("body timeout counted", || {
        s.endpoint.counters().tcp_message_timeouts == 2
    })
    .await;
}
