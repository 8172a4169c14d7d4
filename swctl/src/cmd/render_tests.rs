//! Every listing in every output format, rendered from constructed protobuf
//! values (insta snapshots under `cmd/snapshots/`). Tables must fit 80 columns.

use switchboard_proto::admin::v1 as pb;

use super::StatusView;
use super::{calls, dialplan, history, media, nodes, registrations, status};
use crate::cli::Output;
use crate::fixtures;
use crate::views::{CallView, NodeView, RegistrationView, SessionView};

const FORMATS: [(Output, &str); 4] = [
    (Output::Table, "table"),
    (Output::Wide, "wide"),
    (Output::Json, "json"),
    (Output::Yaml, "yaml"),
];

fn check_width(name: &str, format: Output, text: &str) {
    if format == Output::Table {
        for l in text.lines() {
            assert!(
                l.chars().count() <= 80,
                "{name}: line over 80 columns: {l:?}"
            );
        }
    }
    if format == Output::Json {
        serde_json::from_str::<serde_json::Value>(text).expect("valid JSON");
    }
}

fn call_views() -> Vec<CallView> {
    let mut v: Vec<CallView> = fixtures::calls()
        .iter()
        .map(|c| CallView::new("pbx1", c))
        .collect();
    v.push(CallView::new("pbx2", &fixtures::calls()[1]));
    v
}

#[test]
fn calls_list_every_format() {
    for (f, name) in FORMATS {
        let text = calls::render_list(&call_views(), f, true, 80).expect("render");
        check_width("calls list", f, &text);
        insta::assert_snapshot!(format!("calls_list_{name}"), text);
    }
    // One backend: no BACKEND column.
    let one = calls::render_list(&call_views()[..2], Output::Table, false, 80).expect("render");
    assert!(!one.contains("BACKEND"));
}

#[test]
fn calls_history_every_format() {
    let views: Vec<history::HistoryView> = fixtures::history()
        .iter()
        .map(|r| history::HistoryView::new("pbx1", r))
        .collect();
    for (f, name) in FORMATS.into_iter().chain([(Output::Csv, "csv")]) {
        let text = history::render(&views, f, false, 80).expect("render");
        check_width("calls history", f, &text);
        insta::assert_snapshot!(format!("calls_history_{name}"), text);
    }
    let csv = history::render(&views, Output::Csv, false, 80).expect("csv");
    assert!(
        csv.contains("\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""),
        "a caller id that is a formula is neutralized and quoted:\n{csv}"
    );
    assert_eq!(
        csv.matches("\r\n").count(),
        5,
        "header + 4 rows, CRLF line ends"
    );
    assert_eq!(csv.matches('\n').count(), 5, "no bare LF");
    let several = history::render(&views, Output::Table, true, 80).expect("render");
    assert!(several.starts_with("BACKEND"));
}

#[test]
fn calls_show_every_format() {
    let mut c = fixtures::calls()[0].clone();
    c.ladder = fixtures::ladder();
    let v = CallView::new("pbx1", &c);
    for (f, name) in FORMATS {
        let text = calls::render_show(&v, f, 80).expect("render");
        check_width("calls show", f, &text);
        insta::assert_snapshot!(format!("calls_show_{name}"), text);
    }
}

#[test]
fn registrations_every_format() {
    let now = fixtures::ts(0, 0).expect("ts");
    let v: Vec<RegistrationView> = fixtures::registrations()
        .iter()
        .map(|r| RegistrationView::new("pbx1", r, &now))
        .collect();
    for (f, name) in FORMATS {
        let text = registrations::render(&v, f, false, 80).expect("render");
        check_width("registrations", f, &text);
        insta::assert_snapshot!(format!("registrations_{name}"), text);
    }
}

#[test]
fn nodes_every_format() {
    let v: Vec<NodeView> = fixtures::nodes()
        .iter()
        .map(|n| NodeView::new("pbx1", n))
        .collect();
    for (f, name) in FORMATS {
        let text = nodes::render(&v, f, false, 80).expect("render");
        check_width("nodes", f, &text);
        insta::assert_snapshot!(format!("nodes_{name}"), text);
    }
}

#[test]
fn media_sessions_every_format() {
    let mut v: Vec<SessionView> = fixtures::sessions()
        .iter()
        .map(|s| SessionView::new("rtp-a", s))
        .collect();
    v.push(SessionView::new(
        "rtp-b",
        &pb::MediaSessionInfo {
            session_id: "s-empty".into(),
            ..Default::default()
        },
    ));
    for (f, name) in FORMATS {
        let text = media::render(&v, f, true, 80).expect("render");
        check_width("media sessions", f, &text);
        insta::assert_snapshot!(format!("media_sessions_{name}"), text);
    }
}

#[test]
fn dialplan_show_and_test_every_format() {
    let d = pb::Dialplan {
        version: "3f9a1c".into(),
        loaded_at: fixtures::ts(900, 0),
        source: "/etc/switchboard/dialplan.yaml".into(),
        yaml: "routes:\n  - id: extensions\n".into(),
        routes: vec![
            pb::RouteSummary {
                id: "extensions".into(),
                name: "Local extensions".into(),
                priority: 10,
                enabled: true,
                r#match: "destination 1* from any".into(),
                actions: 2,
            },
            pb::RouteSummary {
                id: "echo".into(),
                name: String::new(),
                priority: 20,
                enabled: false,
                r#match: "destination 500".into(),
                actions: 3,
            },
        ],
    };
    let shows = vec![dialplan::dialplan_view("pbx1", &d)];
    let t = pb::TestRouteResponse {
        matched: true,
        route_id: "extensions".into(),
        route_name: "Local extensions".into(),
        actions: vec![pb::ResolvedAction {
            name: "dial".into(),
            description: "user/1002 timeout 30s".into(),
        }],
        variables: [("destination".to_string(), "1002".to_string())]
            .into_iter()
            .collect(),
        dialplan_version: "3f9a1c".into(),
        no_match_status: 0,
    };
    let miss = pb::TestRouteResponse {
        matched: false,
        no_match_status: 404,
        dialplan_version: "3f9a1c".into(),
        ..Default::default()
    };
    let tests = vec![
        dialplan::test_view("pbx1", &t),
        dialplan::test_view("pbx2", &miss),
    ];
    for (f, name) in FORMATS {
        let text = dialplan::render_show(&shows, f, 80).expect("render");
        check_width("dialplan show", f, &text);
        insta::assert_snapshot!(format!("dialplan_show_{name}"), text);
        let text = dialplan::render_test(&tests, f, 80).expect("render");
        check_width("dialplan test", f, &text);
        insta::assert_snapshot!(format!("dialplan_test_{name}"), text);
    }
}

#[test]
fn status_every_format() {
    let v = vec![
        StatusView {
            host: "pbx1".into(),
            daemon: "swbd".into(),
            node_id: "pbx1".into(),
            version: "0.1.0".into(),
            uptime_secs: 7200,
            active: 4,
            detail: "regs 3 nodes 2/2 sip udp:10.0.0.1:5060,tcp:10.0.0.1:5060".into(),
            security: None,
            capture: None,
            cdr: None,
            overload: None,
            state_store: None,
        },
        StatusView {
            host: "rtp-a".into(),
            daemon: "swrtp".into(),
            node_id: "rtp-a".into(),
            version: "0.1.0".into(),
            uptime_secs: 7100,
            active: 5,
            detail: "ports 4995/5000 free".into(),
            security: None,
            capture: None,
            cdr: None,
            overload: None,
            state_store: None,
        },
    ];
    for (f, name) in FORMATS {
        let text = status::render(&v, f, 80).expect("render");
        check_width("status", f, &text);
        insta::assert_snapshot!(format!("status_{name}"), text);
    }
}

#[test]
fn dialplan_check_without_the_flag_says_what_to_do() {
    // A "swbd" that rejects --check-dialplan the way clap does.
    let dir = std::env::temp_dir().join(format!("swctl-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let fake = dir.join("swbd");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"error: unexpected argument '--check-dialplan' found\" >&2\nexit 2\n",
    )
    .expect("write");
    let bad = dir.join("bad-swbd");
    std::fs::write(
        &bad,
        "#!/bin/sh\necho \"$2:3:7: unknown action 'dail' (expected answer, dial, hangup, playback, sleep)\" >&2\nexit 2\n",
    )
    .expect("write");
    let good = dir.join("good-swbd");
    std::fs::write(&good, "#!/bin/sh\nexit 0\n").expect("write");
    use std::os::unix::fs::PermissionsExt;
    for p in [&fake, &bad, &good] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let file = std::path::Path::new("plan.yaml");
    let e = dialplan::check_with(&fake, file).expect_err("old swbd");
    assert!(matches!(e, crate::Error::Usage(_)));
    assert!(
        e.to_string().contains("does not support --check-dialplan"),
        "{e}"
    );
    let e = dialplan::check_with(&bad, file).expect_err("invalid plan");
    assert!(matches!(e, crate::Error::InvalidFile(_)));
    assert_eq!(
        e.to_string(),
        "plan.yaml:3:7: unknown action 'dail' (expected answer, dial, hangup, playback, sleep)"
    );
    dialplan::check_with(&good, file).expect("valid");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn status_json_carries_the_security_counters_of_swbd() {
    let v = vec![StatusView {
        host: "pbx1".into(),
        daemon: "swbd".into(),
        node_id: "pbx1".into(),
        version: "0.1.0".into(),
        uptime_secs: 1,
        active: 0,
        detail: String::new(),
        security: Some(status::SecurityView::from(
            switchboard_proto::admin::v1::SecurityCounters {
                auth_failures: 7,
                blocked_requests: 2,
                ..Default::default()
            },
        )),
        capture: None,
        cdr: None,
        overload: Some(status::OverloadView::from(
            switchboard_proto::admin::v1::OverloadStatus {
                enabled: true,
                refused_share: 0.5,
                calls_in_setup: 12,
                invites_refused: 345,
                ..Default::default()
            },
        )),
        state_store: None,
    }];
    let json = status::render(&v, Output::Json, 80).expect("render");
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(parsed[0]["security"]["auth_failures"], 7, "{json}");
    assert_eq!(parsed[0]["security"]["blocked_requests"], 2, "{json}");
    assert_eq!(parsed[0]["overload"]["invites_refused"], 345, "{json}");
    assert_eq!(parsed[0]["overload"]["refused_share"], 0.5, "{json}");
    assert_eq!(parsed[0]["overload"]["calls_in_setup"], 12, "{json}");
}
