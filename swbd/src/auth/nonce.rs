//! Stateless nonces: `TIMESTAMP-SALT-MAC`, MAC = SHA-256 over a per-process
//! secret, the timestamp, the salt and the IP address the nonce was issued
//! to (HMAC-like: only we can mint them, their age is readable without a
//! table, and a nonce only counts from the address it was sent to).
//! Timestamps are seconds on the tokio clock since the issuer started, so
//! tests can pause time.
//!
//! Binding the nonce to the address is what makes failure counting safe
//! against spoofing: a failed digest counts toward blocking an address only
//! when its nonce was issued to that address, which an off-path attacker
//! spoofing the address never sees (issue #13, spoofed lock-out).

use std::net::IpAddr;

use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use super::digest::constant_time_eq;

/// What a nonce check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    /// Ours and fresh.
    Fresh,
    /// Ours but older than the TTL (answer `stale=true`).
    Stale,
    /// Not ours, or issued to another address.
    Invalid,
}

/// Mints and checks nonces.
#[derive(Debug)]
pub struct NonceIssuer {
    secret: [u8; 32],
    start: Instant,
    ttl_secs: u64,
}

impl NonceIssuer {
    /// A new issuer with a random secret.
    pub fn new(ttl_secs: u64) -> Self {
        Self {
            secret: rand::random(),
            start: Instant::now(),
            ttl_secs,
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    fn mac(&self, ts: u64, salt: &str, ip: IpAddr) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(ts.to_be_bytes());
        h.update(salt.as_bytes());
        match ip.to_canonical() {
            IpAddr::V4(v4) => h.update(v4.octets()),
            IpAddr::V6(v6) => h.update(v6.octets()),
        }
        h.update(self.secret);
        hex::encode(h.finalize().get(..16).unwrap_or_default())
    }

    /// A fresh nonce for a request from `ip`.
    pub fn issue(&self, ip: IpAddr) -> String {
        let ts = self.now();
        let salt = hex::encode(rand::random::<[u8; 6]>());
        format!("{ts:x}-{salt}-{}", self.mac(ts, &salt, ip))
    }

    /// Check a nonce presented by a request from `ip`.
    pub fn check(&self, nonce: &str, ip: IpAddr) -> NonceState {
        let mut it = nonce.splitn(3, '-');
        let (Some(ts), Some(salt), Some(mac)) = (it.next(), it.next(), it.next()) else {
            return NonceState::Invalid;
        };
        let Ok(ts) = u64::from_str_radix(ts, 16) else {
            return NonceState::Invalid;
        };
        if !constant_time_eq(&self.mac(ts, salt, ip), mac) {
            return NonceState::Invalid;
        }
        let now = self.now();
        if ts > now || now - ts > self.ttl_secs {
            NonceState::Stale
        } else {
            NonceState::Fresh
        }
    }

    /// The nonce's timestamp (for pruning replay state).
    pub fn age_secs(&self, nonce: &str) -> Option<u64> {
        let ts = u64::from_str_radix(nonce.split('-').next()?, 16).ok()?;
        self.now().checked_sub(ts)
    }

    /// The TTL.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn nonces_expire_and_cannot_be_forged() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        let issuer = NonceIssuer::new(30);
        let n = issuer.issue(ip);
        assert_eq!(issuer.check(&n, ip), NonceState::Fresh);
        assert_eq!(issuer.check(&n.replace('-', "-0"), ip), NonceState::Invalid);
        assert_eq!(issuer.check("0-00-00", ip), NonceState::Invalid);
        tokio::time::advance(std::time::Duration::from_secs(31)).await;
        assert_eq!(issuer.check(&n, ip), NonceState::Stale);
        let other = NonceIssuer::new(30);
        assert_eq!(other.check(&issuer.issue(ip), ip), NonceState::Invalid);
    }

    #[tokio::test(start_paused = true)]
    async fn nonces_only_count_from_the_address_they_were_issued_to() {
        let issuer = NonceIssuer::new(30);
        let a = IpAddr::from([192, 0, 2, 1]);
        let b = IpAddr::from([192, 0, 2, 2]);
        let n = issuer.issue(a);
        assert_eq!(issuer.check(&n, a), NonceState::Fresh);
        assert_eq!(issuer.check(&n, b), NonceState::Invalid);
        // The IPv4-mapped IPv6 form of the same address is the same address.
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("addr");
        assert_eq!(issuer.check(&n, mapped), NonceState::Fresh);
    }
}
