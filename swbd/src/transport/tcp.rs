//! TCP listeners and connections. One task per connection owns the socket:
//! it reads and frames, writes what is queued for it, and closes it when
//! idle for `sip.tcp_idle_timeout_secs`, or when a message started on it is
//! not complete in time (`sip.tcp_head_timeout_secs` for the head from its
//! first byte, then `sip.tcp_body_timeout_secs` for the body).
//!
//! A connection is admitted only within the total cap and its source's cap
//! ([`super::connections`]); one accepted beyond either is closed at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use switchboard_proto::support::yaml::io_reason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::connections::Refusal;
use super::framing::{FrameError, Partial, next_message, partial};
use super::{Error, Inner, Result, SipCounters, Source, Transport};
use crate::sip::{ParseError, SipMessage};

/// Messages queued for one connection before senders wait.
const QUEUE: usize = 256;
/// How long an outgoing connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bind a listener (IPv6 sockets are IPv6-only, so `tcp:[::]:5060` and
/// `tcp:0.0.0.0:5060` can coexist).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

pub(crate) async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    let mut shutdown = inner.shutdown.clone();
    loop {
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => return,
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let admitted = match inner.connections.lock() {
            Ok(mut conns) => conns.admit(remote, tx),
            Err(_) => continue,
        };
        if let Err(refusal) = admitted {
            // Dropping the stream closes it; the peer may retry later.
            let counter = match refusal {
                Refusal::Full { .. } => &inner.counters.tcp_refused,
                Refusal::PerSource { .. } => &inner.counters.tcp_refused_per_source,
            };
            SipCounters::inc(counter);
            tracing::debug!(%remote, %refusal, "TCP connection refused");
            continue;
        }
        let _ = stream.set_nodelay(true);
        spawn_connection(&inner, stream, remote, rx);
    }
}

/// Run an admitted connection.
fn spawn_connection(
    inner: &Arc<Inner>,
    stream: TcpStream,
    remote: SocketAddr,
    rx: mpsc::Receiver<Bytes>,
) {
    SipCounters::inc(&inner.counters.tcp_connections);
    // Known before the first message goes out, for the capture tap.
    if inner.tap.get().is_some()
        && let (Ok(local), Ok(mut locals)) = (stream.local_addr(), inner.tcp_locals.lock())
    {
        locals.insert(remote, local);
    }
    tokio::spawn(connection(inner.clone(), stream, remote, rx));
}

async fn connection(
    inner: Arc<Inner>,
    mut stream: TcpStream,
    remote: SocketAddr,
    mut outgoing: mpsc::Receiver<Bytes>,
) {
    let Ok(local) = stream.local_addr() else {
        forget(&inner, remote);
        return;
    };
    let source = Source {
        transport: Transport::Tcp,
        remote,
        local,
    };
    let receiver = inner.receiver.get().cloned();
    let idle = Duration::from_secs(inner.config.tcp_idle_timeout_secs.max(1));
    let head_timeout = Duration::from_secs(inner.config.tcp_head_timeout_secs.max(1));
    let body_timeout = Duration::from_secs(inner.config.tcp_body_timeout_secs.max(1));
    let max = inner.config.max_message_size;
    let mut shutdown = inner.shutdown.clone();
    let mut buf = BytesMut::with_capacity(4096);
    let mut deadline = Instant::now() + idle;
    // The unfinished message in `buf`, if any, and when it must be done by.
    let mut unfinished: Option<(Partial, Instant)> = None;
    'conn: loop {
        let message_due = async move {
            match unfinished {
                Some((_, due)) => tokio::time::sleep_until(due).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = stream.read_buf(&mut buf) => {
                match r {
                    Ok(0) | Err(_) => break 'conn,
                    Ok(_) => {}
                }
                let now = Instant::now();
                deadline = now + idle;
                loop {
                    match next_message(&mut buf, max) {
                        Ok(Some(msg)) => {
                            // The next message's clock starts afresh.
                            unfinished = None;
                            SipCounters::inc(&inner.counters.messages_received);
                            if let Some(r) = &receiver {
                                r.receive(msg, source);
                            }
                        }
                        Ok(None) => {
                            unfinished = match (partial(&buf), unfinished) {
                                (None, _) => None,
                                (Some(part), Some((was, due))) if part == was => Some((was, due)),
                                (Some(Partial::Head), _) => Some((Partial::Head, now + head_timeout)),
                                (Some(Partial::Body), _) => Some((Partial::Body, now + body_timeout)),
                            };
                            break;
                        }
                        Err(e) => {
                            SipCounters::inc(&inner.counters.oversize_dropped);
                            tracing::debug!(%remote, error = %e, "closing TCP connection");
                            if let FrameError::TooLarge { head: Some(head), .. } = e
                                && let Some(resp) = too_large_response(&head)
                            {
                                let _ = stream.write_all(&resp).await;
                            }
                            break 'conn;
                        }
                    }
                }
            }
            out = outgoing.recv() => {
                let Some(out) = out else { break 'conn };
                // A peer that stops reading must not hold this task forever.
                match tokio::time::timeout(idle, stream.write_all(&out)).await {
                    Ok(Ok(())) => {}
                    _ => break 'conn,
                }
                deadline = Instant::now() + idle;
            }
            _ = tokio::time::sleep_until(deadline) => {
                tracing::debug!(%remote, "closing idle TCP connection");
                break 'conn;
            }
            _ = message_due => {
                SipCounters::inc(&inner.counters.tcp_message_timeouts);
                tracing::debug!(%remote, part = ?unfinished.map(|(p, _)| p), "closing TCP connection: message not complete in time");
                break 'conn;
            }
            _ = shutdown.wait() => break 'conn,
        }
    }
    forget(&inner, remote);
    let _ = stream.shutdown().await;
}

fn forget(inner: &Inner, remote: SocketAddr) {
    if let Ok(mut conns) = inner.connections.lock() {
        conns.remove(&remote);
    }
    if inner.tap.get().is_some()
        && let Ok(mut locals) = inner.tcp_locals.lock()
    {
        locals.remove(&remote);
    }
}

/// `513 Message Too Large` for a head whose body is too big.
fn too_large_response(head: &[u8]) -> Option<Bytes> {
    let mut e: ParseError = match SipMessage::parse(head, false) {
        Ok(_) => return None,
        Err(e) => e,
    };
    // The head alone parses up to the Content-Length check, which fails:
    // its headers are enough to answer.
    e.status = 513;
    e.reason = "Message Too Large".into();
    e.to_response().map(|r| r.to_bytes())
}

/// Send over the connection to `remote`, opening one when there is none.
pub(crate) async fn send(inner: &Arc<Inner>, remote: SocketAddr, data: Bytes) -> Result<()> {
    let existing = inner
        .connections
        .lock()
        .ok()
        .and_then(|c| c.get(&remote).cloned());
    let sender = match existing {
        Some(s) => s,
        None => {
            let err = |reason: String| Error::Send {
                transport: Transport::Tcp,
                remote,
                reason,
            };
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(remote))
                .await
                .map_err(|_| err("connect timed out".into()))?
                .map_err(|e| err(io_reason(&e)))?;
            let _ = stream.set_nodelay(true);
            let (tx, rx) = mpsc::channel(QUEUE);
            let admitted = match inner.connections.lock() {
                Ok(mut conns) => conns.admit_outgoing(remote, tx.clone()),
                Err(_) => Err(Refusal::Full { cap: 0 }),
            };
            if let Err(refusal) = admitted {
                SipCounters::inc(&inner.counters.tcp_refused);
                return Err(err(refusal.to_string()));
            }
            spawn_connection(inner, stream, remote, rx);
            tx
        }
    };
    sender.send(data).await.map_err(|_| Error::Send {
        transport: Transport::Tcp,
        remote,
        reason: "connection closed".into(),
    })
}
