//! The shipped dialplans load against their configs and route the way
//! their comments say.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

use std::path::{Path, PathBuf};

use swbd::config::Config;
use swbd::dialplan::{Dialplan, DialplanContext, check_file};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn office() -> Dialplan {
    let cfg = Config::load(&root().join("testdata/config/swbd-office.yaml"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    let ctx = DialplanContext::from_config(&cfg);
    let file = root().join(cfg.dialplan.file.as_deref().expect("configured file"));
    Dialplan::load(&file, &ctx).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

#[test]
fn dialplan_office_example_validates_with_its_config() {
    let p = office();
    assert_eq!(p.summary().routes, 7);
    assert_eq!(p.summary().enabled, 6);
}

#[test]
fn dialplan_office_example_needs_its_gateways() {
    let errs = check_file(
        &root().join("dialplans/examples/office.yaml"),
        &DialplanContext::default(),
    )
    .expect_err("gateways unknown");
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs.iter().all(|e| e.message.contains("unknown gateway")));
}

#[test]
fn dialplan_office_routes_as_documented() {
    let p = office();
    let t = |dest: &str, caller: &str, ip: &str, domain: &str| {
        let r = p.test_route(dest, caller, ip, domain, "");
        (r.matched, r.route_id, r.actions)
    };
    let (m, id, actions) = t("1001", "1002", "10.0.0.9", "pbx.example.com");
    assert!(m);
    assert_eq!(id, "extensions");
    assert_eq!(
        actions.first().map(|a| a.description.as_str()),
        Some("user/1001, timeout 25s, on failure stop")
    );
    // Extensions only from the LAN.
    assert_eq!(t("1001", "x", "198.51.100.1", "").1, "");
    assert_eq!(t("2000", "", "", "").1, "sales");
    let (_, _, sales) = t("2000", "", "", "");
    assert_eq!(
        sales
            .first()
            .map(|a| (a.name.as_str(), a.description.as_str())),
        Some((
            "dial",
            "user/1001, user/1002, user/1003 in parallel, timeout 20s, on failure next action"
        ))
    );
    assert_eq!(t("8000", "", "", "").1, "ivr");
    assert_eq!(t("+15558000", "", "", "").1, "ivr");
    let (_, id, out) = t("9+4930123456", "1001", "10.0.0.9", "");
    assert_eq!(id, "outbound");
    let descr: Vec<&str> = out.iter().map(|a| a.description.as_str()).collect();
    assert_eq!(
        descr,
        [
            "gateway/carrier-a/+4930123456, timeout 45s, on failure next action",
            "gateway/carrier-b/+4930123456, timeout 45s, on failure next action",
            "503 All Carriers Failed"
        ]
    );
    // Premium numbers are blocked first, whatever the caller.
    assert_eq!(t("919005551234", "1001", "10.0.0.9", "").1, "block-premium");
    assert_eq!(
        t("+15550100", "x", "203.0.113.7", "Trunk.EXAMPLE.com").1,
        "inbound-did"
    );
    assert_eq!(t("+15550100", "x", "203.0.113.7", "example.org").1, "");
    // Disabled route.
    let r = p.test_route("3000", "", "", "", "");
    assert!(!r.matched);
    assert_eq!(r.no_match_status, 404);
}

#[test]
fn dialplan_ivr_variables_show_in_test_route() {
    let r = office().test_route("8000", "1001", "", "", "");
    assert_eq!(
        r.variables.get("reception").map(String::as_str),
        Some("1000")
    );
    let names: Vec<&str> = r.actions.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "answer", "playback", "sleep", "set", "dial", "playback", "hangup"
        ]
    );
    assert_eq!(
        r.actions.get(4).map(|a| a.description.as_str()),
        Some("user/1000, timeout 30s, on failure next action")
    );
}

#[test]
fn dialplan_to_proto_lists_routes_in_evaluation_order() {
    let p = office();
    let pb = p.to_proto();
    assert_eq!(pb.version, p.version().hash);
    assert_eq!(pb.version.len(), 12);
    assert!(pb.loaded_at.is_some());
    assert!(pb.yaml.contains("carrier-a"));
    let ids: Vec<&str> = pb.routes.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "block-premium",
            "outbound",
            "extensions",
            "sales",
            "ivr",
            "inbound-did",
            "conference"
        ]
    );
    let out = pb.routes.get(1).expect("outbound");
    assert_eq!(out.priority, 50);
    assert_eq!(
        out.r#match,
        r"destination /9(?P<number>\+?\d{6,15})/ from 1???"
    );
    assert_eq!(out.actions, 3);
    assert!(!pb.routes.last().expect("conference").enabled);
}

#[test]
fn dialplan_default_plan_is_the_embedded_file() {
    let on_disk = std::fs::read_to_string(root().join("dialplans/default.yaml")).expect("read");
    assert_eq!(on_disk, swbd::dialplan::DEFAULT_YAML);
    let p = Dialplan::embedded_default(&DialplanContext::default()).expect("loads");
    let r = p.test_route("1042", "1001", "127.0.0.1", "localhost", "");
    assert_eq!(r.route_id, "extensions");
    assert_eq!(
        r.actions.first().map(|a| a.description.as_str()),
        Some("user/1042, timeout 30s, on failure next action")
    );
    let r = p.test_route("500", "", "", "", "");
    assert_eq!(r.route_id, "tone");
    assert_eq!(
        r.actions.get(1).map(|a| a.description.as_str()),
        Some("tone-1khz-2s.wav")
    );
    assert!(!p.test_route("42", "", "", "", "").matched);
}
