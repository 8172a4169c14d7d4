//! A real SIP stack, pjsua2 (PJSIP 2.15, PyPI `pjsua2-python`), sending
//! and receiving DTMF through swbd + swrtp: its INFO digits reach a callee
//! as RFC 4733 (or as INFO when the callee has no telephone-event), INFO
//! from a caller reaches it as RFC 2833/4733 events it decodes, and its RFC
//! 2833 digits reach a caller without telephone-event as INFO. The phone is
//! `swbd/tests/peers/pjsua2_dtmf6.py`; the other side is the scripted UA.
//!
//! With `CI=true` a missing pjsua2 module fails the test;
//! `scripts/test.sh` installs it (`python3 -m pip install pjsua2-python`).
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::ua::{Ua, sdp, sdp_media_addr};
use support::{Options, System};
use swbd::sip::Name;
use swbd::sip::message::HeaderAccess;

/// Whether `python3 -c 'import pjsua2'` works; without it the test fails
/// in CI and is skipped (with a note) elsewhere.
pub fn pjsua2_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import pjsua2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "a real peer this test needs is missing; in CI that is a failure (scripts/test.sh installs pjsua2-python)"
        );
        eprintln!(
            "SKIP: the pjsua2 Python module is missing (python3 -m pip install pjsua2-python; scripts/test.sh does)"
        );
    }
    ok
}

/// The pjsua2 phone, killed on drop; its output lines arrive on `lines`.
pub struct Pjsua {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Pjsua {
    pub fn spawn(dir: &Path, args: &[&str]) -> Pjsua {
        let script = support::repo().join("swbd/tests/peers/pjsua2_dtmf6.py");
        let log = std::fs::File::create(dir.join("pjsua2.stderr")).expect("log");
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn python3");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Pjsua {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line starting with `prefix` (others are kept in `seen`).
    pub async fn wait(&mut self, prefix: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            match self.lines.try_recv() {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(mpsc::TryRecvError::Empty) => {
                    assert!(
                        Instant::now() < deadline,
                        "pjsua2: no {prefix:?} line in {secs} s; it said: {:#?}",
                        self.seen
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(mpsc::TryRecvError::Disconnected) => {
                    panic!("pjsua2 exited before {prefix:?}; it said: {:#?}", self.seen)
                }
            }
        }
    }
}

impl Drop for Pjsua {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sdp_no_te(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// The digits in the RFC 4733 end packets (pt 101) of `packets`, one per
/// event (events are told apart by their timestamps).
fn rfc4733_digits(packets: &[Vec<u8>], seen_ts: &mut Vec<u32>) -> String {
    let mut out = String::new();
    for p in packets {
        if p.get(1).map(|b| b & 0x7f) != Some(101) {
            continue;
        }
        let (Some(ts), Some(event), Some(flags)) = (
            p.get(4..8)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            p.get(12),
            p.get(13),
        ) else {
            continue;
        };
        if flags & 0x80 != 0 && !seen_ts.contains(&ts) {
            seen_ts.push(ts);
            out.extend(swbd::sip::dtmf::DIGITS.chars().nth(usize::from(*event)));
        }
    }
    out
}

/// pjsua2 calls bob (scripted, answering with `bob_sdp`) and sends
/// `1234` as SIP INFO; bob gets them as `want`.
async fn pjsua_info_to_bob(bob_sdp: fn(u16) -> String, rfc4733: bool) {
    let sys = System::start(Options::default()).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);
    let server = sys.sip.to_string();
    let mut pj = Pjsua::spawn(
        &sys.dir,
        &[
            "--user",
            "1001",
            "--server",
            &server,
            "--dial",
            "1002",
            "--dtmf",
            "1234",
            "--dtmf-method",
            "info",
            "--talk",
            "3",
            "--timeout",
            "30",
        ],
    );
    pj.wait("READY", 20).await;
    let inv = bob.request("INVITE").await;
    let body = bob_sdp(bob.rtp_port);
    bob.reply(&inv, 200, "OK", Some("bobtag"), Some(&body))
        .await;
    let _ack = bob.request("ACK").await;
    pj.wait("MEDIA", 10).await;
    pj.wait("SENT", 10).await;
    let mut got = String::new();
    if rfc4733 {
        let mut seen = Vec::new();
        while got.len() < 4 {
            let packets = bob.recv_rtp(5, 100).await;
            assert!(!packets.is_empty(), "RFC 4733 reaches bob; so far {got:?}");
            got.push_str(&rfc4733_digits(&packets, &mut seen));
        }
    } else {
        while got.len() < 4 {
            let info = bob.request("INFO").await;
            assert_eq!(
                info.raw(&Name::CONTENT_TYPE),
                Some("application/dtmf-relay")
            );
            let text = String::from_utf8_lossy(&info.body).into_owned();
            let digit = text
                .strip_prefix("Signal=")
                .and_then(|r| r.chars().next())
                .expect("a Signal line first");
            got.push(digit);
            bob.reply(&info, 200, "OK", None, None).await;
        }
    }
    assert_eq!(got, "1234");
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    pj.wait("DONE", 15).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn pjsua2_info_digits_reach_a_callee_with_telephone_event_as_rfc4733() {
    if !pjsua2_ready() {
        return;
    }
    pjsua_info_to_bob(sdp, true).await;
}

#[tokio::test]
async fn pjsua2_info_digits_reach_a_callee_without_telephone_event_as_info() {
    if !pjsua2_ready() {
        return;
    }
    pjsua_info_to_bob(sdp_no_te, false).await;
}

/// Alice (scripted, no telephone-event) calls pjsua2, which answers and,
/// with `pj_dtmf`, sends those digits as RFC 2833.
async fn alice_calls_pjsua(pj_dtmf: &str) -> (System, Ua, support::ua::OutCall, Pjsua, SocketAddr) {
    let sys = System::start(Options::default()).await;
    let server = sys.sip.to_string();
    let mut args = vec![
        "--user",
        "1002",
        "--server",
        &server,
        "--register",
        "--timeout",
        "40",
    ];
    if !pj_dtmf.is_empty() {
        args.extend(["--dtmf", pj_dtmf, "--dtmf-method", "rfc2833"]);
    }
    let mut pj = Pjsua::spawn(&sys.dir, &args);
    let reg = pj.wait("REG", 20).await;
    assert_eq!(reg, "REG code=200");
    let mut alice = Ua::new("1001", sys.sip).await;
    let offer = sdp_no_te(alice.rtp_port);
    let mut call = alice.invite("1002", Some(&offer)).await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    alice.ack(&call).await;
    let a_media = sdp_media_addr(&ok.body).expect("A's media");
    pj.wait("MEDIA", 10).await;
    (sys, alice, call, pj, a_media)
}

#[tokio::test]
async fn pjsua2_decodes_the_rfc4733_swbd_makes_of_info() {
    if !pjsua2_ready() {
        return;
    }
    let (sys, mut alice, call, mut pj, _) = alice_calls_pjsua("").await;
    for digit in ["5", "6", "#"] {
        let r = alice
            .in_dialog_with_body(
                "INFO",
                &call,
                "application/dtmf-relay",
                &format!("Signal={digit}\r\nDuration=120\r\n"),
            )
            .await;
        assert_eq!(r.code, 200);
    }
    for digit in ["5", "6", "#"] {
        let line = pj.wait("DTMF", 10).await;
        assert_eq!(line, format!("DTMF digit={digit} method=rfc2833"));
    }
    assert_eq!(alice.bye(&call).await.code, 200);
    pj.wait("DONE", 15).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn pjsua2_rfc2833_digits_reach_a_caller_without_telephone_event_as_info() {
    if !pjsua2_ready() {
        return;
    }
    let (sys, mut alice, call, mut pj, a_media) = alice_calls_pjsua("78").await;
    // Alice talks, as phones do (her leg's RTP timeout would not mind).
    alice.send_rtp(a_media, 1, 0xA11CE, &[0xff; 160]).await;
    pj.wait("SENT", 10).await;
    let mut got = String::new();
    while got.len() < 2 {
        let info = alice.request("INFO").await;
        assert_eq!(
            info.raw(&Name::CONTENT_TYPE),
            Some("application/dtmf-relay")
        );
        let text = String::from_utf8_lossy(&info.body).into_owned();
        got.extend(text.strip_prefix("Signal=").and_then(|r| r.chars().next()));
        alice.reply(&info, 200, "OK", None, None).await;
    }
    assert_eq!(got, "78");
    assert_eq!(alice.bye(&call).await.code, 200);
    pj.wait("DONE", 15).await;
    sys.assert_clean().await;
}

/// Whether this pjsua2 can put media on IPv6 (a PJSIP built with
/// `PJ_HAS_IPV6`; the PyPI wheel is not, pjsua aborts on it).
fn pjsua2_has_ipv6_media(dir: &Path) -> bool {
    let script = support::repo().join("swbd/tests/peers/pjsua2_dtmf6.py");
    Command::new("python3")
        .arg(script)
        .args([
            "--probe-media-ipv6",
            "--user",
            "probe",
            "--server",
            "[::1]:9",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `rx` and `tx` of a `STATS rx=N tx=M` line.
fn stats(line: &str) -> (u64, u64) {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("rx="), field("tx="))
}

#[tokio::test]
async fn pjsua2_phones_over_ipv6_call_each_other_with_audio_both_ways() {
    if !pjsua2_ready() {
        return;
    }
    let sys = System::start(Options {
        listen_v6: true,
        ..Default::default()
    })
    .await;
    let server = sys.sip_v6.expect("swbd on [::1]").to_string();
    let media_v6 = pjsua2_has_ipv6_media(&sys.dir);
    let mut common = vec!["--ipv6", "--server", &server];
    if media_v6 {
        common.push("--media-ipv6");
    }
    let callee_args: Vec<&str> = [
        &common[..],
        &["--user", "1002", "--register", "--timeout", "40"],
    ]
    .concat();
    let mut bob = Pjsua::spawn(&sys.dir, &callee_args);
    assert_eq!(bob.wait("REG", 20).await, "REG code=200");
    let caller_dir = sys.dir.join("caller");
    std::fs::create_dir_all(&caller_dir).expect("dir");
    let caller_args: Vec<&str> = [
        &common[..],
        &[
            "--user",
            "1001",
            "--dial",
            "1002",
            "--talk",
            "3",
            "--timeout",
            "30",
        ],
    ]
    .concat();
    let mut alice = Pjsua::spawn(&caller_dir, &caller_args);

    let registrations = sys
        .signaling()
        .await
        .expect("admin")
        .list_registrations(switchboard_proto::admin::v1::ListRegistrationsRequest::default())
        .await
        .expect("registrations")
        .into_inner()
        .registrations;
    assert!(
        format!("{registrations:?}").contains("[::1]"),
        "bob registered over IPv6: {registrations:?}"
    );
    let a_media = alice.wait("MEDIA", 20).await;
    let b_media = bob.wait("MEDIA", 20).await;
    if media_v6 {
        assert!(
            a_media.contains("[::1]") && b_media.contains("[::1]"),
            "{a_media} / {b_media}"
        );
    } else {
        // This PJSIP has IPv4-only media: swbd answered the caller's IPv4
        // offer in IPv4, and the callee, refusing the IPv6 offer (488),
        // got an IPv4 one.
        assert!(
            a_media.contains("127.0.0.1") && b_media.contains("127.0.0.1"),
            "{a_media} / {b_media}"
        );
    }
    let (rx, tx) = stats(&alice.wait("STATS", 20).await);
    assert!(
        rx > 20 && tx > 20,
        "caller: audio both ways (rx {rx}, tx {tx})"
    );
    alice.wait("DONE", 15).await;
    let (rx, tx) = stats(&bob.wait("STATS", 20).await);
    assert!(
        rx > 20 && tx > 20,
        "callee: audio both ways (rx {rx}, tx {tx})"
    );
    bob.wait("DONE", 15).await;
    sys.assert_clean().await;
}
