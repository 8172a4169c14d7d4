//! Symmetric-RTP latching: which source a leg accepts media from ([`Latch`];
//! the rule is in the [`crate::relay`] module docs, "Latching").

use std::net::SocketAddr;

/// Symmetric-RTP latching state (see the module docs for the rule).
#[derive(Debug, Clone, Default)]
pub struct Latch {
    current: Option<(SocketAddr, u32)>,
    candidate: Option<(SocketAddr, u32, u32)>,
}

impl Latch {
    /// Whether a packet from `src` with `ssrc` is accepted; latches or moves
    /// the latch as the rule says. `sdp` is the address from the SDP.
    pub fn accept(
        &mut self,
        src: SocketAddr,
        ssrc: u32,
        sdp: Option<SocketAddr>,
        need: u32,
    ) -> bool {
        match self.current {
            Some((addr, _)) if addr == src => {
                self.candidate = None;
                self.current = Some((addr, ssrc));
                true
            }
            None if sdp == Some(src) => {
                self.current = Some((src, ssrc));
                self.candidate = None;
                true
            }
            Some((_, latched_ssrc)) if ssrc != latched_ssrc => false,
            _ => {
                let count = match self.candidate {
                    Some((a, s, n)) if a == src && s == ssrc => n + 1,
                    _ => 1,
                };
                if count >= need {
                    self.current = Some((src, ssrc));
                    self.candidate = None;
                    true
                } else {
                    self.candidate = Some((src, ssrc, count));
                    false
                }
            }
        }
    }

    /// Forget the latch (re-offer with a new address).
    pub fn reset(&mut self) {
        *self = Latch::default();
    }

    /// The latched address.
    pub fn address(&self) -> Option<SocketAddr> {
        self.current.map(|(a, _)| a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([198, 51, 100, 1], p))
    }

    #[test]
    fn sdp_address_latches_at_once() {
        let mut l = Latch::default();
        assert!(l.accept(addr(4000), 1, Some(addr(4000)), 3));
        assert_eq!(l.address(), Some(addr(4000)));
    }

    #[test]
    fn other_source_needs_consecutive_packets() {
        let mut l = Latch::default();
        assert!(!l.accept(addr(5000), 1, Some(addr(4000)), 3));
        assert!(!l.accept(addr(5000), 1, Some(addr(4000)), 3));
        assert!(l.accept(addr(5000), 1, Some(addr(4000)), 3));
        assert_eq!(l.address(), Some(addr(5000)));
    }

    #[test]
    fn interleaved_sources_never_latch() {
        let mut l = Latch::default();
        for _ in 0..10 {
            assert!(!l.accept(addr(5000), 1, None, 3));
            assert!(!l.accept(addr(6000), 2, None, 3));
        }
        assert_eq!(l.address(), None);
    }

    #[test]
    fn stranger_with_other_ssrc_cannot_hijack() {
        let mut l = Latch::default();
        assert!(l.accept(addr(4000), 7, Some(addr(4000)), 3));
        for _ in 0..100 {
            assert!(!l.accept(addr(6666), 8, Some(addr(4000)), 3));
        }
        assert_eq!(l.address(), Some(addr(4000)));
    }

    #[test]
    fn nat_rebinding_with_same_ssrc_moves_the_latch() {
        let mut l = Latch::default();
        assert!(l.accept(addr(4000), 7, Some(addr(4000)), 3));
        assert!(!l.accept(addr(4001), 7, Some(addr(4000)), 3));
        // The old address speaking again resets the candidate.
        assert!(l.accept(addr(4000), 7, Some(addr(4000)), 3));
        assert!(!l.accept(addr(4001), 7, Some(addr(4000)), 3));
        assert!(!l.accept(addr(4001), 7, Some(addr(4000)), 3));
        assert!(l.accept(addr(4001), 7, Some(addr(4000)), 3));
        assert_eq!(l.address(), Some(addr(4001)));
    }
}
