//! Hold (issue #15, "Hold that lasts"): which legs the RTP timeout watches,
//! what counts as a sign of life, and the re-offer swbd sends when it
//! passes hold on to the other leg.
//!
//! # The rule
//!
//! A leg is expected to send RTP only while its negotiated direction is
//! `sendrecv` and it named an address to send to. A phone that holds
//! re-INVITEs `sendonly` or `inactive` (we answer `recvonly` / `inactive`),
//! or, RFC 2543 style, `c=0.0.0.0`; many then stop sending RTP altogether
//! (a `sendonly` phone "should" keep sending music, few do). Such a leg, and
//! one *we* hold (our offer `sendonly`, answered `recvonly`), is exempt
//! from the RTP timeout for as long as the direction stays. The re-offer
//! that resumes (`sendrecv` again) restarts the clock: the timeout applies
//! again from that moment, as after any re-offer.
//!
//! RTCP counts as activity: a leg whose RTCP (port + 1, or multiplexed on
//! the RTP port, RFC 5761) keeps arriving from the latched address is
//! alive even when its RTP pauses (silence suppression, or a phone that
//! holds without saying so). It does not arm the timeout of a leg that has
//! not started (a ringing leg).
//!
//! Trade-off: a phone that vanishes while on hold is not detected by RTP;
//! its call ends by the session lease, the dialog's own BYE, or an operator
//! (SIP session timers are not implemented). A held call lasting forever
//! was judged worse than a ghost held call: the callers were hung
//! up at 35 s.

use std::net::SocketAddr;

use sdp_types::Direction;

use crate::relay::LegMedia;
use crate::sdp::{LocalOrigin, Negotiated, Offer};

/// Whether the RTP timeout watches a leg with `media` whose remote SDP
/// named `sdp_rtp` (see the module docs). A leg still waiting for the
/// answer to our offer (no codec yet) is watched as before: it is armed
/// only once media flowed or it was bridged.
pub fn expects_rtp(media: &LegMedia, sdp_rtp: Option<SocketAddr>) -> bool {
    if media.codec.is_none() {
        return media.direction == Direction::SendRecv;
    }
    media.direction == Direction::SendRecv && sdp_rtp.is_some()
}

/// Whether a datagram that arrived on the RTP port is RTCP multiplexed
/// with RTP (RFC 5761 §4: the second octet is an RTCP packet type,
/// 192-223, which as an RTP marker + payload type would be 64-95, a range
/// RTP/AVP does not assign).
pub fn is_muxed_rtcp(data: &[u8]) -> bool {
    data.len() >= 8
        && data.first().map(|b| b >> 6) == Some(2)
        && data.get(1).is_some_and(|pt| (192..=223).contains(pt))
}

/// What both directions allow: sending when both send, receiving when
/// both receive. Our direction after an answer is what we offered
/// intersected with the reverse of what the answerer said (an answerer
/// that says `sendrecv` to our `sendonly` does not make us receive).
pub fn intersect(a: Direction, b: Direction) -> Direction {
    match (a.has_send() && b.has_send(), a.has_recv() && b.has_recv()) {
        (true, true) => Direction::SendRecv,
        (true, false) => Direction::SendOnly,
        (false, true) => Direction::RecvOnly,
        (false, false) => Direction::Inactive,
    }
}

/// A re-offer on an established session: the codec (and telephone-event)
/// in use, the same ptime, `direction` from our side; `origin` must
/// already carry the bumped version. Returns the SDP and what to keep to
/// interpret the answer.
pub fn reoffer(origin: &LocalOrigin, n: &Negotiated, direction: Direction) -> (String, Offer) {
    let offer = Offer {
        codecs: vec![n.codec],
        te_pt: n.te_pt,
        ptime: n.ptime,
    };
    let text = crate::sdp::offer_with_direction(origin, &offer, direction);
    (text, offer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::AudioCodec;

    fn media(direction: Direction, codec: Option<AudioCodec>) -> LegMedia {
        LegMedia {
            codec,
            pt: 0,
            te_pt: None,
            ptime: 20,
            direction,
        }
    }

    fn addr() -> Option<SocketAddr> {
        Some(SocketAddr::from(([192, 0, 2, 1], 4000)))
    }

    #[test]
    fn only_a_sendrecv_leg_with_an_address_is_expected_to_send() {
        let c = Some(AudioCodec::Pcmu);
        assert!(expects_rtp(&media(Direction::SendRecv, c), addr()));
        for d in [
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ] {
            assert!(!expects_rtp(&media(d, c), addr()), "{d:?}");
        }
        // RFC 2543 hold: c=0.0.0.0 with sendrecv.
        assert!(!expects_rtp(&media(Direction::SendRecv, c), None));
        // Our offer is unanswered: no address yet, watched once armed.
        assert!(expects_rtp(&media(Direction::SendRecv, None), None));
    }

    #[test]
    fn rtcp_on_the_rtp_port_is_told_from_rtp() {
        // RTCP receiver report header: V=2, PT=201.
        assert!(is_muxed_rtcp(&[0x81, 201, 0, 7, 0, 0, 0, 1]));
        assert!(is_muxed_rtcp(&[0x80, 200, 0, 6, 0, 0, 0, 1]));
        // PCMU with and without marker, telephone-event.
        assert!(!is_muxed_rtcp(&[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]));
        assert!(!is_muxed_rtcp(&[0x80, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]));
        assert!(!is_muxed_rtcp(&[0x80, 101, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]));
        // Too short, wrong version.
        assert!(!is_muxed_rtcp(&[0x80, 200, 0, 1]));
        assert!(!is_muxed_rtcp(&[0x40, 200, 0, 6, 0, 0, 0, 1]));
    }

    #[test]
    fn intersection_is_per_direction() {
        use Direction::*;
        assert_eq!(intersect(SendRecv, SendRecv), SendRecv);
        assert_eq!(intersect(SendOnly, SendRecv), SendOnly);
        assert_eq!(intersect(SendOnly, RecvOnly), Inactive);
        assert_eq!(intersect(SendRecv, RecvOnly), RecvOnly);
        assert_eq!(intersect(Inactive, SendRecv), Inactive);
    }
}
