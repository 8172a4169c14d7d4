//! What counts as one source for per-source limits.

use std::net::{IpAddr, Ipv6Addr};

/// One source for per-source limits (TCP connections per source, request
/// rate): an IPv4 address, or an IPv6 /64. One host owns a whole /64 and can
/// use a new address in it for every connection or packet, so counting per
/// IPv6 address would not limit anyone; a /64 is treated like one NATed
/// IPv4 address. IPv4-mapped IPv6 (`::ffff:a.b.c.d`) counts as the IPv4
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKey {
    /// An IPv4 address.
    V4(u32),
    /// The top 64 bits of an IPv6 address.
    V6Prefix(u64),
}

impl SourceKey {
    /// The source `ip` belongs to.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => SourceKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => SourceKey::V6Prefix(prefix64(v6)),
        }
    }
}

fn prefix64(ip: Ipv6Addr) -> u64 {
    // The top 64 bits; after the shift exactly 64 remain, so the cast is lossless.
    (u128::from(ip) >> 64) as u64
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceKey::V4(v4) => write!(f, "{}", std::net::Ipv4Addr::from(*v4)),
            SourceKey::V6Prefix(p) => write!(f, "{}/64", Ipv6Addr::from(u128::from(*p) << 64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SourceKey {
        SourceKey::of(s.parse().expect("ip"))
    }

    #[test]
    fn ipv6_is_keyed_by_its_slash_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(key("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(key("192.0.2.7").to_string(), "192.0.2.7");
    }
}
