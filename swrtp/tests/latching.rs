//! Symmetric RTP latching: media goes where the peer's packets come from,
//! and a stranger cannot take the stream over.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn peer_behind_nat_gets_media_back_at_its_real_port() {
    let mut d = Daemon::start(config("7100-7119")).await;
    let alice = Peer::behind_nat().await; // SDP says one port, sends from another
    let bob = Peer::new().await;
    let a = d.answer("nat", &alice, "0", "").await;
    let a_addr = rtp_addr(&a.local_sdp);
    let b = d.offer("nat", &bob, "0", "").await;
    d.bridge(&a.session_id, &b).await;
    let b_port = d.health().await; // keep the daemon busy for a round trip
    assert_eq!(b_port.active_sessions, 2);

    // Alice sends a few packets: after latch_packets (3) consecutive ones with
    // one SSRC, her real address is latched and her media is relayed.
    for i in 0..5u16 {
        alice
            .send_rtp(a_addr, 0, i, u32::from(i) * 160, 0xCAFE, &[i as u8; 160])
            .await;
    }
    let got: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(parse(&bob.recv().await.expect("relayed after latching")).5);
        }
        v
    };
    assert_eq!(got, vec![vec![2u8; 160], vec![3u8; 160], vec![4u8; 160]]);

    // Bob's media now reaches Alice's real socket, not her SDP port.
    let list = d
        .admin
        .list_sessions(switchboard_proto::admin::v1::ListMediaSessionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let b_info = list.sessions.iter().find(|s| s.session_id == b).unwrap();
    let b_addr = std::net::SocketAddr::from(([127, 0, 0, 1], b_info.rtp_port as u16));
    let a_info = list
        .sessions
        .iter()
        .find(|s| s.session_id == a.session_id)
        .unwrap();
    assert_eq!(
        a_info.stats.as_ref().unwrap().remote_address,
        alice.sock.local_addr().unwrap().to_string()
    );
    bob.send_rtp(b_addr, 0, 1, 0, 0xB0B, &[9; 160]).await;
    let p = parse(
        &alice
            .recv()
            .await
            .expect("alice gets media at her real port"),
    );
    assert_eq!(p.5, vec![9; 160]);
    d.stop().await;
}

#[tokio::test]
async fn stranger_cannot_hijack_a_latched_stream() {
    let mut d = Daemon::start(config("7120-7139")).await;
    let alice = Peer::new().await;
    let bob = Peer::new().await;
    let mallory = Peer::new().await;
    let a = d.answer("bleed", &alice, "0", "").await;
    let a_addr = rtp_addr(&a.local_sdp);
    let b = d.offer("bleed", &bob, "0", "").await;
    d.bridge(&a.session_id, &b).await;
    alice.send_rtp(a_addr, 0, 1, 0, 0xA, &[1; 160]).await;
    assert_eq!(parse(&bob.recv().await.unwrap()).5, vec![1; 160]);
    // Mallory sprays packets with her own SSRC: all dropped.
    for i in 0..50u16 {
        mallory.send_rtp(a_addr, 0, i, 0, 0xBAD, &[0x66; 160]).await;
    }
    alice.send_rtp(a_addr, 0, 2, 160, 0xA, &[2; 160]).await;
    let p = parse(&bob.recv().await.unwrap());
    assert_eq!(p.5, vec![2; 160], "the next packet bob sees is alice's");
    let extra = bob.drain(Duration::from_millis(200)).await;
    assert!(extra.is_empty(), "nothing from mallory reached bob");
    let list = d
        .admin
        .list_sessions(switchboard_proto::admin::v1::ListMediaSessionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let a_info = list
        .sessions
        .iter()
        .find(|s| s.session_id == a.session_id)
        .unwrap();
    let stats = a_info.stats.as_ref().unwrap();
    assert_eq!(stats.dropped, 50);
    assert_eq!(
        stats.remote_address,
        alice.sock.local_addr().unwrap().to_string()
    );
    d.stop().await;
}

#[tokio::test]
async fn reoffer_with_a_new_address_moves_media_there() {
    use switchboard_proto::media::v1 as pb;
    let mut d = Daemon::start(config("7140-7159")).await;
    let alice = Peer::new().await;
    let alice2 = Peer::new().await; // where a re-INVITE moves alice's media
    let bob = Peer::new().await;
    let a = d.answer("move", &alice, "0", "").await;
    let a_addr = rtp_addr(&a.local_sdp);
    let b = d.offer("move", &bob, "0", "").await;
    d.bridge(&a.session_id, &b).await;
    alice.send_rtp(a_addr, 0, 1, 0, 0xA, &[1; 160]).await;
    assert_eq!(parse(&bob.recv().await.unwrap()).5, vec![1; 160]);

    let reoffer = offer_sdp(alice2.sdp_port, "0", "").replace("o=peer 1 1", "o=peer 1 2");
    let updated = d
        .media
        .update_session(pb::UpdateSessionRequest {
            session_id: a.session_id.clone(),
            remote_sdp: reoffer,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!updated.local_sdp.is_empty(), "a re-offer gets an answer");
    assert_eq!(
        updated.media.map(|m| m.remote_rtp_address),
        Some(alice2.sock.local_addr().unwrap().to_string())
    );
    let list = d
        .admin
        .list_sessions(switchboard_proto::admin::v1::ListMediaSessionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let b_port = list
        .sessions
        .iter()
        .find(|s| s.session_id == b)
        .unwrap()
        .rtp_port as u16;
    let b_addr = std::net::SocketAddr::from(([127, 0, 0, 1], b_port));
    bob.send_rtp(b_addr, 0, 1, 0, 0xB, &[7; 160]).await;
    assert_eq!(
        parse(&alice2.recv().await.expect("media follows the re-offer")).5,
        vec![7; 160]
    );
    // The old address is no longer the SDP address: one packet does not latch
    // it, while the new SDP address latches at once.
    alice.send_rtp(a_addr, 0, 2, 160, 0xA, &[2; 160]).await;
    alice2.send_rtp(a_addr, 0, 1, 0, 0xC, &[3; 160]).await;
    assert_eq!(parse(&bob.recv().await.unwrap()).5, vec![3; 160]);
    d.stop().await;
}
