//! Unit tests of SDP offer/answer: answers and refusals, table-driven.

use super::*;

fn origin() -> LocalOrigin {
    LocalOrigin {
        sess_id: 42,
        version: 1,
        address: IpAddr::from([192, 0, 2, 10]),
        port: 10000,
    }
}

fn sdp(body: &str) -> String {
    format!("v=0\r\no=alice 1 1 IN IP4 198.51.100.1\r\ns=-\r\nt=0 0\r\n{body}")
}

const BASIC: &str = "c=IN IP4 198.51.100.1\r\nm=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

#[test]
fn answers_table() {
    struct Case {
        name: &'static str,
        body: &'static str,
        codec: AudioCodec,
        pt: u8,
        te: Option<u8>,
        ptime: u32,
        dir: Direction,
        rtp: Option<&'static str>,
    }
    let cases = [
        Case {
            name: "basic pcmu + te",
            body: BASIC,
            codec: AudioCodec::Pcmu,
            pt: 0,
            te: Some(101),
            ptime: 20,
            dir: Direction::SendRecv,
            rtp: Some("198.51.100.1:4000"),
        },
        Case {
            name: "offerer prefers pcma",
            body: "c=IN IP4 198.51.100.1\r\nm=audio 4000 RTP/AVP 8 0\r\n",
            codec: AudioCodec::Pcma,
            pt: 8,
            te: None,
            ptime: 20,
            dir: Direction::SendRecv,
            rtp: Some("198.51.100.1:4000"),
        },
        Case {
            name: "unknown codec skipped, dynamic te pt kept",
            body: "c=IN IP4 198.51.100.1\r\nm=audio 4000 RTP/AVP 18 8 96\r\na=rtpmap:18 G729/8000\r\na=rtpmap:96 telephone-event/8000\r\na=ptime:30\r\n",
            codec: AudioCodec::Pcma,
            pt: 8,
            te: Some(96),
            ptime: 30,
            dir: Direction::SendRecv,
            rtp: Some("198.51.100.1:4000"),
        },
        Case {
            name: "media-level c= and sendonly",
            body: "m=audio 5000 RTP/AVP 0\r\nc=IN IP4 203.0.113.9\r\na=sendonly\r\n",
            codec: AudioCodec::Pcmu,
            pt: 0,
            te: None,
            ptime: 20,
            dir: Direction::RecvOnly,
            rtp: Some("203.0.113.9:5000"),
        },
        Case {
            name: "session-level inactive",
            body: "c=IN IP4 198.51.100.1\r\na=inactive\r\nm=audio 4000 RTP/AVP 0\r\n",
            codec: AudioCodec::Pcmu,
            pt: 0,
            te: None,
            ptime: 20,
            dir: Direction::Inactive,
            rtp: Some("198.51.100.1:4000"),
        },
        Case {
            name: "media level overrides session level",
            body: "c=IN IP4 198.51.100.1\r\na=inactive\r\nm=audio 4000 RTP/AVP 0\r\na=recvonly\r\n",
            codec: AudioCodec::Pcmu,
            pt: 0,
            te: None,
            ptime: 20,
            dir: Direction::SendOnly,
            rtp: Some("198.51.100.1:4000"),
        },
        Case {
            name: "old-style hold 0.0.0.0",
            body: "c=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n",
            codec: AudioCodec::Pcmu,
            pt: 0,
            te: None,
            ptime: 20,
            dir: Direction::SendRecv,
            rtp: None,
        },
        Case {
            name: "video first, audio second",
            body: "c=IN IP4 198.51.100.1\r\nm=video 6000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\nm=audio 4000 RTP/AVP 0\r\n",
            codec: AudioCodec::Pcmu,
            pt: 0,
            te: None,
            ptime: 20,
            dir: Direction::SendRecv,
            rtp: Some("198.51.100.1:4000"),
        },
    ];
    for c in cases {
        let remote = parse(&sdp(c.body)).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let (text, n) =
            answer(&remote, &origin(), &[]).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(n.codec, c.codec, "{}", c.name);
        assert_eq!(n.pt, c.pt, "{}", c.name);
        assert_eq!(n.te_pt, c.te, "{}", c.name);
        assert_eq!(n.ptime, c.ptime, "{}", c.name);
        assert_eq!(n.direction, c.dir, "{}", c.name);
        assert_eq!(
            n.remote_rtp.map(|a| a.to_string()).as_deref(),
            c.rtp,
            "{}",
            c.name
        );
        assert!(
            text.contains("c=IN IP4 192.0.2.10\r\n"),
            "{}: {text}",
            c.name
        );
        assert!(
            text.contains(&format!("a={}\r\n", c.dir.as_str())),
            "{}",
            c.name
        );
        assert!(
            text.contains(&format!("a=ptime:{}\r\n", c.ptime)),
            "{}",
            c.name
        );
        // The answer re-parses and has as many m-lines as the offer.
        let back = parse(&text).unwrap_or_else(|e| panic!("{}: answer: {e}", c.name));
        assert_eq!(
            back.media_lines.len(),
            remote.media_lines.len(),
            "{}",
            c.name
        );
    }
}

#[test]
fn telephone_event_fmtp_is_kept() {
    let remote = parse(&sdp(BASIC)).expect("parse");
    let (text, _) = answer(&remote, &origin(), &[]).expect("answer");
    assert!(text.contains("m=audio 10000 RTP/AVP 0 101\r\n"), "{text}");
    assert!(
        text.contains("a=rtpmap:101 telephone-event/8000\r\n"),
        "{text}"
    );
    assert!(text.contains("a=fmtp:101 0-15\r\n"), "{text}");
}

#[test]
fn refusals_table() {
    type Check = fn(&SdpError) -> bool;
    let cases: [(&str, String, Check); 7] = [
        ("garbage", "hello world".into(), |e| {
            matches!(e, SdpError::Garbage(_))
        }),
        ("empty", String::new(), |e| {
            matches!(e, SdpError::Garbage(_))
        }),
        (
            "no audio",
            sdp("c=IN IP4 1.2.3.4\r\nm=video 6000 RTP/AVP 96\r\n"),
            |e| *e == SdpError::NoAudio,
        ),
        (
            "audio rejected with port 0",
            sdp("c=IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP 0\r\n"),
            |e| *e == SdpError::NoAudio,
        ),
        (
            "no common codec",
            sdp("c=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 18 9\r\na=rtpmap:18 G729/8000\r\n"),
            |e| matches!(e, SdpError::NoCommonCodec { offered } if offered.contains("G729/8000")),
        ),
        (
            "srtp",
            sdp("c=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/SAVP 0\r\n"),
            |e| matches!(e, SdpError::Transport(_)),
        ),
        ("no c=", sdp("m=audio 4000 RTP/AVP 0\r\n"), |e| {
            *e == SdpError::NoConnection
        }),
    ];
    for (name, text, check) in cases {
        let result = parse(&text).and_then(|r| answer(&r, &origin(), &[]).map(|_| ()));
        match result {
            Ok(()) => panic!("{name}: accepted"),
            Err(e) => assert!(check(&e), "{name}: wrong error {e:?}"),
        }
    }
}

#[test]
fn ipv6_offer_is_answered_in_ipv6() {
    let remote = parse(&sdp(
        "c=IN IP6 ::1\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n",
    ))
    .expect("parse");
    assert!(remote.connection.is_ipv6());
    assert_eq!(
        remote.rtp.map(|a| a.to_string()).as_deref(),
        Some("[::1]:4000")
    );
    let origin = LocalOrigin {
        address: IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ..origin()
    };
    let (text, _) = answer(&remote, &origin, &[]).expect("answer");
    assert!(text.contains("c=IN IP6 ::1\r\n"), "{text}");
    assert!(text.contains("o=swrtp 42 1 IN IP6 ::1\r\n"), "{text}");
    // An IPv4 hold offer says IP4 even with no address.
    let hold = parse(&sdp("c=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n")).expect("parse");
    assert!(hold.connection.is_ipv4() && hold.rtp.is_none());
}

#[test]
fn pcma_with_wrong_rate_is_not_common() {
    let r = parse(&sdp(
        "c=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 97\r\na=rtpmap:97 PCMA/16000\r\n",
    ))
    .expect("parse");
    assert!(matches!(
        answer(&r, &origin(), &[]),
        Err(SdpError::NoCommonCodec { .. })
    ));
}

#[test]
fn prefs_restrict_codecs() {
    let r = parse(&sdp(BASIC)).expect("parse");
    let (_, n) = answer(&r, &origin(), &[AudioCodec::Pcma]).expect("answer");
    assert_eq!(n.codec, AudioCodec::Pcma);
}

#[test]
fn offer_then_answer() {
    let o = Offer {
        codecs: vec![AudioCodec::Pcma, AudioCodec::Pcmu],
        te_pt: Some(101),
        ptime: 20,
    };
    let text = offer(&origin(), &o);
    assert!(text.contains("m=audio 10000 RTP/AVP 8 0 101\r\n"), "{text}");
    assert!(text.contains("a=sendrecv\r\n"), "{text}");
    assert!(
        text.contains("o=swrtp 42 1 IN IP4 192.0.2.10\r\n"),
        "{text}"
    );
    // The remote picks PCMU and telephone-event, and is on hold (sendonly).
    let ans = parse(&sdp(
            "c=IN IP4 198.51.100.7\r\nm=audio 7000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\na=rtcp:7005\r\n",
        ))
        .expect("parse");
    let n = apply_answer(&o, &ans).expect("apply");
    assert_eq!(n.codec, AudioCodec::Pcmu);
    assert_eq!(n.te_pt, Some(101));
    assert_eq!(n.direction, Direction::RecvOnly);
    assert_eq!(n.remote_rtcp.map(|a| a.port()), Some(7005));
    let bad = parse(&sdp("c=IN IP4 198.51.100.7\r\nm=audio 7000 RTP/AVP 9\r\n")).expect("parse");
    assert!(apply_answer(&o, &bad).is_err());
}
