//! Shared helpers for swbd's SIP integration tests: start an endpoint on
//! 127.0.0.1:0, speak SIP over real UDP/TCP sockets, answer digest
//! challenges.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use swbd::auth::digest::{self, Algorithm};
use swbd::config::{Config, ListenAddr, Transport};
use swbd::endpoint::SipEndpoint;
use swbd::events::EventBus;
use swbd::sip::message::HeaderAccess;
use swbd::sip::{Name, Response, SipMessage};
use swbd::transport::framing::next_message;
use switchboard_proto::support::shutdown::{self, ShutdownTrigger};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Generous wait for anything that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Server {
    pub endpoint: SipEndpoint,
    pub events: EventBus,
    pub trigger: ShutdownTrigger,
    pub dir: tempdir::Dir,
}

impl Server {
    pub fn udp(&self) -> SocketAddr {
        self.endpoint.local_addr(Transport::Udp).expect("udp bound")
    }
    pub fn tcp(&self) -> SocketAddr {
        self.endpoint.local_addr(Transport::Tcp).expect("tcp bound")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.trigger.trigger();
    }
}

pub mod tempdir {
    use std::path::PathBuf;

    /// A temp dir removed on drop.
    pub struct Dir(pub PathBuf);

    impl Dir {
        pub fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "swbd-test-{tag}-{}-{}",
                std::process::id(),
                swbd::sip::random_token(8)
            ));
            std::fs::create_dir_all(&p).expect("temp dir");
            Dir(p)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub const USERS: &str = "users:\n  - username: alice\n    password: secret-a\n  - username: bob\n    password: secret-b\n";

/// A config listening on 127.0.0.1:0 (UDP and TCP) with users alice/bob.
pub fn config(dir: &tempdir::Dir) -> Config {
    let users = dir.0.join("users.yaml");
    std::fs::write(&users, USERS).expect("users file");
    let mut c = Config::default();
    c.sip.listen = vec![
        ListenAddr {
            transport: Transport::Udp,
            addr: "127.0.0.1:0".parse().expect("addr"),
        },
        ListenAddr {
            transport: Transport::Tcp,
            addr: "127.0.0.1:0".parse().expect("addr"),
        },
    ];
    c.sip.domains = vec!["example.com".into(), "127.0.0.1".into()];
    c.auth.users_file = Some(users);
    c.admin.socket = None;
    c
}

pub async fn start_with(tag: &str, edit: impl FnOnce(&mut Config)) -> Server {
    let dir = tempdir::Dir::new(tag);
    let mut c = config(&dir);
    edit(&mut c);
    let events = EventBus::new();
    let (trigger, shutdown) = shutdown::channel();
    let endpoint = SipEndpoint::start(Arc::new(c), events.clone(), shutdown)
        .await
        .expect("endpoint starts");
    Server {
        endpoint,
        events,
        trigger,
        dir,
    }
}

pub async fn start(tag: &str) -> Server {
    start_with(tag, |_| {}).await
}

/// A UDP SIP peer.
pub struct UdpPeer {
    pub sock: UdpSocket,
    pub server: SocketAddr,
}

impl UdpPeer {
    pub async fn new(server: SocketAddr) -> Self {
        Self::bind("127.0.0.1:0", server).await
    }

    pub async fn bind(local: &str, server: SocketAddr) -> Self {
        Self {
            sock: UdpSocket::bind(local).await.expect("bind peer"),
            server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("local addr")
    }

    pub async fn send(&self, msg: &str) {
        self.sock
            .send_to(msg.as_bytes(), self.server)
            .await
            .expect("send");
    }

    /// Next message (any), or None after `wait`.
    pub async fn recv_within(&self, wait: Duration) -> Option<SipMessage> {
        let mut buf = vec![0u8; 65_535];
        let (n, _) = tokio::time::timeout(wait, self.sock.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(SipMessage::parse(buf.get(..n)?, true).expect("server sends parseable SIP"))
    }

    /// Next response, skipping 100 Trying when `skip_trying`.
    pub async fn response(&self, skip_trying: bool) -> Response {
        loop {
            match self.recv_within(WAIT).await.expect("a response in time") {
                SipMessage::Response(r) if skip_trying && r.code == 100 => continue,
                SipMessage::Response(r) => return r,
                SipMessage::Request(r) => panic!("unexpected request {}", r.method),
            }
        }
    }
}

/// A TCP SIP peer.
pub struct TcpPeer {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl TcpPeer {
    pub async fn connect(server: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(server).await.expect("connect"),
            buf: BytesMut::new(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local addr")
    }

    pub async fn send(&mut self, msg: &str) {
        self.stream.write_all(msg.as_bytes()).await.expect("write");
    }

    /// Next framed message; None on close or after `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<SipMessage> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(m) = next_message(&mut self.buf, 1 << 20).expect("framing") {
                return Some(SipMessage::parse(&m, false).expect("server sends parseable SIP"));
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    pub async fn response(&mut self, skip_trying: bool) -> Response {
        loop {
            match self.recv_within(WAIT).await.expect("a response in time") {
                SipMessage::Response(r) if skip_trying && r.code == 100 => continue,
                SipMessage::Response(r) => return r,
                SipMessage::Request(r) => panic!("unexpected request {}", r.method),
            }
        }
    }
}

/// A request with the usual headers. `extra` lines end with CRLF.
#[allow(clippy::too_many_arguments)]
pub fn request(
    method: &str,
    uri: &str,
    transport: &str,
    via_addr: SocketAddr,
    from_user: &str,
    to_user: &str,
    call_id: &str,
    cseq: u32,
    extra: &str,
) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\n\
Via: SIP/2.0/{transport} {via_addr};branch=z9hG4bK{}\r\n\
Max-Forwards: 70\r\n\
From: <sip:{from_user}@example.com>;tag={}\r\n\
To: <sip:{to_user}@example.com>\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} {method}\r\n\
{extra}Content-Length: 0\r\n\r\n",
        swbd::sip::random_token(12),
        swbd::sip::random_token(6),
    )
}

/// A REGISTER for `user` with one contact.
pub fn register(
    transport: &str,
    via_addr: SocketAddr,
    user: &str,
    call_id: &str,
    cseq: u32,
    extra: &str,
) -> String {
    request(
        "REGISTER",
        "sip:example.com",
        transport,
        via_addr,
        user,
        user,
        call_id,
        cseq,
        extra,
    )
}

/// The challenge of `algorithm` in a 401/407.
pub fn challenge(resp: &Response, algorithm: &str) -> (String, String) {
    let name = if resp.code == 407 {
        Name::PROXY_AUTHENTICATE
    } else {
        Name::WWW_AUTHENTICATE
    };
    let value = resp
        .raw_values(&name)
        .find(|v| v.contains(&format!("algorithm={algorithm}")))
        .unwrap_or_else(|| panic!("no {algorithm} challenge in {resp:?}"))
        .to_string();
    let field = |k: &str| -> String {
        let start = value.find(&format!("{k}=\"")).expect("field") + k.len() + 2;
        let rest = value.get(start..).expect("rest");
        rest.get(..rest.find('"').expect("closing quote"))
            .expect("value")
            .to_string()
    };
    (field("realm"), field("nonce"))
}

/// An `Authorization` header line (CRLF-terminated) answering a challenge.
#[allow(clippy::too_many_arguments)]
pub fn authorization(
    header: &str,
    alg: Algorithm,
    realm: &str,
    nonce: &str,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
) -> String {
    let ha1 = alg.ha1(user, realm, password);
    let nc = format!("{nc:08x}");
    let cnonce = "0a4f113b";
    let resp = digest::response(alg, &ha1, nonce, &nc, cnonce, "auth", method, uri);
    format!(
        "{header}: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"{cnonce}\"\r\n",
        alg.as_str()
    )
}

/// Wait until `cond` holds (polling), panicking after WAIT.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
