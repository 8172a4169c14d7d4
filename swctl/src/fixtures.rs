//! Constructed protobuf values for rendering tests, snapshots and the
//! `top` benchmark. Deterministic: fixed clock, no randomness.

use std::time::{Duration, SystemTime};

use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::media_admin_event::Event as MediaEvent;
use switchboard_proto::admin::v1::signaling_event::Event as SigEvent;
use switchboard_proto::media::v1 as media;

use crate::cmd::Kind;
use crate::tui::app::App;
use crate::tui::event::{ConnState, Update};
use crate::tui::store::Store;
use crate::tui::widgets::Theme;

/// 2026-11-27T10:14:31Z, the fixtures' "now".
pub const NOW_SECS: i64 = 1_795_774_471;

/// The fixed clock.
pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECS as u64)
}

/// A timestamp `ago` seconds before [`now`], with `ms` milliseconds.
pub fn ts(ago: i64, ms: i32) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: NOW_SECS - ago,
        nanos: ms * 1_000_000,
    })
}

fn leg(
    role: pb::LegRole,
    uri: &str,
    addr: &str,
    state: pb::LegState,
    session: &str,
    codec: &str,
) -> pb::Leg {
    pb::Leg {
        role: role as i32,
        sip_call_id: format!("{session}@sip"),
        remote_uri: uri.into(),
        remote_address: addr.into(),
        state: state as i32,
        media_session_id: session.into(),
        codec: codec.into(),
        target: if role == pb::LegRole::B {
            "user/1002".into()
        } else {
            String::new()
        },
    }
}

/// A call; `answered_ago` 0 means not answered.
#[allow(clippy::too_many_arguments)]
pub fn call(
    id: &str,
    caller: &str,
    dest: &str,
    state: pb::CallState,
    created_ago: i64,
    answered_ago: i64,
    node: &str,
    codec: &str,
) -> pb::Call {
    let a = leg(
        pb::LegRole::A,
        &format!("sip:{caller}@10.0.0.5:5060"),
        "udp 10.0.0.5:5060",
        if answered_ago > 0 {
            pb::LegState::Confirmed
        } else {
            pb::LegState::Early
        },
        &format!("{id}-a"),
        codec,
    );
    let b = leg(
        pb::LegRole::B,
        &format!("sip:{dest}@10.0.0.7:5062"),
        "udp 10.0.0.7:5062",
        if answered_ago > 0 {
            pb::LegState::Confirmed
        } else {
            pb::LegState::Early
        },
        &format!("{id}-b"),
        codec,
    );
    pb::Call {
        call_id: id.into(),
        state: state as i32,
        caller: caller.into(),
        destination: dest.into(),
        route_id: "extensions".into(),
        dialplan_version: "3f9a1c".into(),
        media_node: node.into(),
        created_at: ts(created_ago, 1),
        answered_at: if answered_ago > 0 {
            ts(answered_ago, 0)
        } else {
            None
        },
        ended_at: None,
        duration: Some(prost_types::Duration {
            seconds: answered_ago,
            nanos: 0,
        }),
        legs: vec![a, b],
        end_cause: String::new(),
        end_status: 0,
        ladder: Vec::new(),
    }
}

/// The calls of the design mock-up.
pub fn calls() -> Vec<pb::Call> {
    let mut ringing = call(
        "41d0c5e2",
        "+15550100",
        "1001",
        pb::CallState::Ringing,
        2,
        0,
        "rtp-a",
        "",
    );
    ringing.legs.truncate(1);
    ringing.legs[0].codec.clear();
    vec![
        call(
            "c7f2a9d1",
            "1001",
            "1002",
            pb::CallState::Bridged,
            135,
            133,
            "rtp-a",
            "PCMU",
        ),
        call(
            "9b31e077",
            "1003",
            "500",
            pb::CallState::Answered,
            4,
            4,
            "rtp-b",
            "PCMA",
        ),
        ringing,
        call(
            "e5a0b3c4",
            "sip:a-caller-with-a-very-long-display-name@example.com",
            "+4930123456789012",
            pb::CallState::EarlyMedia,
            9,
            0,
            "rtp-a",
            "PCMU",
        ),
    ]
}

/// The ladder of the first call.
pub fn ladder() -> Vec<pb::SipMessageRecord> {
    let m = |ago: i64, ms: i32, leg: pb::LegRole, inbound: bool, summary: &str| {
        let raw = format!(
            "{summary} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK776asdhds\r\nFrom: <sip:1001@pbx1>;tag=1928301774\r\nTo: <sip:1002@pbx1>\r\nCall-ID: a84b4c76e66710@10.0.0.5\r\nCSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        pb::SipMessageRecord {
            at: ts(ago, ms),
            leg: leg as i32,
            inbound,
            summary: summary.into(),
            raw,
        }
    };
    vec![
        m(135, 1, pb::LegRole::A, true, "INVITE sip:1002@pbx1 (SDP)"),
        m(135, 2, pb::LegRole::A, false, "100 Trying"),
        m(
            135,
            10,
            pb::LegRole::B,
            false,
            "INVITE sip:1002@10.0.0.7:5062 (SDP)",
        ),
        m(135, 150, pb::LegRole::B, true, "180 Ringing"),
        m(135, 151, pb::LegRole::A, false, "180 Ringing"),
        m(133, 900, pb::LegRole::B, true, "200 OK (SDP)"),
        m(133, 901, pb::LegRole::A, false, "200 OK (SDP)"),
        m(133, 950, pb::LegRole::A, true, "ACK"),
    ]
}

/// A media session with stats.
pub fn session(
    id: &str,
    call_id: &str,
    leg: &str,
    rx: u64,
    lost: i64,
    jitter: f64,
) -> pb::MediaSessionInfo {
    pb::MediaSessionInfo {
        session_id: id.into(),
        call_id: call_id.into(),
        leg: leg.into(),
        created_at: ts(135, 0),
        media: Some(media::NegotiatedMedia {
            codec: media::Codec::Pcmu as i32,
            payload_type: 0,
            telephone_event_payload_type: 101,
            ptime_ms: 20,
            direction: media::Direction::Sendrecv as i32,
            local_rtp_address: "10.0.0.1:10002".into(),
            remote_rtp_address: "10.0.0.5:4000".into(),
        }),
        bridged_with: format!("{call_id}-other"),
        playing: String::new(),
        stats: Some(media::SessionStats {
            rx: Some(media::DirectionStats {
                packets: rx,
                bytes: rx * 160,
                packets_lost: lost,
                jitter_ms: jitter,
                last_packet_at: ts(0, 0),
            }),
            tx: Some(media::DirectionStats {
                packets: rx + 2,
                bytes: (rx + 2) * 160,
                packets_lost: 0,
                jitter_ms: 0.0,
                last_packet_at: ts(0, 0),
            }),
            remote_address: "10.0.0.5:4000".into(),
            dropped: 0,
        }),
        timed_out: false,
        rtp_port: 10002,
        owner: "swbd-1/4f1c9a0e7d2b3a10".into(),
        lease_remaining_ms: 27_400,
    }
}

/// Sessions for the fixture calls.
pub fn sessions() -> Vec<pb::MediaSessionInfo> {
    vec![
        session("c7f2a9d1-a", "c7f2a9d1", "a", 6650, 0, 2.1),
        session("c7f2a9d1-b", "c7f2a9d1", "b", 6648, 0, 1.8),
        session("9b31e077-a", "9b31e077", "a", 200, 1, 4.2),
    ]
}

/// Registrations.
pub fn registrations() -> Vec<pb::Registration> {
    ["1001", "1002", "1003"]
        .iter()
        .enumerate()
        .map(|(i, u)| pb::Registration {
            aor: format!("sip:{u}@pbx1"),
            contact: format!("sip:{u}@10.0.0.{}:5060;transport=udp", 5 + i),
            source: format!("udp 10.0.0.{}:5060", 5 + i),
            q: 1.0,
            expires_at: ts(-(300 + 60 * i as i64), 0),
            registered_at: ts(3600, 0),
            user_agent: "baresip 3.10".into(),
            sip_call_id: format!("reg-{u}"),
        })
        .collect()
}

/// Pool nodes.
pub fn nodes() -> Vec<pb::MediaNode> {
    vec![
        pb::MediaNode {
            name: "rtp-a".into(),
            address: "tcp://10.0.0.8:9090".into(),
            state: pb::MediaNodeState::Up as i32,
            active_calls: 3,
            sessions: 5,
            free_port_pairs: 4995,
            last_seen: ts(1, 0),
            drained: false,
            last_error: String::new(),
            ..Default::default()
        },
        pb::MediaNode {
            name: "rtp-b".into(),
            address: "tcp://10.0.0.9:9090".into(),
            state: pb::MediaNodeState::Draining as i32,
            active_calls: 1,
            sessions: 1,
            free_port_pairs: 4999,
            last_seen: ts(1, 0),
            drained: false,
            last_error: String::new(),
            // A drain with migration under way (`swctl nodes drain --migrate`).
            migrating: 1,
            migrated: 4,
            migration_failed: 1,
        },
    ]
}

/// A swrtp status.
pub fn media_status() -> pb::MediaStatus {
    pb::MediaStatus {
        node_id: "rtp-a".into(),
        version: "0.1.0".into(),
        started_at: ts(7200, 0),
        active_sessions: 5,
        active_bridges: 2,
        active_playbacks: 1,
        free_port_pairs: 4995,
        total_port_pairs: 5000,
        port_min: 10000,
        port_max: 19999,
        draining: false,
        public_address: "10.0.0.8".into(),
        packets_relayed: 123_456,
        packets_dropped: 7,
        rtp_timeouts: 0,
        relay_latency: None,
        leases_expired: 0,
        stale_owner_sessions_dropped: 0,
    }
}

/// Call detail records (`swctl calls history`): an answered call, a busy
/// one, an unknown user, and a one-way call from a caller whose id is a
/// spreadsheet formula.
pub fn history() -> Vec<pb::CallDetailRecord> {
    let dir = |packets: u64, lost: i64, jitter_ms: f64| pb::CdrDirection {
        packets,
        bytes: packets * 160,
        lost,
        jitter_ms,
    };
    let rtp = |rx: u64, tx: u64, mos: f64| pb::CdrRtp {
        rx: Some(dir(rx, if rx > 0 { 3 } else { 0 }, 1.25)),
        tx: Some(dir(tx, 0, 0.0)),
        mos,
    };
    let leg = |role: &str, id: &str, target: &str, code: u32, end: &str| pb::CdrLeg {
        role: role.into(),
        sip_call_id: id.into(),
        remote_uri: format!("sip:{id}"),
        remote_address: "udp 10.0.0.7:5060".into(),
        target: target.into(),
        final_code: code,
        end: end.into(),
        codec: if code == 200 {
            "PCMU".into()
        } else {
            String::new()
        },
        media_session_id: String::new(),
        rtp: None,
    };
    let base = |n: i64, id: &str, caller: &str, dest: &str, code: u32| pb::CallDetailRecord {
        call_id: id.into(),
        node_id: "pbx1".into(),
        status: if code == 200 { "answered" } else { "failed" }.into(),
        sip_code: code,
        caller: caller.into(),
        destination: dest.into(),
        route_id: "extensions".into(),
        dialplan_version: "3f9a1c".into(),
        start_time: ts(600 - n * 60, 0),
        answer_time: if code == 200 {
            ts(598 - n * 60, 0)
        } else {
            None
        },
        end_time: ts(540 - n * 60, 250),
        media_node: if code == 486 || code == 200 {
            "rtp-a".into()
        } else {
            String::new()
        },
        codec: if code == 200 {
            "PCMU".into()
        } else {
            String::new()
        },
        ..Default::default()
    };
    let mut answered = base(1, "k3j9x0a1b2", "1001", "1002", 200);
    answered.end_cause = "caller hung up".into();
    answered.end_reason = "caller_bye".into();
    answered.hangup_by = "caller".into();
    answered.mos = 4.36;
    let mut a = leg("a", "a84f1@10.0.0.7", "", 200, "bye_received");
    a.rtp = Some(rtp(2900, 2897, 4.38));
    let mut b = leg("b", "sb-77e1c0", "user/1002", 200, "bye_sent");
    b.rtp = Some(rtp(2897, 2900, 4.36));
    answered.legs = vec![a, b];

    let mut busy = base(2, "p0q1r2s3t4", "1003", "1002", 486);
    busy.end_cause = "dial failed: Busy".into();
    busy.end_reason = "dial_failed".into();
    busy.hangup_by = "callee".into();
    busy.legs = vec![
        leg("a", "c91@10.0.0.9", "", 486, "rejected"),
        leg("b", "sb-9a0b1c", "user/1002", 486, "rejected"),
    ];

    let mut unknown = base(3, "u5v6w7x8y9", "1001", "1029", 404);
    unknown.end_cause = "dial failed: Failed(404)".into();
    unknown.end_reason = "dial_failed".into();
    unknown.hangup_by = "swbd".into();
    unknown.legs = vec![leg("a", "d22@10.0.0.7", "", 404, "rejected")];
    unknown.failed_targets = vec![pb::CdrTarget {
        target: "user/1029".into(),
        code: 404,
    }];

    let mut evil = base(
        4,
        "e1f2g3h4i5",
        "=HYPERLINK(\"http://x\",\"y\")",
        "1002",
        200,
    );
    evil.end_cause = "callee hung up".into();
    evil.end_reason = "callee_bye".into();
    evil.hangup_by = "callee".into();
    evil.one_way = true;
    let mut a = leg("a", "evil,1@10.0.0.66", "", 200, "bye_sent");
    a.rtp = Some(rtp(1500, 0, 4.4));
    let mut b = leg("b", "sb-0e1f2a", "user/1002", 200, "bye_received");
    b.rtp = Some(rtp(0, 1500, 0.0));
    evil.legs = vec![a, b];
    vec![answered, busy, unknown, evil]
}

/// A swbd status.
pub fn status() -> pb::Status {
    pb::Status {
        node_id: "pbx1".into(),
        version: "0.1.0".into(),
        started_at: ts(7200, 0),
        sip_listeners: vec!["udp:10.0.0.1:5060".into()],
        active_calls: 4,
        total_calls: 1234,
        registrations: 3,
        media_nodes_up: 2,
        media_nodes_total: 2,
        dialplan_version: "3f9a1c".into(),
        calls_per_second: 3.1,
        sip_parse_errors: 0,
        security: None,
        capture: None,
        cdr: None,
        overload: None,
        last_dialplan_reload: None,
        state_store: None,
    }
}

fn sig(ev: SigEvent, snapshot: bool) -> Update {
    Update::Signaling {
        backend: 0,
        event: pb::SignalingEvent {
            at: ts(0, 0),
            is_snapshot: snapshot,
            event: Some(ev),
        },
    }
}

/// A call event update for backend 0.
pub fn call_event(kind: pb::CallEventKind, c: pb::Call, at_ago: i64) -> Update {
    Update::Signaling {
        backend: 0,
        event: pb::SignalingEvent {
            at: ts(at_ago, 0),
            is_snapshot: false,
            event: Some(SigEvent::Call(pb::CallEvent {
                kind: kind as i32,
                call: Some(c),
            })),
        },
    }
}

/// The app of the mock-up: one swbd (`pbx1`) and one swrtp (`rtp-a`), the
/// fixture calls, sessions, bindings, nodes, some call-rate history.
pub fn app(theme: Theme) -> App {
    let mut store = Store::new(
        vec![("pbx1".into(), Kind::Swbd), ("rtp-a".into(), Kind::Swrtp)],
        now(),
    );
    store.apply(Update::SwbdStatus {
        backend: 0,
        status: Box::new(status()),
    });
    for b in 0..2 {
        store.apply(Update::Conn {
            backend: b,
            state: ConnState::Connected { watching: true },
        });
    }
    store.apply(Update::Reset { backend: 0 });
    for c in calls() {
        store.apply(sig(
            SigEvent::Call(pb::CallEvent {
                kind: pb::CallEventKind::Created as i32,
                call: Some(c),
            }),
            true,
        ));
    }
    for r in registrations() {
        store.apply(sig(
            SigEvent::Registration(pb::RegistrationEvent {
                kind: pb::RegistrationEventKind::Added as i32,
                registration: Some(r),
            }),
            true,
        ));
    }
    for n in nodes() {
        store.apply(sig(
            SigEvent::MediaNode(pb::MediaNodeEvent { node: Some(n) }),
            true,
        ));
    }
    store.apply(sig(SigEvent::SnapshotDone(pb::SnapshotDone {}), true));
    store.apply(Update::Media {
        backend: 1,
        event: pb::MediaAdminEvent {
            at: ts(0, 0),
            is_snapshot: true,
            event: Some(MediaEvent::Status(media_status())),
        },
    });
    for s in sessions() {
        store.apply(Update::Media {
            backend: 1,
            event: pb::MediaAdminEvent {
                at: ts(0, 0),
                is_snapshot: true,
                event: Some(MediaEvent::SessionCreated(s)),
            },
        });
    }
    // Call-rate history: a wave over the last 60 seconds.
    let n = store.rate.len();
    for (i, b) in store.rate.iter_mut().enumerate() {
        if i + 61 >= n && i + 1 < n {
            *b = [1, 2, 3, 5, 7, 6, 5, 3, 2, 1][i % 10];
        }
    }
    App::new(store, theme)
}

/// An app with `n` active calls (and a session per A-leg), for the benchmark
/// and the "10,000 calls" tests.
pub fn big_app(n: usize) -> App {
    let mut app = app(Theme { color: true });
    for i in 0..n {
        let id = format!("{i:08x}");
        let c = call(
            &id,
            &format!("{}", 100_000 + i),
            &format!("{}", 200_000 + (i * 7919) % 100_000),
            if i % 5 == 0 {
                pb::CallState::Ringing
            } else {
                pb::CallState::Bridged
            },
            (i % 3600) as i64 + 5,
            (i % 3600) as i64,
            if i % 2 == 0 { "rtp-a" } else { "rtp-b" },
            "PCMU",
        );
        app.apply(sig(
            SigEvent::Call(pb::CallEvent {
                kind: pb::CallEventKind::Created as i32,
                call: Some(c),
            }),
            true,
        ));
        app.apply(Update::Media {
            backend: 1,
            event: pb::MediaAdminEvent {
                at: ts(0, 0),
                is_snapshot: true,
                event: Some(MediaEvent::SessionCreated(session(
                    &format!("{id}-a"),
                    &id,
                    "a",
                    1000 + i as u64,
                    (i % 7) as i64,
                    (i % 30) as f64 / 3.0,
                ))),
            },
        });
    }
    app
}
