//! One UDP socket (large SO_RCVBUF), a receive loop, and a table of
//! transactions/dialogs keyed by Call-ID; plus the UAC client transaction
//! with RFC 3261 §17.1 retransmission timers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::sip::Message;

/// A message delivered to a dialog: the parsed SIP and its source.
pub type Inbound = (Message, SocketAddr);

/// What the receive loop does with a message whose Call-ID is not routed.
pub type NewHandler = Arc<dyn Fn(Arc<Endpoint>, Message, SocketAddr) + Send + Sync>;

/// A UDP SIP endpoint.
pub struct Endpoint {
    sock: UdpSocket,
    pub local: SocketAddr,
    pub server: SocketAddr,
    /// Call-ID -> the task that owns the transaction or dialog. A std
    /// Mutex: lookups are a hash probe, never held across `.await`.
    routes: Mutex<HashMap<String, mpsc::UnboundedSender<Inbound>>>,
    /// Datagrams that did not parse.
    pub bad: std::sync::atomic::AtomicU64,
    receiver: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local", &self.local)
            .finish()
    }
}

/// A UDP socket bound at `addr` with `rcvbuf` bytes of receive buffer
/// (the kernel caps it at net.core.rmem_max).
pub fn bind_udp(addr: SocketAddr, rcvbuf: usize) -> std::io::Result<UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    let _ = s.set_recv_buffer_size(rcvbuf);
    let _ = s.set_send_buffer_size(rcvbuf);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

impl Endpoint {
    pub fn bind(
        bind: SocketAddr,
        server: SocketAddr,
        rcvbuf: usize,
    ) -> std::io::Result<Arc<Endpoint>> {
        let sock = bind_udp(bind, rcvbuf)?;
        let local = sock.local_addr()?;
        Ok(Arc::new(Endpoint {
            sock,
            local,
            server,
            routes: Mutex::new(HashMap::new()),
            bad: Default::default(),
            receiver: Mutex::new(None),
        }))
    }

    /// Start the receive loop; unrouted messages go to `on_new`. It runs
    /// until [`Endpoint::shutdown`].
    pub fn spawn_receiver(self: &Arc<Self>, on_new: NewHandler) {
        let ep = Arc::clone(self);
        let h = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, from)) = ep.sock.recv_from(&mut buf).await else {
                    continue;
                };
                let Some(data) = buf.get(..n) else { continue };
                let msg = match Message::parse(data) {
                    Ok(m) => m,
                    Err(_) => {
                        ep.bad.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                };
                let tx = ep.lock().get(msg.call_id()).cloned();
                match tx {
                    Some(tx) => {
                        if let Err(mpsc::error::SendError((msg, from))) = tx.send((msg, from)) {
                            on_new(Arc::clone(&ep), msg, from);
                        }
                    }
                    None => on_new(Arc::clone(&ep), msg, from),
                }
            }
        });
        *self.receiver.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
    }

    /// Stop the receive loop (it holds the socket) and forget every route.
    pub fn shutdown(&self) {
        if let Some(h) = self
            .receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            h.abort();
        }
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Inbound>>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Route `call_id` to a new channel (replacing any old route).
    pub fn route(&self, call_id: &str) -> mpsc::UnboundedReceiver<Inbound> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().insert(call_id.to_string(), tx);
        rx
    }

    pub fn unroute(&self, call_id: &str) {
        self.lock().remove(call_id);
    }

    pub fn routed(&self) -> usize {
        self.lock().len()
    }

    pub async fn send_to(&self, text: &str, to: SocketAddr) {
        let _ = self.sock.send_to(text.as_bytes(), to).await;
    }

    pub async fn send(&self, text: &str) {
        self.send_to(text, self.server).await;
    }
}

/// RFC 3261 timer values.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
        }
    }
}

/// How a client transaction ended without a final response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// Timer B / Timer F fired (64*T1).
    #[error("timeout")]
    Timeout,
}

/// The client transaction (RFC 3261 §17.1.1 INVITE, §17.1.2 non-INVITE)
/// over an unreliable transport: send `text`, retransmit on Timer A
/// (INVITE: doubling, until a provisional response) or Timer E (non-INVITE:
/// doubling up to T2), give up on Timer B/F. Returns the final response;
/// provisional ones go to `on_provisional`. Messages of the dialog that do
/// not belong to this transaction are dropped.
#[allow(clippy::too_many_arguments)]
pub async fn client_transaction(
    ep: &Endpoint,
    rx: &mut mpsc::UnboundedReceiver<Inbound>,
    text: &str,
    cseq: u32,
    method: &str,
    timers: Timers,
    retransmits: &std::sync::atomic::AtomicU64,
    mut on_provisional: impl FnMut(&Message),
) -> Result<Message, TransactionError> {
    let invite = method == "INVITE";
    let give_up = tokio::time::Instant::now() + timers.t1 * 64;
    let mut interval = timers.t1;
    let mut next = tokio::time::Instant::now() + interval;
    let mut retransmitting = true;
    ep.send(text).await;
    loop {
        let wake = if retransmitting {
            next.min(give_up)
        } else {
            give_up
        };
        tokio::select! {
            m = rx.recv() => {
                let Some((m, _)) = m else { return Err(TransactionError::Timeout) };
                let Some(code) = m.code() else { continue };
                if m.cseq() != (cseq, method) {
                    continue;
                }
                if code >= 200 {
                    return Ok(m);
                }
                on_provisional(&m);
                if invite {
                    retransmitting = false; // §17.1.1.2: Proceeding stops Timer A
                } else {
                    interval = timers.t2; // §17.1.2.2: Proceeding retransmits at T2
                }
            }
            () = tokio::time::sleep_until(wake) => {
                if tokio::time::Instant::now() >= give_up {
                    return Err(TransactionError::Timeout);
                }
                ep.send(text).await;
                retransmits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                interval = if invite { interval * 2 } else { (interval * 2).min(timers.t2) };
                next = tokio::time::Instant::now() + interval;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// Timer A: a lost INVITE is retransmitted at T1, 2*T1, 4*T1, ... and the
    /// transaction ends on the response to the last copy.
    #[tokio::test(start_paused = true)]
    async fn timer_a_retransmits_until_answered() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ep = Endpoint::bind(
            "127.0.0.1:0".parse().unwrap(),
            server.local_addr().unwrap(),
            1 << 16,
        )
        .unwrap();
        let mut rx = ep.route("c1");
        ep.spawn_receiver(Arc::new(|_, _, _| {}));
        let req = crate::sip::RequestSpec {
            method: "INVITE",
            uri: "sip:x@127.0.0.1",
            via_host: ep.local,
            branch: "z9hG4bKa",
            from: "sip:a@127.0.0.1",
            from_tag: "f",
            to: "sip:x@127.0.0.1",
            to_tag: None,
            call_id: "c1",
            cseq: 1,
            contact: None,
            routes: &[],
            extra: &[],
            body: None,
        }
        .build();
        let retrans = AtomicU64::new(0);
        let timers = Timers::default();
        let server_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            // Drop the first three copies, answer the fourth.
            for _ in 0..3 {
                server.recv_from(&mut buf).await.unwrap();
            }
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            let m = Message::parse(&buf[..n]).unwrap();
            let ok = crate::sip::response(&m, 486, "Busy Here", Some("t"), None, None);
            server.send_to(ok.as_bytes(), from).await.unwrap();
        });
        let started = tokio::time::Instant::now();
        let r = client_transaction(&ep, &mut rx, &req, 1, "INVITE", timers, &retrans, |_| {})
            .await
            .unwrap();
        assert_eq!(r.code(), Some(486));
        assert_eq!(retrans.load(std::sync::atomic::Ordering::Relaxed), 3);
        // 0.5 + 1 + 2 s of Timer A before the 4th copy.
        assert!(started.elapsed() >= Duration::from_millis(3500));
        server_task.await.unwrap();
    }

    /// Timer F: nothing answers a non-INVITE; it times out after 64*T1.
    #[tokio::test(start_paused = true)]
    async fn timer_f_times_out() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ep = Endpoint::bind(
            "127.0.0.1:0".parse().unwrap(),
            server.local_addr().unwrap(),
            1 << 16,
        )
        .unwrap();
        let mut rx = ep.route("c2");
        let retrans = AtomicU64::new(0);
        let r = client_transaction(
            &ep,
            &mut rx,
            "REGISTER sip:x SIP/2.0\r\n\r\n",
            1,
            "REGISTER",
            Timers::default(),
            &retrans,
            |_| {},
        )
        .await;
        assert_eq!(r.unwrap_err(), TransactionError::Timeout);
        // E: 0.5, 1, 2, 4, 4, ... until 32 s: 4 + 7 = 11 copies.
        assert_eq!(retrans.load(std::sync::atomic::Ordering::Relaxed), 10);
    }
}
