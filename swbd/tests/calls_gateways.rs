//! Trunks: failover to the next gateway address on 5xx, outbound digest
//! credentials, and in-dialog requests the B2BUA refuses cleanly.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use support::ua::{Ua, sdp};
use support::{Options, System};
use swbd::sip::Name;
use swbd::sip::message::HeaderAccess;

fn plan() -> String {
    "version: 1\nroutes:\n  - id: out\n    match: { destination: \"9*\" }\n    actions:\n      - dial: { target: \"gateway/carrier\", timeout: 10s, on_failure: stop }\n"
        .into()
}

#[tokio::test]
async fn gateway_failover_on_503_then_digest_challenge_answered() {
    // Two "carrier" addresses: the first is overloaded, the second challenges.
    let gw1 = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let gw1_port = gw1.local_addr().expect("addr").port();
    drop(gw1);
    let gw2 = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let gw2_port = gw2.local_addr().expect("addr").port();
    drop(gw2);
    let extra = format!(
        "gateways:\n  - name: carrier\n    addresses: [\"127.0.0.1:{gw1_port}\", \"127.0.0.1:{gw2_port}\"]\n    username: trunkuser\n    password: trunkpass\n"
    );
    let sys = System::start(Options {
        dialplan: Some(plan()),
        extra_config: extra,
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut first = Ua::bind_at("carrier1", sys.sip, gw1_port).await;
    let mut second = Ua::bind_at("carrier2", sys.sip, gw2_port).await;

    let mut call = alice.invite("900123", None).await;
    let inv1 = first.request("INVITE").await;
    assert_eq!(inv1.uri.user().as_deref(), Some("900123"));
    first
        .reply(&inv1, 503, "Service Unavailable", Some("g1"), None)
        .await;
    let _ack = first.request("ACK").await;

    let inv2 = second.request("INVITE").await;
    assert!(inv2.raw(&Name::PROXY_AUTHORIZATION).is_none());
    let challenge = "Digest realm=\"carrier\", nonce=\"n0nce\", algorithm=MD5, qop=\"auth\"";
    second
        .reply_with(
            &inv2,
            407,
            "Proxy Authentication Required",
            Some("g2"),
            &[("Proxy-Authenticate", challenge)],
        )
        .await;
    let _ack = second.request("ACK").await;
    let inv3 = second.request("INVITE").await;
    let creds = swbd::auth::digest::Credentials::parse(
        inv3.raw(&Name::PROXY_AUTHORIZATION)
            .expect("credentials sent"),
    )
    .expect("parse credentials");
    assert_eq!(creds.username, "trunkuser");
    let ha1 = swbd::auth::digest::Algorithm::Md5.ha1("trunkuser", "carrier", "trunkpass");
    let expected = swbd::auth::digest::response(
        swbd::auth::digest::Algorithm::Md5,
        &ha1,
        "n0nce",
        creds.nc.as_deref().unwrap_or_default(),
        creds.cnonce.as_deref().unwrap_or_default(),
        "auth",
        "INVITE",
        &creds.uri,
    );
    assert_eq!(creds.response, expected, "valid digest response");
    assert_eq!(inv3.call_id().ok(), inv2.call_id().ok(), "same call");
    assert!(inv3.cseq().expect("cseq").number > inv2.cseq().expect("cseq").number);

    let body = sdp(second.rtp_port);
    second
        .reply(&inv3, 200, "OK", Some("g3"), Some(&body))
        .await;
    let _ack = second.request("ACK").await;
    assert_eq!(alice.final_response(&mut call).await.code, 200);
    alice.ack(&call).await;

    // In-dialog requests swbd does not handle are refused, not left hanging.
    assert_eq!(alice.in_dialog_request("MESSAGE", &call).await, 501);
    // An INFO without a body (a keep-alive probe) is fine (DTMF INFO:
    // swbd/tests/dtmf_info.rs).
    assert_eq!(alice.in_dialog_request("INFO", &call).await, 200);
    // A re-INVITE with an offer (hold/resume) is answered by the media node.
    assert_eq!(alice.in_dialog_request("INVITE", &call).await, 200);
    assert_eq!(alice.in_dialog_request("OPTIONS", &call).await, 200);
    let mut stranger = call.clone();
    stranger.to_tag = Some("no-such-dialog".into());
    assert_eq!(alice.in_dialog_request("BYE", &stranger).await, 481);

    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = second.request("BYE").await;
    second.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}
