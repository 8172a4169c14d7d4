//! Hold that lasts (issue #15), with scripted phones over real UDP: a held
//! call outlives the RTP timeout, the held party hears music on hold (or is
//! re-INVITEd with the mirrored direction under `hold: pass`), media flows
//! again on resume, and a leg that falls silent after resuming still times
//! out.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::ua::{OutCall, Ua, sdp_media_addr};
use support::{Options, System, eventually, goertzel};
use swbd::sip::Response;
use switchboard_proto::admin::v1 as pb;

/// An SDP offer/answer of `port` with origin `version` and `direction`.
fn sdp_v(port: u16, version: u32, direction: &str) -> String {
    format!(
        "v=0\r\no=- 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na={direction}\r\n"
    )
}

fn has_direction(body: &[u8], direction: &str) -> bool {
    String::from_utf8_lossy(body).contains(&format!("a={direction}"))
}

/// G.711 mu-law to linear.
fn ulaw(b: u8) -> f64 {
    let b = !b;
    let sign = b & 0x80;
    let exponent = (b >> 4) & 0x07;
    let mantissa = i32::from(b & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    f64::from(if sign != 0 { -magnitude } else { magnitude })
}

fn decode(packets: &[Vec<u8>]) -> Vec<f64> {
    packets
        .iter()
        .flat_map(|p| p.get(12..).unwrap_or_default().iter().map(|b| ulaw(*b)))
        .collect()
}

/// Alice calls Bob; returns the call and the node's addresses for each.
async fn bridged_call(alice: &mut Ua, bob: &mut Ua) -> (OutCall, SocketAddr, SocketAddr) {
    let mut call = alice.invite(&bob.user.clone(), None).await;
    let inv = bob.request("INVITE").await;
    let node_b = sdp_media_addr(&inv.body).expect("B-leg offer address");
    bob.reply(
        &inv,
        200,
        "OK",
        Some("b"),
        Some(&sdp_v(bob.rtp_port, 1, "sendrecv")),
    )
    .await;
    let _ack = bob.request("ACK").await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    alice.ack(&call).await;
    let node_a = sdp_media_addr(&ok.body).expect("A-leg answer address");
    (call, node_a, node_b)
}

/// `from` sends `payload` to `to` until `listener` receives it (the
/// bridge is up, whatever else was queued).
async fn wait_relayed(from: &Ua, to: SocketAddr, listener: &Ua, payload: u8, ssrc: u32) {
    let mut buf = vec![0u8; 2048];
    for seq in 0..250u16 {
        from.send_rtp(to, seq, ssrc, &[payload; 160]).await;
        let until = tokio::time::Instant::now() + Duration::from_millis(40);
        while let Ok(Ok((n, _))) =
            tokio::time::timeout_at(until, listener.rtp.recv_from(&mut buf)).await
        {
            if buf
                .get(12..n)
                .is_some_and(|x| x.iter().all(|b| *b == payload))
            {
                return;
            }
        }
    }
    panic!("RTP {payload:#x} never relayed");
}

async fn expect_bye(ua: &mut Ua) {
    let bye = ua.request("BYE").await;
    ua.reply(&bye, 200, "OK", None, None).await;
}

async fn hold(alice: &mut Ua, call: &OutCall, version: u32, direction: &str) -> Response {
    let body = sdp_v(alice.rtp_port, version, direction);
    let r = alice.reinvite(call, &body).await;
    assert_eq!(r.code, 200, "{} {}", r.code, r.reason);
    r
}

#[tokio::test]
async fn music_on_hold_outlives_the_rtp_timeout_and_resume_bridges_again() {
    let sys = System::start(Options {
        rtp_timeout_secs: 2,
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let (call, node_a, node_b) = bridged_call(&mut alice, &mut bob).await;
    wait_relayed(&alice, node_a, &bob, 0x11, 7).await;
    wait_relayed(&bob, node_b, &alice, 0x12, 8).await;

    // Alice holds (sendonly) and falls silent, as many phones do.
    let held = hold(&mut alice, &call, 2, "sendonly").await;
    assert!(has_direction(&held.body, "recvonly"), "answered recvonly");

    // Bob keeps talking and hears the music for six seconds: three times
    // the RTP timeout. Had Alice's leg timed out, the call would have
    // ended and the music with it.
    let keep_talking = async {
        for seq in 1000u16.. {
            bob.send_rtp(node_b, seq, 8, &[0x22; 160]).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let listen = async {
        let mut music = Vec::new();
        while music.len() < 300 {
            let got = bob.recv_rtp(3, 300 - music.len()).await;
            assert!(
                !got.is_empty(),
                "the music stopped after {} packets",
                music.len()
            );
            // Skip what Alice sent before she held.
            music.extend(got.into_iter().filter(|p| p.get(12) != Some(&0x11)));
        }
        music
    };
    let music = tokio::select! {
        m = listen => m,
        _ = keep_talking => unreachable!(),
    };
    let samples = decode(&music);
    let notes =
        goertzel(&samples, 523.25) + goertzel(&samples, 659.25) + goertzel(&samples, 783.99);
    assert!(
        notes > 10.0 * goertzel(&samples, 1000.0),
        "Bob hears the music on hold (its notes dominate)"
    );
    let calls = sys.active_calls().await;
    assert_eq!(calls.len(), 1, "the held call is up");
    assert_eq!(calls[0].state, pb::CallState::Bridged as i32);

    // Resume: the legs are bridged again, the music stops.
    let resumed = hold(&mut alice, &call, 3, "sendrecv").await;
    assert!(has_direction(&resumed.body, "sendrecv"));
    wait_relayed(&alice, node_a, &bob, 0x33, 7).await;
    wait_relayed(&bob, node_b, &alice, 0x44, 8).await;

    // Silent again, not on hold: the RTP timeout ends the call.
    expect_bye(&mut alice).await;
    expect_bye(&mut bob).await;
    sys.assert_clean().await;
    let ended = sys
        .signaling()
        .await
        .expect("admin")
        .list_calls(pb::ListCallsRequest {
            include_ended: true,
        })
        .await
        .expect("list")
        .into_inner()
        .calls;
    assert!(
        ended.iter().any(|c| c.end_cause.contains("RTP timeout")),
        "{ended:?}"
    );
}

const PASS_PLAN: &str = r#"version: 1
no_match: { code: 404, reason: Not Found }
routes:
  - id: extensions
    match: { destination: "1???" }
    actions:
      - set: { hold: pass }
      - dial: { target: "user/${destination}", timeout: 30s }
"#;

#[tokio::test]
async fn hold_passed_on_re_invites_the_other_leg_and_outlives_the_rtp_timeout() {
    let sys = System::start(Options {
        rtp_timeout_secs: 2,
        dialplan: Some(PASS_PLAN.into()),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let (call, node_a, node_b) = bridged_call(&mut alice, &mut bob).await;
    wait_relayed(&alice, node_a, &bob, 0x11, 7).await;
    wait_relayed(&bob, node_b, &alice, 0x12, 8).await;

    // Alice holds: swbd answers her, then re-INVITEs Bob with sendonly.
    let held = hold(&mut alice, &call, 2, "sendonly").await;
    assert!(has_direction(&held.body, "recvonly"));
    let reinvite = bob.request("INVITE").await;
    assert!(
        has_direction(&reinvite.body, "sendonly"),
        "mirrored: {}",
        String::from_utf8_lossy(&reinvite.body)
    );
    assert_eq!(sdp_media_addr(&reinvite.body), Some(node_b), "same port");
    bob.reply(
        &reinvite,
        200,
        "OK",
        None,
        Some(&sdp_v(bob.rtp_port, 2, "recvonly")),
    )
    .await;
    let _ack = bob.request("ACK").await;

    // Both legs silent. A control call set up later, silent too, must
    // time out first (no sleep-then-check: its BYE is the event).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut carol = Ua::new("1003", sys.sip).await;
    let mut dave = Ua::new("1004", sys.sip).await;
    dave.register(300).await;
    let (control, _, _) = bridged_call(&mut carol, &mut dave).await;
    expect_bye(&mut carol).await;
    expect_bye(&mut dave).await;
    let _ = control;
    // The control's record leaves the table on its own time; the held call
    // must be the one left.
    eventually(10, "only the held call left", || async {
        let calls = sys.active_calls().await;
        let ids: Vec<String> = calls
            .iter()
            .filter_map(|c| c.legs.first().map(|l| l.sip_call_id.clone()))
            .collect();
        (ids == vec![call.call_id.clone()]).then_some(())
    })
    .await;

    // Resume: Bob is re-INVITEd sendrecv; media flows both ways again.
    hold(&mut alice, &call, 3, "sendrecv").await;
    let reinvite = bob.request("INVITE").await;
    assert!(has_direction(&reinvite.body, "sendrecv"));
    bob.reply(
        &reinvite,
        200,
        "OK",
        None,
        Some(&sdp_v(bob.rtp_port, 3, "sendrecv")),
    )
    .await;
    let _ack = bob.request("ACK").await;
    wait_relayed(&alice, node_a, &bob, 0x33, 7).await;
    wait_relayed(&bob, node_b, &alice, 0x44, 8).await;

    assert_eq!(alice.bye(&call).await.code, 200);
    expect_bye(&mut bob).await;
    eventually(10, "no call left", || async {
        sys.active_calls().await.is_empty().then_some(())
    })
    .await;
    sys.assert_clean().await;
}
