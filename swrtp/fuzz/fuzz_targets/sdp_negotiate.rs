//! Fuzz SDP offer/answer: the input is remote SDP, taken both as an offer
//! (parse, then answer it) and as the answer to an offer of ours
//! (`apply_answer`). Beyond "no panic":
//! - a parsed description points at an audio m-line it really has;
//! - the answer picks a codec the remote offered (and that our preferences
//!   allow), with the remote's payload type; telephone-event only if offered;
//! - our answer SDP is clean (CRLF lines, no stray CR, LF or NUL from the
//!   peer's text), parses back to the same m-line count and audio position,
//!   and our own offer side accepts it with the same codec;
//! - an answer applied to our offer only ever selects a codec we offered.
//!
//! The first byte picks our codec preferences and what we offer; the rest is
//! the SDP text.
//!
//! cargo +nightly fuzz run sdp_negotiate -- -max_total_time=600
#![no_main]

use std::net::{IpAddr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use swrtp::sdp::{self, AudioCodec, LocalOrigin, Offer};

fn codecs(bits: u8) -> Vec<AudioCodec> {
    match bits & 3 {
        0 => vec![],
        1 => vec![AudioCodec::Pcmu],
        2 => vec![AudioCodec::Pcma],
        _ => vec![AudioCodec::Pcma, AudioCodec::Pcmu],
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let prefs = codecs(flags);
    let origin = LocalOrigin {
        sess_id: 42,
        version: 7,
        address: if flags & 4 == 0 {
            IpAddr::from([192, 0, 2, 10])
        } else {
            "2001:db8::10".parse().expect("v6 literal")
        },
        port: 10_000,
    };

    let remote = match sdp::parse(text) {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let (media, proto, _) = remote
        .media_lines
        .get(remote.audio_index)
        .expect("audio_index points at an m-line");
    assert_eq!(media, "audio");
    assert!(proto.eq_ignore_ascii_case("RTP/AVP"));
    assert!(remote.formats.iter().all(|f| f.pt < 128));
    assert!(remote.ptime.is_none_or(|p| (10..=120).contains(&p)));
    assert!(remote.rtp.is_none_or(|a| !a.ip().is_unspecified()));

    // As an offer: answer it.
    match sdp::answer(&remote, &origin, &prefs) {
        Ok((text, n)) => {
            assert!(
                prefs.is_empty() || prefs.contains(&n.codec),
                "{n:?} {prefs:?}"
            );
            let chosen = remote
                .formats
                .iter()
                .find(|f| f.pt == n.pt)
                .expect("answered payload type was offered");
            assert!(chosen.name.eq_ignore_ascii_case(n.codec.name()) && chosen.rate == 8000);
            if let Some(te) = n.te_pt {
                let f = remote
                    .formats
                    .iter()
                    .find(|f| f.pt == te)
                    .expect("telephone-event payload type was offered");
                assert!(f.name.eq_ignore_ascii_case("telephone-event"));
            }
            assert_eq!(n.direction, remote.direction.reverse());
            assert_eq!(n.remote_rtp, remote.rtp);

            // Our SDP: CRLF-terminated lines, nothing the peer smuggled in.
            assert!(text.ends_with("\r\n"), "{text:?}");
            for line in text.trim_end_matches("\r\n").split("\r\n") {
                assert!(
                    !line.is_empty() && !line.contains(['\r', '\n', '\0']),
                    "bad line {line:?} in {text:?}"
                );
            }
            let back = sdp::parse(&text)
                .unwrap_or_else(|e| panic!("answer does not parse ({e}): {text:?}"));
            assert_eq!(back.media_lines.len(), remote.media_lines.len(), "{text:?}");
            assert_eq!(back.audio_index, remote.audio_index, "{text:?}");
            assert_eq!(back.rtp, Some(SocketAddr::new(origin.address, origin.port)));
            assert_eq!(back.direction, n.direction);
            assert_eq!(back.ptime, Some(n.ptime));
            let pts: Vec<u8> = back.formats.iter().map(|f| f.pt).collect();
            let want: Vec<u8> = std::iter::once(n.pt).chain(n.te_pt).collect();
            assert_eq!(pts, want, "{text:?}");

            // The remote, had it been us, would accept our answer to its offer.
            let as_offer = Offer {
                codecs: vec![n.codec],
                te_pt: n.te_pt,
                ptime: 20,
            };
            let applied = sdp::apply_answer(&as_offer, &back).expect("our answer is acceptable");
            assert_eq!(applied.codec, n.codec);
            assert_eq!(applied.pt, n.pt);
            assert_eq!(applied.te_pt, n.te_pt);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }

    // As the answer to an offer of ours.
    let ours = Offer {
        codecs: if prefs.is_empty() {
            vec![AudioCodec::Pcmu, AudioCodec::Pcma]
        } else {
            prefs.clone()
        },
        te_pt: (flags & 8 != 0).then_some(sdp::DEFAULT_TELEPHONE_EVENT_PT),
        ptime: 20,
    };
    if let Ok(n) = sdp::apply_answer(&ours, &remote) {
        assert!(ours.codecs.contains(&n.codec), "{n:?} not offered");
        assert!(ours.te_pt.is_some() || n.te_pt.is_none(), "{n:?}");
        assert!((10..=120).contains(&n.ptime));
        assert_eq!(n.remote_rtp, remote.rtp);
    }
});
