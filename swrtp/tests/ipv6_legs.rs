//! IPv6 legs on real sockets on `::1`: an offer with `c=IN IP6` is answered
//! with `c=IN IP6` and a socket on `::1`; an offer is made in the family the
//! request names; an IPv4 leg and an IPv6 leg of one call relay media both
//! ways; a re-offer cannot change a session's family; a node without an
//! address of a family refuses that family clearly.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv6Addr, SocketAddr};

use common::*;
use switchboard_proto::media::v1 as pb;
use tokio::net::UdpSocket;

/// A peer on `::1`.
async fn peer_v6() -> Peer {
    let sock = UdpSocket::bind("[::1]:0").await.expect("bind ::1");
    let sdp_port = sock.local_addr().expect("addr").port();
    Peer { sock, sdp_port }
}

fn offer_v6(port: u16) -> String {
    format!(
        "v=0\r\no=peer 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"
    )
}

/// The `c=` line and the RTP address of our SDP.
fn ours(local_sdp: &str) -> (String, SocketAddr) {
    let c = local_sdp
        .lines()
        .find(|l| l.starts_with("c="))
        .expect("c= line")
        .to_string();
    let port = rtp_addr(local_sdp).port();
    let ip = c
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("c= address");
    (c, SocketAddr::new(ip, port))
}

async fn create(
    d: &mut Daemon,
    call: &str,
    negotiation: pb::create_session_request::Negotiation,
    family: pb::AddressFamily,
) -> Result<pb::CreateSessionResponse, tonic::Status> {
    d.media
        .create_session(pb::CreateSessionRequest {
            call_id: call.into(),
            leg: "x".into(),
            negotiation: Some(negotiation),
            address_family: family as i32,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

fn offer_options() -> pb::create_session_request::Negotiation {
    pb::create_session_request::Negotiation::Offer(pb::OfferOptions::default())
}

#[tokio::test]
async fn an_ipv6_leg_and_an_ipv4_leg_relay_both_ways() {
    let mut d = Daemon::start(config("8200-8219")).await;
    let v6 = peer_v6().await;
    let v4 = Peer::new().await;
    let a = create(
        &mut d,
        "v6-call",
        pb::create_session_request::Negotiation::RemoteOfferSdp(offer_v6(v6.sdp_port)),
        pb::AddressFamily::Unspecified,
    )
    .await
    .expect("an IPv6 offer is answered");
    let (c, to_a) = ours(&a.local_sdp);
    assert_eq!(c, "c=IN IP6 ::1", "{}", a.local_sdp);
    assert!(a.local_sdp.contains(" IN IP6 ::1\r\n"), "o= in IP6 too");
    let media = a.media.expect("media");
    assert_eq!(media.local_rtp_address, to_a.to_string());
    assert_eq!(media.remote_rtp_address, format!("[::1]:{}", v6.sdp_port));
    let b = create(
        &mut d,
        "v6-call",
        pb::create_session_request::Negotiation::RemoteOfferSdp(offer_sdp(v4.sdp_port, "0", "")),
        pb::AddressFamily::Unspecified,
    )
    .await
    .expect("IPv4 offer");
    let (c, to_b) = ours(&b.local_sdp);
    assert_eq!(c, "c=IN IP4 127.0.0.1");
    d.bridge(&a.session_id, &b.session_id).await;

    v6.send_rtp(to_a, 0, 1, 160, 6, &[0x11; 160]).await;
    let got = v4.recv().await.expect("IPv6 -> IPv4");
    assert_eq!(parse(&got).5, vec![0x11; 160]);
    v4.send_rtp(to_b, 0, 1, 160, 4, &[0x22; 160]).await;
    let got = v6.recv().await.expect("IPv4 -> IPv6");
    assert_eq!(parse(&got).5, vec![0x22; 160]);

    // A re-offer moving the IPv6 leg to IPv4 is refused; the leg stays.
    let moved = d
        .media
        .update_session(pb::UpdateSessionRequest {
            session_id: a.session_id.clone(),
            remote_sdp: offer_sdp(v4.sdp_port, "0", "").replace("o=peer 1 1", "o=peer 1 2"),
            ..Default::default()
        })
        .await
        .expect_err("family change");
    assert_eq!(moved.code(), tonic::Code::InvalidArgument);
    assert!(
        moved.message().contains("IP6 to IP4"),
        "{}",
        moved.message()
    );
    v6.send_rtp(to_a, 0, 2, 320, 6, &[0x33; 160]).await;
    assert_eq!(
        parse(&v4.recv().await.expect("still relayed")).5,
        vec![0x33; 160]
    );

    d.destroy(&a.session_id).await;
    d.destroy(&b.session_id).await;
    d.stop().await;
}

#[tokio::test]
async fn offers_are_made_in_the_family_asked_for() {
    let mut d = Daemon::start(config("8220-8239")).await;
    for (family, want) in [
        (pb::AddressFamily::Ipv6, "c=IN IP6 ::1"),
        (pb::AddressFamily::Ipv4, "c=IN IP4 127.0.0.1"),
        (pb::AddressFamily::Unspecified, "c=IN IP4 127.0.0.1"),
    ] {
        let o = create(&mut d, "v6-offer", offer_options(), family)
            .await
            .expect("offer");
        assert_eq!(ours(&o.local_sdp).0, want, "{family:?}");
        d.destroy(&o.session_id).await;
    }
    // An IPv6 answer to an IPv6 offer, then media from the answerer.
    let o = create(&mut d, "v6-offer", offer_options(), pb::AddressFamily::Ipv6)
        .await
        .expect("offer");
    let callee = peer_v6().await;
    d.media
        .update_session(pb::UpdateSessionRequest {
            session_id: o.session_id.clone(),
            remote_sdp: offer_v6(callee.sdp_port),
            ..Default::default()
        })
        .await
        .expect("IPv6 answer applied");
    let (_, to_o) = ours(&o.local_sdp);
    assert_eq!(to_o.ip(), Ipv6Addr::LOCALHOST);
    callee.send_rtp(to_o, 0, 1, 160, 1, &[0; 160]).await;
    eventually("the IPv6 leg counts what it received", || {
        let mut admin = d.admin.clone();
        let id = o.session_id.clone();
        async move {
            admin
                .list_sessions(switchboard_proto::admin::v1::ListMediaSessionsRequest::default())
                .await
                .map(|r| {
                    r.into_inner().sessions.iter().any(|s| {
                        s.session_id == id
                            && s.stats
                                .as_ref()
                                .and_then(|st| st.rx.as_ref())
                                .map(|rx| rx.packets)
                                == Some(1)
                    })
                })
                .unwrap_or(false)
        }
    })
    .await;
    let unknown = d
        .media
        .create_session(pb::CreateSessionRequest {
            call_id: "v6-offer".into(),
            leg: "x".into(),
            negotiation: Some(offer_options()),
            address_family: 9,
            ..Default::default()
        })
        .await
        .expect_err("unknown family value");
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument);
    d.stop().await;
}

#[tokio::test]
async fn a_node_without_an_address_of_a_family_refuses_it() {
    // An IPv6-only node: its primary (and only) family is IPv6.
    let mut d = Daemon::start(swrtp::config::Config {
        bind_address: Ipv6Addr::LOCALHOST.into(),
        ..config("8240-8259")
    })
    .await;
    let v4 = Peer::new().await;
    let refused = create(
        &mut d,
        "v4-on-v6-node",
        pb::create_session_request::Negotiation::RemoteOfferSdp(offer_sdp(v4.sdp_port, "0", "")),
        pb::AddressFamily::Unspecified,
    )
    .await
    .expect_err("no IPv4 media address");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("no IP4 media address"),
        "{}",
        refused.message()
    );
    let o = create(
        &mut d,
        "v6-node",
        offer_options(),
        pb::AddressFamily::Unspecified,
    )
    .await
    .expect("offers in its own family");
    assert_eq!(ours(&o.local_sdp).0, "c=IN IP6 ::1");
    let health = d.health().await;
    assert_eq!(health.active_sessions, 1, "the refused offer cost nothing");
    d.stop().await;
}
