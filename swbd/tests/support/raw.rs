//! A raw SIP client for hostile tests: it sends exactly the text it is
//! given (from any loopback address), collects everything that comes back
//! within a window, and answers digest challenges (MD5, `qop=auth`).

use std::net::SocketAddr;
use std::time::Duration;

use swbd::auth::digest::{self, Algorithm};
use swbd::sip::message::HeaderAccess;
use swbd::sip::{Name, Request, Response, SipMessage};
use tokio::net::UdpSocket;

/// A UDP socket speaking raw SIP.
pub struct RawPeer {
    pub sock: UdpSocket,
    pub addr: SocketAddr,
    pub server: SocketAddr,
}

fn token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!(
        "{:x}{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh branch / Call-ID / tag.
pub fn fresh() -> String {
    token()
}

impl RawPeer {
    /// Bound on `ip` (any 127.x address), an ephemeral port.
    pub async fn bind(ip: &str, server: SocketAddr) -> RawPeer {
        let sock = UdpSocket::bind((ip, 0)).await.expect("bind");
        RawPeer {
            addr: sock.local_addr().expect("addr"),
            sock,
            server,
        }
    }

    pub async fn send(&self, text: &str) {
        self.sock
            .send_to(text.as_bytes(), self.server)
            .await
            .expect("send");
    }

    /// Every datagram received within `window` (raw bytes).
    pub async fn collect(&self, window: Duration) -> Vec<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + window;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(Ok((n, _))) =
            tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf)).await
        {
            out.push(buf.get(..n).unwrap_or_default().to_vec());
        }
        out
    }

    /// The next response (skipping 100 Trying when `skip_trying`), within 10 s.
    pub async fn response(&self, skip_trying: bool) -> Response {
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, _) =
                tokio::time::timeout(Duration::from_secs(10), self.sock.recv_from(&mut buf))
                    .await
                    .expect("a response within 10 s")
                    .expect("recv");
            match SipMessage::parse(buf.get(..n).unwrap_or_default(), true) {
                Ok(SipMessage::Response(r)) if skip_trying && r.code == 100 => continue,
                Ok(SipMessage::Response(r)) => return r,
                _ => continue,
            }
        }
    }

    /// An INVITE to `ruri`. `from` is the whole From value without tag;
    /// `extra` more header lines (each ending in CRLF).
    pub fn invite(&self, ruri: &str, from: &str, call_id: &str, cseq: u32, extra: &str) -> String {
        let body = sdp(40000);
        format!(
            "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{b};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from};tag={t}\r\nTo: <{ruri}>\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} INVITE\r\nContact: <sip:caller@{me}>\r\n{extra}\
             Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{body}",
            me = self.addr,
            b = token(),
            t = token(),
            len = body.len(),
        )
    }

    /// Send `invite` (made by [`RawPeer::invite`] without credentials),
    /// take the 407 and send it again with credentials for `user` /
    /// `password` computed over `digest_uri`. Returns the final response.
    pub async fn invite_authed(
        &self,
        make: impl Fn(u32, &str) -> String,
        user: &str,
        password: &str,
        digest_uri: &str,
    ) -> Response {
        self.send(&make(1, "")).await;
        let r = self.response(false).await;
        assert_eq!(r.code, 407, "challenged first");
        let (realm, nonce) = challenge(&r, &Name::PROXY_AUTHENTICATE);
        let auth = authorization(
            "Proxy-Authorization",
            &realm,
            &nonce,
            user,
            password,
            "INVITE",
            digest_uri,
            1,
        );
        self.send(&make(2, &auth)).await;
        self.response(true).await
    }

    /// ACK for a non-2xx final response to `invite` text.
    pub async fn ack_failure(&self, invite_text: &str, resp: &Response) {
        let Ok(SipMessage::Request(inv)) = SipMessage::parse(invite_text.as_bytes(), true) else {
            panic!("not a request")
        };
        let to = resp.raw(&Name::TO).unwrap_or_default();
        let cseq = inv.cseq().expect("cseq").number;
        let msg = format!(
            "ACK {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {to}\r\n\
             Call-ID: {}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
            inv.uri,
            inv.raw(&Name::VIA).unwrap_or_default(),
            inv.raw(&Name::FROM).unwrap_or_default(),
            inv.raw(&Name::CALL_ID).unwrap_or_default(),
        );
        self.send(&msg).await;
    }
}

/// A plain PCMU/PCMA offer at `port`.
pub fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n"
    )
}

/// (realm, nonce) of the MD5 challenge in `header`.
pub fn challenge(r: &Response, header: &Name) -> (String, String) {
    let v = r
        .raw_values(header)
        .find(|v| v.contains("MD5"))
        .expect("an MD5 challenge")
        .to_string();
    let field = |name: &str| {
        let start = v.find(&format!("{name}=\"")).expect(name) + name.len() + 2;
        let rest = &v[start..];
        rest[..rest.find('"').expect("closing quote")].to_string()
    };
    (field("realm"), field("nonce"))
}

/// An `Authorization`/`Proxy-Authorization` header line (MD5, qop=auth).
#[allow(clippy::too_many_arguments)]
pub fn authorization(
    header: &str,
    realm: &str,
    nonce: &str,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
) -> String {
    let ha1 = Algorithm::Md5.ha1(user, realm, password);
    let nc = format!("{nc:08x}");
    let resp = digest::response(
        Algorithm::Md5,
        &ha1,
        nonce,
        &nc,
        "0a4f113b",
        "auth",
        method,
        uri,
    );
    format!(
        "{header}: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{resp}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"0a4f113b\"\r\n"
    )
}

/// The request in a raw datagram, if it is one.
pub fn as_request(raw: &[u8]) -> Option<Request> {
    match SipMessage::parse(raw, true) {
        Ok(SipMessage::Request(r)) => Some(r),
        _ => None,
    }
}
