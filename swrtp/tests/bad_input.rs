//! Garbage at the RTP and RTCP ports is counted and dropped; the daemon keeps
//! relaying and serving.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::*;
use switchboard_proto::admin::v1 as admin;

#[tokio::test]
async fn random_bytes_truncated_headers_and_rtcp_garbage_are_dropped() {
    let mut d = Daemon::start(config("7400-7419")).await;
    let alice = Peer::new().await;
    let bob = Peer::new().await;
    let a = d.answer("bad", &alice, "0", "").await;
    let a_rtp = rtp_addr(&a.local_sdp);
    let a_rtcp = SocketAddr::new(a_rtp.ip(), a_rtp.port() + 1);
    let b = d.offer("bad", &bob, "0", "").await;
    d.bridge(&a.session_id, &b).await;

    let mut junk: Vec<Vec<u8>> = Vec::new();
    let mut x: u32 = 0x1234_5678;
    for len in [1usize, 3, 11, 40, 172, 1400] {
        let mut v = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            v.push((x as u8) & 0x3F); // version bits 0: never valid RTP
        }
        junk.push(v);
    }
    let full = rtp(0, 1, 0, 9, false, &[1; 160]);
    junk.push(full[..7].to_vec()); // truncated header
    junk.push(full[..11].to_vec());
    let mut csrc = full.clone();
    csrc[0] = 0x8F; // claims 15 CSRCs it does not have
    junk.push(csrc[..40].to_vec());
    let mut padded = full.clone();
    padded[0] |= 0x20;
    *padded.last_mut().unwrap() = 0xFF; // padding longer than the packet
    junk.push(padded);
    junk.push(vec![]); // empty datagram
    let rtp_junk = junk.len() as u64;
    for j in &junk {
        alice.sock.send_to(j, a_rtp).await.unwrap();
    }
    // RTCP garbage: too short, wrong version, wrong type, unaligned.
    let rtcp_junk: Vec<Vec<u8>> = vec![
        vec![0x80, 200, 0],
        vec![0x40, 200, 0, 1, 0, 0, 0, 0],
        vec![0x80, 96, 0, 1, 0, 0, 0, 0],
        vec![0x80, 200, 0, 1, 0, 0, 0, 0, 1],
    ];
    for j in &rtcp_junk {
        alice.sock.send_to(j, a_rtcp).await.unwrap();
    }
    // A good packet after all that still goes through.
    alice.send_rtp(a_rtp, 0, 2, 160, 9, &[2; 160]).await;
    assert_eq!(parse(&bob.recv().await.expect("relayed")).5, vec![2; 160]);
    let expected = rtp_junk + rtcp_junk.len() as u64;
    let mut admin_client = d.admin.clone();
    let sid = a.session_id.clone();
    eventually("all garbage counted", || {
        let mut c = admin_client.clone();
        let sid = sid.clone();
        async move {
            let list = c
                .list_sessions(admin::ListMediaSessionsRequest::default())
                .await
                .unwrap()
                .into_inner();
            list.sessions
                .iter()
                .find(|s| s.session_id == sid)
                .and_then(|s| s.stats.as_ref())
                .is_some_and(|s| s.dropped == expected)
        }
    })
    .await;
    // Valid RTCP is relayed: alice's RTCP latches her RTCP address, then
    // bob's RTCP (from his RTP socket's IP) reaches her.
    let sr = [0x80u8, 200, 0, 1, 0, 0, 0, 9];
    alice.sock.send_to(&sr, a_rtcp).await.unwrap();
    let list = admin_client
        .list_sessions(admin::ListMediaSessionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let b_port = list
        .sessions
        .iter()
        .find(|s| s.session_id == b)
        .unwrap()
        .rtp_port as u16;
    let b_rtcp = SocketAddr::from(([127, 0, 0, 1], b_port + 1));
    let mut got = None;
    for _ in 0..50 {
        bob.sock.send_to(&sr, b_rtcp).await.unwrap();
        if let Ok(Ok((n, _))) = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            alice.sock.recv_from(&mut [0u8; 64]),
        )
        .await
        {
            got = Some(n);
            break;
        }
    }
    assert_eq!(got, Some(8), "RTCP relayed unchanged");
    let status = admin_client
        .get_status(admin::GetMediaStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.packets_dropped >= expected);
    assert!(d.health().await.active_sessions == 2);
    d.stop().await;
}
