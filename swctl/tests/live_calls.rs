//! With a call in progress on a real swbd + swrtp: every listing in every
//! format, `calls show` with its ladder, and the `swctl top` feed (Watch with
//! snapshot) seeing the call appear and end. Needs the B2BUA.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod common;

use std::time::Duration;

use common::{hold_dialplan, place_call, start_pbx, swctl, tempdir};
use swctl::cmd::{Backend, Kind, Targets};
use swctl::connect::{Host, SshOptions};
use swctl::tui::event::{ConnState, feed};
use tokio::sync::mpsc;

#[test]
fn listings_with_a_live_call() {
    let dir = tempdir("live");
    let plan = hold_dialplan(&dir, "6s");
    let pbx = start_pbx(&dir, &plan);
    let swbd = format!("unix://{}", pbx.swbd_socket.display());
    let swrtp = format!("unix://{}", pbx.swrtp_socket.display());
    let _phone = place_call(pbx.sip_port, "7777");

    let (code, out, err) = swctl(&["-H", &swbd, "calls", "list", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let calls: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let call = &calls[0];
    assert_eq!(call["caller"], "4321");
    assert_eq!(call["destination"], "7777");
    assert_eq!(call["route_id"], "hold");
    let id = call["call_id"].as_str().expect("id").to_string();

    for fmt in ["table", "wide", "json", "yaml"] {
        for args in [
            vec!["calls", "list"],
            vec!["calls", "show", id.as_str()],
            vec!["registrations", "list"],
            vec!["nodes", "list"],
            vec!["dialplan", "show"],
            vec!["dialplan", "test", "7777", "--from", "4321"],
        ] {
            let mut full = vec!["-H", swbd.as_str(), "-o", fmt];
            full.extend(&args);
            let (code, out, err) = swctl(&full);
            assert_eq!(code, 0, "{args:?} {fmt}: {err}");
            if fmt == "table" {
                assert!(
                    out.lines().all(|l| l.chars().count() <= 80),
                    "{args:?}:\n{out}"
                );
            }
            if fmt == "json" {
                serde_json::from_str::<serde_json::Value>(&out).expect("JSON");
            }
        }
        let (code, out, err) = swctl(&["-H", &swrtp, "-o", fmt, "media", "sessions"]);
        assert_eq!(code, 0, "media sessions {fmt}: {err}");
        if fmt == "json" {
            let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
            assert!(v.as_array().is_some_and(|a| !a.is_empty()), "{out}");
        }
    }
    let (code, out, err) = swctl(&["-H", &swbd, "calls", "show", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("A -> sb") && out.contains("INVITE"), "{out}");

    // Both daemons at once: merged, with a BACKEND column.
    let (code, out, err) = swctl(&["-H", &swbd, "-H", &swrtp, "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("swbd") && out.contains("swrtp"), "{out}");

    let (code, out, err) = swctl(&["-H", &swbd, "calls", "hangup", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("hung up"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_feed_sees_a_call_come_and_go() {
    let dir = tempdir("live-top");
    let plan = hold_dialplan(&dir, "2s");
    let pbx = start_pbx(&dir, &plan);
    let targets = Targets {
        backends: vec![
            Backend {
                label: "pbx".into(),
                host: Host::Unix(pbx.swbd_socket.clone()),
                kind: Kind::Any,
                optional: false,
            },
            Backend {
                label: "rtp".into(),
                host: Host::Unix(pbx.swrtp_socket.clone()),
                kind: Kind::Any,
                optional: false,
            },
        ],
        ssh: SshOptions::default(),
        token: None,
    };
    let (tx, mut rx) = mpsc::channel(4096);
    let feeds = [
        tokio::spawn(feed(targets.clone(), 0, 250, tx.clone())),
        tokio::spawn(feed(targets.clone(), 1, 250, tx)),
    ];
    let mut app = swctl::tui::app_for(&targets);
    let mut pump = async |app: &mut swctl::tui::app::App,
                          secs: u64,
                          until: &dyn Fn(&swctl::tui::app::App) -> bool| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while !until(app) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(u)) => app.apply(u),
                _ => return false,
            }
        }
        true
    };
    assert!(
        pump(&mut app, 20, &|a| a
            .store
            .backends
            .iter()
            .all(|b| b.conn == ConnState::Connected { watching: true }))
        .await,
        "both Watch streams open: {:?}",
        app.store.backends
    );
    let port = pbx.sip_port;
    let phone = tokio::task::spawn_blocking(move || place_call(port, "7777"));
    assert!(
        pump(&mut app, 20, &|a| a.store.calls.values().any(|c| c.caller
            == "4321"
            && c.state
                != switchboard_proto::admin::v1::CallState::Ended as i32))
        .await,
        "the call shows up live"
    );
    assert!(
        pump(&mut app, 20, &|a| !a.store.sessions.is_empty()).await,
        "its media session too"
    );
    let _phone = phone.await.expect("phone");
    assert!(
        pump(&mut app, 20, &|a| a.store.calls.values().all(
            |c| c.state == switchboard_proto::admin::v1::CallState::Ended as i32
        ))
        .await,
        "the call ends"
    );
    // Stop the feeds before the daemons go.
    for f in feeds {
        f.abort();
    }
}
