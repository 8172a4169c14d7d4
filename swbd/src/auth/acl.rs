//! Source-address access control (issue #13, "ACLs"): which networks may
//! send swbd anything at all (`acl.allow`), and which are trusted without
//! digest authentication (`acl.trusted`: trunks and SBCs that cannot answer
//! a challenge). The default config trusts nothing and allows everyone to
//! *try*: every request from an untrusted address is challenged.
//!
//! A source address on UDP can be spoofed. A trusted network is therefore
//! only as safe as the network path to it: trust a carrier's addresses on
//! a link where nobody else can send with them (a private interconnect, or
//! a firewall that drops them from outside), as with Kamailio's
//! `permissions` module.

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::AclConfig;
use crate::dialplan::pattern::Cidr;

/// The compiled ACL.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    allow: Vec<Cidr>,
    trusted: Vec<(Arc<str>, Vec<Cidr>)>,
}

impl Acl {
    /// Compile `config`; an error names the key and the bad entry.
    pub fn from_config(config: &AclConfig) -> Result<Self, String> {
        let parse =
            |key: &str, text: &str| Cidr::parse(text).map_err(|e| format!("{key}: {text:?}: {e}"));
        let allow = config
            .allow
            .iter()
            .map(|t| parse("acl.allow", t))
            .collect::<Result<Vec<_>, _>>()?;
        let mut trusted = Vec::with_capacity(config.trusted.len());
        for t in &config.trusted {
            if t.name.trim().is_empty() {
                return Err("acl.trusted: every entry needs a name".into());
            }
            if t.networks.is_empty() {
                return Err(format!(
                    "acl.trusted.{}: at least one network is needed",
                    t.name
                ));
            }
            let nets = t
                .networks
                .iter()
                .map(|n| parse(&format!("acl.trusted.{}", t.name), n))
                .collect::<Result<Vec<_>, _>>()?;
            trusted.push((Arc::from(t.name.as_str()), nets));
        }
        Ok(Self { allow, trusted })
    }

    /// Whether `ip` may send anything (always, when `acl.allow` is empty).
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }

    /// The name of the trusted network `ip` is in, if any.
    pub fn trusted(&self, ip: IpAddr) -> Option<&Arc<str>> {
        self.trusted
            .iter()
            .find(|(_, nets)| nets.iter().any(|c| c.contains(ip)))
            .map(|(name, _)| name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrustedNetworkConfig;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn default_allows_everyone_and_trusts_nobody() {
        let acl = Acl::from_config(&AclConfig::default()).expect("valid");
        assert!(acl.allows(ip("203.0.113.9")));
        assert!(acl.trusted(ip("127.0.0.1")).is_none());
    }

    #[test]
    fn allow_and_trusted_lists_match_by_network() {
        let acl = Acl::from_config(&AclConfig {
            allow: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
            trusted: vec![TrustedNetworkConfig {
                name: "carrier".into(),
                networks: vec!["10.9.0.0/16".into()],
            }],
        })
        .expect("valid");
        assert!(acl.allows(ip("10.1.2.3")));
        assert!(acl.allows(ip("::ffff:10.1.2.3")));
        assert!(acl.allows(ip("2001:db8::1")));
        assert!(!acl.allows(ip("192.0.2.1")));
        assert_eq!(acl.trusted(ip("10.9.1.1")).map(|n| &**n), Some("carrier"));
        assert!(acl.trusted(ip("10.8.1.1")).is_none());
    }

    #[test]
    fn bad_entries_are_named() {
        let e = Acl::from_config(&AclConfig {
            allow: vec!["10.0.0.0/33".into()],
            trusted: Vec::new(),
        })
        .expect_err("refused");
        assert!(e.contains("acl.allow") && e.contains("10.0.0.0/33"), "{e}");
    }
}
