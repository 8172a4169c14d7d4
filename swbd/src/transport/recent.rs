//! The INVITEs early shedding admitted lately, so their retransmissions
//! are not refused.
//!
//! A caller retransmits its INVITE over UDP until a provisional answer
//! arrives (RFC 3261 §17.1.1.2, Timer A), and under load swbd's `100
//! Trying` can take a while. The normal path sends a retransmission to its
//! transaction before any screening; early shedding runs before the
//! transaction table is looked at, so without this it would answer a
//! retransmitted INVITE of an admitted call `503` while the call goes on.
//! What [`super::shed`] admitted is remembered here by a keyed hash of its
//! Call-ID, CSeq and top Via; a later copy goes the normal way undecided.
//!
//! Two generations, swapped every [`GENERATION`] (or when the newer one
//! holds [`MAX_PER_GENERATION`]): an entry lives one to two generations,
//! at least as long as a caller retransmits (Timer B, 64·T1 = 32 s), and
//! the memory is bounded by what overload control admits, at most
//! 2 × [`MAX_PER_GENERATION`] hashes. A peer that makes its INVITE collide
//! with one of these only sends its own INVITE the normal way.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a generation lasts.
pub const GENERATION: Duration = Duration::from_secs(32);
/// A generation holding this many is swapped early (memory bound: 8 bytes
/// and the table's overhead each).
pub const MAX_PER_GENERATION: usize = 200_000;

/// See the module docs. A std Mutex: one insert or two lookups per new
/// INVITE, never held across an await.
#[derive(Debug)]
pub struct RecentInvites {
    hasher: std::collections::hash_map::RandomState,
    sets: Mutex<Generations>,
}

#[derive(Debug)]
struct Generations {
    current: HashSet<u64>,
    previous: HashSet<u64>,
    started: Instant,
}

impl Default for RecentInvites {
    fn default() -> Self {
        Self {
            hasher: Default::default(),
            sets: Mutex::new(Generations {
                current: HashSet::new(),
                previous: HashSet::new(),
                started: Instant::now(),
            }),
        }
    }
}

impl RecentInvites {
    /// The key of an INVITE: its Call-ID, CSeq number and top Via.
    pub fn key(&self, call_id: &[u8], cseq: &[u8], top_via: &[u8]) -> u64 {
        self.hasher.hash_one((call_id, cseq, top_via))
    }

    /// Remember `key` as admitted.
    pub fn insert(&self, key: u64, now: Instant) {
        let Ok(mut g) = self.sets.lock() else {
            return;
        };
        if now.saturating_duration_since(g.started) >= GENERATION
            || g.current.len() >= MAX_PER_GENERATION
        {
            g.previous = std::mem::take(&mut g.current);
            g.started = now;
        }
        g.current.insert(key);
    }

    /// Whether `key` was admitted lately.
    pub fn contains(&self, key: u64) -> bool {
        self.sets
            .lock()
            .is_ok_and(|g| g.current.contains(&key) || g.previous.contains(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lives_one_to_two_generations() {
        let r = RecentInvites::default();
        let t0 = Instant::now();
        let a = r.key(b"call-a", b"1", b"SIP/2.0/UDP x;branch=z9hG4bK1");
        assert_ne!(a, r.key(b"call-a", b"2", b"SIP/2.0/UDP x;branch=z9hG4bK1"));
        r.insert(a, t0);
        assert!(r.contains(a));
        // One generation later another insert swaps: `a` is in the older one.
        let b = r.key(b"call-b", b"1", b"v");
        r.insert(b, t0 + GENERATION);
        assert!(r.contains(a) && r.contains(b));
        // Two generations later it is gone.
        r.insert(r.key(b"call-c", b"1", b"v"), t0 + 2 * GENERATION);
        assert!(!r.contains(a));
        assert!(r.contains(b));
    }

    #[test]
    fn a_full_generation_is_swapped_early() {
        let r = RecentInvites::default();
        let t0 = Instant::now();
        for k in 0..(2 * MAX_PER_GENERATION as u64 + 1) {
            r.insert(k, t0);
        }
        let g = r.sets.lock().expect("lock");
        assert!(g.current.len() + g.previous.len() <= 2 * MAX_PER_GENERATION);
    }
}
