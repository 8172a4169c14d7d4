//! swctl against an in-process SignalingAdmin server on a unix socket (a
//! stand-in for swbd serving the whole contract): every CLI verb in every
//! output format over real gRPC, the `top` feed's snapshot batching
//! (Reset + snapshot + SnapshotDone delivered as one batch), the UI
//! commands (GetCall ladder, hangup, drain) and reconnecting after the server
//! goes away.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use swctl::cmd::{Backend, Kind, Targets};
use swctl::connect::{Host, SshOptions};
use swctl::fixtures;
use swctl::tui::app::Command;
use swctl::tui::event::{ConnState, Update, feed};
use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::signaling_admin_server::{SignalingAdmin, SignalingAdminServer};
use switchboard_proto::admin::v1::signaling_event::Event as SigEvent;
use tokio::sync::{broadcast, mpsc, oneshot};
use tonic::{Request, Response, Status};

#[derive(Clone)]
struct Mock {
    /// Ends every open Watch stream (so a graceful shutdown can finish).
    closing: broadcast::Sender<()>,
    hangups: Arc<Mutex<Vec<String>>>,
    /// ListMediaNodes calls so far: each answer shows one more active call.
    node_polls: Arc<std::sync::atomic::AtomicU32>,
}

fn ev(event: SigEvent, snapshot: bool) -> pb::SignalingEvent {
    pb::SignalingEvent {
        at: fixtures::ts(0, 0),
        is_snapshot: snapshot,
        event: Some(event),
    }
}

#[tonic::async_trait]
impl SignalingAdmin for Mock {
    async fn get_status(
        &self,
        _: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::Status>, Status> {
        Ok(Response::new(fixtures::status()))
    }
    async fn list_calls(
        &self,
        r: Request<pb::ListCallsRequest>,
    ) -> Result<Response<pb::ListCallsResponse>, Status> {
        let mut calls = fixtures::calls();
        if !r.into_inner().include_ended {
            calls.retain(|c| c.state != pb::CallState::Ended as i32);
        }
        Ok(Response::new(pb::ListCallsResponse { calls }))
    }
    async fn get_call(&self, r: Request<pb::GetCallRequest>) -> Result<Response<pb::Call>, Status> {
        let id = r.into_inner().call_id;
        let mut c = fixtures::calls()
            .into_iter()
            .find(|c| c.call_id.starts_with(&id))
            .ok_or_else(|| Status::not_found(format!("no call {id}")))?;
        c.ladder = fixtures::ladder();
        Ok(Response::new(c))
    }
    async fn hangup_call(
        &self,
        r: Request<pb::HangupCallRequest>,
    ) -> Result<Response<pb::HangupCallResponse>, Status> {
        let id = r.into_inner().call_id;
        if !fixtures::calls().iter().any(|c| c.call_id == id) {
            return Err(Status::not_found(format!("no call {id}")));
        }
        if let Ok(mut h) = self.hangups.lock() {
            h.push(id);
        }
        Ok(Response::new(pb::HangupCallResponse {
            previous_state: pb::CallState::Bridged as i32,
        }))
    }
    async fn list_registrations(
        &self,
        _: Request<pb::ListRegistrationsRequest>,
    ) -> Result<Response<pb::ListRegistrationsResponse>, Status> {
        Ok(Response::new(pb::ListRegistrationsResponse {
            registrations: fixtures::registrations(),
        }))
    }
    async fn list_media_nodes(
        &self,
        _: Request<pb::ListMediaNodesRequest>,
    ) -> Result<Response<pb::ListMediaNodesResponse>, Status> {
        let polls = self
            .node_polls
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut nodes = fixtures::nodes();
        if let Some(n) = nodes.first_mut() {
            n.active_calls += polls;
        }
        Ok(Response::new(pb::ListMediaNodesResponse { nodes }))
    }
    async fn drain_media_node(
        &self,
        r: Request<pb::DrainMediaNodeRequest>,
    ) -> Result<Response<pb::MediaNode>, Status> {
        let name = r.into_inner().name;
        let mut n = fixtures::nodes()
            .into_iter()
            .find(|n| n.name == name)
            .ok_or_else(|| Status::not_found(format!("no node {name}")))?;
        n.state = pb::MediaNodeState::Draining as i32;
        Ok(Response::new(n))
    }
    async fn undrain_media_node(
        &self,
        r: Request<pb::UndrainMediaNodeRequest>,
    ) -> Result<Response<pb::MediaNode>, Status> {
        let name = r.into_inner().name;
        let mut n = fixtures::nodes()
            .into_iter()
            .find(|n| n.name == name)
            .ok_or_else(|| Status::not_found(format!("no node {name}")))?;
        n.state = pb::MediaNodeState::Up as i32;
        Ok(Response::new(n))
    }
    async fn load_dialplan(
        &self,
        _: Request<pb::LoadDialplanRequest>,
    ) -> Result<Response<pb::ReloadDialplanResponse>, Status> {
        // An swbd from before uploads: swctl must fall back (or say why not).
        Err(Status::unimplemented("LoadDialplan"))
    }
    async fn reload_dialplan(
        &self,
        r: Request<pb::ReloadDialplanRequest>,
    ) -> Result<Response<pb::ReloadDialplanResponse>, Status> {
        let path = r.into_inner().path;
        Ok(Response::new(if path.is_empty() {
            pb::ReloadDialplanResponse {
                applied: true,
                version: "3f9a1c".into(),
                errors: vec![],
            }
        } else {
            pb::ReloadDialplanResponse {
                applied: false,
                version: "3f9a1c".into(),
                errors: vec![pb::FileError {
                    file: path,
                    line: 3,
                    column: 7,
                    message: "unknown action \"dail\"".into(),
                }],
            }
        }))
    }
    async fn get_dialplan(
        &self,
        _: Request<pb::GetDialplanRequest>,
    ) -> Result<Response<pb::Dialplan>, Status> {
        Ok(Response::new(pb::Dialplan {
            version: "3f9a1c".into(),
            loaded_at: fixtures::ts(60, 0),
            source: "embedded:default.yaml".into(),
            yaml: "version: 1\n".into(),
            routes: vec![pb::RouteSummary {
                id: "extensions".into(),
                name: "Registered extensions".into(),
                priority: 100,
                enabled: true,
                r#match: "destination 1???".into(),
                actions: 2,
            }],
        }))
    }
    async fn test_route(
        &self,
        r: Request<pb::TestRouteRequest>,
    ) -> Result<Response<pb::TestRouteResponse>, Status> {
        let r = r.into_inner();
        Ok(Response::new(pb::TestRouteResponse {
            matched: r.destination.starts_with('1'),
            route_id: "extensions".into(),
            route_name: "Registered extensions".into(),
            actions: vec![pb::ResolvedAction {
                name: "dial".into(),
                description: format!("user/{}", r.destination),
            }],
            variables: [("caller".to_string(), r.caller)].into_iter().collect(),
            dialplan_version: "3f9a1c".into(),
            no_match_status: 404,
        }))
    }
    async fn list_call_history(
        &self,
        _: Request<pb::ListCallHistoryRequest>,
    ) -> Result<Response<pb::ListCallHistoryResponse>, Status> {
        Ok(Response::new(pb::ListCallHistoryResponse {
            records: fixtures::history(),
            source: "file".into(),
            truncated: false,
        }))
    }
    type WatchStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::SignalingEvent, Status>> + Send>>;
    async fn watch(
        &self,
        r: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let mut first = Vec::new();
        if r.into_inner().snapshot {
            for c in fixtures::calls() {
                first.push(ev(
                    SigEvent::Call(pb::CallEvent {
                        kind: pb::CallEventKind::Created as i32,
                        call: Some(c),
                    }),
                    true,
                ));
            }
            for n in fixtures::nodes() {
                first.push(ev(
                    SigEvent::MediaNode(pb::MediaNodeEvent { node: Some(n) }),
                    true,
                ));
            }
            first.push(ev(SigEvent::SnapshotDone(pb::SnapshotDone {}), true));
        }
        // The snapshot, then nothing until the server closes.
        let mut closing = self.closing.subscribe();
        let end = futures::stream::once(async move {
            let _ = closing.recv().await;
        })
        .filter_map(|()| futures::future::ready(None));
        Ok(Response::new(Box::pin(
            futures::stream::iter(first.into_iter().map(Ok)).chain(end),
        )))
    }
    type ListEventsStream = Self::WatchStream;
    async fn list_events(
        &self,
        _: Request<pb::ListEventsRequest>,
    ) -> Result<Response<Self::ListEventsStream>, Status> {
        Err(Status::unimplemented("ListEvents"))
    }
    async fn get_call_capture(
        &self,
        _: Request<pb::GetCallCaptureRequest>,
    ) -> Result<Response<pb::CallCapture>, Status> {
        Err(Status::unimplemented("GetCallCapture"))
    }
}

struct Server {
    stop: Option<oneshot::Sender<()>>,
    closing: broadcast::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn stop(mut self) {
        let _ = self.closing.send(());
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

fn serve(sock: &Path, mock: Mock) -> Server {
    let closing = mock.closing.clone();
    let _ = std::fs::remove_file(sock);
    let listener = tokio::net::UnixListener::bind(sock).expect("bind");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(SignalingAdminServer::new(mock))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::UnixListenerStream::new(listener),
                async {
                    let _ = rx.await;
                },
            )
            .await;
    });
    Server {
        stop: Some(tx),
        closing,
        task,
    }
}

fn mock() -> Mock {
    Mock {
        closing: broadcast::channel(4).0,
        hangups: Arc::new(Mutex::new(Vec::new())),
        node_polls: Arc::new(std::sync::atomic::AtomicU32::new(0)),
    }
}

fn targets(sock: &Path) -> Targets {
    Targets {
        backends: vec![Backend {
            label: "mock".into(),
            host: Host::Unix(sock.to_path_buf()),
            kind: Kind::Any,
            optional: false,
        }],
        ssh: SshOptions::default(),
        token: None,
    }
}

async fn run_swctl(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        common::swctl(&a)
    })
    .await
    .expect("swctl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verb_in_every_format_over_grpc() {
    let dir: PathBuf = common::tempdir("mock-cli");
    let sock = dir.join("swbd.sock");
    let m = mock();
    let server = serve(&sock, m.clone());
    let host = format!("unix://{}", sock.display());
    for fmt in ["table", "wide", "json", "yaml"] {
        for verb in [
            vec!["status"],
            vec!["calls", "list"],
            vec!["calls", "list", "-a"],
            vec!["calls", "show", "c7f2"],
            vec!["registrations", "list"],
            vec!["nodes", "list"],
            vec!["nodes", "drain", "rtp-a"],
            vec!["nodes", "undrain", "rtp-b"],
            vec!["dialplan", "show"],
            vec!["dialplan", "reload"],
            vec!["dialplan", "test", "1002", "--from", "1001"],
            vec!["dialplan", "test", "999"],
        ] {
            let mut args = vec!["-H".to_string(), host.clone(), "-o".into(), fmt.into()];
            args.extend(verb.iter().map(|s| s.to_string()));
            let (code, out, err) = run_swctl(args).await;
            assert_eq!(code, 0, "{verb:?} -o {fmt}: {err}");
            assert!(!out.is_empty(), "{verb:?} -o {fmt}");
            match fmt {
                "table" => assert!(
                    out.lines().all(|l| l.chars().count() <= 80),
                    "{verb:?} wider than 80:\n{out}"
                ),
                "json" => {
                    serde_json::from_str::<serde_json::Value>(&out)
                        .unwrap_or_else(|e| panic!("{verb:?}: {e}\n{out}"));
                }
                _ => {}
            }
        }
    }
    // Specific answers.
    let (_, out, _) = run_swctl(vec![
        "-H".into(),
        host.clone(),
        "-o".into(),
        "json".into(),
        "calls".into(),
        "show".into(),
        "c7f2".into(),
    ])
    .await;
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    // An array of one, like every listing (JSON.md).
    assert_eq!(v[0]["call_id"], "c7f2a9d1");
    assert_eq!(v[0]["ladder"][0]["direction"], "in");
    assert_eq!(v[0]["ladder"][0]["summary"], "INVITE sip:1002@pbx1 (SDP)");
    let (code, out, err) = run_swctl(vec![
        "-H".into(),
        host.clone(),
        "calls".into(),
        "hangup".into(),
        "9b31e077".into(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "hung up 9b31e077 on swbd (was bridged)");
    assert_eq!(
        m.hangups.lock().map(|h| h.clone()).unwrap_or_default(),
        ["9b31e077"]
    );
    // Not found: exit 1 with a hint.
    let (code, _, err) = run_swctl(vec![
        "-H".into(),
        host.clone(),
        "calls".into(),
        "hangup".into(),
        "nope".into(),
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("no call \"nope\""), "{err}");
    // A refused reload: exit 1, errors as file:line:column.
    let (code, out, _) = run_swctl(vec![
        "-H".into(),
        host.clone(),
        "dialplan".into(),
        "reload".into(),
        "--path".into(),
        "/etc/bad.yaml".into(),
    ])
    .await;
    assert_eq!(code, 1);
    assert!(
        out.contains("/etc/bad.yaml:3:7: unknown action \"dail\""),
        "{out}"
    );
    server.stop().await;
}

async fn next(rx: &mut mpsc::Receiver<Update>) -> Update {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("an update in time")
        .expect("feed alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_feed_batches_the_snapshot_runs_commands_and_reconnects() {
    let dir = common::tempdir("mock-top");
    let sock = dir.join("swbd.sock");
    let m = mock();
    let server = serve(&sock, m.clone());
    let t = targets(&sock);
    let (tx, mut rx) = mpsc::channel(1024);
    let task = tokio::spawn(feed(t.clone(), 0, 1000, tx.clone()));
    let mut app = swctl::tui::app_for(&t);

    // GetStatus, kind, connected, then one batch: Reset, snapshot, SnapshotDone.
    let batch = loop {
        match next(&mut rx).await {
            Update::Batch(b) => break b,
            other => app.apply(other),
        }
    };
    assert!(matches!(batch.first(), Some(Update::Reset { backend: 0 })));
    assert_eq!(
        batch.len(),
        1 + fixtures::calls().len() + fixtures::nodes().len() + 1
    );
    assert!(matches!(
        batch.last(),
        Some(Update::Signaling {
            event: pb::SignalingEvent {
                event: Some(SigEvent::SnapshotDone(_)),
                ..
            },
            ..
        })
    ));
    app.apply(Update::Batch(batch));
    assert_eq!(app.store.calls.len(), 4);
    assert!(app.store.backends[0].synced);
    assert_eq!(
        app.store.backends[0].conn,
        ConnState::Connected { watching: true }
    );

    // UI commands go over gRPC and come back as updates.
    swctl::tui::spawn_command(
        Command::FetchCall((0, "c7f2a9d1".into())),
        t.clone(),
        tx.clone(),
    );
    swctl::tui::spawn_command(
        Command::Hangup((0, "c7f2a9d1".into())),
        t.clone(),
        tx.clone(),
    );
    swctl::tui::spawn_command(
        Command::DrainPool {
            backend: 0,
            node: "rtp-a".into(),
            drain: true,
        },
        t.clone(),
        tx.clone(),
    );
    let mut got_ladder = false;
    let mut flashes = Vec::new();
    while !(got_ladder && flashes.len() == 2) {
        match next(&mut rx).await {
            // GetCall, and GetCallCapture when swbd has one (not this mock).
            Update::Batch(b) => {
                for u in b {
                    if let Update::CallDetail { call, .. } = u {
                        got_ladder = call.ladder.len() == fixtures::ladder().len()
                    }
                }
            }
            Update::Flash(f) => flashes.push(f),
            // The call history this mock does not have.
            Update::History { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    flashes.sort();
    assert_eq!(
        flashes,
        ["hung up c7f2a9d1 (was bridged)", "rtp-a is draining"]
    );

    // The server goes away: reconnecting; it comes back: a fresh batch.
    server.stop().await;
    loop {
        if let Update::Conn {
            state: ConnState::Reconnecting { .. },
            ..
        } = next(&mut rx).await
        {
            break;
        }
    }
    let server = serve(&sock, m.clone());
    loop {
        if let Update::Batch(b) = next(&mut rx).await {
            assert!(matches!(b.first(), Some(Update::Reset { .. })));
            break;
        }
    }
    task.abort();
    server.stop().await;
}

/// The Nodes screen went stale: node events come only on state changes, so
/// a node's call and session counts never moved. The feed now polls the
/// nodes beside the Watch stream, and the counts follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_feed_keeps_node_counts_fresh() {
    let dir = common::tempdir("mock-nodes");
    let sock = dir.join("swbd.sock");
    let m = mock();
    let server = serve(&sock, m.clone());
    let t = targets(&sock);
    let (tx, mut rx) = mpsc::channel(1024);
    let task = tokio::spawn(feed(t.clone(), 0, 1000, tx.clone()));
    let first = fixtures::nodes()
        .first()
        .map(|n| (n.name.clone(), n.active_calls))
        .expect("a fixture node");
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no node polls: {seen:?}"
        );
        if let Update::Nodes { nodes, .. } = next(&mut rx).await {
            let n = nodes
                .iter()
                .find(|n| n.name == first.0)
                .expect("the node in the poll");
            seen.push(n.active_calls);
        }
    }
    assert!(seen[1] > seen[0], "counts move between polls: {seen:?}");
    assert!(seen[0] >= first.1, "{seen:?}");
    task.abort();
    server.stop().await;
}
