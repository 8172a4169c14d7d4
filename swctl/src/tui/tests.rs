//! `swctl top` screens rendered into ratatui's `TestBackend` (insta
//! snapshots at 80x24 and 160x48) and key handling on the app state.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use switchboard_proto::admin::v1 as pb;

use super::app::{App, Command, Tab};
use super::event::{ConnState, Update};
use super::screens::calls::SortKey;
use crate::fixtures;
use crate::tui::widgets::Theme;

fn app() -> App {
    fixtures::app(Theme { color: true })
}

fn draw(app: &mut App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    t.draw(|f| app.render(f)).expect("draw");
    let buf = t.backend().buffer().clone();
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

fn code(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn both_sizes(name: &str, app: &mut App) {
    insta::assert_snapshot!(format!("{name}_80x24"), draw(app, 80, 24));
    insta::assert_snapshot!(format!("{name}_160x48"), draw(app, 160, 48));
}

fn open_detail(app: &mut App) {
    let cmd = app.handle_key(code(KeyCode::Enter));
    let Some(Command::FetchCall(k)) = cmd else {
        panic!("Enter fetches the call, got {cmd:?}")
    };
    let mut call = app.store.calls.get(&k).cloned().expect("call");
    call.ladder = fixtures::ladder();
    app.apply(Update::CallDetail { backend: k.0, call });
}

#[test]
fn calls_screen() {
    both_sizes("calls", &mut app());
}

#[test]
fn call_detail_screen() {
    let mut a = app();
    open_detail(&mut a);
    both_sizes("call_detail", &mut a);
    // Enter on a ladder row: the full message.
    a.handle_key(key('j'));
    a.handle_key(code(KeyCode::Enter));
    both_sizes("call_detail_message", &mut a);
}

#[test]
fn registrations_screen() {
    let mut a = app();
    a.handle_key(key('2'));
    both_sizes("registrations", &mut a);
}

#[test]
fn nodes_screen() {
    let mut a = app();
    a.handle_key(key('3'));
    both_sizes("nodes", &mut a);
}

#[test]
fn events_screen() {
    let mut a = app();
    let mut c = fixtures::calls()[0].clone();
    c.state = pb::CallState::Ended as i32;
    c.end_cause = "caller hung up".into();
    a.apply(fixtures::call_event(pb::CallEventKind::Ended, c, 0));
    a.apply(Update::Conn {
        backend: 1,
        state: ConnState::Reconnecting {
            attempt: 1,
            error: "transport error".into(),
        },
    });
    a.handle_key(key('4'));
    both_sizes("events", &mut a);
}

/// A security event from backend 0, `at_ago` seconds before the fixtures' now.
fn security_event(
    kind: pb::SecurityEventKind,
    reason: &str,
    summary: bool,
    count: u64,
    at_ago: i64,
) -> Update {
    Update::Signaling {
        backend: 0,
        event: pb::SignalingEvent {
            at: fixtures::ts(at_ago, 0),
            is_snapshot: false,
            event: Some(pb::signaling_event::Event::Security(pb::SecurityEvent {
                kind: kind as i32,
                source: "udp 203.0.113.7:5060".into(),
                user: "1001".into(),
                reason: reason.into(),
                count,
                summary,
                interval: Some(prost_types::Duration {
                    seconds: 10,
                    nanos: 0,
                }),
            })),
        },
    }
}

#[test]
fn events_screen_shows_security_events() {
    let mut a = app();
    let wrong = "wrong password";
    let blocked = "5 authentication failures: blocked for 300 s";
    a.apply(security_event(
        pb::SecurityEventKind::AuthFailure,
        wrong,
        false,
        1,
        25,
    ));
    a.apply(security_event(
        pb::SecurityEventKind::SourceBlocked,
        blocked,
        false,
        1,
        24,
    ));
    a.apply(security_event(
        pb::SecurityEventKind::AuthFailure,
        wrong,
        true,
        29,
        15,
    ));
    a.handle_key(key('4'));
    both_sizes("events_security", &mut a);
    let text = draw(&mut a, 160, 48);
    assert!(
        text.contains("security auth-failure udp 203.0.113.7:5060: wrong password"),
        "{text}"
    );
    assert!(text.contains("29 more in 10 s"), "{text}");
}

#[test]
fn help_popup() {
    let mut a = app();
    a.handle_key(key('?'));
    both_sizes("help", &mut a);
    a.handle_key(key('x'));
    assert!(!a.help, "any key closes help");
}

#[test]
fn hangup_needs_confirmation() {
    let mut a = app();
    assert_eq!(a.handle_key(key('h')), None);
    assert!(a.confirm.is_some());
    insta::assert_snapshot!("confirm_hangup_80x24", draw(&mut a, 80, 24));
    assert_eq!(a.handle_key(key('n')), None, "n cancels");
    assert!(a.confirm.is_none());
    a.handle_key(key('h'));
    assert_eq!(
        a.handle_key(key('y')),
        Some(Command::Hangup((0, "c7f2a9d1".into())))
    );
}

#[test]
fn drain_and_undrain_from_nodes_screen() {
    let mut a = app();
    a.handle_key(key('3'));
    a.handle_key(key('d'));
    assert_eq!(
        a.handle_key(key('y')),
        Some(Command::DrainPool {
            backend: 0,
            node: "rtp-a".into(),
            drain: true
        })
    );
    a.handle_key(key('j'));
    a.handle_key(key('d'));
    assert!(
        a.confirm
            .as_ref()
            .is_some_and(|c| c.question.starts_with("Undrain"))
    );
    assert_eq!(
        a.handle_key(key('y')),
        Some(Command::DrainPool {
            backend: 0,
            node: "rtp-b".into(),
            drain: false
        })
    );
    a.handle_key(key('j'));
    a.handle_key(key('d'));
    assert_eq!(
        a.handle_key(key('y')),
        Some(Command::DrainRtp {
            backend: 1,
            drain: true
        })
    );
}

#[test]
fn filter_narrows_the_calls() {
    let mut a = app();
    a.handle_key(key('/'));
    for c in "100".chars() {
        a.handle_key(key(c));
    }
    insta::assert_snapshot!("calls_filter_typing_80x24", draw(&mut a, 80, 24));
    a.handle_key(code(KeyCode::Enter));
    assert!(!a.calls.filtering);
    let store = &a.store;
    let ids: Vec<String> = a.calls.index(store).iter().map(|k| k.1.clone()).collect();
    // 1001 (caller), 1003 (caller), 1001 (destination).
    assert_eq!(ids, ["c7f2a9d1", "9b31e077", "41d0c5e2"]);
    // Keys typed while filtering went to the filter, not to the app.
    assert!(!a.quit);
    a.handle_key(key('/'));
    a.handle_key(key('q'));
    assert!(!a.quit, "q while filtering is text");
    a.handle_key(code(KeyCode::Esc));
    assert!(a.calls.filter.is_empty());
    assert_eq!(a.calls.index(&a.store).len(), 4);
}

#[test]
fn sort_cycles_and_reverses() {
    let mut a = app();
    let order = |a: &mut App| -> Vec<String> {
        let store = &a.store;
        a.calls.index(store).iter().map(|k| k.1.clone()).collect()
    };
    assert_eq!(a.calls.sort, SortKey::Duration);
    assert_eq!(
        order(&mut a),
        ["c7f2a9d1", "e5a0b3c4", "9b31e077", "41d0c5e2"]
    );
    a.handle_key(key('s'));
    assert_eq!(a.calls.sort, SortKey::Caller);
    assert_eq!(
        order(&mut a),
        ["41d0c5e2", "c7f2a9d1", "9b31e077", "e5a0b3c4"]
    );
    a.handle_key(key('S'));
    assert_eq!(
        order(&mut a),
        ["e5a0b3c4", "9b31e077", "c7f2a9d1", "41d0c5e2"]
    );
    for _ in 0..4 {
        a.handle_key(key('s'));
    }
    assert_eq!(a.calls.sort, SortKey::Loss);
}

#[test]
fn detail_opens_on_enter_and_closes_on_esc() {
    let mut a = app();
    a.handle_key(key('j'));
    let cmd = a.handle_key(code(KeyCode::Enter));
    assert_eq!(cmd, Some(Command::FetchCall((0, "e5a0b3c4".into()))));
    assert!(a.detail.is_some());
    assert_eq!(
        a.handle_key(key('r')),
        Some(Command::FetchCall((0, "e5a0b3c4".into())))
    );
    a.handle_key(code(KeyCode::Esc));
    assert!(a.detail.is_none());
    assert!(!a.quit, "Esc in detail goes back, does not quit");
}

#[test]
fn quit_keys() {
    let mut a = app();
    a.handle_key(key('q'));
    assert!(a.quit);
    let mut a = app();
    a.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(a.quit);
}

#[test]
fn tab_cycles_screens() {
    let mut a = app();
    let mut seen = vec![a.tab];
    for _ in 0..4 {
        a.handle_key(code(KeyCode::Tab));
        seen.push(a.tab);
    }
    assert_eq!(
        seen,
        [
            Tab::Calls,
            Tab::Registrations,
            Tab::Nodes,
            Tab::Events,
            Tab::Calls
        ]
    );
}

#[test]
fn disconnected_daemon_shows_reconnecting_and_recovers() {
    let mut a = app();
    a.apply(Update::Conn {
        backend: 0,
        state: ConnState::Reconnecting {
            attempt: 3,
            error: "connection refused".into(),
        },
    });
    let screen = draw(&mut a, 80, 24);
    insta::assert_snapshot!("reconnecting_80x24", screen);
    assert!(screen.contains("reconnecting…"));
    // The daemon is back: a new Watch resets its state, the snapshot refills it.
    a.apply(Update::Reset { backend: 0 });
    assert!(a.store.calls.is_empty(), "stale calls dropped on reconnect");
    a.apply(Update::Conn {
        backend: 0,
        state: ConnState::Connected { watching: true },
    });
    a.apply(fixtures::call_event(
        pb::CallEventKind::Created,
        fixtures::calls()[1].clone(),
        0,
    ));
    let screen = draw(&mut a, 80, 24);
    assert!(!screen.contains("reconnecting"));
    assert_eq!(a.calls.index(&a.store).len(), 1);
}

#[test]
fn no_color_means_no_colors() {
    let mut a = fixtures::app(Theme { color: false });
    let mut t = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    t.draw(|f| a.render(f)).expect("draw");
    let buf = t.backend().buffer();
    for cell in buf.content() {
        assert_eq!(cell.fg, Color::Reset, "fg colour at {:?}", cell.symbol());
        assert_eq!(cell.bg, Color::Reset);
    }
    // With colour, states are coloured.
    let mut a = app();
    let mut t = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    t.draw(|f| a.render(f)).expect("draw");
    assert!(
        t.backend()
            .buffer()
            .content()
            .iter()
            .any(|c| c.fg != Color::Reset)
    );
}

#[test]
fn ten_thousand_calls_render_only_the_visible_rows() {
    let mut a = fixtures::big_app(10_000);
    assert_eq!(a.store.calls.len(), 10_004);
    let screen = draw(&mut a, 80, 24);
    assert!(screen.contains("calls 10004"), "{screen}");
    a.handle_key(code(KeyCode::End));
    let screen = draw(&mut a, 80, 24);
    assert_eq!(a.calls.sel.selected, 10_003);
    assert!(screen.lines().count() == 24);
    a.handle_key(key('/'));
    for c in "000000ff".chars() {
        a.handle_key(key(c));
    }
    a.handle_key(code(KeyCode::Enter));
    assert_eq!(a.calls.index(&a.store).len(), 1);
}

#[test]
fn rate_history_counts_live_created_events() {
    let mut a = app();
    let before: u64 = a.store.rate.iter().sum();
    for i in 0..5 {
        let c = fixtures::call(
            &format!("new{i}"),
            "1",
            "2",
            pb::CallState::Routing,
            0,
            0,
            "",
            "",
        );
        a.apply(fixtures::call_event(pb::CallEventKind::Created, c, 1));
    }
    let after: u64 = a.store.rate.iter().sum();
    assert_eq!(after - before, 5);
    a.store
        .set_now(fixtures::now() + std::time::Duration::from_secs(1000));
    assert_eq!(a.store.rate.iter().sum::<u64>(), 0, "old buckets roll out");
}

#[test]
fn garbage_from_peers_does_not_break_rendering() {
    let mut a = app();
    let mut c = fixtures::call(
        "bad\u{1b}[2J",
        "evil\r\nline",
        "\t\u{7}",
        pb::CallState::Bridged,
        1,
        1,
        "n",
        "",
    );
    c.state = 999;
    c.legs.clear();
    a.apply(fixtures::call_event(pb::CallEventKind::Unspecified, c, 0));
    a.apply(Update::Signaling {
        backend: 7,
        event: pb::SignalingEvent::default(),
    });
    let screen = draw(&mut a, 80, 24);
    assert!(!screen.contains('\u{1b}'));
    assert_eq!(screen.lines().count(), 24);
}

#[test]
fn tiny_terminals_do_not_panic() {
    for (w, h) in [(1, 1), (10, 3), (20, 5), (40, 8), (200, 2)] {
        for screen in ['1', '2', '3', '4'] {
            let mut a = app();
            a.handle_key(key(screen));
            let _ = draw(&mut a, w, h);
        }
        let mut a = app();
        open_detail(&mut a);
        let _ = draw(&mut a, w, h);
        a.handle_key(code(KeyCode::Enter));
        let _ = draw(&mut a, w, h);
        let mut a = app();
        a.handle_key(key('?'));
        let _ = draw(&mut a, w, h);
        a.handle_key(key('x'));
        a.handle_key(key('h'));
        let _ = draw(&mut a, w, h);
    }
}

#[test]
fn extreme_timestamps_from_peers_do_not_panic() {
    let mut a = app();
    let t = |s: i64| {
        Some(prost_types::Timestamp {
            seconds: s,
            nanos: -5,
        })
    };
    for (created, answered, at) in [
        (i64::MIN, i64::MAX, i64::MAX),
        (i64::MAX, i64::MIN, i64::MIN),
        (1, 0, -1),
    ] {
        let mut c = fixtures::call("ext", "1", "2", pb::CallState::Bridged, 0, 0, "", "");
        c.created_at = t(created);
        c.answered_at = t(answered);
        c.duration = Some(prost_types::Duration {
            seconds: i64::MIN,
            nanos: i32::MIN,
        });
        let _ = crate::views::CallView::new("x", &c);
        a.apply(Update::Signaling {
            backend: 0,
            event: pb::SignalingEvent {
                at: t(at),
                is_snapshot: false,
                event: Some(pb::signaling_event::Event::Call(pb::CallEvent {
                    kind: pb::CallEventKind::Created as i32,
                    call: Some(c),
                })),
            },
        });
        let r = pb::Registration {
            aor: "sip:x@y".into(),
            expires_at: t(created),
            ..Default::default()
        };
        let _ = crate::views::RegistrationView::new(
            "x",
            &r,
            &prost_types::Timestamp {
                seconds: at,
                nanos: 0,
            },
        );
        a.apply(Update::Signaling {
            backend: 0,
            event: pb::SignalingEvent {
                at: t(at),
                is_snapshot: false,
                event: Some(pb::signaling_event::Event::Registration(
                    pb::RegistrationEvent {
                        kind: pb::RegistrationEventKind::Added as i32,
                        registration: Some(r),
                    },
                )),
            },
        });
        for s in ['1', '2', '3', '4'] {
            a.handle_key(key(s));
            let _ = draw(&mut a, 80, 24);
        }
        a.handle_key(key('1'));
        open_detail(&mut a);
        let _ = draw(&mut a, 80, 24);
        a.handle_key(code(KeyCode::Esc));
    }
}
