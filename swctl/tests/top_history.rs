//! `swctl top`'s data path, headless, against a real swbd + swrtp
//! (issue #16): a call that failed before top started (404, the dial
//! target unknown) is in the failed-calls view with its cause, loaded from
//! the call history at connect; one that fails while top runs arrives
//! through the follower; a dialplan reload refused before top started is
//! in the header. (`swctl top` without a terminal: `top_in_a_pty.rs`.)
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{start_pbx, swctl, tempdir};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use swctl::cmd::{Backend, Kind, Targets};
use swctl::connect::{Host, SshOptions};
use swctl::tui::app::App;
use swctl::tui::event::{ConnState, feed};
use tokio::sync::mpsc;

const PLAN: &str = "version: 1
no_match: { code: 404, reason: Not Found }
routes:
  - id: ext
    match: { destination: \"1???\" }
    actions:
      - dial: { target: \"user/${destination}\", timeout: 5s, on_failure: stop }
";

/// An INVITE from 4321 to `dest`; returns the final status (ACKed).
fn failed_call(sip_port: u16, dest: &str) -> u16 {
    let phone = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let me = phone.local_addr().expect("addr");
    let call_id = format!("top-{dest}-{}@127.0.0.1", me.port());
    let head = |method: &str, to: &str| {
        format!(
            "{method} sip:{dest}@127.0.0.1:{sip_port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-t{dest};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:4321@127.0.0.1>;tag=top\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 {method}\r\nContact: <sip:4321@{me}>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let to = format!("<sip:{dest}@127.0.0.1>");
    phone
        .send_to(head("INVITE", &to).as_bytes(), ("127.0.0.1", sip_port))
        .expect("send");
    phone
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    loop {
        let mut buf = [0u8; 65535];
        let (n, _) = phone.recv_from(&mut buf).expect("a response");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let code: u16 = text
            .get(8..11)
            .and_then(|c| c.parse().ok())
            .expect("status line");
        if code >= 200 {
            let to = text
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("to:"))
                .and_then(|l| l.get(3..))
                .map(str::trim)
                .unwrap_or_default()
                .to_string();
            let _ = phone.send_to(head("ACK", &to).as_bytes(), ("127.0.0.1", sip_port));
            return code;
        }
    }
}

fn screen(app: &mut App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    t.draw(|f| app.render(f)).expect("draw");
    let buf = t.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..h {
        for x in 0..w {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_failed_calls_with_their_cause_and_the_dialplan_status() {
    let dir = tempdir("top-history");
    let plan = dir.join("plan.yaml");
    std::fs::write(&plan, PLAN).expect("plan");
    let pbx = start_pbx(&dir, &plan);
    let host = format!("unix://{}", pbx.swbd_socket.display());

    // Before top: a failed call, and a reload swbd refuses.
    let port = pbx.sip_port;
    let code = tokio::task::spawn_blocking(move || failed_call(port, "1029"))
        .await
        .expect("phone");
    assert_eq!(code, 404);
    // Its record is acknowledged a little after the call ends (the writer
    // gathers records for up to 25 ms): top loads what is written.
    let h = host.clone();
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, out, _) = swctl(&["--host", &h, "status", "-o", "json"]);
            let written = serde_json::from_str::<serde_json::Value>(&out)
                .ok()
                .and_then(|v| v[0]["cdr"]["written_file"].as_u64())
                .unwrap_or(0);
            if written >= 1 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the 404's CDR never written: {out}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .expect("status");
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\nroutes:\n  - id: x\n    match: { destination: \"1\" }\n    actions:\n      - dail: { target: user/1 }\n",
    )
    .expect("bad plan");
    let bad_path = bad.to_str().expect("utf-8").to_string();
    let h = host.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        swctl(&["--host", &h, "dialplan", "reload", "--path", &bad_path])
    })
    .await
    .expect("swctl");
    assert_eq!(code, 1, "swbd refuses the plan: {out}{err}");

    let targets = Targets {
        backends: vec![Backend {
            label: "pbx".into(),
            host: Host::Unix(pbx.swbd_socket.clone()),
            kind: Kind::Any,
            optional: false,
        }],
        ssh: SshOptions::default(),
        token: None,
    };
    let (tx, mut rx) = mpsc::channel(4096);
    let task = tokio::spawn(feed(targets.clone(), 0, 250, tx));
    let mut app = swctl::tui::app_for(&targets);
    let mut pump = async |app: &mut App, what: &str, until: &dyn Fn(&mut App) -> bool| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !until(app) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(u)) => app.apply(u),
                _ => panic!("{what}: gave up waiting; {:#?}", app.store.history),
            }
        }
    };
    pump(&mut app, "connected", &|a| {
        a.store.backends[0].conn == ConnState::Connected { watching: true }
    })
    .await;

    // Loaded at connect: the 404 with the target that failed.
    let cause = |a: &mut App, dest: &str| -> Option<String> {
        let filter = String::new();
        a.calls
            .failed
            .rows(&a.store, &filter)
            .iter()
            .find(|r| r.destination == dest)
            .map(|r| format!("{} {}", r.code, r.cause))
    };
    pump(&mut app, "the 404 from the history", &|a| {
        cause(a, "1029").is_some()
    })
    .await;
    let c = cause(&mut app, "1029").expect("row");
    assert!(c.starts_with("404 user/1029 404 Not Found"), "{c}");

    app.handle_key(crossterm::event::KeyEvent::new(
        crossterm::event::KeyCode::Char('f'),
        crossterm::event::KeyModifiers::NONE,
    ));
    let text = screen(&mut app, 160, 30);
    assert!(text.contains("user/1029 404 Not Found"), "{text}");
    // The header: the plan in force, and the reload swbd refused.
    assert!(text.contains("reload FAILED"), "{text}");
    assert!(text.contains("dail"), "the error names the bad key: {text}");

    // While top runs: the follower brings the next failure's record.
    let code = tokio::task::spawn_blocking(move || failed_call(port, "1030"))
        .await
        .expect("phone");
    assert_eq!(code, 404);
    pump(&mut app, "the live failure's record", &|a| {
        a.store
            .history
            .newest_first()
            .any(|(_, r)| r.destination == "1030" && r.status == "failed")
    })
    .await;
    let c = cause(&mut app, "1030").expect("row");
    assert!(c.contains("user/1030 404 Not Found"), "{c}");
    task.abort();
}
