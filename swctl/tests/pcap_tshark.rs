//! The pcap writer of `swctl calls pcap` read by the real tshark for what
//! the end-to-end test (swbd/tests/capture_pcap.rs, UDP over IPv4) does
//! not cover: SIP over TCP as a TCP stream, IPv6, and a message swbd cut.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod common;

use std::process::{Command, Stdio};

use switchboard_proto::admin::v1 as pb;

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

fn sip(start: &str, call_id: &str, cseq: &str) -> Vec<u8> {
    format!(
        "{start}\r\nVia: SIP/2.0/TCP [2001:db8::1]:40000;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\n\
         To: <sip:b@x>\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn message(
    transport: pb::CaptureTransport,
    src: &str,
    dst: &str,
    inbound: bool,
    ms: i32,
    raw: Vec<u8>,
) -> pb::CapturedMessage {
    pb::CapturedMessage {
        at: Some(prost_types::Timestamp {
            seconds: 1_790_000_000,
            nanos: ms * 1_000_000,
        }),
        transport: transport as i32,
        source: src.into(),
        destination: dst.into(),
        inbound,
        raw,
        original_length: 0,
    }
}

/// tshark's fields of every frame of `file` matching `filter`.
fn fields(file: &std::path::Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-r", file.to_str().expect("utf-8")])
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
        ])
        .args(["-o", "tcp.check_checksum:TRUE"])
        .args(["-Y", filter, "-T", "fields", "-E", "separator=|"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

#[test]
fn sip_over_tcp_and_ipv6_reads_as_sip_in_tshark() {
    if !tshark_available() {
        return;
    }
    let tcp = pb::CaptureTransport::Tcp;
    let udp = pb::CaptureTransport::Udp;
    let (phone, swbd) = ("[2001:db8::1]:40000", "[2001:db8::2]:5060");
    let mut cut = sip("MESSAGE sip:b@x SIP/2.0", "cut-1", "1 MESSAGE");
    cut.truncate(60);
    let capture = pb::CallCapture {
        call_id: "c1".into(),
        sip_call_ids: vec!["tcp-1".into()],
        messages: vec![
            message(
                tcp,
                phone,
                swbd,
                true,
                0,
                sip("INVITE sip:b@x SIP/2.0", "tcp-1", "1 INVITE"),
            ),
            message(
                tcp,
                swbd,
                phone,
                false,
                1,
                sip("SIP/2.0 100 Trying", "tcp-1", "1 INVITE"),
            ),
            message(
                tcp,
                swbd,
                phone,
                false,
                2,
                sip("SIP/2.0 200 OK", "tcp-1", "1 INVITE"),
            ),
            message(
                tcp,
                phone,
                swbd,
                true,
                3,
                sip("ACK sip:b@x SIP/2.0", "tcp-1", "1 ACK"),
            ),
            message(
                udp,
                "127.0.0.1:5060",
                "127.0.0.1:5071",
                false,
                4,
                sip("BYE sip:c@x SIP/2.0", "udp-1", "2 BYE"),
            ),
            pb::CapturedMessage {
                original_length: 5000,
                ..message(udp, "127.0.0.1:5071", "127.0.0.1:5060", true, 5, cut)
            },
        ],
        messages_not_kept: 0,
    };
    let dir = common::tempdir("pcap");
    let file = dir.join("tcp.pcap");
    std::fs::write(&file, swctl::pcap::write(&capture)).expect("write pcap");

    let got = fields(
        &file,
        "sip",
        &[
            "sip.Call-ID",
            "sip.Method",
            "sip.Status-Code",
            "frame.protocols",
        ],
    );
    let ladder: Vec<String> = got
        .iter()
        .map(|f| {
            if f[2].is_empty() {
                f[1].clone()
            } else {
                f[2].clone()
            }
        })
        .collect();
    // The cut MESSAGE is still recognised from its start line.
    assert_eq!(
        ladder,
        ["INVITE", "100", "200", "ACK", "BYE", "MESSAGE"],
        "{got:#?}"
    );
    assert!(
        got[..4].iter().all(|f| f[3].contains("ipv6:tcp:sip")),
        "{got:#?}"
    );
    assert!(got[4][3].contains("ip:udp:sip"), "{got:#?}");

    // One TCP stream, checksums good, sequence numbers that follow.
    let tcp_frames = fields(
        &file,
        "tcp",
        &[
            "tcp.stream",
            "tcp.checksum.status",
            "tcp.seq_raw",
            "tcp.ack_raw",
            "tcp.len",
        ],
    );
    assert_eq!(tcp_frames.len(), 4);
    assert!(
        tcp_frames.iter().all(|f| f[0] == "0" && f[1] == "1"),
        "{tcp_frames:#?}"
    );
    let n = |s: &str| s.parse::<u64>().expect("number");
    // The phone's second segment starts where its first ended; swbd's
    // segments acknowledge the phone's bytes.
    assert_eq!(
        n(&tcp_frames[3][2]),
        n(&tcp_frames[0][2]) + n(&tcp_frames[0][4])
    );
    assert_eq!(
        n(&tcp_frames[1][3]),
        n(&tcp_frames[0][2]) + n(&tcp_frames[0][4])
    );
    assert!(
        fields(&file, "tcp.analysis.flags", &["frame.number"]).is_empty(),
        "no retransmission, gap or out-of-order flagged"
    );
    // The cut message: shorter in the file than on the wire.
    let cut = fields(&file, "frame.number == 6", &["frame.len", "frame.cap_len"]);
    assert_eq!(cut[0][0], (14 + 20 + 8 + 5000).to_string());
    assert_eq!(cut[0][1], (14 + 20 + 8 + 60).to_string());
}
