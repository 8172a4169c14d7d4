//! RTP inactivity timeout (WatchSessions, admin Watch, Health, ports freed)
//! and the admin Watch snapshot.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use switchboard_proto::admin::v1 as admin;
use switchboard_proto::media::v1 as pb;
use tokio_stream::StreamExt;

#[tokio::test]
async fn silent_session_times_out_everywhere_and_frees_its_ports() {
    let mut cfg = config("7500-7509");
    cfg.rtp_timeout_secs = 1;
    let mut d = Daemon::start(cfg).await;
    let mut watch = d
        .media
        .watch_sessions(pb::WatchSessionsRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut admin_watch = d
        .admin
        .watch(admin::WatchMediaRequest {
            snapshot: true,
            stats_interval_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let peer = Peer::new().await;
    let a = d.answer("to", &peer, "0", "").await;
    // One packet arms the timeout; then silence.
    peer.send_rtp(rtp_addr(&a.local_sdp), 0, 1, 0, 1, &[0; 160])
        .await;

    let created = watch.next().await.unwrap().unwrap();
    assert_eq!(created.kind, pb::SessionEventKind::Created as i32);
    assert_eq!(created.session_id, a.session_id);
    let timed_out = watch.next().await.unwrap().unwrap();
    assert_eq!(timed_out.kind, pb::SessionEventKind::RtpTimeout as i32);
    assert_eq!(timed_out.call_id, "to");

    let mut saw = false;
    while let Some(e) = admin_watch.next().await {
        if let Some(admin::media_admin_event::Event::SessionTimedOut(info)) = e.unwrap().event {
            assert_eq!(info.session_id, a.session_id);
            assert!(info.timed_out);
            saw = true;
            break;
        }
    }
    assert!(saw, "admin Watch reports the timeout");

    let h = d.health().await;
    assert_eq!(h.timed_out_sessions, vec![a.session_id.clone()]);
    assert_eq!(
        h.free_port_pairs, h.total_port_pairs,
        "ports released on timeout"
    );
    let status = d
        .admin
        .get_status(admin::GetMediaStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.rtp_timeouts, 1);
    // swbd then destroys it and gets the final stats.
    let stats = d.destroy(&a.session_id).await;
    assert_eq!(stats.rx.map(|r| r.packets), Some(1));
    let destroyed = watch.next().await.unwrap().unwrap();
    assert_eq!(destroyed.kind, pb::SessionEventKind::Destroyed as i32);
    d.stop().await;
}

#[tokio::test]
async fn ringing_leg_without_media_does_not_time_out() {
    let mut cfg = config("7510-7519");
    cfg.rtp_timeout_secs = 1;
    let mut d = Daemon::start(cfg).await;
    let peer = Peer::new().await;
    let a = d.answer("ring", &peer, "0", "").await;
    // Wait past the timeout (a condition on the watch stream would never come).
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let h = d.health().await;
    assert!(h.timed_out_sessions.is_empty());
    assert_eq!(h.free_port_pairs + 1, h.total_port_pairs);
    d.destroy(&a.session_id).await;
    d.stop().await;
}

#[tokio::test]
async fn admin_watch_starts_with_a_snapshot_and_streams_stats() {
    let mut d = Daemon::start(config("7520-7529")).await;
    let peer = Peer::new().await;
    let a = d.answer("snap", &peer, "0", "").await;
    let mut w = d
        .admin
        .watch(admin::WatchMediaRequest {
            snapshot: true,
            stats_interval_ms: 250,
        })
        .await
        .unwrap()
        .into_inner();
    let first = w.next().await.unwrap().unwrap();
    assert!(first.is_snapshot);
    match first.event {
        Some(admin::media_admin_event::Event::SessionCreated(info)) => {
            assert_eq!(info.session_id, a.session_id);
            assert_eq!(info.call_id, "snap");
            assert_eq!(info.media.map(|m| m.codec), Some(pb::Codec::Pcmu as i32));
        }
        other => panic!("expected snapshot, got {other:?}"),
    }
    let mut saw_stats = false;
    while let Some(e) = w.next().await {
        if let Some(admin::media_admin_event::Event::SessionStats(info)) = e.unwrap().event {
            assert_eq!(info.session_id, a.session_id);
            saw_stats = true;
            break;
        }
    }
    assert!(saw_stats);
    d.admin
        .set_draining(admin::SetDrainingRequest { draining: true })
        .await
        .unwrap();
    let mut saw_status = false;
    while let Some(e) = w.next().await {
        if let Some(admin::media_admin_event::Event::Status(s)) = e.unwrap().event {
            assert!(s.draining);
            saw_status = true;
            break;
        }
    }
    assert!(saw_status);
    d.stop().await;
}

#[tokio::test]
async fn slow_admin_watcher_is_dropped_with_resource_exhausted() {
    use switchboard_proto::admin::v1::media_admin_server::MediaAdmin;
    use swrtp::sdp::{AudioCodec, Offer};
    use swrtp::session::Negotiation;

    let d = Daemon::start(config("7540-7549")).await;
    let node = d.running.as_ref().unwrap().node.clone();
    let admin_svc = swrtp::admin::Admin::new(node.clone());
    // A watcher that never reads.
    let mut stream = admin_svc
        .watch(tonic::Request::new(admin::WatchMediaRequest {
            snapshot: false,
            stats_interval_ms: 0,
        }))
        .await
        .unwrap()
        .into_inner();
    let offer = Offer {
        codecs: vec![AudioCodec::Pcmu],
        te_pt: None,
        ptime: 20,
    };
    // 400 events while it sleeps; the daemon never waits for it.
    for _ in 0..200 {
        let (id, _, _) = node
            .create("slow", "a", Negotiation::Offer(offer.clone()))
            .unwrap();
        node.destroy(&id).await.unwrap();
    }
    let mut delivered = 0;
    let mut end = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(_) => delivered += 1,
            Err(status) => {
                end = Some(status);
                break;
            }
        }
    }
    let status = end.expect("the slow watcher's stream ends with an error");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(
        status.message().contains("too slow"),
        "{}",
        status.message()
    );
    assert!(delivered < 400, "{delivered}");
    assert!(stream.next().await.is_none(), "and then ends");
    d.stop().await;
}

#[tokio::test]
async fn admin_watch_snapshot_larger_than_the_queue_is_complete_and_ends_with_snapshot_done() {
    use swrtp::sdp::{AudioCodec, Offer};
    use swrtp::session::Negotiation;

    // More sessions than the stream's 256-event queue.
    let mut d = Daemon::start(config("42000-42799")).await;
    let node = d.running.as_ref().unwrap().node.clone();
    let offer = Offer {
        codecs: vec![AudioCodec::Pcmu],
        te_pt: None,
        ptime: 20,
    };
    let mut ids = std::collections::HashSet::new();
    for i in 0..300 {
        let (id, _, _) = node
            .create(&format!("big-{i}"), "a", Negotiation::Offer(offer.clone()))
            .unwrap();
        ids.insert(id);
    }
    let mut w = d
        .admin
        .watch(admin::WatchMediaRequest {
            snapshot: true,
            stats_interval_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = std::collections::HashSet::new();
    loop {
        let e = w.next().await.expect("stream open").expect("event");
        assert!(e.is_snapshot, "only snapshot events before SnapshotDone");
        match e.event {
            Some(admin::media_admin_event::Event::SessionCreated(info)) => {
                seen.insert(info.session_id);
            }
            Some(admin::media_admin_event::Event::SnapshotDone(_)) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ids, "every session is in the snapshot, once");
    d.stop().await;
}
