//! Prometheus `/metrics` on both daemons, scraped over HTTP from real
//! processes while calls go through them: the exposition is linted by
//! Prometheus' own `promtool check metrics` and parsed by the Python
//! `prometheus_client` parser (both installed by scripts/test.sh; missing
//! with `CI=true` is a failure), and the counters must move with the calls.
//! The Grafana dashboard in docs/grafana must be valid JSON that queries
//! only metrics the scrapes contain.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use support::ua::{Ua, sdp, sdp_media_addr};
use support::{Options, System, free_tcp_port};
use switchboard_proto::admin::v1 as pb;

/// Dial registered users only; anything else has no route (404).
const PLAN: &str = "version: 1\nroutes:\n  - id: ext\n    match: { destination: \"1???\" }\n    actions:\n      - dial: { target: \"user/${destination}\", timeout: 10s, on_failure: stop }\n";

/// Whether `program --version` runs; missing with `CI=true` panics.
fn available(program: &str, args: &[&str], install: &str) -> bool {
    let ok = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{program} {args:?} does not run and CI=true: {install} (scripts/test.sh does)"
        );
        eprintln!("SKIPPED: {program} {args:?} does not run; {install}");
    }
    ok
}

fn tools_available() -> bool {
    let promtool = available(
        "promtool",
        &["--version"],
        "install promtool (Debian package prometheus)",
    );
    let parser = available(
        "python3",
        &["-c", "import prometheus_client.parser"],
        "python3 -m pip install prometheus-client",
    );
    promtool && parser
}

/// `GET path` over plain HTTP/1.1; (status, body).
fn http_get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP head");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "sized body expected: {head}"
    );
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, body.to_string())
}

/// One sample as the Python parser read it.
#[derive(Debug, Clone, serde::Deserialize)]
struct Sample {
    name: String,
    labels: std::collections::BTreeMap<String, String>,
    value: String,
}

/// A parsed scrape.
#[derive(Debug)]
struct Scrape {
    samples: Vec<Sample>,
}

impl Scrape {
    /// Scrape `addr`, lint with promtool, parse with prometheus_client.
    fn of(addr: SocketAddr, what: &str) -> Scrape {
        let (status, body) = http_get(addr, "/metrics", None);
        assert_eq!(status, 200, "{what} /metrics: {body}");
        lint(&body, what);
        Scrape {
            samples: parse(&body, what),
        }
    }

    /// The value of the sample `name` whose labels include `labels`; the
    /// sum when several match, 0 when none.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value.parse::<f64>().expect("numeric sample"))
            .sum()
    }

    fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

/// `promtool check metrics`: format and Prometheus naming conventions.
fn lint(text: &str, what: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics refused {what}'s exposition:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"name": s.name, "labels": s.labels, "value": repr(float(s.value))})
print(json.dumps(out))
"#;

/// Every sample, through the Python client library's parser.
fn parse(text: &str, what: &str) -> Vec<Sample> {
    let mut child = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed the parser");
    let out = child.wait_with_output().expect("parser ran");
    assert!(
        out.status.success(),
        "prometheus_client could not parse {what}'s exposition:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output is JSON")
}

/// Metric names a PromQL expression refers to (ours start with swbd_ or
/// swrtp_; `$swbd_job` is a dashboard variable, not a metric).
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '$')))
        .filter(|t| t.starts_with("swbd_") || t.starts_with("swrtp_"))
        .map(str::to_string)
        .collect()
}

/// Every `expr` in the dashboard, panels and template variables.
fn dashboard_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn metrics_move_with_calls_and_pass_promtool() {
    if !tools_available() {
        return;
    }
    let (swbd_metrics, swrtp_metrics) = (free_tcp_port(), free_tcp_port());
    let sys = System::start(Options {
        dialplan: Some(PLAN.into()),
        extra_config: format!("metrics: {{ listen: \"127.0.0.1:{swbd_metrics}\" }}\n"),
        swrtp_extra: format!("metrics_listen: \"127.0.0.1:{swrtp_metrics}\"\n"),
        ..Default::default()
    })
    .await;
    let swbd_at = SocketAddr::from(([127, 0, 0, 1], swbd_metrics));
    let swrtp_at = SocketAddr::from(([127, 0, 0, 1], swrtp_metrics));
    let before = Scrape::of(swbd_at, "swbd");
    let rtp_before = Scrape::of(swrtp_at, "swrtp");
    assert_eq!(before.value("swbd_calls_started_total", &[]), 0.0);
    assert_eq!(
        before.value("swbd_media_node_up", &[("node", "rtp-a")]),
        1.0
    );
    assert_eq!(rtp_before.value("swrtp_sessions", &[]), 0.0);

    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    // 1. An answered call with RTP both ways, scraped while it is up.
    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 180, "Ringing", Some("b1"), None).await;
    let body = sdp(bob.rtp_port);
    bob.reply(&inv, 200, "OK", Some("b1"), Some(&body)).await;
    let _ack = bob.request("ACK").await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    alice.ack(&call).await;
    let a_media = sdp_media_addr(&ok.body).expect("200 has SDP");
    let b_media = sdp_media_addr(&inv.body).expect("B offer has media");
    for seq in 0..25u16 {
        alice.send_rtp(a_media, seq, 0xA11CE, &[0x55; 160]).await;
        bob.send_rtp(b_media, seq, 0xB0B, &[0x2a; 160]).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!bob.recv_rtp(5, 5).await.is_empty(), "bob hears alice");
    assert!(!alice.recv_rtp(5, 5).await.is_empty(), "alice hears bob");
    let during = Scrape::of(swbd_at, "swbd");
    let rtp_during = Scrape::of(swrtp_at, "swrtp");
    assert_eq!(during.value("swbd_calls", &[("state", "bridged")]), 1.0);
    assert_eq!(
        during.value("swbd_media_node_calls", &[("node", "rtp-a")]),
        1.0
    );
    assert_eq!(during.value("swbd_registrations", &[]), 1.0);
    assert_eq!(rtp_during.value("swrtp_sessions", &[]), 2.0);
    assert_eq!(rtp_during.value("swrtp_bridges", &[]), 1.0);
    assert!(rtp_during.value("swrtp_receiving_sessions", &[]) >= 1.0);
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;

    // 2. A busy callee: 486.
    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 486, "Busy Here", Some("b2"), None).await;
    let _ack = bob.request("ACK").await;
    assert_eq!(alice.final_response(&mut call).await.code, 486);

    // 3. No route: 404.
    let mut call = alice.invite("777", None).await;
    assert_eq!(alice.final_response(&mut call).await.code, 404);
    sys.assert_clean().await;

    // 4. A dialplan reload applied, one refused.
    let mut admin = sys.signaling().await.expect("admin");
    let applied = admin
        .reload_dialplan(pb::ReloadDialplanRequest::default())
        .await
        .expect("reload answered")
        .into_inner();
    assert!(applied.applied, "{applied:?}");
    let bad = sys.dir.join("bad-plan.yaml");
    std::fs::write(&bad, "version: 1\nroutes: [ { id: x\n").expect("write a broken plan");
    let refused = admin
        .reload_dialplan(pb::ReloadDialplanRequest {
            path: bad.display().to_string(),
        })
        .await
        .expect("reload answered")
        .into_inner();
    assert!(!refused.applied, "a broken plan is refused");

    let after = Scrape::of(swbd_at, "swbd");
    let rtp_after = Scrape::of(swrtp_at, "swrtp");
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    assert_eq!(delta("swbd_calls_started_total", &[]), 3.0);
    assert_eq!(delta("swbd_calls_answered_total", &[]), 1.0);
    assert_eq!(delta("swbd_calls_failed_total", &[("code", "486")]), 1.0);
    assert_eq!(delta("swbd_calls_failed_total", &[("code", "404")]), 1.0);
    assert_eq!(after.value("swbd_call_setup_seconds_count", &[]), 1.0);
    assert_eq!(after.value("swbd_call_duration_seconds_count", &[]), 1.0);
    assert_eq!(
        after.value("swbd_call_setup_seconds_bucket", &[("le", "+Inf")]),
        1.0
    );
    assert_eq!(after.value("swbd_calls", &[]), 0.0, "no call left");
    let req = |dir: &str, method: &str| {
        after.value(
            "swbd_sip_requests_total",
            &[("direction", dir), ("method", method)],
        )
    };
    assert!(req("received", "INVITE") >= 3.0);
    assert!(req("received", "REGISTER") >= 1.0);
    assert!(req("received", "BYE") >= 1.0);
    assert!(req("received", "ACK") >= 1.0);
    assert!(req("sent", "INVITE") >= 2.0, "two B-legs");
    assert!(req("sent", "ACK") >= 1.0);
    let resp = |dir: &str, code: &str| {
        after.value(
            "swbd_sip_responses_total",
            &[("direction", dir), ("method", "INVITE"), ("code", code)],
        )
    };
    assert!(resp("sent", "200") >= 1.0);
    assert!(resp("sent", "486") >= 1.0);
    assert!(resp("sent", "404") >= 1.0);
    assert!(resp("sent", "100") >= 3.0);
    assert!(resp("received", "200") >= 1.0);
    assert!(resp("received", "486") >= 1.0);
    assert!(
        after.value(
            "swbd_sip_responses_total",
            &[
                ("direction", "sent"),
                ("method", "REGISTER"),
                ("class", "2xx")
            ]
        ) >= 1.0
    );
    assert!(after.has("swbd_dialplan_info"));
    assert_eq!(
        delta("swbd_dialplan_reloads_total", &[("result", "applied")]),
        1.0
    );
    assert_eq!(
        delta("swbd_dialplan_reloads_total", &[("result", "refused")]),
        1.0
    );

    assert_eq!(rtp_after.value("swrtp_sessions", &[]), 0.0);
    assert_eq!(
        rtp_after.value("swrtp_port_pairs_free", &[]),
        rtp_after.value("swrtp_port_pairs", &[]),
        "every port back"
    );
    assert!(rtp_after.value("swrtp_packets_relayed_total", &[]) > 0.0);
    let received = rtp_after.value("swrtp_rtp_packets_total", &[("direction", "received")]);
    assert!(
        received >= rtp_during.value("swrtp_rtp_packets_total", &[("direction", "received")]),
        "counters never step back when sessions end"
    );
    assert!(received >= 25.0, "{received}");
    assert!(rtp_after.value("swrtp_rtp_payload_bytes_total", &[("direction", "sent")]) > 0.0);
    assert!(rtp_after.value("swrtp_relay_latency_seconds_count", &[]) > 0.0);
    assert!(
        rtp_after.value("swrtp_session_receive_jitter_seconds_count", &[]) >= 2.0,
        "both bridged sessions received RTP"
    );

    // The dashboard: valid JSON, and every metric it queries is exported.
    let path = support::repo().join("docs/grafana/switchboard.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    assert!(
        dashboard["panels"]
            .as_array()
            .is_some_and(|p| p.len() >= 10)
    );
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    let queried: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(queried.len() >= 20, "{queried:?}");
    let missing: Vec<&String> = queried
        .iter()
        .filter(|m| !after.has(m) && !rtp_after.has(m))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics no scrape has: {missing:?}"
    );
}

#[tokio::test]
async fn a_metrics_token_file_is_required_when_set() {
    let port = free_tcp_port();
    let dir = support::tempdir("metrics-token");
    let token_file = dir.join("metrics.token");
    let sys = System::start(Options {
        extra_config: format!(
            "metrics: {{ listen: \"127.0.0.1:{port}\", token_file: \"{}\" }}\n",
            token_file.display()
        ),
        ..Default::default()
    })
    .await;
    let at = SocketAddr::from(([127, 0, 0, 1], port));
    let token = switchboard_proto::support::secret::load_token(&token_file)
        .expect("swbd created the token file");
    assert_eq!(http_get(at, "/metrics", None).0, 401);
    assert_eq!(http_get(at, "/metrics", Some("wrong")).0, 401);
    let (status, body) = http_get(at, "/metrics", Some(token.as_str()));
    assert_eq!(status, 200);
    assert!(body.contains("swbd_calls_started_total 0"), "{body}");
    assert_eq!(http_get(at, "/", Some(token.as_str())).0, 404);
    drop(sys);
}

#[test]
fn metrics_beyond_loopback_without_a_token_are_refused() {
    let dir = support::tempdir("metrics-any");
    let cfg = dir.join("swbd.yaml");
    std::fs::write(&cfg, "metrics: { listen: \"0.0.0.0:9460\" }\n").expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_swbd"))
        .args(["--config", cfg.to_str().expect("utf-8"), "--check-config"])
        .output()
        .expect("run swbd");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metrics.listen") && err.contains("metrics.token_file"),
        "{err}"
    );
}
