//! IPv4 and IPv6 legs on one node: which pool and which advertised address
//! a session gets.
//!
//! The rule: a session answering an offer takes the family of the offer's
//! `c=` line (an IPv6-only phone offering `c=IN IP6` is answered with
//! `c=IN IP6` and a socket on the IPv6 address); a session making an offer
//! takes the family its creator asks for (swbd: the family of the leg's
//! signalling flow), the node's primary family (`bind_address`) when it
//! asks for none. One call may bridge an IPv4 leg with an IPv6 leg: each
//! leg's sockets are its own. A re-offer that changes a session's family is
//! refused (its sockets cannot change family), unless it carries no address
//! (`c=IN IP4 0.0.0.0`, RFC 2543 hold).

use std::net::IpAddr;

use switchboard_proto::media::v1 as pb;

use super::Node;
use crate::error::{Error, Result};
use crate::ports::PortPool;
use crate::sdp::RemoteDescription;

/// An IP family of media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `c=IN IP4`.
    V4,
    /// `c=IN IP6`.
    V6,
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv6() { Family::V6 } else { Family::V4 }
    }

    /// The family a `CreateSessionRequest.address_family` asks for
    /// (`None`: unspecified, the node's primary family).
    pub fn from_proto(value: i32) -> Result<Option<Self>> {
        match pb::AddressFamily::try_from(value) {
            Ok(pb::AddressFamily::Unspecified) => Ok(None),
            Ok(pb::AddressFamily::Ipv4) => Ok(Some(Family::V4)),
            Ok(pb::AddressFamily::Ipv6) => Ok(Some(Family::V6)),
            Err(_) => Err(Error::BadFamily(value)),
        }
    }

    /// As written in SDP.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IP4",
            Family::V6 => "IP6",
        }
    }
}

/// A re-offer must keep the session's family (see the module docs).
pub fn check_same(local: IpAddr, remote: &RemoteDescription) -> Result<()> {
    let (ours, theirs) = (Family::of(local), Family::of(remote.connection));
    if ours == theirs || remote.rtp.is_none() {
        return Ok(());
    }
    Err(Error::FamilyChange {
        from: ours.name(),
        to: theirs.name(),
    })
}

impl Node {
    /// The pool and advertised address of `family`'s legs.
    pub(super) fn media_address(&self, family: Family) -> Result<(&PortPool, IpAddr)> {
        let settings = &self.inner.settings;
        if Family::of(settings.public_address) == family {
            return Ok((&self.inner.pool, settings.public_address));
        }
        match (&self.inner.pool_v6, settings.public_address_v6) {
            (Some(pool), Some(address)) if family == Family::V6 => Ok((pool, address)),
            _ => Err(Error::NoMediaAddress(family.name())),
        }
    }

    /// The IPv6 pool next to an IPv4 primary one, if the node has one.
    pub fn pool_v6(&self) -> Option<&PortPool> {
        self.inner.pool_v6.as_ref()
    }

    /// Every port of every pool is back (shutdown waits for it).
    pub fn all_ports_free(&self) -> bool {
        std::iter::once(&self.inner.pool)
            .chain(self.inner.pool_v6.as_ref())
            .all(|p| p.free() == p.total())
    }
}
