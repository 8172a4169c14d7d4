//! UDP workers keep a call's order (`sip.udp_workers`, issue #17): a phone
//! that sends in-dialog requests back to back (pjsua2 sends DTMF INFOs
//! within a millisecond) gets every one handled in CSeq order, none
//! answered `500` for a CSeq lower than one already seen (RFC 3261
//! §12.2.2), while swbd parses on several tasks. With several receive
//! tasks and no workers (`udp_receivers: 4, udp_workers: 1`, what
//! `udp_receivers` > 1 did before the workers) this test fails: the tasks
//! hand consecutive INFOs to the call out of order.
//! swbd + swrtp as real processes, the phones over real UDP.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::collections::BTreeMap;

use support::ua::{OutCall, Ua, sdp};
use support::{Options, System};
use swbd::sip::message::HeaderAccess;

/// INFOs per burst, and bursts: small enough that the caller's socket
/// buffer holds a burst's answers, many enough that several tasks would
/// reorder some.
const BURST: u32 = 50;
const BURSTS: u32 = 10;

/// An in-dialog request without a body (an INFO is answered `200` by swbd
/// itself).
fn in_dialog(method: &str, ua: &Ua, call: &OutCall, cseq: u32) -> String {
    let uri = call
        .remote_contact
        .clone()
        .unwrap_or_else(|| format!("sip:{}@{}", call.dest, ua.server));
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{method}{cseq};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{u}@127.0.0.1>;tag={ft}\r\nTo: <sip:{dest}@127.0.0.1>;tag={tt}\r\n\
         Call-ID: {cid}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        me = ua.addr,
        u = ua.user,
        ft = call.from_tag,
        dest = call.dest,
        tt = call.to_tag.clone().unwrap_or_default(),
        cid = call.call_id,
    )
}

#[tokio::test]
async fn back_to_back_infos_of_one_call_are_handled_in_cseq_order_by_several_workers() {
    let sys = System::start(Options {
        sip_extra: "  udp_workers: 4\n".into(),
        ..Options::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);
    let mut call = alice.invite("1002", Some(&sdp(alice.rtp_port))).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 200, "OK", Some("bobtag"), Some(&sdp(bob.rtp_port)))
        .await;
    let _ack = bob.request("ACK").await;
    assert_eq!(alice.final_response(&mut call).await.code, 200);
    alice.ack(&call).await;

    // Other calls' traffic on the other workers meanwhile is not needed:
    // what is checked is one call's order.
    let mut codes: BTreeMap<u32, u16> = BTreeMap::new();
    let mut cseq = 100;
    for _ in 0..BURSTS {
        let first = cseq + 1;
        for _ in 0..BURST {
            cseq += 1;
            alice
                .send_raw(&in_dialog("INFO", &alice, &call, cseq))
                .await;
        }
        while (first..=cseq).any(|c| !codes.contains_key(&c)) {
            let r = alice.response(&call.call_id, "INFO").await;
            if r.code < 200 {
                continue;
            }
            let n = r.cseq().expect("CSeq of the answer").number;
            codes.insert(n, r.code);
        }
    }
    let not_ok: Vec<(u32, u16)> = codes
        .iter()
        .filter(|(_, code)| **code != 200)
        .map(|(c, code)| (*c, *code))
        .collect();
    assert!(
        not_ok.is_empty(),
        "{} of {} INFOs not answered 200 (CSeq, code): {not_ok:?}",
        not_ok.len(),
        codes.len()
    );

    // The BYE comes after the INFOs (the helper's CSeq is lower).
    alice
        .send_raw(&in_dialog("BYE", &alice, &call, cseq + 1))
        .await;
    assert_eq!(alice.response(&call.call_id, "BYE").await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    sys.assert_clean().await;
}
