//! UDP sockets: socket2 for buffer sizes and IPv6-only; `sip.udp_receivers`
//! receive loops per socket (one by default). A loop reads datagrams,
//! recognises the socket's [`ReceiveBacklog`] markers (overload control's
//! probes), and hands each SIP datagram to its UDP worker
//! ([`super::workers`]: one task per Call-ID's hash, so a call's messages
//! keep their arrival order), or, with `sip.udp_workers: 1`, parses and
//! handles it itself. Before either, early shedding ([`super::shed`])
//! may answer a refused new INVITE, or drop the ACK of such an answer,
//! from the raw bytes.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::backlog::ReceiveBacklog;
use super::shed::Early;
use super::workers::Workers;
use super::{Inner, SipCounters, Source, Transport};
use crate::overload::ticket::with_ticket;

/// Largest datagram we read; bigger ones are truncated by the kernel and
/// then dropped as oversize by the length check.
const RECV_BUFFER: usize = 65_535;

/// Bind a UDP socket with `SO_RCVBUF`/`SO_SNDBUF` set to `buffer_bytes`
/// (the kernel may cap it at `net.core.rmem_max`).
pub fn bind(addr: SocketAddr, buffer_bytes: usize) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if buffer_bytes > 0 {
        // Best effort: a capped buffer is better than no socket.
        if let Err(e) = socket.set_recv_buffer_size(buffer_bytes) {
            tracing::warn!(%addr, error = %e, "cannot set SO_RCVBUF");
        }
        if let Err(e) = socket.set_send_buffer_size(buffer_bytes) {
            tracing::warn!(%addr, error = %e, "cannot set SO_SNDBUF");
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if let Ok(size) = socket.recv_buffer_size() {
        tracing::debug!(%addr, size, "UDP receive buffer");
    }
    UdpSocket::from_std(socket.into())
}

/// Read `socket` until shutdown. `workers`: where SIP datagrams go; `None`
/// to handle each here, in the loop (`sip.udp_workers: 1`).
pub(crate) async fn receive_loop(
    inner: Arc<Inner>,
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    backlog: Arc<ReceiveBacklog>,
    workers: Option<Arc<Workers>>,
) {
    let Some(receiver) = inner.receiver.get().cloned() else {
        return;
    };
    let max = inner.config.max_message_size;
    let shed = inner.shed.get().cloned();
    let mut shutdown = inner.shutdown.clone();
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let (n, remote) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    // ICMP port unreachable and friends surface here; keep going.
                    tracing::debug!(%local, error = %e, "UDP receive error");
                    continue;
                }
            },
            _ = shutdown.wait() => return,
        };
        let Some(data) = buf.get(..n) else { continue };
        if let Some(marker) = backlog.read_marker(data, remote) {
            match &workers {
                Some(w) => w.marker(&backlog, marker),
                None => backlog.note(marker),
            }
            continue;
        }
        SipCounters::inc(&inner.counters.messages_received);
        if n > max || n >= RECV_BUFFER {
            SipCounters::inc(&inner.counters.oversize_dropped);
            tracing::debug!(%remote, n, "oversize UDP datagram dropped");
            continue;
        }
        let source = Source {
            transport: Transport::Udp,
            remote,
            local,
        };
        let ticket = match &shed {
            None => None,
            Some(shed) => match shed.screen(data, &source, |answer, to| {
                answer_now(&inner, &socket, answer, to)
            }) {
                Early::Pass => None,
                Early::Decided(ticket) => Some(ticket),
                Early::Done => continue,
            },
        };
        let data = Bytes::copy_from_slice(data);
        match &workers {
            Some(w) => w.dispatch(data, source, ticket),
            None => with_ticket(ticket, || receiver.receive(data, source)),
        }
    }
}

/// Send an early `503` from the socket the INVITE came in on, without
/// waiting: a full socket buffer drops it (the caller retransmits its
/// INVITE, which is screened again), as it would drop a datagram.
fn answer_now(inner: &Inner, socket: &UdpSocket, answer: &[u8], to: SocketAddr) {
    match socket.try_send_to(answer, to) {
        Ok(_) => inner.counters.messages.sent(answer),
        Err(e) => {
            SipCounters::inc(&inner.counters.send_errors);
            tracing::debug!(%to, error = %e, "early 503 not sent");
        }
    }
}
