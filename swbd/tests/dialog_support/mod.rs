//! Helpers for the dialog scenario tests (late offer, 3xx, UPDATE, dialog
//! headers): requests and responses the scripted [`Ua`] does not write
//! itself, built as raw text over its socket.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use swbd::sip::message::HeaderAccess;
use swbd::sip::{Name, Request, Response};
use tokio::net::UdpSocket;

use crate::support::ua::{OutCall, Ua};

fn token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!(
        "d{:x}{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An SDP answer choosing PCMU (and telephone-event) on `port`.
pub fn answer_sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 7 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// An offer on `port` with `o=` version `version` (a re-offer bumps it).
pub fn offer_sdp(port: u16, version: u32) -> String {
    format!(
        "v=0\r\no=- 9 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// `body` with its Content-Type and Content-Length, or just a zero length.
fn with_body(body: Option<&str>) -> String {
    match body {
        Some(b) => format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ),
        None => "Content-Length: 0\r\n\r\n".into(),
    }
}

/// An INVITE from `ua` to `dest` with no SDP at all (a delayed offer).
pub async fn invite_without_sdp(ua: &mut Ua, dest: &str) -> OutCall {
    let call_id = format!("call-{}", token());
    let from_tag = token();
    let branch = format!("z9hG4bK{}", token());
    let msg = format!(
        "INVITE sip:{dest}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: \"{u}\" <sip:{u}@127.0.0.1>;tag={from_tag}\r\nTo: <sip:{dest}@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: {c}\r\nContent-Length: 0\r\n\r\n",
        server = ua.server,
        me = ua.addr,
        u = ua.user,
        c = ua.contact(),
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

/// A request of `method` in `call` (the caller's side), with `cseq` and an
/// optional SDP body.
pub fn caller_request(
    ua: &Ua,
    method: &str,
    call: &OutCall,
    cseq: u32,
    body: Option<&str>,
) -> String {
    let uri = call
        .remote_contact
        .clone()
        .unwrap_or_else(|| format!("sip:{}@{}", call.dest, ua.server));
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{b};rport\r\n\
         Max-Forwards: 70\r\nFrom: \"{u}\" <sip:{u}@127.0.0.1>;tag={ft}\r\nTo: <sip:{dest}@127.0.0.1>;tag={tt}\r\n\
         Call-ID: {cid}\r\nCSeq: {cseq} {method}\r\nContact: {c}\r\n{body}",
        me = ua.addr,
        b = token(),
        u = ua.user,
        ft = call.from_tag,
        dest = call.dest,
        tt = call.to_tag.clone().unwrap_or_default(),
        cid = call.call_id,
        c = ua.contact(),
        body = with_body(body),
    )
}

/// The ACK for the 2xx of `call`'s INVITE (CSeq 1), with `body` (the
/// answer to a delayed offer) or none.
pub async fn ack_with(ua: &Ua, call: &OutCall, body: Option<&str>) {
    let msg = caller_request(ua, "ACK", call, 1, body);
    ua.send_raw(&msg).await;
}

/// Send `method` in `call` (caller's side) and return its final response.
pub async fn caller_final(
    ua: &mut Ua,
    method: &str,
    call: &OutCall,
    cseq: u32,
    body: Option<&str>,
) -> Response {
    let msg = caller_request(ua, method, call, cseq, body);
    ua.send_raw(&msg).await;
    loop {
        let r = ua.response(&call.call_id, method).await;
        if r.code >= 200 {
            return r;
        }
    }
}

/// A request of `method` from the callee of B-leg `invite` (whose To tag
/// it gave as `tag`): From/To swapped, to swbd's Contact.
pub fn callee_request(
    ua: &Ua,
    invite: &Request,
    tag: &str,
    method: &str,
    cseq: u32,
    body: Option<&str>,
) -> String {
    let from = invite.raw(&Name::TO).unwrap_or_default();
    let to = invite.raw(&Name::FROM).unwrap_or_default();
    let uri = invite
        .raw(&Name::CONTACT)
        .map(|c| {
            c.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
        .unwrap_or_default();
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{b};rport\r\nMax-Forwards: 70\r\n\
         From: {from};tag={tag}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\nContact: {c}\r\n{body}",
        me = ua.addr,
        b = token(),
        cid = invite.call_id().expect("call-id"),
        c = ua.contact(),
        body = with_body(body),
    )
}

/// Send `method` as the callee of `invite` and return the final response.
pub async fn callee_final(
    ua: &mut Ua,
    invite: &Request,
    tag: &str,
    method: &str,
    cseq: u32,
    body: Option<&str>,
) -> Response {
    let msg = callee_request(ua, invite, tag, method, cseq, body);
    ua.send_raw(&msg).await;
    let cid = invite.call_id().expect("call-id").to_string();
    loop {
        let r = ua.response(&cid, method).await;
        if r.code >= 200 {
            return r;
        }
    }
}

/// A response to `req` with exactly the given extra headers (no Contact
/// unless given) and body.
pub async fn reply_exact(
    ua: &Ua,
    req: &Request,
    code: u16,
    reason: &str,
    to_tag: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) {
    let mut msg = format!("SIP/2.0 {code} {reason}\r\n");
    for v in req.raw_values(&Name::VIA) {
        msg.push_str(&format!("Via: {v}\r\n"));
    }
    let mut to = req.raw(&Name::TO).unwrap_or_default().to_string();
    if !to.contains("tag=") {
        to.push_str(&format!(";tag={to_tag}"));
    }
    msg.push_str(&format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
        req.raw(&Name::FROM).unwrap_or_default(),
        req.raw(&Name::CALL_ID).unwrap_or_default(),
        req.raw(&Name::CSEQ).unwrap_or_default(),
    ));
    for (n, v) in headers {
        msg.push_str(&format!("{n}: {v}\r\n"));
    }
    msg.push_str(&with_body(body));
    ua.send_raw(&msg).await;
}

/// The SDP media address of a body, as `ip:port`.
pub fn media_addr(body: &[u8]) -> SocketAddr {
    crate::support::ua::sdp_media_addr(body).expect("SDP with an audio address")
}

/// Send RTP from `from` (any socket) to `to` until `at` receives a packet
/// carrying `payload`, at most `tries` packets 20 ms apart. `true` when it
/// arrived.
pub async fn rtp_reaches(
    from: &UdpSocket,
    to: SocketAddr,
    at: &UdpSocket,
    payload: u8,
    tries: u16,
) -> bool {
    let mut buf = vec![0u8; 2048];
    for seq in 0..tries {
        let mut pkt = vec![0x80, 0x00];
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        pkt.extend_from_slice(&0x5EED_u32.to_be_bytes());
        pkt.extend_from_slice(&[payload; 160]);
        let _ = from.send_to(&pkt, to).await;
        while let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(20), at.recv_from(&mut buf)).await
        {
            if buf
                .get(12..n)
                .is_some_and(|p| !p.is_empty() && p.iter().all(|b| *b == payload))
            {
                return true;
            }
        }
    }
    false
}

/// Ended calls as the admin lists them.
pub async fn ended_calls(sys: &crate::support::System) -> Vec<switchboard_proto::admin::v1::Call> {
    sys.signaling()
        .await
        .expect("admin")
        .list_calls(switchboard_proto::admin::v1::ListCallsRequest {
            include_ended: true,
        })
        .await
        .expect("list calls")
        .into_inner()
        .calls
}
