//! A scripted SIP user agent over real UDP, for call tests: it registers,
//! places and answers calls, and sends/receives RTP on its own socket.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use swbd::sip::message::HeaderAccess;
use swbd::sip::{Name, Request, Response, SipMessage};
use tokio::net::UdpSocket;

/// A UA.
pub struct Ua {
    pub user: String,
    pub sock: UdpSocket,
    pub addr: SocketAddr,
    pub server: SocketAddr,
    pub rtp: UdpSocket,
    pub rtp_port: u16,
    cseq: u32,
    pending: VecDeque<SipMessage>,
}

/// A call this UA placed.
#[derive(Debug, Clone)]
pub struct OutCall {
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: Option<String>,
    pub branch: String,
    pub invite: String,
    pub dest: String,
    pub remote_contact: Option<String>,
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

pub fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// `(ip, port)` of the audio in an SDP body.
pub fn sdp_media_addr(body: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(body).ok()?;
    let mut ip = None;
    let mut port = None;
    for line in text.lines() {
        if let Some(c) = line.strip_prefix("c=IN IP4 ") {
            ip = c.trim().parse::<std::net::IpAddr>().ok();
        }
        if let Some(m) = line.strip_prefix("m=audio ") {
            port = m.split_whitespace().next()?.parse::<u16>().ok();
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

impl Ua {
    pub async fn new(user: &str, server: SocketAddr) -> Ua {
        Self::bind_at(user, server, 0).await
    }

    /// A UA whose SIP socket is bound at `port` (a fake trunk).
    pub async fn bind_at(user: &str, server: SocketAddr, port: u16) -> Ua {
        let sock = UdpSocket::bind(("127.0.0.1", port))
            .await
            .expect("bind sip");
        let rtp = UdpSocket::bind("127.0.0.1:0").await.expect("bind rtp");
        Ua {
            user: user.to_string(),
            addr: sock.local_addr().expect("addr"),
            rtp_port: rtp.local_addr().expect("addr").port(),
            sock,
            server,
            rtp,
            cseq: 1,
            pending: VecDeque::new(),
        }
    }

    /// A UA on IPv6 loopback: SIP and RTP sockets on `[::1]`.
    pub async fn new_v6(user: &str, server: SocketAddr) -> Ua {
        let sock = UdpSocket::bind("[::1]:0").await.expect("bind sip ::1");
        let rtp = UdpSocket::bind("[::1]:0").await.expect("bind rtp ::1");
        Ua {
            user: user.to_string(),
            addr: sock.local_addr().expect("addr"),
            rtp_port: rtp.local_addr().expect("addr").port(),
            sock,
            server,
            rtp,
            cseq: 1,
            pending: VecDeque::new(),
        }
    }

    /// Send an in-dialog request of `method` for `call` carrying `body` of
    /// `content_type` (none when empty); its final response.
    pub async fn in_dialog_with_body(
        &mut self,
        method: &str,
        call: &OutCall,
        content_type: &str,
        body: &str,
    ) -> Response {
        let cseq = self.next_cseq() + 100;
        let mut msg = self.in_dialog(method, call, cseq);
        if !content_type.is_empty() {
            msg = msg.replace(
                "Content-Length: 0\r\n\r\n",
                &format!(
                    "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
            );
        }
        self.send_raw(&msg).await;
        loop {
            let r = self.response(&call.call_id, method).await;
            if r.code >= 200 {
                return r;
            }
        }
    }

    /// Send an in-dialog request of `method` for `call`; the final status.
    pub async fn in_dialog_request(&mut self, method: &str, call: &OutCall) -> u16 {
        let cseq = self.next_cseq() + 100;
        let mut msg = self.in_dialog(method, call, cseq);
        if method == "INVITE" {
            let body = sdp(self.rtp_port);
            msg = msg.replace(
                "Content-Length: 0\r\n\r\n",
                &format!(
                    "Contact: {}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                    self.contact(),
                    body.len()
                ),
            );
        }
        self.send_raw(&msg).await;
        loop {
            let r = self.response(&call.call_id, method).await;
            if r.code >= 200 {
                if method == "INVITE" {
                    let ack = self.in_dialog("ACK", call, cseq);
                    self.send_raw(&ack).await;
                }
                return r.code;
            }
        }
    }

    /// A re-INVITE for `call` offering `body`; the final response (a 2xx
    /// is ACKed).
    pub async fn reinvite(&mut self, call: &OutCall, body: &str) -> Response {
        let cseq = self.next_cseq() + 100;
        let msg = self.in_dialog("INVITE", call, cseq).replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Contact: {}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                self.contact(),
                body.len()
            ),
        );
        self.send_raw(&msg).await;
        loop {
            let r = self.response(&call.call_id, "INVITE").await;
            if r.code >= 200 {
                if r.code < 300 {
                    let ack = self.in_dialog("ACK", call, cseq);
                    self.send_raw(&ack).await;
                }
                return r;
            }
        }
    }

    pub fn contact(&self) -> String {
        format!("<sip:{}@{}>", self.user, self.addr)
    }

    pub async fn send_raw(&self, text: &str) {
        self.sock
            .send_to(text.as_bytes(), self.server)
            .await
            .expect("send");
    }

    async fn recv_raw(&mut self, secs: u64) -> Option<SipMessage> {
        if let Some(m) = self.pending.pop_front() {
            return Some(m);
        }
        let mut buf = vec![0u8; 65536];
        let (n, _) = tokio::time::timeout(Duration::from_secs(secs), self.sock.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        SipMessage::parse(buf.get(..n)?, true).ok()
    }

    /// Wait for a message matching `pred`, keeping the others for later.
    pub async fn wait_for(
        &mut self,
        secs: u64,
        what: &str,
        pred: impl Fn(&SipMessage) -> bool,
    ) -> SipMessage {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        let mut skipped = VecDeque::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "{}: timed out waiting for {what}",
                self.user
            );
            let Some(m) = self.recv_raw(left.as_secs().max(1)).await else {
                continue;
            };
            if pred(&m) {
                skipped.extend(self.pending.drain(..));
                self.pending = skipped;
                return m;
            }
            skipped.push_back(m);
        }
    }

    /// Next request with this method.
    pub async fn request(&mut self, method: &str) -> Request {
        let m = self
            .wait_for(
                15,
                method,
                |m| matches!(m, SipMessage::Request(r) if r.method.to_string() == method),
            )
            .await;
        match m {
            SipMessage::Request(r) => r,
            SipMessage::Response(_) => unreachable!(),
        }
    }

    /// Next response for `call_id` whose CSeq method is `method`.
    pub async fn response(&mut self, call_id: &str, method: &str) -> Response {
        let cid = call_id.to_string();
        let meth = method.to_string();
        let m = self
            .wait_for(20, &format!("response to {method}"), move |m| match m {
                SipMessage::Response(r) => {
                    r.call_id().ok() == Some(cid.as_str())
                        && r.cseq()
                            .map(|c| c.method.to_string() == meth)
                            .unwrap_or(false)
                }
                _ => false,
            })
            .await;
        match m {
            SipMessage::Response(r) => r,
            SipMessage::Request(_) => unreachable!(),
        }
    }

    /// Next final (>= 200) response to the INVITE of `call`.
    pub async fn final_response(&mut self, call: &mut OutCall) -> Response {
        loop {
            let r = self.response(&call.call_id, "INVITE").await;
            if r.code >= 200 {
                call.to_tag = r.header_to().ok().and_then(|t| t.tag().map(str::to_string));
                call.remote_contact = r.raw(&Name::CONTACT).map(|c| {
                    c.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string()
                });
                return r;
            }
        }
    }

    pub async fn register(&mut self, expires: u32) -> Response {
        let call_id = format!("reg-{}", token());
        let cseq = self.next_cseq();
        let msg = format!(
            "REGISTER sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{b};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{u}@127.0.0.1>;tag={t}\r\nTo: <sip:{u}@127.0.0.1>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: {c}\r\nExpires: {expires}\r\n\
             Content-Length: 0\r\n\r\n",
            server = self.server,
            me = self.addr,
            b = token(),
            u = self.user,
            t = token(),
            c = self.contact(),
        );
        self.send_raw(&msg).await;
        self.response(&call_id, "REGISTER").await
    }

    fn next_cseq(&mut self) -> u32 {
        self.cseq += 1;
        self.cseq
    }

    pub async fn invite(&mut self, dest: &str, body: Option<&str>) -> OutCall {
        self.invite_with(dest, body, "").await
    }

    /// [`Ua::invite`] with `extra` header lines (each ending in CRLF).
    pub async fn invite_with(&mut self, dest: &str, body: Option<&str>, extra: &str) -> OutCall {
        let call_id = format!("call-{}", token());
        let from_tag = token();
        let branch = format!("z9hG4bK{}", token());
        let cseq = self.next_cseq();
        let default_sdp = sdp(self.rtp_port);
        let body = body.unwrap_or(&default_sdp);
        let msg = format!(
            "INVITE sip:{dest}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: \"{u}\" <sip:{u}@127.0.0.1>;tag={from_tag}\r\nTo: <sip:{dest}@127.0.0.1>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: {c}\r\n{extra}Content-Type: application/sdp\r\n\
             Content-Length: {len}\r\n\r\n{body}",
            server = self.server,
            me = self.addr,
            u = self.user,
            c = self.contact(),
            len = body.len(),
        );
        self.send_raw(&msg).await;
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

    /// ACK for a 2xx (new branch, in the dialog).
    pub async fn ack(&mut self, call: &OutCall) {
        let cseq = invite_cseq(&call.invite);
        let msg = self.in_dialog("ACK", call, cseq);
        self.send_raw(&msg).await;
    }

    pub async fn bye(&mut self, call: &OutCall) -> Response {
        let cseq = self.next_cseq() + 100;
        let msg = self.in_dialog("BYE", call, cseq);
        self.send_raw(&msg).await;
        self.response(&call.call_id, "BYE").await
    }

    pub async fn cancel(&mut self, call: &OutCall) -> Response {
        let cseq = invite_cseq(&call.invite);
        let msg = format!(
            "CANCEL sip:{dest}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: \"{u}\" <sip:{u}@127.0.0.1>;tag={ft}\r\nTo: <sip:{dest}@127.0.0.1>\r\n\
             Call-ID: {cid}\r\nCSeq: {cseq} CANCEL\r\nContent-Length: 0\r\n\r\n",
            dest = call.dest,
            server = self.server,
            me = self.addr,
            branch = call.branch,
            u = self.user,
            ft = call.from_tag,
            cid = call.call_id,
        );
        self.send_raw(&msg).await;
        self.response(&call.call_id, "CANCEL").await
    }

    fn in_dialog(&self, method: &str, call: &OutCall, cseq: u32) -> String {
        let uri = call
            .remote_contact
            .clone()
            .unwrap_or_else(|| format!("sip:{}@{}", call.dest, self.server));
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{b};rport\r\n\
             Max-Forwards: 70\r\nFrom: \"{u}\" <sip:{u}@127.0.0.1>;tag={ft}\r\nTo: <sip:{dest}@127.0.0.1>;tag={tt}\r\n\
             Call-ID: {cid}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            me = self.addr,
            b = token(),
            u = self.user,
            ft = call.from_tag,
            dest = call.dest,
            tt = call.to_tag.clone().unwrap_or_default(),
            cid = call.call_id,
        )
    }

    /// Answer a request we received (UAS side).
    pub async fn reply(
        &self,
        req: &Request,
        code: u16,
        reason: &str,
        to_tag: Option<&str>,
        body: Option<&str>,
    ) {
        self.reply_full(req, code, reason, to_tag, body, &[]).await;
    }

    /// A reply with extra headers.
    pub async fn reply_with(
        &self,
        req: &Request,
        code: u16,
        reason: &str,
        to_tag: Option<&str>,
        extra: &[(&str, &str)],
    ) {
        self.reply_full(req, code, reason, to_tag, None, extra)
            .await;
    }

    /// A reply with a body (SDP) and extra headers.
    pub async fn reply_full(
        &self,
        req: &Request,
        code: u16,
        reason: &str,
        to_tag: Option<&str>,
        body: Option<&str>,
        extra: &[(&str, &str)],
    ) {
        let mut msg = format!("SIP/2.0 {code} {reason}\r\n");
        for v in req.raw_values(&Name::VIA) {
            msg.push_str(&format!("Via: {v}\r\n"));
        }
        let from = req.raw(&Name::FROM).unwrap_or_default();
        let mut to = req.raw(&Name::TO).unwrap_or_default().to_string();
        if let Some(tag) = to_tag
            && !to.contains("tag=")
        {
            to.push_str(&format!(";tag={tag}"));
        }
        msg.push_str(&format!(
            "From: {from}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: {}\r\n",
            req.raw(&Name::CALL_ID).unwrap_or_default(),
            req.raw(&Name::CSEQ).unwrap_or_default(),
            self.contact()
        ));
        for (n, v) in extra {
            msg.push_str(&format!("{n}: {v}\r\n"));
        }
        match body {
            Some(b) => msg.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None => msg.push_str("Content-Length: 0\r\n\r\n"),
        }
        self.send_raw(&msg).await;
    }

    /// Send one PCMU RTP packet with `seq` to `to`.
    pub async fn send_rtp(&self, to: SocketAddr, seq: u16, ssrc: u32, payload: &[u8]) {
        let mut pkt = vec![0x80, 0x00];
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        pkt.extend_from_slice(&ssrc.to_be_bytes());
        pkt.extend_from_slice(payload);
        let _ = self.rtp.send_to(&pkt, to).await;
    }

    /// Receive RTP packets for up to `secs` (stops after `max`).
    pub async fn recv_rtp(&self, secs: u64, max: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        let mut buf = vec![0u8; 2048];
        while out.len() < max {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, self.rtp.recv_from(&mut buf)).await {
                Ok(Ok((n, _))) => out.push(buf.get(..n).unwrap_or_default().to_vec()),
                _ => break,
            }
        }
        out
    }
}

fn invite_cseq(invite: &str) -> u32 {
    invite
        .lines()
        .find_map(|l| l.strip_prefix("CSeq: "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}
