//! The RTP port pool: even RTP port, RTCP on port + 1, both bound before a
//! pair is handed out. A pair comes back to the pool when its [`PortPair`]
//! is dropped (destroy, RTP timeout, shutdown: every path drops it).
//!
//! The free list sits behind a `std::sync::Mutex`: it is touched only on
//! session create and release, never on the per-packet path, and never held
//! across an `.await`.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::{Arc, Mutex};

use crate::config::PortRange;

/// Why no port pair could be handed out. Leaves as `RESOURCE_EXHAUSTED`.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Every pair is in use (by us or by another process).
    #[error("no free RTP port pair in {range} on {address} ({total} pairs, all in use)")]
    Exhausted {
        /// The configured range.
        range: PortRange,
        /// Bind address.
        address: IpAddr,
        /// Pairs in the range.
        total: u32,
    },
    /// A bound socket could not be handed to tokio.
    #[error("cannot register RTP socket {0}: {1}")]
    Register(u16, std::io::Error),
}

#[derive(Debug)]
struct Inner {
    range: PortRange,
    address: IpAddr,
    free: Mutex<VecDeque<u16>>,
}

/// A cheap-clone handle on the pool.
#[derive(Debug, Clone)]
pub struct PortPool {
    inner: Arc<Inner>,
}

/// Returns its port to the pool on drop. Declared last in structs that own
/// sockets so the sockets close first.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    pool: Arc<Inner>,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        if let Ok(mut free) = self.pool.free.lock() {
            free.push_back(self.port);
        }
    }
}

/// A bound RTP/RTCP socket pair.
#[derive(Debug)]
pub struct PortPair {
    /// RTP socket (even port).
    pub rtp: tokio::net::UdpSocket,
    /// RTCP socket (RTP port + 1).
    pub rtcp: tokio::net::UdpSocket,
    /// Dropped after the sockets: field order matters.
    pub lease: PortLease,
}

impl PortPair {
    /// The RTP port.
    pub fn port(&self) -> u16 {
        self.lease.port
    }
}

impl PortPool {
    /// A pool over every even port of `range` on `address`.
    pub fn new(range: PortRange, address: IpAddr) -> Self {
        let mut free = VecDeque::with_capacity(range.pairs() as usize);
        let mut p = u32::from(range.min);
        while p < u32::from(range.max) {
            free.push_back(p as u16);
            p += 2;
        }
        Self {
            inner: Arc::new(Inner {
                range,
                address,
                free: Mutex::new(free),
            }),
        }
    }

    /// Pairs not handed out.
    pub fn free(&self) -> u32 {
        self.inner.free.lock().map(|f| f.len() as u32).unwrap_or(0)
    }

    /// Pairs in the range.
    pub fn total(&self) -> u32 {
        self.inner.range.pairs()
    }

    /// The configured range.
    pub fn range(&self) -> PortRange {
        self.inner.range
    }

    /// Bind the next free pair. A port another process holds is skipped (and
    /// goes to the back of the queue to be tried again later), not fatal.
    /// Must run inside a tokio runtime.
    pub fn allocate(&self) -> Result<PortPair, PortError> {
        let attempts = self.free();
        for _ in 0..attempts {
            let Some(port) = self.inner.free.lock().ok().and_then(|mut f| f.pop_front()) else {
                break;
            };
            let lease = PortLease {
                port,
                pool: self.inner.clone(),
            };
            let Some((rtp, rtcp)) = bind_pair(self.inner.address, port) else {
                continue; // the lease drop puts the port at the back
            };
            let rtp =
                tokio::net::UdpSocket::from_std(rtp).map_err(|e| PortError::Register(port, e))?;
            let rtcp =
                tokio::net::UdpSocket::from_std(rtcp).map_err(|e| PortError::Register(port, e))?;
            return Ok(PortPair { rtp, rtcp, lease });
        }
        Err(PortError::Exhausted {
            range: self.inner.range,
            address: self.inner.address,
            total: self.total(),
        })
    }
}

fn bind_pair(address: IpAddr, port: u16) -> Option<(StdUdpSocket, StdUdpSocket)> {
    let rtp = bind_udp(SocketAddr::new(address, port))?;
    let rtcp = bind_udp(SocketAddr::new(address, port.checked_add(1)?))?;
    Some((rtp, rtcp))
}

/// A non-blocking UDP socket on `addr`. IPv6 sockets are IPv6-only, so a
/// `::` pool never takes the ports of the IPv4 pool beside it.
fn bind_udp(addr: SocketAddr) -> Option<StdUdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).ok()?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).ok()?;
    }
    socket.bind(&addr.into()).ok()?;
    socket.set_nonblocking(true).ok()?;
    Some(socket.into())
}

/// Whether a UDP socket can be bound on `address` at all (is IPv6 loopback
/// there?), without taking a port of the range.
pub fn can_bind(address: IpAddr) -> bool {
    bind_udp(SocketAddr::new(address, 0)).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(min: u16, max: u16) -> PortPool {
        PortPool::new(PortRange { min, max }, IpAddr::from([127, 0, 0, 1]))
    }

    #[tokio::test]
    async fn pairs_are_even_and_bound() {
        let p = pool(6000, 6009);
        assert_eq!(p.total(), 5);
        let a = p.allocate().expect("a");
        assert_eq!(a.port() % 2, 0);
        assert_eq!(a.rtp.local_addr().map(|x| x.port()).ok(), Some(a.port()));
        assert_eq!(
            a.rtcp.local_addr().map(|x| x.port()).ok(),
            Some(a.port() + 1)
        );
        assert_eq!(p.free(), 4);
        drop(a);
        assert_eq!(p.free(), 5);
    }

    #[tokio::test]
    async fn exhaustion_names_the_range() {
        let p = pool(6010, 6013);
        let _a = p.allocate().expect("a");
        let _b = p.allocate().expect("b");
        let e = p.allocate().expect_err("exhausted");
        assert!(e.to_string().contains("6010-6013"), "{e}");
    }

    #[tokio::test]
    async fn port_held_by_someone_else_is_skipped() {
        let squatter = StdUdpSocket::bind("127.0.0.1:6021").expect("squat");
        let p = pool(6020, 6023);
        let a = p.allocate().expect("skips 6020");
        assert_eq!(a.port(), 6022);
        assert!(p.allocate().is_err());
        drop(squatter);
        assert_eq!(p.allocate().map(|x| x.port()).ok(), Some(6020));
    }

    #[tokio::test]
    async fn ipv6_pairs_are_bound_on_ipv6() {
        let p = PortPool::new(
            PortRange {
                min: 6040,
                max: 6043,
            },
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        );
        let a = p.allocate().expect("::1 pair");
        assert!(a.rtp.local_addr().expect("addr").is_ipv6());
        // The same port on IPv4 loopback is another socket, still free.
        let v4 = StdUdpSocket::bind(("127.0.0.1", a.port())).expect("v4 port free");
        drop(v4);
    }

    #[tokio::test]
    async fn ten_thousand_cycles_leave_the_pool_full() {
        let p = pool(6030, 6039);
        for _ in 0..10_000 {
            let a = p.allocate().expect("alloc");
            drop(a);
        }
        assert_eq!(p.free(), p.total());
    }
}
