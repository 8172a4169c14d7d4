//! Playback into a session: what a real UDP peer receives, decoded.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use switchboard_proto::media::v1 as pb;
use swrtp::g711::Law;
use tokio_stream::StreamExt;

fn expected(file: &str, law: Law) -> Vec<u8> {
    let r = hound::WavReader::open(audio_dir().join(file)).unwrap();
    r.into_samples::<i16>()
        .map(|s| law.encode(s.unwrap()))
        .collect()
}

async fn play(
    d: &mut Daemon,
    id: &str,
    file: &str,
    looped: bool,
) -> tonic::Streaming<pb::PlayEvent> {
    d.media
        .play(pb::PlayRequest {
            session_id: id.into(),
            file: file.into(),
            r#loop: looped,
        })
        .await
        .expect("play")
        .into_inner()
}

#[tokio::test]
async fn tone_arrives_as_paced_pcmu_packets_and_completes() {
    let mut d = Daemon::start(config("7200-7219")).await;
    let peer = Peer::new().await;
    let a = d.answer("play", &peer, "0", "").await;
    let mut events = play(&mut d, &a.session_id, "tone-1khz-2s.wav", false).await;
    let first = events.next().await.unwrap().unwrap();
    match first.event {
        Some(pb::play_event::Event::Started(s)) => {
            assert_eq!(s.duration.map(|d| d.seconds), Some(2));
        }
        other => panic!("expected started, got {other:?}"),
    }
    // 2 s at 20 ms = 100 packets of 160 samples.
    let mut packets = Vec::new();
    for _ in 0..100 {
        packets.push(parse(&peer.recv().await.expect("packet")));
    }
    let (_, marker, seq0, ts0, ssrc, _) = packets[0].clone();
    assert!(marker, "marker on the first packet");
    let mut audio = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        assert_eq!(p.0, 0, "PCMU");
        assert_eq!(p.4, ssrc);
        assert_eq!(p.2, seq0.wrapping_add(i as u16), "seq continuity");
        assert_eq!(p.3, ts0.wrapping_add(160 * i as u32), "ts step 160");
        assert_eq!(p.5.len(), 160);
        if i > 0 {
            assert!(!p.1, "no marker after the first");
        }
        audio.extend_from_slice(&p.5);
    }
    assert_eq!(audio, expected("tone-1khz-2s.wav", Law::Ulaw));
    // Decoded, it is a 1 kHz tone: 2 zero crossings per ms.
    let pcm: Vec<i16> = audio.iter().map(|b| Law::Ulaw.decode(*b)).collect();
    let crossings = pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    assert!(
        (3900..=4100).contains(&crossings),
        "{crossings} zero crossings in 2 s"
    );
    // Events end with Completed(100).
    let mut last = None;
    while let Some(e) = events.next().await {
        last = e.unwrap().event;
    }
    match last {
        Some(pb::play_event::Event::Completed(c)) => assert_eq!(c.packets_sent, 100),
        other => panic!("expected completed, got {other:?}"),
    }
    d.stop().await;
}

#[tokio::test]
async fn pcma_session_plays_alaw_and_stop_ends_a_loop() {
    let mut d = Daemon::start(config("7220-7239")).await;
    let peer = Peer::new().await;
    let a = d.answer("play", &peer, "8", "").await;
    let mut events = play(&mut d, &a.session_id, "beep-440.wav", true).await;
    let expected = expected("beep-440.wav", Law::Alaw);
    // A 1 s file looped: 60 packets cover it and then wrap around.
    let mut audio = Vec::new();
    for _ in 0..60 {
        let p = parse(&peer.recv().await.expect("packet"));
        assert_eq!(p.0, 8);
        audio.extend_from_slice(&p.5);
    }
    assert_eq!(&audio[..8000], &expected[..]);
    assert_eq!(&audio[8000..], &expected[..audio.len() - 8000], "loops");
    let stopped = d
        .media
        .stop_playback(pb::StopPlaybackRequest {
            session_id: a.session_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stopped.was_playing);
    let mut last = None;
    while let Some(e) = events.next().await {
        last = e.unwrap().event;
    }
    match last {
        Some(pb::play_event::Event::Stopped(s)) => assert_eq!(s.reason, "requested"),
        other => panic!("expected stopped, got {other:?}"),
    }
    d.stop().await;
}

#[tokio::test]
async fn missing_corrupt_and_escaping_files() {
    let mut d = Daemon::start(config("7240-7259")).await;
    let peer = Peer::new().await;
    let a = d.answer("play", &peer, "0", "").await;
    for (file, needle) in [
        ("nope.wav", "nope.wav"),
        ("corrupt.wav", "cannot decode"),
        ("generate.py", "cannot decode"),
    ] {
        let mut events = play(&mut d, &a.session_id, file, false).await;
        match events.next().await.unwrap().unwrap().event {
            Some(pb::play_event::Event::Error(e)) => {
                assert!(e.message.contains(needle), "{file}: {}", e.message)
            }
            other => panic!("{file}: expected error, got {other:?}"),
        }
        assert!(events.next().await.is_none(), "stream ends after the error");
    }
    let e = d
        .media
        .play(pb::PlayRequest {
            session_id: a.session_id.clone(),
            file: "../config/swrtp-example.yaml".into(),
            r#loop: false,
        })
        .await
        .expect_err("escape");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    // The daemon still serves, and the session can play a good file.
    let mut events = play(&mut d, &a.session_id, "beep-440.wav", false).await;
    assert!(matches!(
        events.next().await.unwrap().unwrap().event,
        Some(pb::play_event::Event::Started(_))
    ));
    d.stop().await;
}

#[tokio::test]
async fn playback_while_bridged_is_refused_and_bridging_stops_playback() {
    let mut d = Daemon::start(config("7260-7279")).await;
    let alice = Peer::new().await;
    let bob = Peer::new().await;
    let a = d.answer("pb", &alice, "0", "").await.session_id;
    let b = d.offer("pb", &bob, "0", "").await;
    let mut events = play(&mut d, &a, "tone-1khz-2s.wav", true).await;
    assert!(alice.recv().await.is_some(), "playing");
    d.bridge(&a, &b).await;
    let mut last = None;
    while let Some(e) = events.next().await {
        last = e.unwrap().event;
    }
    match last {
        Some(pb::play_event::Event::Stopped(s)) => assert_eq!(s.reason, "bridged"),
        other => panic!("expected stopped, got {other:?}"),
    }
    let e = d
        .media
        .play(pb::PlayRequest {
            session_id: b.clone(),
            file: "beep-440.wav".into(),
            r#loop: false,
        })
        .await
        .expect_err("bridged");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    d.stop().await;
}

#[tokio::test]
async fn destroy_stops_playback() {
    let mut d = Daemon::start(config("7280-7299")).await;
    let peer = Peer::new().await;
    let a = d.answer("pd", &peer, "0", "").await.session_id;
    let mut events = play(&mut d, &a, "tone-1khz-2s.wav", true).await;
    assert!(peer.recv().await.is_some());
    d.destroy(&a).await;
    let mut last = None;
    while let Some(e) = events.next().await {
        last = e.unwrap().event;
    }
    match last {
        Some(pb::play_event::Event::Stopped(s)) => assert_eq!(s.reason, "session destroyed"),
        other => panic!("expected stopped, got {other:?}"),
    }
    d.stop().await;
}
