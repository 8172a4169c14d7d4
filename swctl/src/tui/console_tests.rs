//! `swctl top` as an operator's "what went wrong" console: the failed-calls
//! view with causes, one-way and silent calls flagged, final statistics of
//! ended calls kept, the header's dialplan status, the complete ladder from
//! the capture, coloured events. Snapshots at 80x24 and 160x48.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::media_admin_event::Event as MediaEvent;
use switchboard_proto::admin::v1::signaling_event::Event as SigEvent;

use super::app::{App, Command};
use super::event::Update;
use super::health::MediaFlag;
use super::history::HistoryState;
use crate::fixtures;
use crate::tui::widgets::Theme;

fn app() -> App {
    fixtures::app(Theme { color: true })
}

fn draw_buf(app: &mut App, w: u16, h: u16) -> ratatui::buffer::Buffer {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    t.draw(|f| app.render(f)).expect("draw");
    t.backend().buffer().clone()
}

fn draw(app: &mut App, w: u16, h: u16) -> String {
    let buf = draw_buf(app, w, h);
    let mut out = String::new();
    for y in 0..h {
        let mut line = String::new();
        for x in 0..w {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn both_sizes(name: &str, app: &mut App) {
    insta::assert_snapshot!(format!("{name}_80x24"), draw(app, 80, 24));
    insta::assert_snapshot!(format!("{name}_160x48"), draw(app, 160, 48));
}

fn with_history(a: &mut App) {
    a.apply(Update::History {
        backend: 0,
        records: fixtures::history(),
        state: Some(HistoryState::Loaded { truncated: false }),
    });
}

fn media(s: pb::MediaSessionInfo, destroyed: bool) -> Update {
    Update::Media {
        backend: 1,
        event: pb::MediaAdminEvent {
            at: fixtures::ts(0, 0),
            is_snapshot: false,
            event: Some(if destroyed {
                MediaEvent::SessionDestroyed(s)
            } else {
                MediaEvent::SessionStats(s)
            }),
        },
    }
}

#[test]
fn failed_calls_view_shows_the_cause() {
    let mut a = app();
    with_history(&mut a);
    // A failure seen live whose record has not arrived yet.
    let mut c = fixtures::call(
        "f00dcafe",
        "1001",
        "1044",
        pb::CallState::Ended,
        20,
        0,
        "",
        "",
    );
    c.end_status = 480;
    c.end_cause = "no answer".into();
    c.ended_at = fixtures::ts(5, 0);
    a.apply(fixtures::call_event(pb::CallEventKind::Ended, c, 5));
    a.handle_key(key('f'));
    assert!(a.calls.show_failed);
    both_sizes("failed_calls", &mut a);
    let text = draw(&mut a, 160, 48);
    assert!(text.contains("user/1029 404 Not Found"), "{text}");
    assert!(text.contains("user/1002 486 Busy Here"), "{text}");
    assert!(text.contains("no answer"), "{text}");
    assert!(text.contains("f live"), "the footer says how back: {text}");
    assert!(
        !text.contains("k3j9x0a1"),
        "answered calls are not failures: {text}"
    );

    // Newest first: the live one, then the 404, then the 486.
    a.handle_key(key('j'));
    let cmd = a.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(cmd, Some(Command::FetchCall((0, "u5v6w7x8y9".into()))));
    // swbd forgot the call: the detail comes from its record.
    insta::assert_snapshot!("failed_call_detail_80x24", draw(&mut a, 80, 24));
    let text = draw(&mut a, 160, 48);
    assert!(text.contains("ended: rejected 404 Not Found"), "{text}");
    assert!(
        text.contains("not reached: user/1029 404 Not Found"),
        "{text}"
    );

    a.handle_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    a.handle_key(key('f'));
    assert!(!a.calls.show_failed, "f toggles back to live calls");
}

#[test]
fn failed_calls_view_says_why_it_is_empty() {
    let mut a = app();
    a.handle_key(key('f'));
    assert!(draw(&mut a, 80, 24).contains("loading the call history"));
    a.apply(Update::History {
        backend: 0,
        records: Vec::new(),
        state: Some(HistoryState::Unavailable(
            "call history: CDRs are off".into(),
        )),
    });
    let text = draw(&mut a, 80, 24);
    assert!(
        text.contains("no call history: call history: CDRs are off"),
        "{text}"
    );
}

#[test]
fn one_way_and_silent_calls_are_flagged() {
    let mut a = app();
    // c7f2a9d1 (bridged 133 s): the caller sends, swbd sends it nothing
    // (the callee's audio never arrives).
    let mut s = fixtures::session("c7f2a9d1-a", "c7f2a9d1", "a", 6650, 0, 2.1);
    if let Some(tx) = s.stats.as_mut().and_then(|st| st.tx.as_mut()) {
        tx.packets = 0;
    }
    a.apply(media(s, false));
    // 9b31e077 (answered 4 s): nothing either way.
    let mut s = fixtures::session("9b31e077-a", "9b31e077", "a", 0, 0, 0.0);
    if let Some(tx) = s.stats.as_mut().and_then(|st| st.tx.as_mut()) {
        tx.packets = 0;
    }
    a.apply(media(s, false));
    both_sizes("calls_one_way", &mut a);
    let text = draw(&mut a, 80, 24);
    let row = |id: &str| {
        text.lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row("c7f2a9d1").contains("one-way"), "{text}");
    assert!(!row("c7f2a9d1").contains("0.0%"), "{text}");
    assert!(row("9b31e077").contains("silent"), "{text}");
    // Red, like every alarm.
    let buf = draw_buf(&mut a, 80, 24);
    let y = text
        .lines()
        .position(|l| l.starts_with("c7f2a9d1"))
        .expect("row") as u16;
    let x = text
        .lines()
        .nth(y as usize)
        .and_then(|l| l.find("one-way"))
        .expect("flag") as u16;
    assert_eq!(buf[(x, y)].fg, Color::Red);

    // A call answered a moment ago is not flagged yet.
    let k = (0, "c7f2a9d1".to_string());
    let mut young = a.store.calls.get(&k).cloned().expect("call");
    young.answered_at = fixtures::ts(1, 0);
    a.apply(fixtures::call_event(pb::CallEventKind::Updated, young, 0));
    let c = a.store.calls.get(&k).cloned().expect("call");
    assert_eq!(a.store.call_quality(&k, &c).and_then(|h| h.flag), None);
}

#[test]
fn ended_calls_keep_their_final_stats() {
    let mut a = app();
    let k = (0, "c7f2a9d1".to_string());
    let mut c = a.store.calls.get(&k).cloned().expect("call");
    c.state = pb::CallState::Ended as i32;
    c.ended_at = fixtures::ts(1, 0);
    a.apply(fixtures::call_event(pb::CallEventKind::Ended, c.clone(), 1));
    // swrtp destroys the sessions: their final statistics stay.
    for s in fixtures::sessions()
        .into_iter()
        .filter(|s| s.call_id == "c7f2a9d1")
    {
        a.apply(media(s, true));
    }
    assert!(!a.store.sessions.contains_key("c7f2a9d1-a"));
    let h = a.store.call_quality(&k, &c).expect("final stats kept");
    assert_eq!(h.jitter, 2.1);
    // The call's record arrives: it is the source from then on.
    let mut r = fixtures::history().swap_remove(3);
    r.call_id = "c7f2a9d1".into();
    a.apply(Update::History {
        backend: 0,
        records: vec![r],
        state: None,
    });
    let h = a.store.call_quality(&k, &c).expect("from the record");
    assert_eq!(h.flag, Some(MediaFlag::OneWay));
    a.handle_key(key('e'));
    let text = draw(&mut a, 80, 24);
    assert!(
        text.lines()
            .any(|l| l.starts_with("c7f2a9d1") && l.contains("one-way")),
        "{text}"
    );
}

fn dialplan_event(applied: bool, at_ago: i64) -> Update {
    Update::Signaling {
        backend: 0,
        event: pb::SignalingEvent {
            at: fixtures::ts(at_ago, 0),
            is_snapshot: false,
            event: Some(SigEvent::Dialplan(pb::DialplanEvent {
                applied,
                version: if applied { "77b2e0" } else { "3f9a1c" }.into(),
                source: "/etc/switchboard/dialplan.yaml".into(),
                errors: if applied {
                    Vec::new()
                } else {
                    vec![pb::FileError {
                        file: "dialplan.yaml".into(),
                        line: 12,
                        column: 9,
                        message: "unknown action `dail`".into(),
                    }]
                },
            })),
        },
    }
}

#[test]
fn header_shows_the_dialplan_and_the_last_reload() {
    // From GetStatus at connect: a reload refused before top started.
    let mut a = app();
    let mut st = fixtures::status();
    st.last_dialplan_reload = Some(pb::DialplanReload {
        applied: false,
        at: fixtures::ts(90, 0),
        version: "3f9a1c".into(),
        source: "admin:upload".into(),
        errors: vec![pb::FileError {
            file: "admin:upload".into(),
            line: 3,
            column: 5,
            message: "expected a mapping".into(),
        }],
    });
    a.apply(Update::SwbdStatus {
        backend: 0,
        status: Box::new(st),
    });
    both_sizes("header_reload_failed", &mut a);
    let text = draw(&mut a, 160, 48);
    assert!(text.contains("plan 3f9a1c"), "{text}");
    assert!(
        text.contains("reload FAILED 10:13:01: admin:upload:3:5"),
        "{text}"
    );

    // Live: a good reload, then a refused one.
    let mut a = app();
    a.apply(dialplan_event(true, 30));
    let text = draw(&mut a, 80, 24);
    insta::assert_snapshot!("header_reloaded_80x24", text);
    assert!(text.contains("plan 77b2e0 reloaded 10:14:01"), "{text}");
    a.apply(dialplan_event(false, 10));
    let text = draw(&mut a, 160, 48);
    assert!(
        text.contains("plan 3f9a1c reload FAILED 10:14:21"),
        "{text}"
    );
    assert!(text.contains("unknown action"), "{text}");
}

#[test]
fn events_are_coloured_by_severity() {
    let mut a = app();
    a.apply(Update::Signaling {
        backend: 0,
        event: pb::SignalingEvent {
            at: fixtures::ts(3, 0),
            is_snapshot: false,
            event: Some(SigEvent::Security(pb::SecurityEvent {
                kind: pb::SecurityEventKind::AuthFailure as i32,
                source: "udp 203.0.113.7:5060".into(),
                user: "1001".into(),
                reason: "wrong password".into(),
                count: 1,
                summary: false,
                interval: None,
            })),
        },
    });
    a.apply(dialplan_event(false, 2));
    let reg = fixtures::registrations().swap_remove(0);
    a.apply(Update::Signaling {
        backend: 0,
        event: pb::SignalingEvent {
            at: fixtures::ts(1, 0),
            is_snapshot: false,
            event: Some(SigEvent::Registration(pb::RegistrationEvent {
                kind: pb::RegistrationEventKind::Refreshed as i32,
                registration: Some(reg),
            })),
        },
    });
    a.handle_key(key('4'));
    both_sizes("events_coloured", &mut a);
    let text = draw(&mut a, 160, 48);
    let buf = draw_buf(&mut a, 160, 48);
    let fg_of = |needle: &str| {
        let y = text
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} in {text}"));
        let x = text
            .lines()
            .nth(y)
            .and_then(|l| l.find(needle))
            .expect("column");
        buf[(x as u16, y as u16)].fg
    };
    assert_eq!(fg_of("security auth-failure"), Color::Red);
    assert_eq!(fg_of("dialplan refused"), Color::Red);
    assert_eq!(fg_of("registration refreshed"), Color::DarkGray);
}

#[test]
fn recent_events_read_at_connect_are_shown() {
    let mut a = app();
    a.apply(Update::RecentEvents {
        backend: 0,
        events: vec![pb::SignalingEvent {
            at: fixtures::ts(600, 0),
            is_snapshot: false,
            event: Some(SigEvent::Security(pb::SecurityEvent {
                kind: pb::SecurityEventKind::SourceBlocked as i32,
                source: "udp 198.51.100.9:5060".into(),
                user: String::new(),
                reason: "blocked for 300 s".into(),
                count: 1,
                summary: false,
                interval: None,
            })),
        }],
    });
    a.handle_key(key('4'));
    let text = draw(&mut a, 160, 48);
    assert!(
        text.contains(
            "10:04:31  pbx1     security source-blocked udp 198.51.100.9:5060: blocked for 300 s"
        ),
        "{text}"
    );
}

#[test]
fn detail_shows_the_captured_ladder() {
    let mut a = app();
    let cmd = a.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    let Some(Command::FetchCall(k)) = cmd else {
        panic!("Enter fetches the call, got {cmd:?}")
    };
    let mut call = a.store.calls.get(&k).cloned().expect("call");
    call.ladder = fixtures::ladder();
    let msg = |raw: &str, inbound: bool, ms: i32| pb::CapturedMessage {
        at: fixtures::ts(133, ms),
        inbound,
        raw: raw.as_bytes().to_vec(),
        ..Default::default()
    };
    let capture = pb::CallCapture {
        call_id: k.1.clone(),
        sip_call_ids: vec!["a84b@10.0.0.5".into(), "sb-b1@pbx1".into()],
        messages: vec![
            msg(
                "SIP/2.0 200 OK\r\nCall-ID: a84b@10.0.0.5\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n",
                false,
                901,
            ),
            msg(
                "ACK sip:pbx1 SIP/2.0\r\nCall-ID: a84b@10.0.0.5\r\nCSeq: 1 ACK\r\n\r\n",
                true,
                950,
            ),
            msg(
                "BYE sip:pbx1 SIP/2.0\r\nCall-ID: a84b@10.0.0.5\r\nCSeq: 2 BYE\r\n\r\n",
                true,
                960,
            ),
            msg(
                "SIP/2.0 200 OK\r\nCall-ID: a84b@10.0.0.5\r\nCSeq: 2 BYE\r\n\r\n",
                false,
                961,
            ),
            msg(
                "BYE sip:1002@10.0.0.7 SIP/2.0\r\nCall-ID: sb-b1@pbx1\r\nCSeq: 2 BYE\r\n\r\n",
                false,
                962,
            ),
            msg(
                "SIP/2.0 200 OK\r\nCall-ID: sb-b1@pbx1\r\nCSeq: 2 BYE\r\n\r\n",
                true,
                990,
            ),
        ],
        messages_not_kept: 0,
    };
    a.apply(Update::Batch(vec![
        Update::CallDetail { backend: k.0, call },
        Update::CallCapture {
            backend: k.0,
            call_id: k.1.clone(),
            capture,
        },
    ]));
    let text = draw(&mut a, 80, 24);
    insta::assert_snapshot!("detail_captured_ladder_80x24", text);
    for want in [
        "A -> sb  ACK",
        "A -> sb  BYE sip:pbx1",
        "sb -> A  200 OK (BYE)",
        "B -> sb  200 OK (BYE)",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
}
