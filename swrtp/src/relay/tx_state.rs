//! Header rewriting state of what a leg sends ([`TxState`]): one continuous
//! RTP stream towards the peer across playbacks and bridges.

/// Header rewriting state of what we send on a leg: our SSRC, and the
/// offsets mapping the relayed stream's sequence numbers and timestamps onto
/// ours, so the peer sees one continuous stream across playbacks and bridges.
#[derive(Debug, Clone)]
pub struct TxState {
    /// Our SSRC on this leg.
    pub ssrc: u32,
    /// Next sequence number.
    pub next_seq: u16,
    /// Timestamp of the last packet sent.
    pub last_ts: u32,
    /// Samples per packet of the last packet sent.
    pub last_step: u32,
    /// `(source SSRC, seq offset, ts offset)` of the stream relayed now.
    pub mapping: Option<(u32, u16, u32)>,
}

impl TxState {
    pub(super) fn new() -> Self {
        Self {
            ssrc: rand::random(),
            next_seq: rand::random(),
            last_ts: rand::random(),
            last_step: 0,
            mapping: None,
        }
    }

    /// Map an incoming `(ssrc, seq, ts)` onto our stream; `true` in the
    /// result means "new stream": set the marker bit.
    pub fn map(&mut self, ssrc: u32, seq: u16, ts: u32, step: u32) -> (u16, u32, bool) {
        let (seq_off, ts_off, fresh) = match self.mapping {
            Some((s, so, to)) if s == ssrc => (so, to, false),
            _ => {
                let so = self.next_seq.wrapping_sub(seq);
                let to = self
                    .last_ts
                    .wrapping_add(self.last_step.max(step))
                    .wrapping_sub(ts);
                self.mapping = Some((ssrc, so, to));
                (so, to, true)
            }
        };
        let out_seq = seq.wrapping_add(seq_off);
        let out_ts = ts.wrapping_add(ts_off);
        // Only move forward: reordered packets keep their mapped numbers.
        if out_seq.wrapping_sub(self.next_seq) < 0x8000 {
            self.next_seq = out_seq.wrapping_add(1);
            self.last_ts = out_ts;
            self.last_step = step;
        }
        (out_seq, out_ts, fresh)
    }

    /// Take the next `(seq, ts)` for a locally generated packet of `step`
    /// samples; the relayed mapping restarts afterwards.
    pub fn next_local(&mut self, step: u32) -> (u16, u32) {
        let seq = self.next_seq;
        let ts = self.last_ts.wrapping_add(self.last_step);
        self.next_seq = seq.wrapping_add(1);
        self.last_ts = ts;
        self.last_step = step;
        self.mapping = None;
        (seq, ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_mapping_is_continuous_across_streams() {
        let mut tx = TxState::new();
        let (s0, t0) = tx.next_local(160);
        let (s1, t1, fresh) = tx.map(99, 1000, 5000, 160);
        assert!(fresh);
        assert_eq!(s1, s0.wrapping_add(1));
        assert_eq!(t1, t0.wrapping_add(160));
        let (s2, t2, fresh) = tx.map(99, 1001, 5160, 160);
        assert!(!fresh);
        assert_eq!(s2, s1.wrapping_add(1));
        assert_eq!(t2, t1.wrapping_add(160));
    }
}
