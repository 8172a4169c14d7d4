//! SIP transports: UDP and TCP listeners on the configured addresses,
//! IPv4 and IPv6.
//!
//! # Layout
//! - [`Transports`]: binds every listener, sends to a [`Target`], and hands
//!   every received message to one [`Receiver`] together with its [`Source`].
//! - [`udp`]: socket2-configured sockets (large `SO_RCVBUF`), one receive
//!   loop per socket (`sip.udp_receivers`), which hands each datagram to
//!   the [`workers`] task its Call-ID ([`call_id`]) hashes to: a call's
//!   messages are handled in arrival order, different calls in parallel.
//! - [`tcp`]: listeners and connections; one task per connection reads,
//!   frames (see [`framing`]) and writes; idle connections are closed.
//!   Responses go back over the connection the request came on (looked up
//!   by the peer address).
//! - [`connections`]: the open TCP connections, counted per source, with
//!   the total and per-source caps; [`descriptors`]: the open-file limit
//!   (raised at start) and the total cap it allows; [`source_key`]: what
//!   one source is (IPv4 address, IPv6 /64).
//! - [`counters`]: drop and error counters for admin status.
//! - [`Tap`]: sees every message sent, with its addresses (SIP capture,
//!   `crate::capture`); received ones are seen by wrapping the [`Receiver`].
//! - [`backlog`]: the queueing delay of each UDP socket's receive queue,
//!   timed with marker datagrams (read by overload control).
//! - [`shed`]: early shedding: a new UDP INVITE overload control refuses
//!   is answered `503` from its raw head in the receive loop, and the ACK
//!   to that `503` dropped there, before any parse.
//!
//! TCP limits (see `docs/SECURITY.md, "Resource limits"`): a connection accepted beyond
//! the total cap or its source's cap is closed at once (`tcp_refused`,
//! `tcp_refused_per_source`); a message head must be complete within
//! `sip.tcp_head_timeout_secs` of its first byte and its body within
//! `sip.tcp_body_timeout_secs` of the head, else the connection is closed
//! (`tcp_message_timeouts`).
//!
//! Oversize messages: UDP datagrams above `sip.max_message_size` are dropped
//! and counted (`oversize_dropped`); a TCP message above it gets
//! `513 Message Too Large` when its head is readable, and the connection is
//! closed either way. Requests *we* send over UDP that exceed 1300 bytes go
//! over TCP instead (RFC 3261 §18.1.1); see the transaction layer.

pub mod backlog;
pub mod call_id;
pub mod connections;
pub mod counters;
pub mod descriptors;
pub mod framing;
pub mod recent;
pub mod shed;
pub mod source_key;
pub mod tcp;
pub mod udp;
pub mod workers;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use switchboard_proto::support::shutdown::Shutdown;
use switchboard_proto::support::yaml::io_reason;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

pub use crate::config::Transport;
use crate::config::{ListenAddr, SipConfig};
use backlog::ReceiveBacklog;
use connections::Connections;
pub use counters::SipCounters;
pub use source_key::SourceKey;

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source {
    /// Transport it arrived on.
    pub transport: Transport,
    /// The packet's real source (NAT-aware: not what the Via says).
    pub remote: SocketAddr,
    /// Our local address it arrived at.
    pub local: SocketAddr,
}

/// Where to send a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// Transport.
    pub transport: Transport,
    /// Remote address.
    pub remote: SocketAddr,
    /// Local socket to send from (UDP), when it matters (responses).
    pub local: Option<SocketAddr>,
}

impl Target {
    /// Reply path of a received message: same transport, same local socket.
    pub fn reply_to(source: &Source, remote: SocketAddr) -> Self {
        Self {
            transport: source.transport,
            remote,
            local: Some(source.local),
        }
    }
}

/// Transport errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be bound.
    #[error("cannot listen on {listen}: {reason}")]
    Bind {
        /// What we tried.
        listen: ListenAddr,
        /// Why (short, lowercase).
        reason: String,
    },
    /// No socket of the target's family/transport.
    #[error("no {transport} socket for {remote}")]
    NoSocket {
        /// Transport.
        transport: Transport,
        /// Target.
        remote: SocketAddr,
    },
    /// Sending failed.
    #[error("sending to {transport}:{remote} failed: {reason}")]
    Send {
        /// Transport.
        transport: Transport,
        /// Target.
        remote: SocketAddr,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// SIP status for a transaction that failed because of this error
    /// (RFC 3261 §8.1.3.1: 503 for transport errors).
    pub fn status_code(&self) -> u16 {
        503
    }
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Receives every message the transports read, in arrival order per call
/// (UDP: one worker per Call-ID's hash) or connection (TCP), from several
/// tasks at once. Must not block.
pub trait Receiver: Send + Sync + 'static {
    /// One datagram or one framed stream message.
    fn receive(&self, data: Bytes, source: Source);
}

/// Sees every SIP message the transports send (SIP capture: see
/// `crate::capture`). Received messages are seen by wrapping the
/// [`Receiver`] instead. Must not block.
pub trait Tap: Send + Sync + 'static {
    /// A message handed to the socket (or TCP connection) from `local` to
    /// `remote`; `at` is taken just before the send, so a reply the peer
    /// sends back can never look older than what it answers.
    fn sent(
        &self,
        at: std::time::SystemTime,
        data: &[u8],
        transport: Transport,
        local: SocketAddr,
        remote: SocketAddr,
    );
}

/// Cheap-clone handle to all transports.
#[derive(Clone)]
pub struct Transports {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Transports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transports")
            .field("local", &self.inner.local)
            .finish()
    }
}

pub(crate) struct Inner {
    pub(crate) config: SipConfig,
    pub(crate) counters: Arc<SipCounters>,
    pub(crate) shutdown: Shutdown,
    /// UDP sockets with their bound addresses (no `getsockname` per send).
    udp: Vec<(SocketAddr, Arc<UdpSocket>)>,
    /// The receive backlog of each socket of `udp`, in the same order.
    backlogs: Vec<Arc<ReceiveBacklog>>,
    tcp: Mutex<Vec<tokio::net::TcpListener>>,
    local: Vec<ListenAddr>,
    /// Open TCP connections by peer address. A std Mutex: held only to
    /// look up / admit / forget a sender, never across an await.
    pub(crate) connections: Mutex<Connections>,
    pub(crate) receiver: OnceLock<Arc<dyn Receiver>>,
    /// Sees every message sent, when capture is on.
    tap: OnceLock<Arc<dyn Tap>>,
    /// Early shedding on the UDP sockets, when set ([`shed`]).
    pub(crate) shed: OnceLock<Arc<shed::EarlyShed>>,
    /// Local address of each open TCP connection by peer, kept only while
    /// a tap is set (a connection swbd opened has an ephemeral port the tap
    /// should name). A std Mutex: one insert or remove per connection.
    tcp_locals: Mutex<std::collections::HashMap<SocketAddr, SocketAddr>>,
}

impl Transports {
    /// Bind every configured listener (errors name the listen address).
    /// Nothing is read until [`Transports::start`].
    pub async fn bind(
        config: &SipConfig,
        counters: Arc<SipCounters>,
        shutdown: Shutdown,
    ) -> Result<Self> {
        let tcp_cap = tcp_cap_for(config);
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut local = Vec::new();
        for listen in &config.listen {
            let bind_err = |e: std::io::Error| Error::Bind {
                listen: *listen,
                reason: io_reason(&e),
            };
            match listen.transport {
                Transport::Udp => {
                    let sock = udp::bind(listen.addr, config.udp_buffer_bytes).map_err(bind_err)?;
                    let addr = sock.local_addr().map_err(bind_err)?;
                    local.push(ListenAddr {
                        transport: Transport::Udp,
                        addr,
                    });
                    udp.push((addr, Arc::new(sock)));
                }
                Transport::Tcp => {
                    let l = tcp::bind(listen.addr).map_err(bind_err)?;
                    let addr = l.local_addr().map_err(bind_err)?;
                    local.push(ListenAddr {
                        transport: Transport::Tcp,
                        addr,
                    });
                    tcp.push(l);
                }
            }
        }
        let backlogs = udp
            .iter()
            .map(|(addr, _)| Arc::new(ReceiveBacklog::new(*addr)))
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                config: config.clone(),
                counters,
                shutdown,
                udp,
                backlogs,
                tcp: Mutex::new(tcp),
                local,
                connections: Mutex::new(Connections::new(
                    tcp_cap,
                    config.tcp_max_connections_per_source,
                )),
                receiver: OnceLock::new(),
                tap: OnceLock::new(),
                shed: OnceLock::new(),
                tcp_locals: Mutex::new(std::collections::HashMap::new()),
            }),
        })
    }

    /// Shed refused new INVITEs early on the UDP sockets ([`shed`]):
    /// `overload` decides, `admits` is `acl.allow`. Call before
    /// [`Self::start`], once. Not done (returns `false`) while
    /// `sip.rate_limit` is on or early refusing is off
    /// (`sip.overload.enabled`, `sip.overload.early_shed`); the caller
    /// leaves it out while `capture.hep` is set.
    pub fn shed_early(&self, overload: crate::overload::Overload, admits: shed::Admits) -> bool {
        let config = &self.inner.config;
        if config.rate_limit.requests_per_sec > 0 || !overload.sheds_early() {
            return false;
        }
        let shed = shed::EarlyShed::new(
            overload,
            admits,
            self.inner.counters.clone(),
            &config.user_agent,
        );
        self.inner.shed.set(Arc::new(shed)).is_ok()
    }

    /// Start reading; every message goes to `receiver`.
    pub fn start(&self, receiver: Arc<dyn Receiver>) {
        if self.inner.receiver.set(receiver).is_err() {
            return; // already started
        }
        let per_cpu = |n: usize| match n {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let receivers = per_cpu(self.inner.config.udp_receivers);
        let workers = match per_cpu(self.inner.config.udp_workers) {
            1 => None,
            n if self.inner.udp.is_empty() => {
                tracing::debug!(workers = n, "no UDP socket: no UDP workers");
                None
            }
            n => {
                let receiver = self.inner.receiver.get().cloned();
                receiver
                    .map(|r| Arc::new(workers::Workers::start(n, r, self.inner.counters.clone())))
            }
        };
        for ((addr, sock), backlog) in self.inner.udp.iter().zip(&self.inner.backlogs) {
            for _ in 0..receivers {
                tokio::spawn(udp::receive_loop(
                    self.inner.clone(),
                    sock.clone(),
                    *addr,
                    backlog.clone(),
                    workers.clone(),
                ));
            }
        }
        let listeners = match self.inner.tcp.lock() {
            Ok(mut l) => std::mem::take(&mut *l),
            Err(_) => Vec::new(),
        };
        for l in listeners {
            tokio::spawn(tcp::accept_loop(self.inner.clone(), l));
        }
    }

    /// Bound local addresses (real ports when 0 was configured).
    pub fn local_addrs(&self) -> &[ListenAddr] {
        &self.inner.local
    }

    /// Our local address for `transport` in the family of `remote`, for
    /// Via/Contact (the configured `public_address` wins for the IP).
    pub fn local_for(&self, transport: Transport, remote: SocketAddr) -> Option<SocketAddr> {
        let found = self
            .inner
            .local
            .iter()
            .find(|l| l.transport == transport && l.addr.is_ipv4() == remote.is_ipv4())
            .map(|l| l.addr)?;
        Some(match self.inner.config.public_address {
            Some(ip) => SocketAddr::new(ip, found.port()),
            None => found,
        })
    }

    /// Counters.
    pub fn counters(&self) -> &Arc<SipCounters> {
        &self.inner.counters
    }

    /// Show every message sent from now on to `tap` (once; later calls are ignored).
    pub fn set_tap(&self, tap: Arc<dyn Tap>) {
        let _ = self.inner.tap.set(tap);
    }

    /// When a send starts, if a tap will want to know.
    fn tap_clock(&self) -> Option<std::time::SystemTime> {
        self.inner.tap.get().map(|_| std::time::SystemTime::now())
    }

    /// Tell the tap, if any, that `data` left for `target` (at `at`).
    fn tapped(&self, at: Option<std::time::SystemTime>, target: &Target, data: &[u8]) {
        let Some(at) = at else {
            return;
        };
        let Some(tap) = self.inner.tap.get() else {
            return;
        };
        let local = match target.transport {
            Transport::Udp => self.udp_local(target),
            // The connection's own address; for one already gone, the
            // listener's is the closest thing known.
            Transport::Tcp => self
                .inner
                .tcp_locals
                .lock()
                .ok()
                .and_then(|l| l.get(&target.remote).copied())
                .or_else(|| {
                    self.inner
                        .local
                        .iter()
                        .find(|l| {
                            l.transport == Transport::Tcp
                                && l.addr.is_ipv4() == target.remote.is_ipv4()
                        })
                        .map(|l| l.addr)
                }),
        };
        let local = local.unwrap_or_else(|| match target.remote {
            SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
            SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
        });
        tap.sent(at, data, target.transport, local, target.remote);
    }

    /// The receive backlog of every UDP socket.
    pub fn receive_backlogs(&self) -> Vec<Arc<ReceiveBacklog>> {
        self.inner.backlogs.clone()
    }

    /// Send one message.
    pub async fn send(&self, target: &Target, data: Bytes) -> Result<()> {
        self.inner.counters.messages.sent(&data);
        let at = self.tap_clock();
        let result = self.send_untapped(target, &data).await;
        if result.is_ok() {
            self.tapped(at, target, &data);
        }
        result
    }

    async fn send_untapped(&self, target: &Target, data: &Bytes) -> Result<()> {
        match target.transport {
            Transport::Udp => {
                let sock = self.udp_socket(target)?;
                sock.send_to(data, target.remote)
                    .await
                    .map(|_| ())
                    .map_err(|e| Error::Send {
                        transport: Transport::Udp,
                        remote: target.remote,
                        reason: io_reason(&e),
                    })
            }
            Transport::Tcp => tcp::send(&self.inner, target.remote, data.clone()).await,
        }
    }

    /// Send without waiting when that is possible right now: a UDP datagram
    /// the socket takes at once, or a message queued on an open TCP
    /// connection. Gives the data back when it would have to wait (socket
    /// buffer full, connection to open), for the caller to [`Transports::send`].
    pub fn send_now(&self, target: &Target, data: Bytes) -> Result<Option<Bytes>> {
        let Some(at) = self.tap_clock() else {
            return self.send_now_untapped(target, data);
        };
        let copy = data.clone();
        let result = self.send_now_untapped(target, data);
        if matches!(result, Ok(None)) {
            self.tapped(Some(at), target, &copy);
        }
        result
    }

    fn send_now_untapped(&self, target: &Target, data: Bytes) -> Result<Option<Bytes>> {
        match target.transport {
            Transport::Udp => {
                let sock = self.udp_socket(target)?;
                match sock.try_send_to(&data, target.remote) {
                    Ok(_) => {
                        self.inner.counters.messages.sent(&data);
                        Ok(None)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(Some(data)),
                    Err(e) => Err(Error::Send {
                        transport: Transport::Udp,
                        remote: target.remote,
                        reason: io_reason(&e),
                    }),
                }
            }
            Transport::Tcp => {
                let sender = self
                    .inner
                    .connections
                    .lock()
                    .ok()
                    .and_then(|c| c.get(&target.remote).cloned());
                let Some(sender) = sender else {
                    return Ok(Some(data));
                };
                let counted = data.clone();
                match sender.try_send(data) {
                    Ok(()) => {
                        self.inner.counters.messages.sent(&counted);
                        Ok(None)
                    }
                    Err(mpsc::error::TrySendError::Full(data)) => Ok(Some(data)),
                    Err(mpsc::error::TrySendError::Closed(data)) => Ok(Some(data)),
                }
            }
        }
    }

    /// The UDP socket to send `target` from: the one bound to
    /// `target.local`, else the first of the remote's address family.
    fn udp_socket(&self, target: &Target) -> Result<&UdpSocket> {
        self.udp_entry(target)
            .map(|(_, s)| s.as_ref())
            .ok_or(Error::NoSocket {
                transport: Transport::Udp,
                remote: target.remote,
            })
    }

    /// The bound address of the socket [`Self::udp_socket`] picks.
    fn udp_local(&self, target: &Target) -> Option<SocketAddr> {
        self.udp_entry(target).map(|(addr, _)| *addr)
    }

    fn udp_entry(&self, target: &Target) -> Option<&(SocketAddr, Arc<UdpSocket>)> {
        let udp = &self.inner.udp;
        udp.iter()
            .find(|(addr, _)| Some(*addr) == target.local)
            .or_else(|| {
                udp.iter()
                    .find(|(addr, _)| addr.is_ipv4() == target.remote.is_ipv4())
            })
    }
}

/// Raise the open-file limit and size the TCP connection cap to it (see
/// [`descriptors`]), logging what was done and any lowering of
/// `sip.tcp_max_connections`.
fn tcp_cap_for(config: &SipConfig) -> usize {
    let configured = config.tcp_max_connections;
    let want = u64::try_from(configured)
        .unwrap_or(u64::MAX)
        .saturating_add(4 * descriptors::MIN_RESERVE);
    let limit = descriptors::raise_nofile(want);
    let cap = descriptors::tcp_cap(configured, limit.soft);
    let fmt = |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |v| v.to_string());
    tracing::info!(
        before = %fmt(limit.before),
        soft = %fmt(limit.soft),
        hard = %fmt(limit.hard),
        "open-file limit (RLIMIT_NOFILE)"
    );
    let lowered = match configured {
        0 => cap != usize::MAX,
        n => cap < n,
    };
    if lowered {
        tracing::warn!(
            configured,
            cap,
            open_files = %fmt(limit.soft),
            reserve = limit.soft.map_or(0, descriptors::reserve),
            "sip.tcp_max_connections lowered to fit the open-file limit, keeping a reserve for admin, media nodes and UDP"
        );
    }
    cap
}
