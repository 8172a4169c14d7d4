//! DTMF on a leg as RFC 4733 telephone-events: sending the digits the
//! control plane queues (`SendDtmf`), and reporting the digits a leg
//! receives ([`NodeEvent::Dtmf`]). A child of [`crate::relay`]: it works on
//! the media task's own [`Leg`] state, on the task, like playback does.
//!
//! # Sending
//!
//! `SendDtmf` queues up to [`MAX_QUEUED`] digits on a session whose leg
//! negotiated telephone-event and sends media. Each digit is one event
//! (RFC 4733 §2.5.1): a first packet with the marker bit, one update per
//! ptime with the duration so far, then the final duration with the end
//! bit, sent [`END_PACKETS`] times (§2.5.1.4). Every packet of an event
//! carries the event's start timestamp and the next sequence number of the
//! stream the leg receives from us. While an event is sent, media relayed
//! to that leg is dropped: both would take the same sequence numbers, and
//! the tone itself must not also reach the far end as audio (§2.6). After
//! the event the relayed stream goes on with the marker bit, its
//! timestamps continuing after the event. Digits sent in a row are [`GAP`]
//! apart, each with its own timestamp, so a receiver sees separate events.
//!
//! # Receiving
//!
//! A telephone-event packet is relayed as before (to a bridge peer that
//! negotiated telephone-event, payload type mapped) and, once per event,
//! reported: when its end bit arrives, or when a later event starts without
//! the end seen (all three end packets lost). An event is identified by its
//! timestamp (§2.5.2.1); packets of an older event are ignored, so
//! retransmitted end packets are reported once. Reports are rate limited
//! per leg ([`REPORT_BURST`], then one per [`REPORT_EVERY`]): a peer
//! spraying events with fresh timestamps cannot flood the control plane.
//! Event codes above 15 (flash, tones) are relayed but not reported.

use std::collections::VecDeque;
use std::time::Duration;

use rtp_types::{RtpPacket, RtpPacketBuilder};
use tokio::time::Instant;

use super::{Leg, Relay, TxState};
use crate::session::{MediaContext, NodeEvent};
use crate::stats::now_ms;

/// Digits a session may have waiting (the one being sent included).
pub const MAX_QUEUED: usize = 32;
/// Digit duration when the request gives none.
pub const DEFAULT_DURATION_MS: u32 = 100;
/// Shortest digit accepted (RFC 4733 §2.5.1.2 suggests at least 40 ms).
pub const MIN_DURATION_MS: u32 = 40;
/// Longest digit accepted (the 16-bit duration field holds 8.19 s at 8 kHz).
pub const MAX_DURATION_MS: u32 = 5000;
/// Times the end packet of an event is sent (RFC 4733 §2.5.1.4).
pub const END_PACKETS: u8 = 3;
/// Pause between two digits sent in a row.
pub const GAP: Duration = Duration::from_millis(50);
/// Digit reports a leg may make at once...
pub const REPORT_BURST: u32 = 20;
/// ...and then one more per this long.
pub const REPORT_EVERY: Duration = Duration::from_millis(100);
/// Volume of the events we send (RFC 4733 §2.3.4: -10 dBm0).
const VOLUME: u8 = 10;
/// telephone-event/8000: clock ticks per millisecond.
const TICKS_PER_MS: u32 = 8;
/// The digits, at their event codes (RFC 4733 §3.2: 0-9, *, #, A-D).
pub const DIGITS: &str = "0123456789*#ABCD";

/// Why digits could not be queued. Leaves as gRPC status through
/// [`crate::error::Error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    /// Not 1 to 32 digits of the alphabet.
    #[error("digits {0:?}: expected 1 to 32 of 0-9 * # A-D")]
    BadDigits(String),
    /// Duration out of range.
    #[error("duration_ms {0}: expected 40 to 5000 (0 for 100)")]
    BadDuration(u32),
    /// The leg has no telephone-event payload type.
    #[error(
        "session {0:?} did not negotiate telephone-event (RFC 4733); send the digits another way (SIP INFO)"
    )]
    NoTelephoneEvent(String),
    /// The leg is held (its direction does not send).
    #[error("session {0:?} does not send media now (held): digits not sent")]
    NotSending(String),
    /// Too many digits waiting.
    #[error("session {0:?} has {1} DTMF digits waiting already (at most 32)")]
    QueueFull(String, usize),
}

/// The event code of a digit (`a`-`d` accepted).
pub fn event_of(digit: char) -> Option<u8> {
    let d = digit.to_ascii_uppercase();
    DIGITS
        .bytes()
        .position(|b| char::from(b) == d)
        .and_then(|i| u8::try_from(i).ok())
}

/// The digit of an event code (0-15).
pub fn digit_of(event: u8) -> Option<char> {
    DIGITS
        .as_bytes()
        .get(usize::from(event))
        .map(|b| char::from(*b))
}

/// Parse the digits of a request into event codes.
pub fn parse_digits(text: &str) -> Result<Vec<u8>, DtmfError> {
    let bad = || DtmfError::BadDigits(text.chars().take(40).collect());
    if text.is_empty() || text.chars().count() > MAX_QUEUED {
        return Err(bad());
    }
    text.chars().map(|c| event_of(c).ok_or_else(bad)).collect()
}

/// A requested duration in clock ticks (0: the default).
pub fn duration_ticks(ms: u32) -> Result<u16, DtmfError> {
    let ms = if ms == 0 { DEFAULT_DURATION_MS } else { ms };
    if !(MIN_DURATION_MS..=MAX_DURATION_MS).contains(&ms) {
        return Err(DtmfError::BadDuration(ms));
    }
    u16::try_from(ms * TICKS_PER_MS).map_err(|_| DtmfError::BadDuration(ms))
}

/// The payload of a telephone-event packet (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    /// Event code (0-15 are the DTMF digits).
    pub event: u8,
    /// The E bit: the event ended.
    pub end: bool,
    /// Volume, 0-63 (-dBm0).
    pub volume: u8,
    /// Duration so far, in clock ticks.
    pub duration: u16,
}

impl EventPayload {
    /// The four payload bytes.
    pub fn encode(self) -> [u8; 4] {
        let [d0, d1] = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3f),
            d0,
            d1,
        ]
    }

    /// The first event of a payload (RFC 4733 allows no other layout for
    /// one event; trailing bytes are ignored).
    pub fn decode(payload: &[u8]) -> Option<Self> {
        let [event, flags, d0, d1] = *payload.get(..4)? else {
            return None;
        };
        Some(Self {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }
}

/// The event being sent.
#[derive(Debug, Clone, Copy)]
struct Sending {
    event: u8,
    /// Full duration, ticks.
    total: u16,
    /// The event's timestamp (its start).
    ts: u32,
    /// Duration sent so far, ticks.
    sent: u16,
    /// End packets sent.
    ends: u8,
    /// When the next packet is due.
    next_at: Instant,
}

/// The event last seen from the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Received {
    ts: u32,
    event: u8,
    duration: u16,
    reported: bool,
}

/// A digit the peer sent: event code and duration in ticks.
pub type Digit = (u8, u16);

/// DTMF state of one leg, allocated by its first DTMF (sent or received).
#[derive(Debug)]
pub struct LegDtmf {
    queue: VecDeque<Digit>,
    sending: Option<Sending>,
    /// No new event before this (the gap after the previous one).
    idle_until: Instant,
    received: Option<Received>,
    tokens: u32,
    refilled_at: Instant,
    /// Reports dropped by the rate limit.
    pub suppressed: u64,
}

impl LegDtmf {
    /// Nothing queued, nothing seen, a full report budget.
    pub fn new(now: Instant) -> Self {
        Self {
            queue: VecDeque::new(),
            sending: None,
            idle_until: now,
            received: None,
            tokens: REPORT_BURST,
            refilled_at: now,
            suppressed: 0,
        }
    }

    /// An event is on the wire: relayed media to this leg waits.
    pub fn busy(&self) -> bool {
        self.sending.is_some()
    }

    /// Digits waiting, the one being sent included.
    pub fn queued(&self) -> usize {
        self.queue.len() + usize::from(self.sending.is_some())
    }

    /// Queue digits of `ticks` each; how many wait now.
    fn push(&mut self, events: &[u8], ticks: u16) -> Option<usize> {
        if self.queued() + events.len() > MAX_QUEUED {
            return None;
        }
        self.queue.extend(events.iter().map(|e| (*e, ticks)));
        Some(self.queued())
    }

    /// When the next packet is due.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.sending {
            Some(s) => Some(s.next_at),
            None if !self.queue.is_empty() => Some(self.idle_until),
            None => None,
        }
    }

    /// The packet due at `now` (payload, marker bit, timestamp), taking the
    /// event's timestamp from `tx` when it starts and handing the stream
    /// back to `tx` when it ends. `step` is the ticks per packet (ptime).
    pub fn next_due(
        &mut self,
        now: Instant,
        step: u16,
        ptime: Duration,
        tx: &mut TxState,
    ) -> Option<(EventPayload, bool, u32)> {
        if self.sending.is_none() {
            if self.idle_until > now {
                return None;
            }
            let (event, total) = self.queue.pop_front()?;
            let ts = tx.last_ts.wrapping_add(tx.last_step);
            tx.mapping = None;
            self.sending = Some(Sending {
                event,
                total,
                ts,
                sent: 0,
                ends: 0,
                next_at: now,
            });
        }
        let s = self.sending.as_mut()?;
        if s.next_at > now {
            return None;
        }
        let first = s.sent == 0;
        let end = s.ends > 0 || s.sent.saturating_add(step) >= s.total;
        if end {
            s.sent = s.total;
            s.ends = s.ends.saturating_add(1);
        } else {
            s.sent = s.sent.saturating_add(step);
        }
        let packet = EventPayload {
            event: s.event,
            end,
            volume: VOLUME,
            duration: s.sent,
        };
        let ts = s.ts;
        s.next_at += ptime;
        if s.ends >= END_PACKETS {
            // The relayed stream resumes after the event (fresh mapping,
            // marker bit, timestamps from the event's end).
            tx.last_ts = s.ts;
            tx.last_step = u32::from(s.total);
            tx.mapping = None;
            self.sending = None;
            self.idle_until = now + GAP;
        }
        Some((packet, first, ts))
    }

    /// A telephone-event packet with timestamp `ts` arrived: the digits it
    /// completes, at most two (a previous event whose end was lost, and
    /// this one), not yet rate limited.
    pub fn on_received(&mut self, ts: u32, p: EventPayload) -> [Option<Digit>; 2] {
        if p.event > 15 {
            return [None, None];
        }
        match self.received.as_mut() {
            Some(cur) if cur.ts == ts => {
                cur.duration = cur.duration.max(p.duration);
                if p.end && !cur.reported {
                    cur.reported = true;
                    return [Some((cur.event, cur.duration)), None];
                }
                [None, None]
            }
            // A late packet of an older event (RFC 3550 wrapping order).
            Some(cur) if (ts.wrapping_sub(cur.ts) as i32) < 0 => [None, None],
            prev => {
                let unreported = prev.filter(|c| !c.reported).map(|c| (c.event, c.duration));
                self.received = Some(Received {
                    ts,
                    event: p.event,
                    duration: p.duration,
                    reported: p.end,
                });
                [unreported, p.end.then_some((p.event, p.duration))]
            }
        }
    }

    /// Take one report from the budget (see the module docs).
    pub fn may_report(&mut self, now: Instant) -> bool {
        let earned = now.saturating_duration_since(self.refilled_at).as_millis()
            / REPORT_EVERY.as_millis().max(1);
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(REPORT_BURST);
            self.refilled_at = now;
        }
        if self.tokens == 0 {
            self.suppressed = self.suppressed.saturating_add(1);
            return false;
        }
        self.tokens -= 1;
        true
    }
}

impl Leg {
    /// Relayed media must not reach this leg now (an event is on the wire).
    pub(super) fn dtmf_busy(&self) -> bool {
        self.dtmf.as_ref().is_some_and(|d| d.busy())
    }

    fn dtmf_state(&mut self) -> &mut LegDtmf {
        self.dtmf
            .get_or_insert_with(|| Box::new(LegDtmf::new(Instant::now())))
    }

    /// Queue `events` of `ticks` each on this leg.
    fn queue_dtmf(&mut self, events: &[u8], ticks: u16) -> Result<usize, DtmfError> {
        let id = self.shared.id.clone();
        if self.media.te_pt.is_none() {
            return Err(DtmfError::NoTelephoneEvent(id));
        }
        if !self.media.direction.has_send() {
            return Err(DtmfError::NotSending(id));
        }
        let state = self.dtmf_state();
        let waiting = state.queued();
        state
            .push(events, ticks)
            .ok_or(DtmfError::QueueFull(id, waiting))
    }

    /// Send the packet due at `now`, if any; `false` when none was.
    fn send_dtmf_due(&mut self, now: Instant, buf: &mut [u8]) -> bool {
        let ptime = self.media.ptime.clamp(10, 120);
        let step = u16::try_from(ptime * TICKS_PER_MS).unwrap_or(160);
        let Some(te_pt) = self.media.te_pt else {
            // Renegotiated without telephone-event: drop what waits.
            self.dtmf = None;
            return false;
        };
        let Some(dtmf) = self.dtmf.as_mut() else {
            return false;
        };
        let Some((payload, marker, ts)) = dtmf.next_due(
            now,
            step,
            Duration::from_millis(u64::from(ptime)),
            &mut self.tx,
        ) else {
            return false;
        };
        let seq = self.tx.next_seq;
        self.tx.next_seq = seq.wrapping_add(1);
        let header = RtpPacketBuilder::<&[u8], &[u8]>::new()
            .payload_type(te_pt)
            .sequence_number(seq)
            .timestamp(ts)
            .ssrc(self.tx.ssrc)
            .marker_bit(marker);
        let bytes = payload.encode();
        let (head, rest) = buf.split_at_mut(12.min(buf.len()));
        if let Some(body) = rest.get_mut(..bytes.len()) {
            body.copy_from_slice(&bytes);
        }
        if self.media.direction.has_send()
            && header.write_into(head).is_ok()
            && let Some(dest) = self.rtp_dest()
            && let Some(data) = buf.get(..12 + bytes.len())
            && self.ports.rtp.try_send_to(data, dest).is_ok()
        {
            self.shared.tx.count(bytes.len(), now_ms());
        }
        true
    }
}

impl Relay {
    /// `SendDtmf` on leg `id` of this task.
    pub(super) fn queue_dtmf(
        &mut self,
        id: &str,
        events: &[u8],
        ticks: u16,
    ) -> Option<Result<usize, DtmfError>> {
        let i = self.position(id)?;
        Some(self.legs.get_mut(i)?.queue_dtmf(events, ticks))
    }

    /// When the next DTMF packet of any leg is due.
    pub(super) fn dtmf_deadline(&self) -> Option<Instant> {
        self.legs
            .iter()
            .filter_map(|l| l.dtmf.as_ref().and_then(|d| d.deadline()))
            .min()
    }

    /// Send every DTMF packet that is due.
    pub(super) fn dtmf_due(&mut self) {
        let now = Instant::now();
        for leg in &mut self.legs {
            // Bounded: each round advances the leg's schedule by one ptime.
            for _ in 0..64 {
                if !leg.send_dtmf_due(now, &mut self.buf) {
                    break;
                }
            }
        }
    }
}

/// A telephone-event packet (`data`, timestamp `ts`) was accepted on
/// `from`, whose bridge peer (if any) is `to`: report what it completes.
pub(super) fn on_event_packet(
    from: &mut Leg,
    to: Option<&Leg>,
    ts: u32,
    data: &[u8],
    ctx: &MediaContext,
) {
    let Some(payload) = RtpPacket::parse(data)
        .ok()
        .and_then(|p| EventPayload::decode(p.payload()))
    else {
        return;
    };
    let relayed = from.media.direction.has_recv()
        && to.is_some_and(|t| t.media.te_pt.is_some() && t.media.direction.has_send());
    let now = Instant::now();
    let digits = from.dtmf_state().on_received(ts, payload);
    for (event, ticks) in digits.into_iter().flatten() {
        let Some(digit) = digit_of(event) else {
            continue;
        };
        if !from.dtmf_state().may_report(now) {
            continue;
        }
        tracing::debug!(session = %from.shared.id, %digit, relayed, "DTMF received");
        let _ = ctx.events.send(NodeEvent::Dtmf {
            session: from.shared.clone(),
            digit,
            duration_ms: u32::from(ticks) / TICKS_PER_MS,
            relayed,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: u8, end: bool, duration: u16) -> EventPayload {
        EventPayload {
            event,
            end,
            volume: 10,
            duration,
        }
    }

    #[test]
    fn digits_and_codes_round_trip() {
        for (i, c) in DIGITS.chars().enumerate() {
            assert_eq!(event_of(c), Some(i as u8));
            assert_eq!(digit_of(i as u8), Some(c));
        }
        assert_eq!(event_of('a'), Some(12));
        assert_eq!(event_of('x'), None);
        assert_eq!(digit_of(16), None);
        assert_eq!(parse_digits("12#*d").ok(), Some(vec![1, 2, 11, 10, 15]));
        for bad in ["", "1x", "١", &"1".repeat(33)] {
            assert!(parse_digits(bad).is_err(), "{bad:?}");
        }
        assert_eq!(duration_ticks(0), Ok(800));
        assert_eq!(duration_ticks(5000), Ok(40000));
        assert!(duration_ticks(39).is_err() && duration_ticks(5001).is_err());
    }

    #[test]
    fn payload_round_trips_and_short_ones_are_refused() {
        let p = ev(11, true, 1280);
        assert_eq!(p.encode(), [11, 0x8a, 0x05, 0x00]);
        assert_eq!(EventPayload::decode(&p.encode()), Some(p));
        assert_eq!(EventPayload::decode(&[1, 2, 3]), None);
    }

    #[test]
    fn one_event_is_reported_once_at_its_end() {
        let mut d = LegDtmf::new(Instant::now());
        assert_eq!(d.on_received(1000, ev(5, false, 160)), [None, None]);
        assert_eq!(d.on_received(1000, ev(5, false, 320)), [None, None]);
        assert_eq!(
            d.on_received(1000, ev(5, true, 800)),
            [Some((5, 800)), None]
        );
        // The retransmitted end packets.
        assert_eq!(d.on_received(1000, ev(5, true, 800)), [None, None]);
        assert_eq!(d.on_received(1000, ev(5, true, 800)), [None, None]);
        // A late update of the old event after the next one started.
        assert_eq!(d.on_received(3000, ev(6, false, 160)), [None, None]);
        assert_eq!(d.on_received(1000, ev(5, false, 480)), [None, None]);
        assert_eq!(
            d.on_received(3000, ev(6, true, 640)),
            [Some((6, 640)), None]
        );
    }

    #[test]
    fn an_event_whose_end_was_lost_is_reported_when_the_next_starts() {
        let mut d = LegDtmf::new(Instant::now());
        assert_eq!(
            d.on_received(u32::MAX - 10, ev(1, false, 160)),
            [None, None]
        );
        // Timestamps wrap; the next event is still later.
        assert_eq!(
            d.on_received(500, ev(2, true, 400)),
            [Some((1, 160)), Some((2, 400))]
        );
        // Flash (16) and beyond are not digits.
        assert_eq!(d.on_received(9000, ev(16, true, 400)), [None, None]);
    }

    #[test]
    fn reports_are_rate_limited_per_leg() {
        let t0 = Instant::now();
        let mut d = LegDtmf::new(t0);
        let allowed = (0..100).filter(|_| d.may_report(t0)).count();
        assert_eq!(allowed, REPORT_BURST as usize);
        assert_eq!(d.suppressed, 100 - u64::from(REPORT_BURST));
        assert!(d.may_report(t0 + REPORT_EVERY));
        assert!(!d.may_report(t0 + REPORT_EVERY));
    }

    #[test]
    fn sending_one_digit_follows_rfc_4733() {
        let t0 = Instant::now();
        let ptime = Duration::from_millis(20);
        let mut tx = TxState {
            ssrc: 1,
            next_seq: 100,
            last_ts: 5000,
            last_step: 160,
            mapping: Some((9, 1, 1)),
        };
        let mut d = LegDtmf::new(t0);
        assert_eq!(d.push(&[7], 480), Some(1));
        let mut packets = Vec::new();
        let mut now = t0;
        while let Some(at) = d.deadline() {
            now = now.max(at);
            if let Some(p) = d.next_due(now, 160, ptime, &mut tx) {
                packets.push(p);
            }
            assert!(packets.len() < 20, "runaway schedule");
        }
        // 160, 320, then the end (480) three times.
        let durations: Vec<(u16, bool)> = packets
            .iter()
            .map(|(p, _, _)| (p.duration, p.end))
            .collect();
        assert_eq!(
            durations,
            [
                (160, false),
                (320, false),
                (480, true),
                (480, true),
                (480, true)
            ]
        );
        assert!(packets.iter().all(|(p, _, ts)| p.event == 7 && *ts == 5160));
        let markers: Vec<bool> = packets.iter().map(|(_, m, _)| *m).collect();
        assert_eq!(markers, [true, false, false, false, false]);
        assert!(!d.busy());
        // The relayed stream resumes after the event, on a fresh mapping.
        assert_eq!((tx.last_ts, tx.last_step, tx.mapping), (5160, 480, None));
    }

    #[test]
    fn digits_in_a_row_are_separate_events_a_gap_apart() {
        let t0 = Instant::now();
        let ptime = Duration::from_millis(20);
        let mut tx = TxState {
            ssrc: 1,
            next_seq: 0,
            last_ts: 0,
            last_step: 0,
            mapping: None,
        };
        let mut d = LegDtmf::new(t0);
        assert_eq!(d.push(&[1, 2], 320), Some(2));
        assert_eq!(d.push(&[0; 31], 320), None, "over the queue bound");
        let mut now = t0;
        let mut starts = Vec::new();
        while let Some(at) = d.deadline() {
            now = now.max(at);
            if let Some((p, marker, ts)) = d.next_due(now, 160, ptime, &mut tx)
                && marker
            {
                starts.push((p.event, ts, now));
            }
        }
        let [(e1, ts1, at1), (e2, ts2, at2)] = starts[..] else {
            panic!("two events: {starts:?}");
        };
        assert_eq!((e1, e2), (1, 2));
        assert_ne!(ts1, ts2);
        assert!(at2 >= at1 + GAP);
    }
}
