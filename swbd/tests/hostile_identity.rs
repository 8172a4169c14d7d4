//! Issue #13, reproduced against real swbd + swrtp processes: a phone
//! authenticated as one user calling out as another, and every place a
//! peer's text could carry CR LF into the INVITE swbd sends the callee.
//! Each test looks at the B-leg as it arrives on the callee's socket.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::time::Duration;

use support::raw::{RawPeer, as_request, fresh};

use support::{Options, System, free_udp_port};
use swbd::sip::message::HeaderAccess;
use swbd::sip::{Name, Request};

fn users() -> Vec<(String, String)> {
    vec![
        ("1001".into(), "pw-1001".into()),
        ("1002".into(), "pw-1002".into()),
    ]
}

/// Calls to 500 from caller 1001 go to `vip`; everything else to `bob`,
/// through a dialplan variable and `${destination}`.
fn dialplan(vip: u16, bob: u16) -> String {
    format!(
        "version: 1\nroutes:\n\
         \x20 - id: vip\n    match: {{ destination: \"500\", caller: \"1001\" }}\n\
         \x20   actions:\n      - dial: {{ target: \"sip:vip@127.0.0.1:{vip}\", timeout: 5s }}\n\
         \x20 - id: any\n    match: {{ destination: \"*\" }}\n    actions:\n\
         \x20     - set: {{ who: \"${{caller}}\" }}\n\
         \x20     - dial: {{ target: \"sip:${{destination}}@127.0.0.1:{bob}\", timeout: 5s }}\n"
    )
}

struct Callees {
    vip: RawPeer,
    bob: RawPeer,
}

async fn system(auth_extra: &str, extra_config: &str, with_users: bool) -> (System, Callees) {
    let (vip_port, bob_port) = (free_udp_port(), free_udp_port());
    let sys = System::start(Options {
        dialplan: Some(dialplan(vip_port, bob_port)),
        users: if with_users { users() } else { Vec::new() },
        auth_extra: auth_extra.into(),
        extra_config: extra_config.into(),
        ..Options::default()
    })
    .await;
    let bind = |port: u16| {
        let server = sys.sip;
        async move {
            let sock = tokio::net::UdpSocket::bind(("127.0.0.1", port))
                .await
                .expect("bind callee");
            RawPeer {
                addr: sock.local_addr().expect("addr"),
                sock,
                server,
            }
        }
    };
    let callees = Callees {
        vip: bind(vip_port).await,
        bob: bind(bob_port).await,
    };
    (sys, callees)
}

/// The first INVITE `callee` receives within `secs`, raw and parsed.
async fn b_leg(callee: &RawPeer, secs: u64) -> Option<(Vec<u8>, Request)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout_at(deadline, callee.sock.recv_from(&mut buf)).await
    {
        let raw = buf.get(..n).unwrap_or_default().to_vec();
        if let Some(r) = as_request(&raw)
            && r.method == swbd::sip::Method::Invite
        {
            // Refuse it so the call ends cleanly.
            callee_refuse(callee, &r).await;
            return Some((raw, r));
        }
    }
    None
}

async fn callee_refuse(callee: &RawPeer, inv: &Request) {
    let mut msg = String::from("SIP/2.0 486 Busy Here\r\n");
    for v in inv.raw_values(&Name::VIA) {
        msg.push_str(&format!("Via: {v}\r\n"));
    }
    msg.push_str(&format!(
        "From: {}\r\nTo: {};tag=callee\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        inv.raw(&Name::FROM).unwrap_or_default(),
        inv.raw(&Name::TO).unwrap_or_default(),
        inv.raw(&Name::CALL_ID).unwrap_or_default(),
        inv.raw(&Name::CSEQ).unwrap_or_default(),
    ));
    let src = inv
        .top_via()
        .ok()
        .map(|v| v.response_address(callee.server))
        .unwrap_or(callee.server);
    callee
        .sock
        .send_to(msg.as_bytes(), src)
        .await
        .expect("send 486");
}

/// No header line of `raw` was injected: no header named X-Injected or a
/// second P-Asserted-Identity, and no control character but CR LF line ends.
fn assert_clean(raw: &[u8], what: &str) {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    for line in head.split("\r\n") {
        assert!(
            !line.to_ascii_lowercase().starts_with("x-injected"),
            "{what}: injected header line {line:?} in\n{head}"
        );
        assert!(
            !line.chars().any(|c| c.is_control() && c != '\t'),
            "{what}: control character in {line:?}"
        );
    }
    assert!(
        head.matches("P-Asserted-Identity").count() <= 1,
        "{what}: a second P-Asserted-Identity in\n{head}"
    );
    assert!(
        !head.contains('\n') || !head.replace("\r\n", "").contains('\n'),
        "{what}: bare LF"
    );
}

fn from_user(r: &Request) -> String {
    r.header_from()
        .ok()
        .and_then(|f| f.uri.user())
        .unwrap_or_default()
}

#[tokio::test]
async fn spoofed_from_is_refused_by_default() {
    let (sys, callees) = system("", "", true).await;
    let phone = RawPeer::bind("127.0.0.1", sys.sip).await;
    let ruri = format!("sip:500@{}", sys.sip);
    let cid = fresh();
    // Authenticated as 1002, claiming to be 1001 (who may reach `vip`).
    let make =
        |cseq: u32, auth: &str| phone.invite(&ruri, "<sip:1001@127.0.0.1>", &cid, cseq, auth);
    let r = phone.invite_authed(make, "1002", "pw-1002", &ruri).await;
    assert_eq!(r.code, 403, "{r:?}");
    assert!(r.reason.contains("authenticated user"), "{}", r.reason);
    assert!(b_leg(&callees.vip, 1).await.is_none(), "nobody was called");
    assert!(b_leg(&callees.bob, 1).await.is_none(), "nobody was called");

    // The same phone as itself gets through, as itself.
    let cid = fresh();
    let make = |cseq: u32, auth: &str| {
        phone.invite(&ruri, "\"Desk\" <sip:1002@127.0.0.1>", &cid, cseq, auth)
    };
    let invite_text = make(2, "");
    let r = tokio::join!(
        phone.invite_authed(make, "1002", "pw-1002", &ruri),
        b_leg(&callees.bob, 10)
    );
    let (raw, b) = r.1.expect("bob is called");
    assert_eq!(r.0.code, 486, "bob was busy");
    phone.ack_failure(&invite_text, &r.0).await;
    assert_eq!(from_user(&b), "1002");
    let pai = b.raw(&Name::new("P-Asserted-Identity")).unwrap_or_default();
    assert!(
        pai.starts_with("<sip:1002@127.0.0.1"),
        "swbd asserts the authenticated user: {pai}"
    );
    assert_clean(&raw, "own identity");
    sys.assert_clean().await;
}

#[tokio::test]
async fn spoofed_from_is_rewritten_to_the_authenticated_user() {
    let (sys, callees) = system("identity: rewrite", "", true).await;
    let phone = RawPeer::bind("127.0.0.1", sys.sip).await;
    let ruri = format!("sip:500@{}", sys.sip);
    let cid = fresh();
    let make = |cseq: u32, auth: &str| {
        phone.invite(
            &ruri,
            "<sip:1001@127.0.0.1>",
            &cid,
            cseq,
            &format!("{auth}P-Asserted-Identity: <sip:911@127.0.0.1>\r\n"),
        )
    };
    let invite_text = make(2, "");
    let (r, leg) = tokio::join!(
        phone.invite_authed(make, "1002", "pw-1002", &ruri),
        b_leg(&callees.bob, 10)
    );
    // The caller condition `caller: "1001"` did not match: bob, not vip.
    let (raw, b) = leg.expect("bob is called, not vip");
    assert_eq!(r.code, 486);
    phone.ack_failure(&invite_text, &r).await;
    assert_eq!(
        from_user(&b),
        "1002",
        "From rewritten to the authenticated user"
    );
    let pai = b.raw(&Name::new("P-Asserted-Identity")).unwrap_or_default();
    assert!(pai.contains("sip:1002@"), "{pai}");
    assert!(
        !String::from_utf8_lossy(&raw).contains("911"),
        "the caller's PAI is not forwarded"
    );
    assert!(b_leg(&callees.vip, 1).await.is_none());
    sys.assert_clean().await;
}

/// With authentication off (everyone unverified) the From user is taken
/// as said: the most permissive path for injection.
#[tokio::test]
async fn no_injection_form_reaches_the_callee() {
    let (sys, callees) = system("", "", false).await;
    let phone = RawPeer::bind("127.0.0.1", sys.sip).await;
    let host = sys.sip;
    // (Request-URI, From value, extra headers): each tries to end a header
    // line early.
    let forms: Vec<(&str, String, String, String)> = vec![
        (
            "From user",
            format!("sip:600@{host}"),
            "<sip:1001%0D%0AX-Injected%3A%20from-user@127.0.0.1>".into(),
            String::new(),
        ),
        (
            "From user, LF only and NUL",
            format!("sip:600@{host}"),
            "<sip:1001%0AX-Injected%3A%20lf%00@127.0.0.1>".into(),
            String::new(),
        ),
        (
            "display name",
            format!("sip:600@{host}"),
            "\"Alice\\\" <sip:x@y>;tag=1%0D%0AX-Injected: display\\\\\" <sip:1001@127.0.0.1>"
                .into(),
            String::new(),
        ),
        (
            "display name with ESC",
            format!("sip:600@{host}"),
            "\"Alice \u{1b}[2J\" <sip:1001@127.0.0.1>".into(),
            String::new(),
        ),
        (
            "Request-URI user (dialplan ${destination})",
            format!("sip:600%0D%0AX-Injected%3A%20ruri@{host}"),
            "<sip:1001@127.0.0.1>".into(),
            String::new(),
        ),
        (
            "Contact",
            format!("sip:600@{host}"),
            "<sip:1001@127.0.0.1>".into(),
            "X-Note: contact below\r\n".into(),
        ),
        (
            "P-Asserted-Identity from an untrusted caller",
            format!("sip:600@{host}"),
            "<sip:1001@127.0.0.1>".into(),
            "P-Asserted-Identity: <sip:1%0D%0AX-Injected%3A%20pai@127.0.0.1>\r\n".into(),
        ),
    ];
    for (what, ruri, from, extra) in forms {
        let cid = fresh();
        let mut text = phone.invite(&ruri, &from, &cid, 1, &extra);
        if what == "Contact" {
            text = text.replace(
                "Contact: <sip:caller@",
                "Contact: <sip:caller%0D%0AX-Injected%3A%20contact@",
            );
        }
        phone.send(&text).await;
        if what == "display name with ESC" {
            // A raw control character in a header is refused at parse.
            let r = phone.response(false).await;
            assert_eq!(r.code, 400, "{what}: {r:?}");
            assert!(
                b_leg(&callees.bob, 1).await.is_none(),
                "{what}: nobody called"
            );
            continue;
        }
        let leg = b_leg(&callees.bob, 10).await;
        let (raw, b) = leg.unwrap_or_else(|| panic!("{what}: bob is called"));
        assert_clean(&raw, what);
        assert!(
            !b.headers
                .iter()
                .any(|(n, _)| n.as_print_str().eq_ignore_ascii_case("x-injected")),
            "{what}: an X-Injected header reached the callee"
        );
        let r = phone.response(true).await;
        assert_eq!(r.code, 486, "{what}");
        phone.ack_failure(&text, &r).await;
    }
    assert!(b_leg(&callees.vip, 1).await.is_none());
    sys.assert_clean().await;
}

/// A trusted network (a trunk) is not challenged and its
/// P-Asserted-Identity is believed, escaped on the way out.
#[tokio::test]
async fn trusted_network_asserts_identity_without_a_challenge() {
    let (sys, callees) = system(
        "",
        "acl:\n  trusted:\n    - { name: carrier, networks: [\"127.0.0.2/32\"] }\n",
        true,
    )
    .await;
    let trunk = RawPeer::bind("127.0.0.2", sys.sip).await;
    let ruri = format!("sip:500@{}", sys.sip);
    let text = trunk.invite(
        &ruri,
        "<sip:anonymous@carrier.example>",
        &fresh(),
        1,
        "P-Asserted-Identity: <sip:1001%0D%0AX-Injected%3A%20pai@carrier.example>\r\n",
    );
    trunk.send(&text).await;
    let (raw, b) = b_leg(&callees.bob, 10)
        .await
        .expect("called without a challenge");
    assert_clean(&raw, "trusted PAI");
    assert!(
        from_user(&b).starts_with("1001%"),
        "asserted user, escaped: {}",
        from_user(&b)
    );
    let r = trunk.response(true).await;
    assert_eq!(r.code, 486);
    trunk.ack_failure(&text, &r).await;

    // The same INVITE from an untrusted address is challenged.
    let other = RawPeer::bind("127.0.0.3", sys.sip).await;
    other
        .send(&other.invite(&ruri, "<sip:1001@x>", &fresh(), 1, ""))
        .await;
    assert_eq!(other.response(false).await.code, 407);
    sys.assert_clean().await;
}
