//! Stateless nonces: `TIMESTAMP-SALT-MAC`, MAC = SHA-256 over a per-process
//! secret, the timestamp and the salt (HMAC-like: only we can mint them,
//! and their age is readable without a table). Timestamps are seconds on
//! the tokio clock since the issuer started, so tests can pause time.

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
    /// Not ours.
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

    fn mac(&self, ts: u64, salt: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(ts.to_be_bytes());
        h.update(salt.as_bytes());
        h.update(self.secret);
        hex::encode(h.finalize().get(..16).unwrap_or_default())
    }

    /// A fresh nonce.
    pub fn issue(&self) -> String {
        let ts = self.now();
        let salt = hex::encode(rand::random::<[u8; 6]>());
        format!("{ts:x}-{salt}-{}", self.mac(ts, &salt))
    }

    /// Check a nonce.
    pub fn check(&self, nonce: &str) -> NonceState {
        let mut it = nonce.splitn(3, '-');
        let (Some(ts), Some(salt), Some(mac)) = (it.next(), it.next(), it.next()) else {
            return NonceState::Invalid;
        };
        let Ok(ts) = u64::from_str_radix(ts, 16) else {
            return NonceState::Invalid;
        };
        if !constant_time_eq(&self.mac(ts, salt), mac) {
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
        let issuer = NonceIssuer::new(30);
        let n = issuer.issue();
        assert_eq!(issuer.check(&n), NonceState::Fresh);
        assert_eq!(issuer.check(&n.replace('-', "-0")), NonceState::Invalid);
        assert_eq!(issuer.check("0-00-00"), NonceState::Invalid);
        tokio::time::advance(std::time::Duration::from_secs(31)).await;
        assert_eq!(issuer.check(&n), NonceState::Stale);
        let other = NonceIssuer::new(30);
        assert_eq!(other.check(&issuer.issue()), NonceState::Invalid);
    }
}
