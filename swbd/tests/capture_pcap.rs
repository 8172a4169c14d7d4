//! SIP capture per call, end to end: a real call between two UDP phones
//! through swbd + swrtp, exported with `swctl calls pcap ID`, read back by
//! the real `tshark`: both legs' ladders are there, in order, as Wireshark
//! dissects them (INVITE, 100, 180, 200, ACK, BYE, 200).
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::process::{Command, Stdio};

use support::ua::{Ua, sdp};
use support::{Options, System, swctl};
use swbd::sip::message::HeaderAccess;
use switchboard_proto::admin::v1 as pb;

/// Whether tshark can run here. Missing: a failure under `CI=true`
/// (scripts/test.sh installs it), else `false` and a SKIP note.
fn tshark_available() -> bool {
    let ok = Command::new("tshark")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "tshark is missing; in CI that is a failure (scripts/test.sh installs it)"
    );
    eprintln!("SKIP: tshark is not installed (apt-get install tshark; scripts/test.sh does)");
    false
}

/// `(Call-ID, "INVITE" or "200", transport)` of every SIP packet tshark
/// dissects in `file`, in file order.
fn tshark_sip(file: &std::path::Path) -> Vec<(String, String, String)> {
    let out = Command::new("tshark")
        .args(["-r", file.to_str().expect("utf-8"), "-Y", "sip"])
        .args(["-T", "fields", "-E", "separator=|"])
        .args([
            "-e",
            "sip.Call-ID",
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
        ])
        .args(["-e", "frame.protocols"])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let what = if f[2].is_empty() { f[1] } else { f[2] };
            (f[0].to_string(), what.to_string(), f[3].to_string())
        })
        .collect()
}

/// Lines tshark prints for the frames of `file` matching `filter`.
fn tshark_count(file: &std::path::Path, filter: &str) -> usize {
    let out = Command::new("tshark")
        .args(["-r", file.to_str().expect("utf-8")])
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
        ])
        .args(["-Y", filter])
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark failed");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// The ladder of one Call-ID (requests by method, responses by code).
fn ladder(sip: &[(String, String, String)], call_id: &str) -> Vec<String> {
    sip.iter()
        .filter(|(cid, _, _)| cid == call_id)
        .map(|(_, what, _)| what.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_pcap_opens_in_tshark_with_both_ladders() {
    if !tshark_available() {
        return;
    }
    let sys = System::start(Options::default()).await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    let mut call = alice.invite("1002", None).await;
    let b_invite = bob.request("INVITE").await;
    bob.reply(&b_invite, 180, "Ringing", Some("bob1"), None)
        .await;
    let body = sdp(bob.rtp_port);
    bob.reply(&b_invite, 200, "OK", Some("bob1"), Some(&body))
        .await;
    let _ = bob.request("ACK").await;
    assert_eq!(alice.final_response(&mut call).await.code, 200);
    alice.ack(&call).await;
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;

    let calls = sys
        .signaling()
        .await
        .expect("admin")
        .list_calls(pb::ListCallsRequest {
            include_ended: true,
        })
        .await
        .expect("calls")
        .into_inner()
        .calls;
    let id = calls
        .iter()
        .find(|c| c.legs.iter().any(|l| l.sip_call_id == call.call_id))
        .expect("the call")
        .call_id
        .clone();
    let b_call_id = b_invite.call_id().expect("B Call-ID").to_string();

    // To a file, and the same bytes to stdout when redirected.
    let file = sys.dir.join("call.pcap");
    let file_arg = file.to_str().expect("utf-8");
    let (code, _, err) = swctl::run(&sys.admin, &["calls", "pcap", &id, "-w", file_arg]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("2 legs"), "{err}");
    let (code, stdout, err) = swctl::run(&sys.admin, &["calls", "pcap", &id]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(stdout, std::fs::read(&file).expect("pcap file"));
    // By the SIP Call-ID of the B-leg: the same call.
    let (code, by_sip, err) = swctl::run(&sys.admin, &["calls", "pcap", &b_call_id]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(by_sip, stdout);

    // The capture store is fed asynchronously by the transports: on a
    // loaded machine the last message may land a moment after the phones
    // saw it. Export again until both ladders are complete (at most 5 s);
    // the asserts below judge the last export.
    let mut sip = tshark_sip(&file);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while (ladder(&sip, &call.call_id).len() < 7 || ladder(&sip, &b_call_id).len() < 6)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let (code, _, err) = swctl::run(&sys.admin, &["calls", "pcap", &id, "-w", file_arg]);
        assert_eq!(code, 0, "{err}");
        sip = tshark_sip(&file);
    }
    let a = ladder(&sip, &call.call_id);
    assert_eq!(
        a,
        ["INVITE", "100", "180", "200", "ACK", "BYE", "200"],
        "A-leg ladder as tshark reads it: {sip:#?}"
    );
    let b = ladder(&sip, &b_call_id);
    // Bob (the test's phone) sends no 100 Trying.
    assert_eq!(
        b,
        ["INVITE", "180", "200", "ACK", "BYE", "200"],
        "B-leg ladder as tshark reads it: {sip:#?}"
    );
    assert!(
        sip.iter().all(|(_, _, protos)| protos.contains("udp")),
        "UDP messages are UDP datagrams: {sip:#?}"
    );
    // Every frame well formed, checksums verified by tshark.
    let frames = tshark_count(&file, "frame");
    assert_eq!(frames, sip.len(), "every frame is SIP");
    assert_eq!(
        tshark_count(
            &file,
            "ip.checksum.status == 1 && udp.checksum.status == 1 && !_ws.malformed"
        ),
        frames,
        "IPv4 and UDP checksums good, nothing malformed"
    );
    // Nothing of other calls or of the REGISTER.
    assert!(
        sip.iter()
            .all(|(cid, _, _)| *cid == call.call_id || *cid == b_call_id),
        "{sip:#?}"
    );

    // An unknown call: a clear error, exit 1.
    let (code, _, err) = swctl::run(
        &sys.admin,
        &["calls", "pcap", "no-such-call", "-w", file_arg],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no SIP messages kept"), "{err}");
}
