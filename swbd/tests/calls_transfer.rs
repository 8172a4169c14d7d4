//! Call transfer through swbd (issue #15): REFER blind (RFC 3515) and
//! attended (RFC 3891 Replaces in the Refer-To), INVITE with Replaces,
//! refusals, hostile Refer-Tos. swbd + swrtp as real processes, scripted
//! phones over real UDP, RTP through the media node to show who is
//! bridged with whom, admin checks for leaks afterwards.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::net::SocketAddr;

use support::ua::{OutCall, Ua, sdp, sdp_media_addr};
use support::{Options, System};
use swbd::sip::message::HeaderAccess;
use swbd::sip::{Name, Request, Response};

/// Extensions dialled with `on_failure: stop`, so a failed dial reports
/// its own status (404 for nobody registered).
fn plan(transfer: &str) -> String {
    format!(
        "version: 1\nroutes:\n  - id: ext\n    match: {{ destination: \"1???\" }}\n{transfer}    actions:\n      - dial: {{ target: \"user/${{destination}}\", timeout: 10s, on_failure: stop }}\n"
    )
}

/// One side of a dialog, to send requests in it.
struct Dlg {
    call_id: String,
    /// Our From value, with our tag.
    local: String,
    /// Our To value, with the peer's tag.
    remote: String,
    /// Request-URI (the peer's Contact).
    target: String,
    cseq: u32,
}

fn contact_uri(m: &impl HeaderAccess) -> String {
    m.raw(&Name::CONTACT)
        .expect("Contact")
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

impl Dlg {
    /// Ours as the callee of `invite` (we answered with `tag`).
    fn callee(invite: &Request, tag: &str) -> Dlg {
        Dlg {
            call_id: invite.call_id().expect("Call-ID").to_string(),
            local: format!("{};tag={tag}", invite.raw(&Name::TO).expect("To")),
            remote: invite.raw(&Name::FROM).expect("From").to_string(),
            target: contact_uri(invite),
            cseq: 1,
        }
    }

    /// Ours as the caller of `call` (answered by `ok`).
    fn caller(ua: &Ua, call: &OutCall, ok: &Response) -> Dlg {
        Dlg {
            call_id: call.call_id.clone(),
            local: format!(
                "\"{u}\" <sip:{u}@127.0.0.1>;tag={}",
                call.from_tag,
                u = ua.user
            ),
            remote: ok.raw(&Name::TO).expect("To").to_string(),
            target: contact_uri(ok),
            cseq: 100,
        }
    }

    fn remote_tag(&self) -> String {
        self.remote
            .rsplit_once("tag=")
            .map(|(_, t)| t.to_string())
            .expect("tag")
    }

    fn local_tag(&self) -> String {
        self.local
            .rsplit_once("tag=")
            .map(|(_, t)| t.to_string())
            .expect("tag")
    }

    /// Send `method` with `extra` header lines; the final response.
    async fn send(&mut self, ua: &mut Ua, method: &str, extra: &str) -> Response {
        self.cseq += 1;
        let msg = format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{m}{c}{p};rport\r\n\
             Max-Forwards: 70\r\nFrom: {local}\r\nTo: {remote}\r\nCall-ID: {cid}\r\nCSeq: {c} {method}\r\n\
             Contact: {contact}\r\n{extra}Content-Length: 0\r\n\r\n",
            target = self.target,
            me = ua.addr,
            m = method.to_lowercase(),
            c = self.cseq,
            p = ua.rtp_port,
            local = self.local,
            remote = self.remote,
            cid = self.call_id,
            contact = ua.contact(),
        );
        ua.send_raw(&msg).await;
        loop {
            let r = ua.response(&self.call_id, method).await;
            if r.code >= 200 {
                return r;
            }
        }
    }

    async fn refer(&mut self, ua: &mut Ua, refer_to: &str) -> Response {
        self.send(ua, "REFER", &format!("Refer-To: {refer_to}\r\n"))
            .await
    }
}

/// The callee answers the next INVITE (180, 200 with its SDP, takes the
/// ACK); returns the INVITE and its dialog.
async fn answer(ua: &mut Ua) -> (Request, Dlg) {
    let inv = ua.request("INVITE").await;
    let tag = format!("{}t{}", ua.user, ua.rtp_port);
    ua.reply(&inv, 180, "Ringing", Some(&tag), None).await;
    let body = sdp(ua.rtp_port);
    ua.reply(&inv, 200, "OK", Some(&tag), Some(&body)).await;
    let _ack = ua.request("ACK").await;
    let dlg = Dlg::callee(&inv, &tag);
    (inv, dlg)
}

/// `caller` calls `dest`, answered by `callee`: (caller's call, its 200,
/// the callee's INVITE, the callee's dialog).
async fn call(caller: &mut Ua, callee: &mut Ua, dest: &str) -> (OutCall, Response, Request, Dlg) {
    let mut out = caller.invite(dest, None).await;
    let (inv, dlg) = answer(callee).await;
    let ok = caller.final_response(&mut out).await;
    assert_eq!(ok.code, 200, "{dest} answered");
    caller.ack(&out).await;
    (out, ok, inv, dlg)
}

/// The next NOTIFY (answered 200): its sipfrag status line and
/// Subscription-State.
async fn notify(ua: &mut Ua) -> (String, String) {
    let n = ua.request("NOTIFY").await;
    ua.reply(&n, 200, "OK", None, None).await;
    assert!(
        n.raw(&Name::EVENT).is_some_and(|e| e.starts_with("refer")),
        "Event: refer"
    );
    assert!(
        n.raw(&Name::CONTENT_TYPE)
            .is_some_and(|c| c.starts_with("message/sipfrag")),
        "sipfrag body"
    );
    let frag = String::from_utf8_lossy(&n.body).trim_end().to_string();
    let state = n
        .raw(&Name::SUBSCRIPTION_STATE)
        .expect("Subscription-State")
        .to_string();
    (frag, state)
}

/// RTP both ways between `x` (sending to `x_media`) and `y` (to
/// `y_media`): each must hear the other.
async fn assert_talking(x: &Ua, x_media: SocketAddr, y: &Ua, y_media: SocketAddr) {
    // Several rounds: the node latches on each side's first packets.
    for round in 0..5u16 {
        for seq in 0..10u16 {
            x.send_rtp(x_media, round * 10 + seq, 0x1111, &[0x55; 160])
                .await;
            y.send_rtp(y_media, round * 10 + seq, 0x2222, &[0x2a; 160])
                .await;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let at_y = y.recv_rtp(1, 5).await;
        let at_x = x.recv_rtp(1, 5).await;
        if at_y.iter().any(|p| p.get(12..) == Some(&[0x55u8; 160][..]))
            && at_x.iter().any(|p| p.get(12..) == Some(&[0x2au8; 160][..]))
        {
            return;
        }
    }
    panic!("{} and {} do not hear each other", x.user, y.user);
}

async fn bye_answered(ua: &mut Ua) {
    let bye = ua.request("BYE").await;
    ua.reply(&bye, 200, "OK", None, None).await;
}

fn media_of(m: &[u8]) -> SocketAddr {
    sdp_media_addr(m).expect("SDP with media")
}

#[tokio::test]
async fn blind_transfer_by_the_callee_bridges_caller_and_target() {
    let sys = System::start(Options {
        dialplan: Some(plan("")),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    let mut carol = Ua::new("1003", sys.sip).await;
    bob.register(300).await;
    carol.register(300).await;
    let (a_call, a_ok, _, mut b_dlg) = call(&mut alice, &mut bob, "1002").await;
    let a_media = media_of(&a_ok.body);

    let r = b_dlg.refer(&mut bob, "<sip:1003@127.0.0.1>").await;
    assert_eq!(r.code, 202, "{} {}", r.code, r.reason);
    let (frag, state) = notify(&mut bob).await;
    assert_eq!(frag, "SIP/2.0 100 Trying");
    assert!(state.starts_with("active"), "{state}");

    // Carol is called as if by Alice, referred by Bob.
    let inv = carol.request("INVITE").await;
    let from = inv.header_from().expect("From");
    assert_eq!(
        from.uri.user().as_deref(),
        Some("1001"),
        "the transferee calls"
    );
    let referred_by = inv.raw(&Name::new("Referred-By")).expect("Referred-By");
    assert!(referred_by.contains("sip:1002@"), "{referred_by}");
    let c_media = media_of(&inv.body);
    carol.reply(&inv, 180, "Ringing", Some("ct"), None).await;
    let body = sdp(carol.rtp_port);
    carol.reply(&inv, 200, "OK", Some("ct"), Some(&body)).await;
    let _ack = carol.request("ACK").await;

    let (frag, state) = notify(&mut bob).await;
    assert_eq!(frag, "SIP/2.0 200 OK");
    assert!(state.starts_with("terminated"), "{state}");
    bye_answered(&mut bob).await;

    assert_talking(&alice, a_media, &carol, c_media).await;
    let calls = sys.active_calls().await;
    assert_eq!(calls.len(), 1, "one call, Alice and Carol");

    assert_eq!(alice.bye(&a_call).await.code, 200);
    bye_answered(&mut carol).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn blind_transfer_by_the_caller_bridges_callee_and_target() {
    let sys = System::start(Options {
        dialplan: Some(plan("")),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    let mut carol = Ua::new("1003", sys.sip).await;
    bob.register(300).await;
    carol.register(300).await;
    let (a_call, a_ok, b_inv, _) = call(&mut alice, &mut bob, "1002").await;
    let b_media = media_of(&b_inv.body);
    let mut a_dlg = Dlg::caller(&alice, &a_call, &a_ok);

    assert_eq!(
        a_dlg.refer(&mut alice, "<sip:1003@127.0.0.1>").await.code,
        202
    );
    assert_eq!(notify(&mut alice).await.0, "SIP/2.0 100 Trying");
    let (inv, mut c_dlg) = answer(&mut carol).await;
    let from = inv.header_from().expect("From");
    assert_eq!(
        from.uri.user().as_deref(),
        Some("1002"),
        "Bob is the transferee"
    );
    assert_eq!(notify(&mut alice).await.0, "SIP/2.0 200 OK");
    bye_answered(&mut alice).await;

    assert_talking(&bob, b_media, &carol, media_of(&inv.body)).await;
    // Carol hangs up: Bob gets the BYE.
    assert_eq!(c_dlg.send(&mut carol, "BYE", "").await.code, 200);
    bye_answered(&mut bob).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn refused_transfer_keeps_the_call_up() {
    let sys = System::start(Options {
        dialplan: Some(plan("    transfer: deny\n")),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let (a_call, a_ok, b_inv, mut b_dlg) = call(&mut alice, &mut bob, "1002").await;

    let r = b_dlg.refer(&mut bob, "<sip:1003@127.0.0.1>").await;
    assert_eq!(r.code, 403, "{}", r.reason);
    assert!(
        r.reason.contains("not allowed on this route"),
        "the policy is why: {}",
        r.reason
    );

    assert_talking(&alice, media_of(&a_ok.body), &bob, media_of(&b_inv.body)).await;
    assert_eq!(alice.bye(&a_call).await.code, 200);
    bye_answered(&mut bob).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn transfer_to_an_unknown_user_notifies_404_and_keeps_the_call() {
    let sys = System::start(Options {
        dialplan: Some(plan("")),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let (a_call, a_ok, b_inv, mut b_dlg) = call(&mut alice, &mut bob, "1002").await;

    assert_eq!(
        b_dlg.refer(&mut bob, "<sip:1999@127.0.0.1>").await.code,
        202
    );
    assert_eq!(notify(&mut bob).await.0, "SIP/2.0 100 Trying");
    let (frag, state) = notify(&mut bob).await;
    assert_eq!(frag, "SIP/2.0 404 Not Found");
    assert!(state.starts_with("terminated"), "{state}");

    // Alice and Bob still talk, and the call ends normally.
    assert_talking(&alice, media_of(&a_ok.body), &bob, media_of(&b_inv.body)).await;
    assert_eq!(sys.active_calls().await.len(), 1);
    assert_eq!(alice.bye(&a_call).await.code, 200);
    bye_answered(&mut bob).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn attended_transfer_with_replaces_joins_the_other_two() {
    let sys = System::start(Options {
        dialplan: Some(plan("")),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    let mut carol = Ua::new("1003", sys.sip).await;
    bob.register(300).await;
    carol.register(300).await;
    // Call 1: Alice -> Bob. Call 2: Bob -> Carol (consultation).
    let (a_call, a_ok, _, mut b1) = call(&mut alice, &mut bob, "1002").await;
    let (b_call, b_ok, c_inv, mut c_dlg) = call(&mut bob, &mut carol, "1003").await;
    let b2 = Dlg::caller(&bob, &b_call, &b_ok);
    assert_eq!(sys.active_calls().await.len(), 2);

    // Bob refers Alice to Carol, replacing his dialog with swbd in call 2.
    let replaces = format!(
        "{}%3Bto-tag%3D{}%3Bfrom-tag%3D{}",
        b2.call_id.replace('@', "%40"),
        b2.remote_tag(),
        b2.local_tag()
    );
    let r = b1
        .refer(
            &mut bob,
            &format!("<sip:1003@127.0.0.1?Replaces={replaces}>"),
        )
        .await;
    assert_eq!(r.code, 202, "{} {}", r.code, r.reason);
    assert_eq!(notify(&mut bob).await.0, "SIP/2.0 100 Trying");
    // Bob's two legs are released (call 2's, then call 1's after the
    // final NOTIFY).
    let bye2 = bob.request("BYE").await;
    assert_eq!(bye2.call_id().expect("Call-ID"), b2.call_id, "call 2's leg");
    bob.reply(&bye2, 200, "OK", None, None).await;
    let (frag, state) = notify(&mut bob).await;
    assert_eq!(frag, "SIP/2.0 200 OK");
    assert!(state.starts_with("terminated"), "{state}");
    let bye1 = bob.request("BYE").await;
    assert_eq!(bye1.call_id().expect("Call-ID"), b1.call_id, "call 1's leg");
    bob.reply(&bye1, 200, "OK", None, None).await;

    // Alice and Carol talk, in one call; Carol's dialog is unchanged.
    assert_talking(&alice, media_of(&a_ok.body), &carol, media_of(&c_inv.body)).await;
    assert_eq!(sys.active_calls().await.len(), 1);
    assert_eq!(c_dlg.send(&mut carol, "BYE", "").await.code, 200);
    bye_answered(&mut alice).await;
    let _ = a_call;
    sys.assert_clean().await;
}

#[tokio::test]
async fn replaces_naming_no_call_notifies_481_and_keeps_the_call() {
    let sys = System::start(Options {
        dialplan: Some(plan("")),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    bob.register(300).await;
    let (a_call, a_ok, b_inv, mut b1) = call(&mut alice, &mut bob, "1002").await;
    let r = b1
        .refer(
            &mut bob,
            "<sip:1003@127.0.0.1?Replaces=nothing%3Bto-tag%3Dx%3Bfrom-tag%3Dy>",
        )
        .await;
    assert_eq!(r.code, 202);
    assert_eq!(notify(&mut bob).await.0, "SIP/2.0 100 Trying");
    assert_eq!(
        notify(&mut bob).await.0,
        "SIP/2.0 481 Call/Transaction Does Not Exist"
    );
    assert_talking(&alice, media_of(&a_ok.body), &bob, media_of(&b_inv.body)).await;
    assert_eq!(alice.bye(&a_call).await.code, 200);
    bye_answered(&mut bob).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn hostile_refer_tos_are_refused_or_defused() {
    let sys = System::start(Options {
        dialplan: Some(plan("")),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    let mut carol = Ua::new("1003", sys.sip).await;
    bob.register(300).await;
    carol.register(300).await;
    let (a_call, a_ok, b_inv, mut b1) = call(&mut alice, &mut bob, "1002").await;

    // Refused outright, the call untouched.
    for (refer_to, code) in [
        ("<mailto:boss@example.com>", 416),
        ("<sip:example.com>", 400),
        (
            "<sip:1003@127.0.0.1?Replaces=x%0D%0AVia%3Bto-tag%3D1%3Bfrom-tag%3D2>",
            400,
        ),
        (
            "<sip:1003@127.0.0.1>\r\nRefer-To: <sip:1004@127.0.0.1>",
            400,
        ),
    ] {
        let r = b1.refer(&mut bob, refer_to).await;
        assert_eq!(r.code, code, "{refer_to:?}: {} {}", r.code, r.reason);
    }

    // Headers smuggled in the URI are dropped; escaped CRLF stays text.
    let r = b1
        .refer(
            &mut bob,
            "<sip:1003@127.0.0.1?Via=SIP%2F2.0%2FUDP%20evil.example&X-Evil=a%0D%0AInjected%3A%20yes>",
        )
        .await;
    assert_eq!(r.code, 202);
    assert_eq!(notify(&mut bob).await.0, "SIP/2.0 100 Trying");
    let inv = carol.request("INVITE").await;
    let text = String::from_utf8_lossy(&inv.to_bytes()).into_owned();
    for bad in ["evil.example", "X-Evil", "Injected"] {
        assert!(!text.contains(bad), "{bad} reached Carol:\n{text}");
    }
    // Carol is busy: the transfer fails and the call stays.
    carol.reply(&inv, 486, "Busy Here", Some("c"), None).await;
    let _ack = carol.request("ACK").await;
    assert_eq!(notify(&mut bob).await.0, "SIP/2.0 486 Busy Here");

    assert_talking(&alice, media_of(&a_ok.body), &bob, media_of(&b_inv.body)).await;
    assert_eq!(alice.bye(&a_call).await.code, 200);
    bye_answered(&mut bob).await;
    sys.assert_clean().await;
}

/// An INVITE from `ua` to `dest` with `extra` header lines (each ending
/// in CRLF), in the format [`Ua::invite`] uses, so `ack`/`bye` work on it.
async fn invite_with(ua: &mut Ua, dest: &str, tag: &str, extra: &str) -> OutCall {
    let call_id = format!("replacing-{tag}-{}", ua.rtp_port);
    let from_tag = format!("{tag}f");
    let branch = format!("z9hG4bK{tag}{}", ua.rtp_port);
    let body = sdp(ua.rtp_port);
    let msg = format!(
        "INVITE sip:{dest}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: \"{u}\" <sip:{u}@127.0.0.1>;tag={from_tag}\r\nTo: <sip:{dest}@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: {c}\r\n{extra}Content-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\r\n{body}",
        server = ua.server,
        me = ua.addr,
        u = ua.user,
        c = ua.contact(),
        len = body.len(),
    );
    ua.send_raw(&msg).await;
    OutCall {
        call_id,
        from_tag,
        to_tag: None,
        branch,
        invite: msg,
        dest: dest.to_string(),
        remote_contact: None,
    }
}

#[tokio::test]
async fn invite_with_replaces_takes_over_a_leg() {
    let sys = System::start(Options {
        dialplan: Some(plan("")),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    let mut dave = Ua::new("1004", sys.sip).await;
    bob.register(300).await;
    let (a_call, a_ok, b_inv, _) = call(&mut alice, &mut bob, "1002").await;
    let a_dlg = Dlg::caller(&alice, &a_call, &a_ok);

    // A Replaces naming no dialog: 481, nothing rings.
    let mut stray = invite_with(
        &mut dave,
        "1002",
        "stray",
        "Replaces: nothing;to-tag=x;from-tag=y\r\n",
    )
    .await;
    assert_eq!(dave.final_response(&mut stray).await.code, 481);

    // Dave takes Alice's place in her dialog with swbd (call pickup).
    let replaces = format!(
        "Replaces: {};to-tag={};from-tag={}\r\nRequire: replaces\r\n",
        a_dlg.call_id,
        a_dlg.remote_tag(),
        a_dlg.local_tag()
    );
    let mut d_call = invite_with(&mut dave, "1002", "pickup", &replaces).await;
    let ok = dave.final_response(&mut d_call).await;
    assert_eq!(ok.code, 200, "{} {}", ok.code, ok.reason);
    dave.ack(&d_call).await;
    bye_answered(&mut alice).await;

    assert_talking(&dave, media_of(&ok.body), &bob, media_of(&b_inv.body)).await;
    assert_eq!(sys.active_calls().await.len(), 1);
    assert_eq!(dave.bye(&d_call).await.code, 200);
    bye_answered(&mut bob).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn the_transferor_may_hang_up_before_the_target_answers() {
    let sys = System::start(Options {
        dialplan: Some(plan("")),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    let mut carol = Ua::new("1003", sys.sip).await;
    bob.register(300).await;
    carol.register(300).await;
    let (a_call, a_ok, _, mut b_dlg) = call(&mut alice, &mut bob, "1002").await;

    assert_eq!(
        b_dlg.refer(&mut bob, "<sip:1003@127.0.0.1>").await.code,
        202
    );
    assert_eq!(notify(&mut bob).await.0, "SIP/2.0 100 Trying");
    // Bob leaves at once, as some phones do after the 202.
    assert_eq!(b_dlg.send(&mut bob, "BYE", "").await.code, 200);
    let (inv, _) = answer(&mut carol).await;

    assert_talking(&alice, media_of(&a_ok.body), &carol, media_of(&inv.body)).await;
    assert_eq!(alice.bye(&a_call).await.code, 200);
    bye_answered(&mut carol).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn a_failed_transfer_after_the_transferor_left_releases_the_transferee() {
    let sys = System::start(Options {
        dialplan: Some(plan("")),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    let mut carol = Ua::new("1003", sys.sip).await;
    bob.register(300).await;
    carol.register(300).await;
    let (_, _, _, mut b_dlg) = call(&mut alice, &mut bob, "1002").await;

    assert_eq!(
        b_dlg.refer(&mut bob, "<sip:1003@127.0.0.1>").await.code,
        202
    );
    assert_eq!(notify(&mut bob).await.0, "SIP/2.0 100 Trying");
    let inv = carol.request("INVITE").await;
    assert_eq!(b_dlg.send(&mut bob, "BYE", "").await.code, 200);
    carol.reply(&inv, 486, "Busy Here", Some("c"), None).await;
    let _ack = carol.request("ACK").await;
    // Nobody is left for Alice.
    bye_answered(&mut alice).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn a_transfer_context_confines_where_transfers_go() {
    // Transfers from extensions are routed among the `front` routes only:
    // 0 reaches Carol at the front desk; 1003 dialled directly is no route.
    let plan = "version: 1\nroutes:\n  - id: ext\n    match: { destination: \"1???\" }\n    transfer: front\n    actions:\n      - dial: { target: \"user/${destination}\", timeout: 10s, on_failure: stop }\n  - id: desk\n    context: front\n    match: { destination: \"0\", caller: \"1001\" }\n    actions:\n      - dial: { target: \"user/1003\", timeout: 10s, on_failure: stop }\n";
    let sys = System::start(Options {
        dialplan: Some(plan.into()),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    let mut carol = Ua::new("1003", sys.sip).await;
    bob.register(300).await;
    carol.register(300).await;
    // 0 is not a number for new calls.
    let mut direct = alice.invite("0", None).await;
    assert_eq!(alice.final_response(&mut direct).await.code, 404);

    let (a_call, a_ok, _, mut b_dlg) = call(&mut alice, &mut bob, "1002").await;
    assert_eq!(
        b_dlg.refer(&mut bob, "<sip:1003@127.0.0.1>").await.code,
        202
    );
    assert_eq!(notify(&mut bob).await.0, "SIP/2.0 100 Trying");
    assert_eq!(notify(&mut bob).await.0, "SIP/2.0 404 Not Found");

    // The desk route matches the transferee (the caller is Alice).
    assert_eq!(b_dlg.refer(&mut bob, "<sip:0@127.0.0.1>").await.code, 202);
    assert_eq!(notify(&mut bob).await.0, "SIP/2.0 100 Trying");
    let (inv, _) = answer(&mut carol).await;
    assert_eq!(notify(&mut bob).await.0, "SIP/2.0 200 OK");
    bye_answered(&mut bob).await;
    assert_talking(&alice, media_of(&a_ok.body), &carol, media_of(&inv.body)).await;
    assert_eq!(alice.bye(&a_call).await.code, 200);
    bye_answered(&mut carol).await;
    sys.assert_clean().await;
}

#[tokio::test]
async fn a_trunk_may_not_transfer_without_transfer_allow() {
    // The B-leg goes to a SIP URI (a trunk, not a local user): with no
    // `transfer:` key its REFER is refused; `transfer: allow` lets it.
    let port = support::free_udp_port();
    for (policy, code) in [("", 403), ("    transfer: allow\n", 202)] {
        let plan = format!(
            "version: 1\nroutes:\n  - id: out\n    match: {{ destination: \"9*\" }}\n{policy}    actions:\n      - dial: {{ target: \"sip:555@127.0.0.1:{port}\", timeout: 10s, on_failure: stop }}\n"
        );
        let sys = System::start(Options {
            dialplan: Some(plan),
            ..Default::default()
        })
        .await;
        let mut alice = Ua::new("1001", sys.sip).await;
        let mut trunk = Ua::bind_at("555", sys.sip, port).await;
        let (a_call, _, _, mut t_dlg) = call(&mut alice, &mut trunk, "9555").await;
        let r = t_dlg.refer(&mut trunk, "<sip:1003@127.0.0.1>").await;
        assert_eq!(r.code, code, "{policy:?}: {} {}", r.code, r.reason);
        if code == 202 {
            assert_eq!(notify(&mut trunk).await.0, "SIP/2.0 100 Trying");
            assert_eq!(notify(&mut trunk).await.0, "SIP/2.0 404 Not Found");
        }
        assert_eq!(alice.bye(&a_call).await.code, 200);
        bye_answered(&mut trunk).await;
        sys.assert_clean().await;
    }
}

#[tokio::test]
async fn attended_transfer_when_the_target_called_the_transferor() {
    // Call 1: Alice -> Bob. Call 2: Carol -> Bob. Bob joins Alice and
    // Carol: Carol's leg (swbd's UAS dialog in call 2) moves to call 1.
    let sys = System::start(Options {
        dialplan: Some(plan("")),
        ..Default::default()
    })
    .await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    let mut carol = Ua::new("1003", sys.sip).await;
    bob.register(300).await;
    let (a_call, a_ok, _, mut b1) = call(&mut alice, &mut bob, "1002").await;
    let (c_call, c_ok, _, b2) = call(&mut carol, &mut bob, "1002").await;

    let replaces = format!(
        "{}%3Bto-tag%3D{}%3Bfrom-tag%3D{}",
        b2.call_id.replace('@', "%40"),
        b2.remote_tag(),
        b2.local_tag()
    );
    let r = b1
        .refer(
            &mut bob,
            &format!("<sip:1003@127.0.0.1?Replaces={replaces}>"),
        )
        .await;
    assert_eq!(r.code, 202, "{} {}", r.code, r.reason);
    assert_eq!(notify(&mut bob).await.0, "SIP/2.0 100 Trying");
    assert_eq!(notify(&mut bob).await.0, "SIP/2.0 200 OK");
    for _ in 0..2 {
        bye_answered(&mut bob).await;
    }
    assert_talking(&alice, media_of(&a_ok.body), &carol, media_of(&c_ok.body)).await;
    // Carol (call 2's caller) hangs up: Alice, now in one call with her,
    // gets the BYE.
    assert_eq!(carol.bye(&c_call).await.code, 200);
    bye_answered(&mut alice).await;
    let _ = a_call;
    sys.assert_clean().await;
}
