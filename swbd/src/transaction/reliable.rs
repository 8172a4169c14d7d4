//! Reliable provisional responses, UAS side (RFC 3262 §3), for the INVITE
//! server transaction.
//!
//! The RFC gives this job to the UAS core; it lives here, with the
//! transaction, because everything about it is per transaction (the RSeq
//! space is "within a single transaction", §3), its retransmission timer
//! must run whatever the TU is busy with (a call task awaiting a media
//! RPC), and a PRACK is matched to its INVITE the way an ACK for a 2xx is:
//! by Call-ID and CSeq (its `RAck`), through a table the layer consults
//! before the front door.
//!
//! What the TU does: mark a provisional reliable
//! ([`super::InviteResponder::respond_reliably`] adds `Require: 100rel`);
//! the transaction then
//! - numbers it (`RSeq`, random start, +1 per reliable provisional),
//! - sends it and retransmits it with an interval starting at T1 and
//!   doubling, without the T2 cap (§3), until its PRACK arrives,
//! - holds further reliable provisionals until the PRACK of the previous
//!   one (§3: one unacknowledged at a time),
//! - holds a 2xx while a reliable provisional carrying SDP is
//!   unacknowledged (§3: its answer must be acknowledged first); a non-2xx
//!   final goes at once and stops the retransmissions,
//! - answers PRACKs: `200` when `RAck` names the unacknowledged response
//!   (RSeq, the INVITE's CSeq number, method INVITE) and the To tag is
//!   ours, `481` otherwise (§3),
//! - gives up 64*T1 after sending a reliable provisional without its
//!   PRACK: the INVITE is rejected with `500` and the TU gets
//!   [`super::ServerInviteEvent::PrackTimeout`] (§3, "SHOULD reject the
//!   original request with a 5xx").
//!
//! [`ReliableProvisionals`] is the state machine alone (no I/O, no clock
//! of its own), driven by `server_inv`.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::timers::Timers;
use crate::sip::capabilities::lists_option_tag;
use crate::sip::message::HeaderAccess;
use crate::sip::{Method, Name, Request, Response};

/// The option tag (RFC 3262 §6).
pub const TAG: &str = "100rel";

/// Reliable provisionals held back while one is unacknowledged; the B2BUA
/// sends at most two (180, 183), so more is a TU bug, logged and dropped.
const MAX_QUEUED: usize = 8;

/// A parsed `RAck` header (RFC 3262 §7.2): `RAck: 776656 1 INVITE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RAck {
    /// The RSeq of the provisional response acknowledged.
    pub rseq: u32,
    /// The CSeq number of the request it answered.
    pub cseq: u32,
    /// The CSeq method of that request.
    pub method: Method,
}

impl RAck {
    /// Parse a header value; `None` when malformed.
    pub fn parse(value: &str) -> Option<RAck> {
        let mut it = value.split_whitespace();
        let (Some(rseq), Some(cseq), Some(method), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return None;
        };
        Some(RAck {
            rseq: parse_seq(rseq)?,
            cseq: parse_seq(cseq)?,
            method: Method::from_token(method),
        })
    }

    /// The `RAck` of `request` (a PRACK), if it has a well-formed one.
    pub fn of(request: &Request) -> Option<RAck> {
        request.raw(&Name::RACK).and_then(RAck::parse)
    }
}

impl std::fmt::Display for RAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.rseq, self.cseq, self.method)
    }
}

/// RSeq / CSeq numbers: 1 to 2^31 - 1 (RFC 3262 §7.1).
fn parse_seq(s: &str) -> Option<u32> {
    s.parse::<u32>().ok().filter(|n| (1..1 << 31).contains(n))
}

/// The `RSeq` of a response, if it has a well-formed one.
pub fn rseq(response: &Response) -> Option<u32> {
    response.raw(&Name::RSEQ).and_then(|v| parse_seq(v.trim()))
}

/// What an INVITE says about reliable provisionals (RFC 3262 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reliability {
    /// `Require: 100rel`: every non-100 provisional must be reliable.
    Required,
    /// `Supported: 100rel`: provisionals may be reliable.
    Supported,
    /// Neither: no provisional may be reliable.
    Unsupported,
}

impl Reliability {
    /// What `invite` asks for.
    pub fn of(invite: &Request) -> Reliability {
        if lists_option_tag(invite, &Name::REQUIRE, TAG) {
            Reliability::Required
        } else if lists_option_tag(invite, &Name::SUPPORTED, TAG) {
            Reliability::Supported
        } else {
            Reliability::Unsupported
        }
    }
}

/// Whether a provisional from the TU is to be sent reliably (it names
/// `100rel` in `Require`; `100 Trying` never is, §3).
pub fn is_marked(response: &Response) -> bool {
    (101..=199).contains(&response.code) && lists_option_tag(response, &Name::REQUIRE, TAG)
}

/// Whether a provisional received by a UAC is reliable (RFC 3262 §4:
/// `Require: 100rel` and an `RSeq`).
pub fn is_reliable(response: &Response) -> bool {
    is_marked(response) && rseq(response).is_some()
}

/// The reliable provisional waiting for its PRACK.
#[derive(Debug)]
struct Outstanding {
    rseq: u32,
    bytes: Bytes,
    /// It carries a session description: a 2xx waits for its PRACK.
    sdp: bool,
    interval: Duration,
    retransmit_at: Instant,
    give_up_at: Instant,
}

/// What a timer expiry asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TimerAction {
    /// Send these bytes again.
    Retransmit(Bytes),
    /// 64*T1 without PRACK: reject the INVITE.
    GiveUp,
    /// Nothing is due.
    Idle,
}

/// What a PRACK did.
#[derive(Debug)]
pub(crate) enum PrackOutcome {
    /// It acknowledged the outstanding provisional: answer `200`, send
    /// `next` (a held reliable provisional, now outstanding) and then
    /// `released` (a held final response), if any.
    Matched {
        /// The next reliable provisional, to send now.
        next: Option<Bytes>,
        /// A held 2xx, to send now.
        released: Option<Box<Response>>,
    },
    /// No unacknowledged provisional matches: answer `481`.
    NoMatch,
}

/// The UAS state of reliable provisionals in one INVITE transaction.
#[derive(Debug)]
pub(crate) struct ReliableProvisionals {
    t1: Duration,
    give_up_after: Duration,
    next_rseq: u32,
    outstanding: Option<Outstanding>,
    queue: VecDeque<Response>,
    held_final: Option<Box<Response>>,
    /// A reliable provisional was sent (the layer routes PRACKs here).
    used: bool,
}

impl ReliableProvisionals {
    /// With a random first RSeq (§7.1: 1 to 2^31 - 1; started below 2^30
    /// so a transaction's increments never wrap).
    pub(crate) fn new(timers: Timers) -> Self {
        Self::starting_at(timers, rand::random_range(1..1u32 << 30))
    }

    /// With a given first RSeq (tests).
    pub(crate) fn starting_at(timers: Timers, rseq: u32) -> Self {
        Self {
            t1: timers.t1,
            give_up_after: timers.t1x64(),
            next_rseq: rseq,
            outstanding: None,
            queue: VecDeque::new(),
            held_final: None,
            used: false,
        }
    }

    /// Whether a reliable provisional was ever sent.
    pub(crate) fn used(&self) -> bool {
        self.used
    }

    /// Whether a final response is held for a PRACK.
    pub(crate) fn holds_final(&self) -> bool {
        self.held_final.is_some()
    }

    /// The TU's reliable provisional: the bytes to send now (numbered,
    /// now outstanding), or `None` when it waits for the PRACK of the one
    /// before.
    pub(crate) fn provisional(&mut self, response: Response, now: Instant) -> Option<Bytes> {
        if self.held_final.is_some() {
            return None;
        }
        if self.outstanding.is_some() {
            if self.queue.len() < MAX_QUEUED {
                self.queue.push_back(response);
            } else {
                tracing::debug!(
                    code = response.code,
                    "reliable provisional dropped: too many waiting"
                );
            }
            return None;
        }
        Some(self.send(response, now))
    }

    fn send(&mut self, mut response: Response, now: Instant) -> Bytes {
        let rseq = self.next_rseq;
        self.next_rseq = self.next_rseq.wrapping_add(1);
        response.headers.remove(&Name::RSEQ);
        response.headers.insert(Name::RSEQ, rseq.to_string());
        let bytes = response.to_bytes();
        self.outstanding = Some(Outstanding {
            rseq,
            bytes: bytes.clone(),
            sdp: !response.body.is_empty(),
            interval: self.t1,
            retransmit_at: now + self.t1,
            give_up_at: now + self.give_up_after,
        });
        self.used = true;
        bytes
    }

    /// The TU's final response: `Some` to send now, `None` when it is a
    /// 2xx held until a reliable provisional carrying SDP is acknowledged.
    /// A final that goes stops every retransmission.
    pub(crate) fn final_response(&mut self, response: Response) -> Option<Response> {
        let sdp_waiting = self.outstanding.as_ref().is_some_and(|o| o.sdp)
            || self.queue.iter().any(|r| !r.body.is_empty());
        if response.is_success() && sdp_waiting {
            self.held_final = Some(Box::new(response));
            return None;
        }
        self.outstanding = None;
        self.queue.clear();
        self.held_final = None;
        Some(response)
    }

    /// A PRACK with `rack` for the INVITE whose CSeq number is
    /// `invite_cseq`.
    pub(crate) fn prack(&mut self, rack: &RAck, invite_cseq: u32, now: Instant) -> PrackOutcome {
        let matches = self.outstanding.as_ref().is_some_and(|o| {
            o.rseq == rack.rseq && rack.cseq == invite_cseq && rack.method == Method::Invite
        });
        if !matches {
            return PrackOutcome::NoMatch;
        }
        self.outstanding = None;
        let next = self.queue.pop_front().map(|r| self.send(r, now));
        let released = if self.outstanding.as_ref().is_some_and(|o| o.sdp)
            || self.queue.iter().any(|r| !r.body.is_empty())
        {
            None
        } else {
            self.held_final.take()
        };
        if released.is_some() {
            // The final goes now: nothing else is retransmitted.
            self.outstanding = None;
            self.queue.clear();
        }
        PrackOutcome::Matched { next, released }
    }

    /// When [`Self::on_timer`] has something to do next.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.outstanding
            .as_ref()
            .map(|o| o.retransmit_at.min(o.give_up_at))
    }

    /// Run what is due at `now`.
    pub(crate) fn on_timer(&mut self, now: Instant) -> TimerAction {
        let Some(o) = self.outstanding.as_mut() else {
            return TimerAction::Idle;
        };
        if now >= o.give_up_at {
            self.outstanding = None;
            self.queue.clear();
            self.held_final = None;
            return TimerAction::GiveUp;
        }
        if now >= o.retransmit_at {
            // §3: the interval starts at T1 and doubles, without T2's cap.
            o.interval *= 2;
            o.retransmit_at = now + o.interval;
            return TimerAction::Retransmit(o.bytes.clone());
        }
        TimerAction::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::SipMessage;

    fn request(extra: &str) -> Request {
        let text = format!(
            "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        );
        match SipMessage::parse(text.as_bytes(), true) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn provisional(code: u16, sdp: bool) -> Response {
        let mut r = Response::new(code, "Progress");
        r.headers.insert(Name::REQUIRE, TAG);
        if sdp {
            r.body = Bytes::from_static(b"v=0\r\n");
        }
        r
    }

    fn rack(rseq: u32) -> RAck {
        RAck {
            rseq,
            cseq: 7,
            method: Method::Invite,
        }
    }

    fn rseq_of(bytes: &Bytes) -> u32 {
        let text = std::str::from_utf8(bytes).expect("utf-8");
        text.lines()
            .find_map(|l| l.strip_prefix("RSeq: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("RSeq")
    }

    #[test]
    fn rack_parses_and_refuses_garbage() {
        assert_eq!(
            RAck::parse(" 776656 1 INVITE "),
            Some(rack(776656)).map(|mut r| {
                r.cseq = 1;
                r
            })
        );
        for bad in [
            "",
            "1 2",
            "1 2 INVITE x",
            "0 1 INVITE",
            "x 1 INVITE",
            "2147483648 1 INVITE",
        ] {
            assert_eq!(RAck::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reliability_of_an_invite() {
        assert_eq!(
            Reliability::of(&request("Require: 100rel\r\n")),
            Reliability::Required
        );
        assert_eq!(
            Reliability::of(&request("Supported: timer, 100rel\r\n")),
            Reliability::Supported
        );
        assert_eq!(Reliability::of(&request("")), Reliability::Unsupported);
    }

    #[tokio::test(start_paused = true)]
    async fn retransmits_doubling_without_cap_then_gives_up_at_64_t1() {
        let t = Timers::default();
        let mut rel = ReliableProvisionals::starting_at(t, 10);
        let start = Instant::now();
        let first = rel
            .provisional(provisional(183, true), start)
            .expect("sent");
        assert_eq!(rseq_of(&first), 10);
        let mut sent_at = Vec::new();
        loop {
            let at = rel.deadline().expect("armed");
            match rel.on_timer(at) {
                TimerAction::Retransmit(b) => {
                    assert_eq!(b, first, "the same bytes, the same RSeq");
                    sent_at.push((at - start).as_millis());
                }
                TimerAction::GiveUp => {
                    assert_eq!(at - start, t.t1x64());
                    break;
                }
                TimerAction::Idle => panic!("nothing due at its deadline"),
            }
        }
        // 0.5, 1, 2, 4, 8, 16 s apart: past T2 (4 s), no cap.
        assert_eq!(sent_at, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(rel.deadline(), None);
    }

    #[test]
    fn prack_must_name_rseq_cseq_and_invite() {
        let now = Instant::now();
        let mut rel = ReliableProvisionals::starting_at(Timers::default(), 5);
        rel.provisional(provisional(180, false), now).expect("sent");
        assert!(matches!(rel.prack(&rack(4), 7, now), PrackOutcome::NoMatch));
        assert!(matches!(rel.prack(&rack(5), 8, now), PrackOutcome::NoMatch));
        let mut wrong_method = rack(5);
        wrong_method.method = Method::Update;
        assert!(matches!(
            rel.prack(&wrong_method, 7, now),
            PrackOutcome::NoMatch
        ));
        assert!(matches!(
            rel.prack(&rack(5), 7, now),
            PrackOutcome::Matched {
                next: None,
                released: None
            }
        ));
        // Acknowledged once: a second PRACK matches nothing.
        assert!(matches!(rel.prack(&rack(5), 7, now), PrackOutcome::NoMatch));
        assert_eq!(rel.deadline(), None);
    }

    #[test]
    fn one_unacknowledged_at_a_time_and_2xx_waits_for_the_sdp() {
        let now = Instant::now();
        let mut rel = ReliableProvisionals::starting_at(Timers::default(), 1);
        rel.provisional(provisional(180, false), now).expect("sent");
        assert_eq!(rel.provisional(provisional(183, true), now), None, "held");
        // The 2xx waits: the held 183 carries SDP.
        assert!(rel.final_response(Response::new(200, "OK")).is_none());
        assert!(rel.holds_final());
        let PrackOutcome::Matched { next, released } = rel.prack(&rack(1), 7, now) else {
            panic!("matches")
        };
        assert_eq!(rseq_of(&next.expect("the 183 goes")), 2);
        assert!(released.is_none(), "still waiting for the 183's PRACK");
        let PrackOutcome::Matched { next, released } = rel.prack(&rack(2), 7, now) else {
            panic!("matches")
        };
        assert!(next.is_none());
        assert_eq!(released.expect("the 200 goes").code, 200);
        assert_eq!(rel.deadline(), None);
    }

    #[test]
    fn a_2xx_after_a_provisional_without_sdp_goes_at_once() {
        let now = Instant::now();
        let mut rel = ReliableProvisionals::starting_at(Timers::default(), 1);
        rel.provisional(provisional(180, false), now).expect("sent");
        assert_eq!(
            rel.final_response(Response::new(200, "OK"))
                .expect("sent")
                .code,
            200
        );
        assert_eq!(rel.deadline(), None, "retransmissions stop");
    }

    #[test]
    fn a_failure_goes_at_once_even_before_the_prack() {
        let now = Instant::now();
        let mut rel = ReliableProvisionals::starting_at(Timers::default(), 1);
        rel.provisional(provisional(183, true), now).expect("sent");
        assert_eq!(
            rel.final_response(Response::new(486, "Busy Here"))
                .expect("sent")
                .code,
            486
        );
        assert_eq!(rel.deadline(), None);
    }

    #[test]
    fn giving_up_drops_a_held_final() {
        let now = Instant::now();
        let mut rel = ReliableProvisionals::starting_at(Timers::default(), 1);
        rel.provisional(provisional(183, true), now).expect("sent");
        assert!(rel.final_response(Response::new(200, "OK")).is_none());
        let at = now + Timers::default().t1x64();
        assert_eq!(rel.on_timer(at), TimerAction::GiveUp);
        assert!(!rel.holds_final());
    }
}
