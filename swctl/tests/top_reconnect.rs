//! `swctl top`'s feed against a real swbd that dies and comes back: the
//! state goes Connected -> Reconnecting -> Connected, and the app shows
//! "reconnecting…" in between.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod common;

use std::time::Duration;

use common::{start_swbd, tempdir};
use swctl::cmd::{Backend, Kind, Targets};
use swctl::connect::{Host, SshOptions};
use swctl::tui::event::{ConnState, Update, feed};
use tokio::sync::mpsc;

async fn next_conn(rx: &mut mpsc::Receiver<Update>, secs: u64) -> (ConnState, Vec<Update>) {
    let mut others = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let u = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("a connection state in time")
            .expect("feed alive");
        match u {
            Update::Conn { state, .. } => return (state, others),
            other => others.push(other),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_reconnects_when_swbd_restarts() {
    let dir = tempdir("reconnect");
    let sock = dir.join("swbd.sock");
    let swbd = start_swbd(&dir, &sock, "pbx-r1");
    let targets = Targets {
        backends: vec![Backend {
            label: "pbx".into(),
            host: Host::Unix(sock.clone()),
            kind: Kind::Any,
            optional: false,
        }],
        ssh: SshOptions::default(),
        token: None,
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let task = tokio::spawn(feed(targets.clone(), 0, 1000, tx));

    let mut app = swctl::tui::app_for(&targets);
    let (state, before) = next_conn(&mut rx, 20).await;
    assert!(matches!(state, ConnState::Connected { .. }), "{state:?}");
    assert!(
        before
            .iter()
            .any(|u| matches!(u, Update::SwbdStatus { status, .. } if status.node_id == "pbx-r1")),
        "GetStatus seen first"
    );
    for u in before {
        app.apply(u);
    }
    app.apply(Update::Conn { backend: 0, state });

    // swbd dies.
    assert!(swbd.stop().success());
    let (state, _) = next_conn(&mut rx, 20).await;
    let ConnState::Reconnecting { attempt, error } = &state else {
        panic!("expected reconnecting, got {state:?}")
    };
    assert_eq!(*attempt, 1);
    assert!(!error.is_empty());
    app.apply(Update::Conn {
        backend: 0,
        state: state.clone(),
    });
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(80, 24)).expect("term");
    t.draw(|f| app.render(f)).expect("draw");
    let top: String = (0..80)
        .map(|x| t.backend().buffer()[(x, 0)].symbol().to_string())
        .collect();
    assert!(top.contains("reconnecting…"), "{top}");

    // swbd is back on the same socket, with a new name: the feed finds it.
    let _swbd2 = start_swbd(&dir, &sock, "pbx-r2");
    let mut seen_status = false;
    loop {
        let (state, others) = next_conn(&mut rx, 30).await;
        seen_status |= others
            .iter()
            .any(|u| matches!(u, Update::SwbdStatus { status, .. } if status.node_id == "pbx-r2"));
        if matches!(state, ConnState::Connected { .. }) {
            break;
        }
    }
    assert!(seen_status, "status of the restarted swbd");
    task.abort();
}
