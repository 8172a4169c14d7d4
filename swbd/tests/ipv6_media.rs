//! IPv6 phones get IPv6 media: swbd listening on `[::1]` too, a phone
//! registered over IPv6 is called with a `c=IN IP6` offer, an IPv6 caller
//! is answered with `c=IN IP6`, while the IPv4 leg of the same call stays
//! `c=IN IP4`; RTP flows both ways between the two families.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::ua::{Ua, sdp, sdp_media_addr};
use support::{Options, System};

fn sdp_v6(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// The `c=` line and media address of an SDP body (either family).
fn media(body: &[u8]) -> (String, SocketAddr) {
    let text = String::from_utf8_lossy(body);
    let c = text
        .lines()
        .find(|l| l.starts_with("c="))
        .expect("c= line")
        .to_string();
    let ip = c
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("c= address");
    let port = text
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|m| m.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("m= port");
    (c, SocketAddr::new(ip, port))
}

/// RTP both ways: `x` sends `bx` to `to_x` (its leg's media address) and
/// `y` hears it, and `y` sends `by` back.
async fn talk(x: &Ua, to_x: SocketAddr, bx: u8, y: &Ua, to_y: SocketAddr, by: u8) {
    for seq in 0..10u16 {
        x.send_rtp(to_x, seq, 0x1111, &[bx; 160]).await;
        y.send_rtp(to_y, seq, 0x2222, &[by; 160]).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let heard =
        |packets: Vec<Vec<u8>>, b: u8| packets.iter().any(|p| p.get(12..) == Some(&[b; 160][..]));
    assert!(heard(y.recv_rtp(5, 10).await, bx), "y hears x");
    assert!(heard(x.recv_rtp(5, 10).await, by), "x hears y");
}

#[tokio::test]
async fn ipv6_and_ipv4_phones_each_get_their_own_family() {
    let sys = System::start(Options {
        listen_v6: true,
        ..Default::default()
    })
    .await;
    let sip_v6 = sys.sip_v6.expect("swbd on ::1");
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new_v6("1002", sip_v6).await;
    assert_eq!(alice.register(300).await.code, 200);
    assert_eq!(bob.register(300).await.code, 200, "registered over IPv6");

    // IPv4 alice calls IPv6 bob.
    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    let (c, to_bob_leg) = media(&inv.body);
    assert_eq!(c, "c=IN IP6 ::1", "the offer to an IPv6 phone is IPv6");
    let body = sdp_v6(bob.rtp_port);
    bob.reply(&inv, 200, "OK", Some("bobtag"), Some(&body))
        .await;
    let _ack = bob.request("ACK").await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    alice.ack(&call).await;
    let (c, to_alice_leg) = media(&ok.body);
    assert_eq!(c, "c=IN IP4 127.0.0.1", "the IPv4 caller stays IPv4");
    talk(&alice, to_alice_leg, 0x11, &bob, to_bob_leg, 0x22).await;
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;

    // IPv6-only bob calls IPv4 alice: his offer is answered in IPv6.
    let offer = sdp_v6(bob.rtp_port);
    let mut call = bob.invite("1001", Some(&offer)).await;
    let inv = alice.request("INVITE").await;
    let to_alice_leg = sdp_media_addr(&inv.body).expect("an IPv4 offer to alice");
    let body = sdp(alice.rtp_port);
    alice
        .reply(&inv, 200, "OK", Some("alicetag"), Some(&body))
        .await;
    let _ack = alice.request("ACK").await;
    let ok = bob.final_response(&mut call).await;
    assert_eq!(ok.code, 200, "no 488 for an IPv6-only phone");
    bob.ack(&call).await;
    let (c, to_bob_leg) = media(&ok.body);
    assert_eq!(c, "c=IN IP6 ::1");
    talk(&bob, to_bob_leg, 0x33, &alice, to_alice_leg, 0x44).await;
    assert_eq!(bob.bye(&call).await.code, 200);
    let bye = alice.request("BYE").await;
    alice.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn a_phone_refusing_the_ipv6_offer_is_called_again_with_ipv4() {
    let sys = System::start(Options {
        listen_v6: true,
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    // Bob signals over IPv6 but has IPv4-only media (like a PJSIP built
    // without IPv6): he refuses `c=IN IP6` with 488.
    let mut bob = Ua::new_v6("1002", sys.sip_v6.expect("swbd on ::1")).await;
    assert_eq!(bob.register(300).await.code, 200);
    let mut call = alice.invite("1002", None).await;
    let first = bob.request("INVITE").await;
    assert_eq!(media(&first.body).0, "c=IN IP6 ::1");
    bob.reply(&first, 488, "Not Acceptable Here", Some("b1"), None)
        .await;
    let second = bob.request("INVITE").await;
    assert_eq!(
        media(&second.body).0,
        "c=IN IP4 127.0.0.1",
        "tried again in IPv4"
    );
    let body = sdp(bob.rtp_port);
    bob.reply(&second, 200, "OK", Some("b2"), Some(&body)).await;
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    alice.ack(&call).await;
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;

    // A second refusal is final: the dial fails (the default dialplan
    // then answers 480), no third INVITE.
    let mut call = alice.invite("1002", None).await;
    let first = bob.request("INVITE").await;
    bob.reply(&first, 488, "Not Acceptable Here", Some("b3"), None)
        .await;
    let second = bob.request("INVITE").await;
    bob.reply(&second, 488, "Not Acceptable Here", Some("b4"), None)
        .await;
    let r = alice.final_response(&mut call).await;
    assert_eq!(r.code, 480);
    sys.assert_clean().await;
}
