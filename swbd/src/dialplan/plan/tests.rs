//! Unit tests of loading, validating and routing a dialplan.

use super::*;

fn ctx() -> DialplanContext {
    DialplanContext {
        gateways: vec!["gw1".into(), "gw2".into()],
        audio_dir: None,
    }
}

fn plan(yaml: &str) -> Dialplan {
    match Dialplan::parse("t.yaml", yaml, &ctx()) {
        Ok(p) => p,
        Err(errs) => panic!("{}", render(&errs)),
    }
}

fn errors(yaml: &str) -> Vec<FileError> {
    Dialplan::parse("t.yaml", yaml, &ctx()).expect_err("refused")
}

fn render(errs: &[FileError]) -> String {
    errs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn call(dest: &str) -> CallInfo {
    CallInfo {
        destination: dest.into(),
        caller: "1001".into(),
        domain: "pbx.example.com".into(),
        from_domain: "example.net".into(),
        source_ip: Some("10.0.0.5".parse().expect("ip")),
    }
}

fn routed(p: &Dialplan, c: &CallInfo) -> Option<String> {
    p.route(c).map(|r| r.route.id.clone())
}

/// One route per line: `id|priority|match-yaml`.
fn routes_yaml(rows: &[(&str, i32, &str)]) -> String {
    let mut y = String::from("version: 1\nroutes:\n");
    for (id, prio, m) in rows {
        y.push_str(&format!(
            "  - id: {id}\n    priority: {prio}\n    match: {m}\n    actions: [answer]\n"
        ));
    }
    y
}

#[test]
fn default_plan_loads_and_routes() {
    let p = Dialplan::embedded_default(&DialplanContext::default()).expect("default loads");
    assert_eq!(p.source(), DEFAULT_SOURCE);
    assert_eq!(p.version().hash.len(), 12);
    assert_eq!(routed(&p, &call("1234")).as_deref(), Some("extensions"));
    assert_eq!(routed(&p, &call("500")).as_deref(), Some("tone"));
    assert_eq!(routed(&p, &call("12345")), None);
    assert_eq!(p.no_match().code, 404);
    assert!(p.notes().iter().any(|n| n.contains("not checked")));
}

#[test]
fn destination_matching_table() {
    let p = plan(&routes_yaml(&[
        ("exact500", 100, "{destination: \"500\"}"),
        ("four", 100, "{destination: \"1???\"}"),
        ("ones", 100, "{destination: \"1*\"}"),
        ("class", 100, "{destination: \"[2-4]0*\"}"),
        ("suffix", 100, "{destination: \"*99\"}"),
        ("re", 100, "{destination_regex: '7(\\d)(?P<rest>\\d*)'}"),
        ("all", 100, "{destination: \"*\"}"),
    ]));
    let cases = [
        ("500", "exact500"),
        ("5000", "all"),
        ("1234", "four"),
        ("12345", "ones"),
        ("1", "ones"),
        ("305", "class"),
        ("505", "all"),
        ("599", "suffix"),
        ("7123", "re"),
        ("x7123", "all"),
        ("", "all"),
    ];
    for (dest, want) in cases {
        assert_eq!(routed(&p, &call(dest)).as_deref(), Some(want), "{dest}");
    }
}

#[test]
fn regex_captures_become_variables() {
    let p = plan(&routes_yaml(&[(
        "re",
        100,
        "{destination_regex: '9(?P<number>\\d+)'}",
    )]));
    let r = p.route(&call("95551234")).expect("routed");
    assert_eq!(
        r.variables.get("number").map(String::as_str),
        Some("5551234")
    );
    assert_eq!(r.variables.get("1").map(String::as_str), Some("5551234"));
    assert_eq!(
        r.variables.get("destination").map(String::as_str),
        Some("95551234")
    );
    assert_eq!(r.variables.get("route_id").map(String::as_str), Some("re"));
    assert!(p.route(&call("8555")).is_none());
}

#[test]
fn from_domain_condition() {
    let p = plan(
        "version: 1\nroutes:\n  - id: partner\n    match: {destination: \"*\", from_domain: \"*.partner.example\"}\n    actions: [answer]\n",
    );
    let mut c = call("1000");
    c.from_domain = "pbx.PARTNER.example".into();
    assert!(
        p.route(&c).is_some(),
        "case-insensitive glob on the From host"
    );
    c.from_domain = "evil.example".into();
    assert!(p.route(&c).is_none());
}

#[test]
fn caller_domain_and_source_conditions() {
    let p = plan(&routes_yaml(&[
        (
            "vip",
            100,
            "{destination: \"*\", caller: \"100?\", domain: \"*.EXAMPLE.com\", source: [10.0.0.0/8]}",
        ),
        ("lan", 100, "{source: [192.168.0.0/16, \"2001:db8::/32\"]}"),
        ("fallback", 100, "{}"),
    ]));
    let c = call("42");
    assert_eq!(routed(&p, &c).as_deref(), Some("vip"));
    let mut c2 = c.clone();
    c2.caller = "2001".into();
    assert_eq!(routed(&p, &c2).as_deref(), Some("fallback"));
    let mut c3 = c.clone();
    c3.domain = "pbx.example.org".into();
    assert_eq!(routed(&p, &c3).as_deref(), Some("fallback"));
    let mut c4 = c.clone();
    c4.source_ip = Some("192.168.1.9".parse().expect("ip"));
    assert_eq!(routed(&p, &c4).as_deref(), Some("lan"));
    c4.source_ip = Some("2001:db8::7".parse().expect("ip"));
    assert_eq!(routed(&p, &c4).as_deref(), Some("lan"));
    c4.source_ip = None;
    assert_eq!(
        routed(&p, &c4).as_deref(),
        Some("fallback"),
        "unknown source never matches a CIDR"
    );
}

#[test]
fn priority_then_file_order() {
    let p = plan(&routes_yaml(&[
        ("late-exact", 200, "{destination: \"1000\"}"),
        ("first-wild", 100, "{destination: \"1*\"}"),
        ("second-wild", 100, "{destination: \"10*\"}"),
        ("urgent-re", 50, "{destination_regex: '10[0-9]0'}"),
    ]));
    assert_eq!(routed(&p, &call("1000")).as_deref(), Some("urgent-re"));
    assert_eq!(routed(&p, &call("1001")).as_deref(), Some("first-wild"));
    let ids: Vec<&str> = p.routes().iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        ["urgent-re", "first-wild", "second-wild", "late-exact"]
    );
    // Ties: file order, even when the later one is an exact match.
    let p = plan(&routes_yaml(&[
        ("wild", 100, "{destination: \"*\"}"),
        ("exact", 100, "{destination: \"500\"}"),
    ]));
    assert_eq!(routed(&p, &call("500")).as_deref(), Some("wild"));
}

#[test]
fn disabled_routes_never_match() {
    let p = plan(
        "version: 1\nroutes:\n  - id: off\n    enabled: false\n    match: {}\n    actions: [answer]\n  - id: on\n    match: {}\n    actions: [answer]\n",
    );
    assert_eq!(routed(&p, &call("1")).as_deref(), Some("on"));
    assert_eq!(p.summary().enabled, 1);
}

#[test]
fn index_agrees_with_a_linear_scan() {
    // A mix where buckets overlap; compare with a brute-force scan.
    let mut rows = Vec::new();
    let pats = [
        "{destination: \"1*\"}",
        "{destination: \"12*\"}",
        "{destination: \"123\"}",
        "{destination: \"1?3\"}",
        "{destination_regex: '1(2|3)+'}",
        "{destination_regex: '12\\d'}",
        "{destination: \"*3\", caller: \"9*\"}",
        "{destination: \"*\", source: [10.0.0.0/8]}",
    ];
    let ids: Vec<String> = (0..40).map(|i| format!("r{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let prio = [300, 100, 200][i % 3];
        rows.push((id.as_str(), prio, pats[(i * 7) % pats.len()]));
    }
    let p = plan(&routes_yaml(&rows));
    for dest in ["1", "12", "123", "1223", "133", "124", "2", "", "13", "143"] {
        for caller in ["1001", "9000"] {
            for ip in [Some("10.1.1.1"), Some("8.8.8.8"), None] {
                let c = CallInfo {
                    destination: dest.into(),
                    caller: caller.into(),
                    domain: String::new(),
                    from_domain: String::new(),
                    source_ip: ip.map(|i| i.parse().expect("ip")),
                };
                let linear = p
                    .routes()
                    .iter()
                    .find(|r| {
                        r.enabled && r.context.is_none() && r.matcher.check(&c, false).is_some()
                    })
                    .map(|r| r.id.clone());
                assert_eq!(routed(&p, &c), linear, "{c:?}");
            }
        }
    }
}

#[test]
fn context_routes_take_transfers_only() {
    let p = plan(
        "version: 1\nroutes:\n  - id: ext\n    match: {destination: \"1???\"}\n    transfer: front\n    actions: [answer]\n  - id: desk\n    context: front\n    match: {destination: \"0\"}\n    actions: [answer]\n  - id: closed\n    match: {destination: \"2*\"}\n    transfer: deny\n    actions: [answer]\n  - id: open\n    match: {destination: \"3*\"}\n    transfer: allow\n    actions: [answer]\n  - id: any\n    match: {}\n    actions: [answer]\n",
    );
    // New calls never reach a context route.
    assert_eq!(routed(&p, &call("0")).as_deref(), Some("any"));
    let desk = p
        .route_in(Some("front"), &call("0"))
        .map(|r| r.route.id.clone());
    assert_eq!(desk.as_deref(), Some("desk"));
    assert!(p.route_in(Some("front"), &call("1001")).is_none());
    assert!(p.route_in(Some("nowhere"), &call("0")).is_none());
    let policy = |dest: &str| p.route(&call(dest)).map(|r| r.route.transfer.clone());
    assert_eq!(
        policy("1001"),
        Some(TransferPolicy::Context("front".into()))
    );
    assert_eq!(policy("2"), Some(TransferPolicy::Deny));
    assert_eq!(policy("3"), Some(TransferPolicy::Allow));
    assert_eq!(policy("9"), Some(TransferPolicy::LocalUsers));
    // The fast path and serde read the new keys alike.
    let yaml = p.yaml().to_string();
    assert!(Dialplan::parse_fast("t.yaml", &yaml, &ctx()).is_some());
}

#[test]
fn transfer_policies_are_checked_at_load() {
    let yaml = "version: 1\nroutes:\n  - id: a\n    match: {}\n    transfer: nowhere\n    actions: [answer]\n  - id: b\n    context: \"bad name\"\n    match: {}\n    actions: [answer]\n  - id: c\n    context: elsewhere\n    match: {}\n    transfer: \"x\\r\\ny\"\n    actions: [answer]\n";
    let errs = errors(yaml);
    let text = render(&errs);
    assert_eq!(errs.len(), 3, "{text}");
    assert!(
        text.contains("t.yaml:8:14: bad context name \"bad name\""),
        "{text}"
    );
    assert!(text.contains("t.yaml:14:15: bad context name"), "{text}");
    assert!(
            text.contains(
                "t.yaml:5:15: transfer context \"nowhere\" has no routes (routes join it with `context: nowhere`; contexts in this file: elsewhere)"
            ),
            "{text}"
        );
    let fast = Dialplan::parse_fast("t.yaml", yaml, &ctx()).map(|r| r.err());
    let slow = Dialplan::parse_sequential("t.yaml", yaml, &ctx()).err();
    if let Some(fast) = fast {
        assert_eq!(fast, slow, "fast path and serde agree");
    }
}

#[test]
fn semantic_errors_are_all_collected() {
    let yaml = "version: 1\nroutes:\n  - id: a\n    match: {destination_regex: '(1'}\n    actions: [answer]\n  - id: a\n    match: {destination: \"1[\"}\n    actions:\n      - dial: {target: gateway/nope}\n      - playback: {file: \"${nothing}.wav\"}\n";
    let errs = errors(yaml);
    let text = render(&errs);
    assert_eq!(errs.len(), 5, "{text}");
    assert!(text.contains("t.yaml:4:32: bad regex"), "{text}");
    assert!(
        text.contains("t.yaml:6:9: duplicate route id \"a\" (first defined at line 3)"),
        "{text}"
    );
    assert!(text.contains("t.yaml:7:26: bad glob"), "{text}");
    assert!(
        text.contains("t.yaml:9:24: unknown gateway \"nope\" (configured gateways: gw1, gw2)"),
        "{text}"
    );
    assert!(
        text.contains("t.yaml:10:26: undefined variable ${nothing}"),
        "{text}"
    );
}

#[test]
fn set_variables_are_defined_for_later_actions_only() {
    let ok = "version: 1\nroutes:\n  - id: a\n    match: {}\n    actions:\n      - set: {box: \"vm-${caller}\"}\n      - playback: {file: \"${box}.wav\"}\n";
    plan(ok);
    let bad = "version: 1\nroutes:\n  - id: a\n    match: {}\n    actions:\n      - playback: {file: \"${box}.wav\"}\n      - set: {box: x}\n";
    let errs = errors(bad);
    assert!(
        errs.first().is_some_and(|e| e.line == 6),
        "{}",
        render(&errs)
    );
}

#[test]
fn audio_files_are_checked_when_a_directory_is_configured() {
    let dir = std::env::temp_dir().join(format!("swbd-audio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("tone-1khz-2s.wav"), b"RIFF").expect("write");
    let ctx = DialplanContext {
        gateways: vec![],
        audio_dir: Some(dir.clone()),
    };
    let p = Dialplan::embedded_default(&ctx).expect("tone exists");
    assert!(p.notes().is_empty());
    std::fs::remove_file(dir.join("tone-1khz-2s.wav")).expect("rm");
    let errs = Dialplan::embedded_default(&ctx).expect_err("tone missing");
    assert!(
        errs.first()
            .is_some_and(|e| e.message.contains("not found under audio directory"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn terse_serde_errors_get_a_hint() {
    let cases = [
        ("", (1, 1), "the file is empty"),
        (
            "version: 1\nroutes:\n  - id: a\n    match: {}\n    actions: [{answer: {}}]\n",
            (5, 24),
            "write `- answer`",
        ),
        (
            "version: 1\nroutes:\n  - id: a\n    match: {}\n    actions:\n      - playback: x.wav\n",
            (6, 19),
            "expected a mapping here",
        ),
        (
            "version: 1\nroutes:\n  - id: a\n    match: {}\n    actions: [{hangup: {code: 70000}}]\n",
            (5, 31),
            "expected a whole number",
        ),
        ("routes: []\n", (1, 1), "missing field `version`"),
        (
            "version: 1\nroutes:\n  - match: {}\n    actions: [answer]\n",
            (4, 5),
            "missing field `id`",
        ),
    ];
    for (doc, at, msg) in cases {
        let errs = errors(doc);
        let e = errs.first().expect("an error");
        assert_eq!((e.line, e.column), at, "{e}");
        assert!(e.message.contains(msg), "{e}");
    }
}

#[test]
fn same_text_same_version() {
    let a = plan(DEFAULT_YAML);
    let b = plan(DEFAULT_YAML);
    assert_eq!(a.version().hash, b.version().hash);
    assert_ne!(
        a.version().hash,
        plan(&format!("{DEFAULT_YAML}\n# edit\n")).version().hash
    );
}
