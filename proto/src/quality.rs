//! Call quality from RTP statistics: an estimated MOS, and the one-way
//! and silent flags. Shared by swbd (its call detail records, from final
//! statistics) and swctl (`swctl top`'s live flags), so both judge a call
//! the same way.
//!
//! # MOS: a simplified E-model (ITU-T G.107)
//!
//! swrtp measures, per receive direction, packets lost (RFC 3550 A.3) and
//! interarrival jitter (RFC 3550 §6.4.1); it does not measure one-way
//! delay. The estimate is the simplified E-model that VoIP monitors use
//! for G.711 (no codec impairment, `Ie = 0`):
//!
//! ```text
//! loss%     = 100 * lost / (received + lost)          (lost < 0 counts as 0)
//! d         = 2 * jitter_ms + 10                       (jitter buffer + codec, ms; no network delay known)
//! R         = 93.2 - d / 40                if d < 160
//!           = 93.2 - (d - 120) / 10        otherwise
//! R         = R - 2.5 * loss%              then clamped to 0..100
//! MOS       = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R)
//! ```
//!
//! A perfect G.711 stream scores 4.40 (R = 92.95); 1% loss costs about
//! 0.05, 5% about 0.36, 10% about 0.9; 40 ms of jitter about 0.04. It estimates what the
//! receiving side of each leg heard *from the network*, so it is computed
//! for a direction that received packets, and only there: a direction
//! with nothing received has no MOS (it is flagged one-way or silent).
//!
//! # One-way and silent
//!
//! Judged on the A-leg (the caller), for answered calls whose A-leg
//! session has final statistics: `silent` when swbd neither received
//! packets from the caller nor sent any to it; `one_way` when exactly one
//! of those directions carried packets. On a bridged call what swbd sends
//! the caller is what the callee sent (relayed), so a callee whose audio
//! never arrives flags the call one-way too.

use crate::media::v1 as media;

/// Packets lost as a percentage of packets expected.
pub fn loss_percent(received: u64, lost: i64) -> f64 {
    let lost = lost.max(0) as f64;
    let expected = received as f64 + lost;
    if expected <= 0.0 {
        0.0
    } else {
        100.0 * lost / expected
    }
}

/// The simplified E-model's MOS (module docs) for a direction that
/// received `received` packets, lost `lost`, with `jitter_ms` of jitter.
/// `None` when nothing was received.
pub fn mos(received: u64, lost: i64, jitter_ms: f64) -> Option<f64> {
    if received == 0 {
        return None;
    }
    let jitter = if jitter_ms.is_finite() {
        jitter_ms.max(0.0)
    } else {
        0.0
    };
    let d = 2.0 * jitter + 10.0;
    let r = if d < 160.0 {
        93.2 - d / 40.0
    } else {
        93.2 - (d - 120.0) / 10.0
    };
    let r = (r - 2.5 * loss_percent(received, lost)).clamp(0.0, 100.0);
    let mos = 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r);
    // Two decimals are all an estimate is worth.
    Some((mos.clamp(1.0, 5.0) * 100.0).round() / 100.0)
}

/// MOS of what a session received.
pub fn session_mos(stats: &media::SessionStats) -> Option<f64> {
    let rx = stats.rx.as_ref()?;
    mos(rx.packets, rx.packets_lost, rx.jitter_ms)
}

/// `(one_way, silent)` of a caller's session (module docs).
pub fn flags(a_leg: &media::SessionStats) -> (bool, bool) {
    let rx = a_leg.rx.as_ref().map_or(0, |d| d.packets);
    let tx = a_leg.tx.as_ref().map_or(0, |d| d.packets);
    let silent = rx == 0 && tx == 0;
    let one_way = (rx == 0) != (tx == 0);
    (one_way, silent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mos_of_known_points() {
        assert_eq!(mos(1000, 0, 0.0), Some(4.4), "perfect G.711");
        let one = mos(990, 10, 0.0).expect("mos");
        assert!((4.3..4.4).contains(&one), "1% loss: {one}");
        let five = mos(950, 50, 0.0).expect("mos");
        assert!((3.9..4.1).contains(&five), "5% loss: {five}");
        let jitter = mos(1000, 0, 40.0).expect("mos");
        assert!((4.3..4.4).contains(&jitter), "40 ms jitter: {jitter}");
        let awful = mos(100, 900, 300.0).expect("mos");
        assert_eq!(awful, 1.0, "90% loss floors at 1");
        assert_eq!(mos(0, 0, 0.0), None, "nothing received, no score");
        assert_eq!(mos(10, -3, f64::NAN), Some(4.4), "duplicates and NaN");
    }

    #[test]
    fn loss_is_a_share_of_expected_packets() {
        assert_eq!(loss_percent(90, 10), 10.0);
        assert_eq!(loss_percent(0, 0), 0.0);
        assert_eq!(loss_percent(5, -2), 0.0);
    }

    #[test]
    fn one_way_and_silent_are_judged_on_the_caller() {
        let s = |rx, tx| media::SessionStats {
            rx: Some(media::DirectionStats {
                packets: rx,
                ..Default::default()
            }),
            tx: Some(media::DirectionStats {
                packets: tx,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(flags(&s(50, 50)), (false, false));
        assert_eq!(flags(&s(50, 0)), (true, false));
        assert_eq!(flags(&s(0, 50)), (true, false));
        assert_eq!(flags(&s(0, 0)), (false, true));
        assert_eq!(flags(&media::SessionStats::default()), (false, true));
    }
}
