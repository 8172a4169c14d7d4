//! The table of open TCP connections: a sender per peer address, the
//! number open per source ([`SourceKey`]), and the two caps an accepted
//! connection must pass.

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::SourceKey;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `cap` connections are open.
    #[error("{cap} TCP connections open")]
    Full {
        /// The cap in force (see `descriptors::tcp_cap`).
        cap: usize,
    },
    /// The source already has `max` open.
    #[error("{max} TCP connections open from this source")]
    PerSource {
        /// `sip.tcp_max_connections_per_source`.
        max: usize,
    },
}

/// Open connections. Not synchronised: the transport keeps it in a std
/// Mutex, held only to look up, admit or forget, never across an await.
#[derive(Debug)]
pub struct Connections {
    by_peer: HashMap<SocketAddr, mpsc::Sender<Bytes>>,
    per_source: HashMap<SourceKey, usize>,
    /// Total cap in force (configured cap lowered to fit the descriptors).
    cap: usize,
    /// Per-source cap; 0 = none.
    per_source_cap: usize,
}

impl Connections {
    /// An empty table with caps `cap` (total) and `per_source_cap` (0 = no
    /// per-source cap).
    pub fn new(cap: usize, per_source_cap: usize) -> Self {
        Self {
            by_peer: HashMap::new(),
            per_source: HashMap::new(),
            cap,
            per_source_cap,
        }
    }

    /// The sender of the connection to `remote`.
    pub fn get(&self, remote: &SocketAddr) -> Option<&mpsc::Sender<Bytes>> {
        self.by_peer.get(remote)
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.by_peer.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.by_peer.is_empty()
    }

    /// Connections open from `remote`'s source.
    pub fn from_source(&self, remote: &SocketAddr) -> usize {
        self.per_source
            .get(&SourceKey::of(remote.ip()))
            .copied()
            .unwrap_or(0)
    }

    /// Admit an accepted connection from `remote` if both caps allow it.
    pub fn admit(
        &mut self,
        remote: SocketAddr,
        sender: mpsc::Sender<Bytes>,
    ) -> Result<(), Refusal> {
        if self.per_source_cap > 0 && self.from_source(&remote) >= self.per_source_cap {
            return Err(Refusal::PerSource {
                max: self.per_source_cap,
            });
        }
        self.admit_outgoing(remote, sender)
    }

    /// Admit a connection we opened to `remote` if the total cap allows it
    /// (a peer we call is not held to the per-source cap: we chose it).
    pub fn admit_outgoing(
        &mut self,
        remote: SocketAddr,
        sender: mpsc::Sender<Bytes>,
    ) -> Result<(), Refusal> {
        if self.by_peer.len() >= self.cap {
            return Err(Refusal::Full { cap: self.cap });
        }
        if self.by_peer.insert(remote, sender).is_none() {
            *self
                .per_source
                .entry(SourceKey::of(remote.ip()))
                .or_insert(0) += 1;
        }
        Ok(())
    }

    /// Forget the connection to `remote`.
    pub fn remove(&mut self, remote: &SocketAddr) {
        if self.by_peer.remove(remote).is_none() {
            return;
        }
        let key = SourceKey::of(remote.ip());
        if let Some(n) = self.per_source.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender() -> mpsc::Sender<Bytes> {
        mpsc::channel(1).0
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn caps_per_source_and_in_total() {
        let mut c = Connections::new(4, 2);
        assert_eq!(c.admit(addr("192.0.2.1:1000"), sender()), Ok(()));
        assert_eq!(c.admit(addr("192.0.2.1:1001"), sender()), Ok(()));
        assert_eq!(
            c.admit(addr("192.0.2.1:1002"), sender()),
            Err(Refusal::PerSource { max: 2 })
        );
        assert_eq!(c.admit(addr("192.0.2.2:1000"), sender()), Ok(()));
        assert_eq!(c.admit_outgoing(addr("192.0.2.1:5060"), sender()), Ok(()));
        assert_eq!(
            c.admit(addr("192.0.2.3:1000"), sender()),
            Err(Refusal::Full { cap: 4 })
        );
        c.remove(&addr("192.0.2.1:1000"));
        c.remove(&addr("192.0.2.1:1000"));
        assert_eq!(c.from_source(&addr("192.0.2.1:9")), 2);
        assert_eq!(c.len(), 3);
        assert_eq!(c.admit(addr("192.0.2.3:1000"), sender()), Ok(()));
    }

    #[test]
    fn an_ipv6_slash_64_is_one_source_and_counts_drop_to_nothing() {
        let mut c = Connections::new(100, 1);
        assert_eq!(c.admit(addr("[2001:db8::1]:1"), sender()), Ok(()));
        assert_eq!(
            c.admit(addr("[2001:db8::2]:1"), sender()),
            Err(Refusal::PerSource { max: 1 })
        );
        c.remove(&addr("[2001:db8::1]:1"));
        assert!(c.per_source.is_empty());
        assert!(c.is_empty());
    }

    #[test]
    fn zero_per_source_cap_means_none() {
        let mut c = Connections::new(10, 0);
        for port in 0..10 {
            assert_eq!(
                c.admit(SocketAddr::from(([192, 0, 2, 1], port)), sender()),
                Ok(())
            );
        }
    }
}
