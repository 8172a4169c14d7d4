//! Peer data cannot forge log lines or command the operator's terminal
//! (issue #13): a real swbd at `--log-level debug`, its stderr a pipe (as
//! under systemd or `2>swbd.log`), gets SIP whose logged parts carry CR, LF
//! and ESC: percent-encoded in the Request-URI, From and To users (swbd
//! logs them decoded), raw in a display name, a User-Agent and a datagram
//! that does not parse. The captured log must have no raw ESC (neither the
//! peer's nor colour codes: it is not a terminal), no CR, no line that the
//! peer's text starts, and it must show the peer's text escaped (so the
//! values really were logged).
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Proc, free_udp_port, tempdir};

/// Every line swbd wrote to stderr, raw bytes.
type Lines = Arc<Mutex<Vec<Vec<u8>>>>;

fn start_swbd() -> (Proc, std::net::SocketAddr, Lines) {
    let dir = tempdir("hostile-logs");
    let port = free_udp_port();
    let cfg = dir.join("swbd.yaml");
    // No media node answers on port 9 (discard): calls fail after logging.
    std::fs::write(
        &cfg,
        format!(
            "auth: {{ enabled: false }}\n\
             sip: {{ listen: [\"udp:127.0.0.1:{port}\"], domains: [\"127.0.0.1\"] }}\n\
             admin: {{ socket: \"{}\" }}\n\
             media: {{ nodes: [{{ name: rtp-a, address: \"tcp://127.0.0.1:9\" }}] }}\n",
            dir.join("swbd.sock").display()
        ),
    )
    .expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_swbd"))
        .args([
            "--config",
            cfg.to_str().expect("utf-8"),
            "--log-level",
            "debug",
        ])
        // The level comes from the flag; colours must be off because of the
        // pipe alone.
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn swbd");
    let stderr = child.stderr.take().expect("piped stderr");
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stderr);
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => sink.lock().expect("lines").push(line),
            }
        }
    });
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    (Proc { child }, addr, lines)
}

fn wait_for_log(lines: &Lines, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if lines
            .lock()
            .expect("lines")
            .iter()
            .any(|l| String::from_utf8_lossy(l).contains(what))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "swbd never logged {what:?}; log:\n{}",
            dump(lines)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn dump(lines: &Lines) -> String {
    lines
        .lock()
        .expect("lines")
        .iter()
        .map(|l| format!("{:?}", String::from_utf8_lossy(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A UDP peer of its own for each request (an unACKed INVITE's final
/// response keeps coming back to its socket).
fn peer() -> (UdpSocket, String) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let me = sock.local_addr().expect("addr").to_string();
    (sock, me)
}

/// Send `msg` and wait for any response (swbd got and handled it).
fn exchange(sock: &UdpSocket, to: std::net::SocketAddr, msg: &[u8]) -> String {
    sock.send_to(msg, to).expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).expect("a response from swbd");
    String::from_utf8_lossy(buf.get(..n).expect("n fits")).into_owned()
}

fn request(method: &str, ruri: &str, from: &str, to: &str, me: &str, extra: &str) -> String {
    format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK{method}{n}\r\n\
         Max-Forwards: 70\r\n\
         From: {from};tag=hostile\r\n\
         To: {to}\r\n\
         Call-ID: hostile-{method}-{n}@127.0.0.1\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:c@{me}>\r\n\
         {extra}Content-Length: 0\r\n\r\n",
        n = std::process::id()
    )
}

#[test]
fn peer_control_characters_are_escaped_in_the_log() {
    let (mut swbd, server, lines) = start_swbd();
    wait_for_log(&lines, "SIP listening");

    // INVITE: the call task logs the decoded Request-URI user (destination)
    // and From user (caller).
    let (sock, me) = peer();
    let invite = request(
        "INVITE",
        "sip:evil%0D%0AINJECTED-RURI%1B%5B31m@127.0.0.1",
        "<sip:caller%0D%0AINJECTED-FROM%1B%5D0;pwned%07@127.0.0.1>",
        "<sip:evil%0D%0AINJECTED-TO%1B%5B31m@127.0.0.1>",
        &me,
        "",
    );
    let r = exchange(&sock, server, invite.as_bytes());
    assert!(r.starts_with("SIP/2.0 "), "{r}");
    wait_for_log(&lines, "call ended");

    // REGISTER: the registrar logs the decoded AOR (To user).
    let (sock, me) = peer();
    let register = request(
        "REGISTER",
        "sip:127.0.0.1",
        "<sip:reg%0D%0AINJECTED-AOR%1B%5B5m@127.0.0.1>",
        "<sip:reg%0D%0AINJECTED-AOR%1B%5B5m@127.0.0.1>",
        &me,
        "Expires: 60\r\n",
    );
    let r = exchange(&sock, server, register.as_bytes());
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    wait_for_log(&lines, "registration");

    // Raw ESC in a display name and a User-Agent: whatever swbd makes of
    // them (an OPTIONS answer or a 400 with the reason logged).
    let (sock, me) = peer();
    let options = request(
        "OPTIONS",
        "sip:127.0.0.1",
        "\"Mal\x1b[2Jlory\r\nINJECTED-NAME\" <sip:m@127.0.0.1>",
        "<sip:127.0.0.1>",
        &me,
        "User-Agent: evil\x1b]0;pwned\x07\x1b[31m\r\n",
    );
    let _ = exchange(&sock, server, options.as_bytes());
    // Not SIP at all, with a forged line in it: logged as unparseable.
    let (sock, _) = peer();
    sock.send_to(
        b"INVITE sip:x\x1b[31m@h SIP/2.0\r\nINJECTED-GARBAGE: 1\x1b[0m\r\n\r\n",
        server,
    )
    .expect("send");
    wait_for_log(&lines, "unparseable message dropped");
    // One more round trip, so every datagram before it has been logged.
    let (sock, me) = peer();
    let ping = request(
        "OPTIONS",
        "sip:127.0.0.1",
        "<sip:p@127.0.0.1>",
        "<sip:127.0.0.1>",
        &me,
        "",
    );
    let _ = exchange(&sock, server, ping.as_bytes());
    swbd.kill();

    let log = lines.lock().expect("lines").clone();
    assert!(!log.is_empty());
    for line in &log {
        let text = String::from_utf8_lossy(line);
        assert!(!line.contains(&0x1b), "raw ESC in the log: {text:?}");
        assert!(!line.contains(&b'\r'), "raw CR in the log: {text:?}");
        let body = text.strip_suffix('\n').unwrap_or(&text);
        assert!(
            !body.chars().any(char::is_control),
            "control character (C0, DEL or C1) in the log: {text:?}"
        );
        assert!(
            !text.trim_start().starts_with("INJECTED"),
            "a peer started a log line: {text:?}\nlog:\n{}",
            dump(&lines)
        );
    }
    // The peer's values were logged as text: percent escapes that would
    // decode to control characters are not decoded (`SipUri::user_decoded`),
    // and raw control characters in a header are refused at parse (400),
    // with the reason logged.
    let all = String::from_utf8_lossy(&log.concat()).into_owned();
    for logged in [
        "destination=evil%0D%0AINJECTED-RURI%1B%5B31m",
        "caller=caller%0D%0AINJECTED-FROM%1B%5D0;pwned%07",
        "aor=sip:reg%0D%0AINJECTED-AOR%1B%5B5m@127.0.0.1",
        "control character in the",
    ] {
        assert!(all.contains(logged), "{logged} not in the log:\n{all}");
    }
}
