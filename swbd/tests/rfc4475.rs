//! RFC 4475 torture test messages (subset in testdata/rfc4475/): valid
//! ones are accepted and answered as the RFC says, invalid ones get 400
//! (or 505/416 where the RFC names it) or are dropped; none crashes.
//!
//! The network test sends them over real UDP and TCP to a running
//! endpoint. A SIP server replies to the Via address and these messages
//! name hosts like 192.0.2.x, so the test re-executes itself inside a
//! network namespace that has only loopback (`unshare -n`, with `-r` when
//! not root): no reply can leave the machine. It is skipped, with a
//! message, only when `unshare` is unavailable.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use swbd::config::{Config, Transport};
use swbd::endpoint::SipEndpoint;
use swbd::events::EventBus;
use swbd::sip::{SipMessage, ViaHeader};
use switchboard_proto::support::shutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the RFC expects of a server receiving the message.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Answered with this code (after authentication challenges where the
    /// method needs them: 401 for REGISTER, 407 for INVITE).
    Code(u16),
    /// A response: never answered, never counted as a parse error.
    Silent,
    /// Invalid: answered with one of these codes, or dropped.
    Refused(&'static [u16]),
}

const CASES: &[(&str, Expect)] = &[
    // §3.1.1 valid messages.
    // A To tag: an in-dialog request for a dialog that does not exist
    // (RFC 3261 §12.2.2); dialogs, not digests, vouch for those.
    ("wsinv", Expect::Code(481)),
    ("intmeth", Expect::Code(501)),
    ("esc01", Expect::Code(407)),
    ("escnull", Expect::Code(401)),
    ("esc02", Expect::Code(501)),
    ("lwsdisp", Expect::Code(200)),
    ("longreq", Expect::Code(407)),
    ("dblreq", Expect::Code(401)),
    ("semiuri", Expect::Code(200)),
    ("transports", Expect::Code(200)),
    ("mpart01", Expect::Code(405)),
    ("unreason", Expect::Silent),
    ("noreason", Expect::Silent),
    // §3.1.2 invalid messages.
    ("badinv01", Expect::Refused(&[400])),
    ("clerr", Expect::Refused(&[400])),
    ("ncl", Expect::Refused(&[400])),
    ("scalar02", Expect::Refused(&[400])),
    ("quotbal", Expect::Refused(&[400])),
    ("ltgtruri", Expect::Refused(&[400])),
    ("lwsstart", Expect::Refused(&[400])),
    ("trws", Expect::Refused(&[400])),
    ("badvers", Expect::Refused(&[505])),
    ("mismatch01", Expect::Refused(&[400])),
    // §3.3 application-layer semantics.
    ("insuf", Expect::Refused(&[400])),
    ("unkscm", Expect::Code(416)),
    ("zeromf", Expect::Code(483)),
    ("cparam01", Expect::Code(401)),
    ("mcl01", Expect::Refused(&[400])),
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/rfc4475")
}

fn load(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(format!("{name}.dat"))).expect("torture message file")
}

/// Parser verdicts alone (no network): every file is covered and behaves.
#[test]
fn parser_verdicts() {
    for (name, expect) in CASES {
        let parsed = SipMessage::parse(&load(name), true);
        match (expect, &parsed) {
            (Expect::Code(_) | Expect::Silent, Ok(_)) => {}
            (Expect::Code(416), Err(e)) if e.status == 416 => {}
            (Expect::Refused(codes), Err(e)) => {
                assert!(
                    codes.contains(&e.status),
                    "{name}: status {} ({})",
                    e.status,
                    e.reason
                )
            }
            _ => panic!(
                "{name}: unexpected parse result {:?}",
                parsed.as_ref().err()
            ),
        }
    }
}

const CHILD_ENV: &str = "SWBD_RFC4475_NETNS_CHILD";

#[test]
fn torture_messages_over_udp_and_tcp_in_netns() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(run_in_namespace());
        return;
    }
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    let mut ns_args: Vec<&str> = if root { vec!["-n"] } else { vec!["-r", "-n"] };
    let probe = std::process::Command::new("unshare")
        .args(&ns_args)
        .arg("true")
        .status();
    if !matches!(probe, Ok(s) if s.success()) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "a real peer this test needs is missing; in CI that is a failure (scripts/test.sh installs it)"
        );
        eprintln!(
            "SKIPPED: `unshare {}` is unavailable here ({probe:?}); the torture test needs a private network namespace",
            ns_args.join(" ")
        );
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    ns_args.extend(["--", "sh", "-c", "ip link set lo up && exec \"$@\"", "sh"]);
    let out = std::process::Command::new("unshare")
        .args(&ns_args)
        .arg(&exe)
        .args([
            "--exact",
            "torture_messages_over_udp_and_tcp_in_netns",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .expect("run the test inside the namespace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(out.status.success(), "namespace run failed");
    assert!(stdout.contains("1 passed"), "the inner test ran");
}

/// Port the server will answer on for UDP (RFC 3261 §18.2.2: the top
/// Via's sent-by port, 5060 by default).
fn via_port(data: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(data);
    text.lines()
        .find(|l| {
            let n = l
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            n == "via" || n == "v"
        })
        .and_then(|l| l.split_once(':'))
        .and_then(|(_, v)| ViaHeader::parse(swbd::sip::header::split_list(v).first()?).ok())
        .and_then(|v| v.port())
        .unwrap_or(5060)
}

async fn start_endpoint(dir: &std::path::Path) -> (SipEndpoint, shutdown::ShutdownTrigger) {
    let mut c = Config::default();
    c.sip.listen = vec![
        "udp:127.0.0.1:0".parse().expect("listen"),
        "tcp:127.0.0.1:0".parse().expect("listen"),
    ];
    c.admin.socket = None;
    let users = dir.join("users.yaml");
    std::fs::write(&users, "users:\n  - username: alice\n    password: x\n").expect("users");
    c.auth.users_file = Some(users);
    let (trigger, sd) = shutdown::channel();
    let ep = SipEndpoint::start(Arc::new(c), EventBus::new(), sd)
        .await
        .expect("start");
    (ep, trigger)
}

async fn run_in_namespace() {
    let dir = std::env::temp_dir().join(format!("swbd-rfc4475-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    // One endpoint per transport: the same message sent twice to one
    // endpoint is (correctly) a retransmission of the first.
    for transport in [Transport::Udp, Transport::Tcp] {
        let (ep, trigger) = start_endpoint(&dir).await;
        let server = ep.local_addr(transport).expect("bound");
        for (name, expect) in CASES {
            if *name == "dblreq" && transport == Transport::Tcp {
                // On a stream the second message is a message of its own.
                continue;
            }
            let data = load(name);
            let before = ep.counters().sip_parse_errors;
            let got = match transport {
                Transport::Udp => send_udp(server, &data).await,
                Transport::Tcp => send_tcp(server, &data).await,
            };
            check(name, &transport.to_string(), *expect, &got);
            if matches!(expect, Expect::Silent) {
                assert_eq!(
                    ep.counters().sip_parse_errors,
                    before,
                    "{name}: a valid response is not a parse error"
                );
            }
        }
        // Still serving.
        let ok = match transport {
            Transport::Udp => send_udp(server, &load("semiuri")).await,
            Transport::Tcp => send_tcp(server, &load("semiuri")).await,
        };
        assert_eq!(
            ok.first().copied(),
            Some(200),
            "still serving over {transport}"
        );
        assert!(ep.counters().sip_parse_errors > 0);
        trigger.trigger();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn check(name: &str, transport: &str, expect: Expect, got: &[u16]) {
    // Retransmissions of a final response (Timer G: we send no ACK) count once.
    let mut got = got.to_vec();
    got.dedup();
    let got = got.as_slice();
    println!("{name} over {transport}: {got:?}");
    match expect {
        Expect::Code(code) => assert_eq!(got, [code], "{name} over {transport}"),
        Expect::Silent => assert!(got.is_empty(), "{name} over {transport}: {got:?}"),
        Expect::Refused(codes) => assert!(
            got.is_empty() || (got.len() == 1 && codes.contains(&got[0])),
            "{name} over {transport}: {got:?}"
        ),
    }
}

/// Status code of a response, read off the status line only: our 400s
/// echo the peer's broken headers, so they need not parse as a whole.
fn status_of(raw: &[u8]) -> Option<u16> {
    let rest = raw.strip_prefix(b"SIP/2.0 ")?;
    std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
}

/// The Call-ID line value of a raw message (`Call-ID:` or compact `i:`).
fn call_id_of(raw: &[u8]) -> Option<String> {
    String::from_utf8_lossy(raw).lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        let n = n.trim().to_ascii_lowercase();
        (n == "call-id" || n == "i").then(|| v.trim().to_string())
    })
}

/// Send over UDP from the Via port; collect non-100 response codes.
async fn send_udp(server: SocketAddr, data: &[u8]) -> Vec<u16> {
    let sock = tokio::net::UdpSocket::bind(("127.0.0.1", via_port(data)))
        .await
        .expect("bind the Via port");
    sock.send_to(data, server).await.expect("send");
    let call_id = call_id_of(data);
    let mut codes = Vec::new();
    let mut buf = vec![0u8; 65535];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await
    {
        let raw = &buf[..n];
        // Only answers to this message: earlier INVITEs' final responses
        // are still retransmitted to port 5060 (Timer G; we never ACK).
        if call_id_of(raw) != call_id {
            continue;
        }
        if let Some(code) = status_of(raw)
            && code != 100
        {
            codes.push(code);
        }
    }
    codes
}

/// Send on a fresh TCP connection; collect non-100 response codes.
async fn send_tcp(server: SocketAddr, data: &[u8]) -> Vec<u16> {
    let mut s = tokio::net::TcpStream::connect(server)
        .await
        .expect("connect");
    s.write_all(data).await.expect("write");
    let mut buf = bytes::BytesMut::new();
    let mut codes = Vec::new();
    loop {
        while let Ok(Some(m)) = swbd::transport::framing::next_message(&mut buf, 1 << 20) {
            if let Some(code) = status_of(&m)
                && code != 100
            {
                codes.push(code);
            }
        }
        match tokio::time::timeout(Duration::from_millis(500), s.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
    }
    codes
}
