//! `swctl calls history` (and `swctl cdr`) against a real swbd + swrtp:
//! an answered call, a 404 and a 486 leave records in swbd's CDR file,
//! and every output format and filter shows the right rows.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{place_call, start_pbx, swctl, tempdir};

const PLAN: &str = "version: 1
no_match: { code: 404, reason: Not Found }
routes:
  - id: answer
    match: { destination: \"7777\" }
    actions:
      - answer
      - sleep: 1s
      - hangup: { code: 480, reason: Done }
  - id: busy
    match: { destination: \"486\" }
    actions:
      - hangup: { code: 486, reason: Busy Here }
";

/// An INVITE from 4321 to `dest` that gets a final error: its status and
/// the SIP Call-ID used.
fn failed_call(sip_port: u16, dest: &str) -> (u16, String) {
    let phone = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let me = phone.local_addr().expect("addr");
    let call_id = format!("history-{dest}-{}@127.0.0.1", me.port());
    let invite = format!(
        "INVITE sip:{dest}@127.0.0.1:{sip_port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-h{dest};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:4321@127.0.0.1>;tag=hist\r\nTo: <sip:{dest}@127.0.0.1>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:4321@{me}>\r\nContent-Length: 0\r\n\r\n"
    );
    phone
        .send_to(invite.as_bytes(), ("127.0.0.1", sip_port))
        .expect("send");
    phone
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    loop {
        let mut buf = [0u8; 65535];
        let (n, _) = phone.recv_from(&mut buf).expect("a response");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let code: u16 = text
            .get(8..11)
            .and_then(|c| c.parse().ok())
            .expect("status line");
        if code >= 200 {
            let to = text
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("to:"))
                .and_then(|l| l.get(3..))
                .map(str::trim)
                .unwrap_or_default();
            let ack = format!(
                "ACK sip:{dest}@127.0.0.1:{sip_port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-h{dest};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:4321@127.0.0.1>;tag=hist\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
                 CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = phone.send_to(ack.as_bytes(), ("127.0.0.1", sip_port));
            return (code, call_id);
        }
    }
}

fn history(host: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--host", host, "calls", "history"];
    all.extend_from_slice(args);
    swctl(&all)
}

fn json(host: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let (code, out, err) = history(host, &all);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<Vec<serde_json::Value>>(&out).expect("JSON array")
}

fn dests(records: &[serde_json::Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["destination"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn history_lists_ended_calls_in_every_format_and_filter() {
    let dir = tempdir("history");
    let plan = dir.join("plan.yaml");
    std::fs::write(&plan, PLAN).expect("plan");
    let pbx = start_pbx(&dir, &plan);
    let host = format!("unix://{}", pbx.swbd_socket.display());

    let phone = place_call(pbx.sip_port, "7777");
    // The dialplan hangs up after 1 s: answer its BYE.
    phone
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 65535];
    let (n, from) = phone.recv_from(&mut buf).expect("BYE from swbd");
    let bye = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(bye.starts_with("BYE "), "{bye}");
    let ok = bye
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            ["via:", "from:", "to:", "call-id:", "cseq:"]
                .iter()
                .any(|h| l.starts_with(h))
        })
        .fold(String::from("SIP/2.0 200 OK\r\n"), |mut m, l| {
            m.push_str(l);
            m.push_str("\r\n");
            m
        })
        + "Content-Length: 0\r\n\r\n";
    phone.send_to(ok.as_bytes(), from).expect("200 to BYE");

    let (code, not_found_id) = failed_call(pbx.sip_port, "555");
    assert_eq!(code, 404);
    let (code, _) = failed_call(pbx.sip_port, "486");
    assert_eq!(code, 486);

    let deadline = Instant::now() + Duration::from_secs(20);
    let all = loop {
        let all = json(&host, &[]);
        if all.len() >= 3 {
            break all;
        }
        assert!(Instant::now() < deadline, "3 records: {all:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut seen = dests(&all);
    seen.sort();
    assert_eq!(seen, ["486", "555", "7777"]);
    let ends: Vec<&str> = all
        .iter()
        .map(|r| r["end_time"].as_str().unwrap_or_default())
        .collect();
    assert!(
        ends.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {ends:?}"
    );
    let by_dest = |d: &str| all.iter().find(|r| r["destination"] == d).expect("record");
    let answered = by_dest("7777");
    assert_eq!(answered["status"], "answered");
    assert_eq!(answered["caller"], "4321");
    assert_eq!(answered["end_reason"], "dialplan_hangup");
    assert_eq!(answered["media_node"], "rtp-a");
    assert_eq!(answered["node_id"], "pbx-calls");
    assert_eq!(by_dest("555")["sip_code"], 404);
    assert_eq!(by_dest("555")["end_reason"], "no_route");
    assert_eq!(by_dest("486")["sip_code"], 486);
    assert_eq!(by_dest("486")["legs"][0]["end"], "rejected");

    // Filters.
    assert_eq!(dests(&json(&host, &["--status", "failed"])), ["486", "555"]);
    assert_eq!(dests(&json(&host, &["--status", "answered"])), ["7777"]);
    assert_eq!(dests(&json(&host, &["--code", "486"])), ["486"]);
    assert_eq!(dests(&json(&host, &["--to", "7777"])), ["7777"]);
    assert_eq!(json(&host, &["--from", "4321"]).len(), 3);
    assert!(json(&host, &["--from", "9999"]).is_empty());
    assert_eq!(dests(&json(&host, &["--call-id", &not_found_id])), ["555"]);
    assert_eq!(dests(&json(&host, &["--node", "rtp-a"])), ["7777"]);
    assert_eq!(json(&host, &["--since", "1h"]).len(), 3);
    assert!(json(&host, &["--until", "1h"]).is_empty());
    assert_eq!(json(&host, &["--since", "2020-01-01T00:00:00Z"]).len(), 3);
    assert_eq!(json(&host, &["-n", "1"]).len(), 1);

    // Formats.
    let (code, table, err) = history(&host, &[]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("START") && lines[0].contains("CAUSE"),
        "{table}"
    );
    assert_eq!(lines.len(), 4, "{table}");
    assert!(table.contains(" 486 ") && table.contains("7777"), "{table}");
    assert!(lines.iter().all(|l| l.chars().count() <= 80), "{table}");
    let (code, wide, _) = history(&host, &["-o", "wide"]);
    assert_eq!(code, 0);
    assert!(
        wide.contains(&not_found_id) && wide.contains("no_route"),
        "{wide}"
    );
    let (code, yaml, _) = history(&host, &["-o", "yaml"]);
    assert_eq!(code, 0);
    assert!(
        yaml.contains("sip_code: 486")
            && (yaml.contains("destination: '7777'") || yaml.contains("destination: \"7777\"")),
        "{yaml}"
    );
    let (code, csv, _) = history(&host, &["-o", "csv", "--status", "failed"]);
    assert_eq!(code, 0);
    let rows: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 3, "header + 2 rows: {csv:?}");
    assert!(rows[0].starts_with("backend,call_id,node_id,status,sip_code,caller,destination"));
    assert!(rows[1].contains(",failed,486,4321,486,"), "{csv}");

    // The alias, and refusals.
    let (code, out, _) = swctl(&["--host", &host, "cdr", "-o", "json", "--code", "404"]);
    assert_eq!(code, 0);
    assert!(out.contains(&not_found_id), "{out}");
    let (code, _, err) = history(&host, &["--since", "yesterday"]);
    assert_eq!(code, 2, "a bad --since is a usage error: {err}");
    assert!(err.contains("--since"), "{err}");
    let (code, _, err) = swctl(&["--host", &host, "calls", "list", "-o", "csv"]);
    assert_eq!(code, 2, "csv is for the history only: {err}");
}
