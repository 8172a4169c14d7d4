//! Hold that lasts with real phones (issue #15): two baresip phones call
//! through swbd + swrtp with a 3 s RTP timeout; the caller holds (baresip
//! re-INVITEs `sendonly` and stops sending RTP) for longer than the
//! timeout, resumes, and the call is still up with audio both ways.
//!
//! - music on hold (the default): the callee hears the music while held,
//!   and the caller's 1 kHz tone before and after;
//! - `hold: pass`: the callee is re-INVITEd `sendonly` (and stops sending
//!   too), then `sendrecv` on resume; each side hears the other's tone after.
//!
//! The hold lasts until the node shows the held leg silent for longer than
//! the timeout plus a check period (its own packet timestamps), not a fixed
//! sleep. Fails without baresip only under `CI=true`.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::time::{Duration, SystemTime};

use support::baresip::{self, Phone};
use support::{Options, System, eventually, goertzel};
use switchboard_proto::admin::v1 as pb;
use switchboard_proto::media::v1 as media;

const RTP_TIMEOUT_SECS: u64 = 3;
const CALLER_HZ: f64 = 1000.0;
const CALLEE_HZ: f64 = 440.0;
/// The notes of testdata/audio/music-on-hold.wav.
const MUSIC_HZ: [f64; 3] = [523.25, 659.25, 783.99];

async fn sessions(sys: &System) -> Vec<pb::MediaSessionInfo> {
    sys.media_admin(0)
        .await
        .list_sessions(pb::ListMediaSessionsRequest::default())
        .await
        .expect("list sessions")
        .into_inner()
        .sessions
}

async fn session(sys: &System, leg: &str) -> Option<pb::MediaSessionInfo> {
    sessions(sys).await.into_iter().find(|s| s.leg == leg)
}

fn direction(s: &pb::MediaSessionInfo) -> media::Direction {
    s.media
        .as_ref()
        .map(|m| m.direction())
        .unwrap_or(media::Direction::Unspecified)
}

/// How long ago the session last received RTP (node clock).
fn silent_for(s: &pb::MediaSessionInfo) -> Duration {
    let last = s
        .stats
        .as_ref()
        .and_then(|st| st.rx.as_ref())
        .and_then(|rx| rx.last_packet_at)
        .map(|t| SystemTime::UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos as u32));
    last.and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default()
}

/// Wait until the node saw leg `leg` silent for longer than the RTP
/// timeout plus a check period, then check the call is still up.
async fn outlive_the_timeout(sys: &System, leg: &str) {
    let beyond = Duration::from_secs(RTP_TIMEOUT_SECS + 2);
    eventually(30, "held leg silent beyond the RTP timeout", || async {
        let s = session(sys, leg)
            .await
            .unwrap_or_else(|| panic!("the held leg {leg}'s session is gone (the call ended)"));
        assert!(!s.timed_out, "the held leg {leg} timed out");
        (silent_for(&s) > beyond).then_some(())
    })
    .await;
    let calls = sys.active_calls().await;
    assert_eq!(calls.len(), 1, "the held call is up");
    assert_eq!(calls[0].state, pb::CallState::Bridged as i32);
}

/// Packets sent to `leg` so far.
async fn sent_to(sys: &System, leg: &str) -> u64 {
    session(sys, leg)
        .await
        .and_then(|s| s.stats)
        .and_then(|st| st.tx)
        .map(|tx| tx.packets)
        .unwrap_or(0)
}

/// Let `secs` of audio reach `leg` (counted by the node).
async fn let_audio_flow(sys: &System, leg: &str, secs: u64) {
    let from = sent_to(sys, leg).await;
    eventually(30, "audio after resume", || async {
        (sent_to(sys, leg).await >= from + secs * 50).then_some(())
    })
    .await;
}

/// Half-second windows of a recording, labelled by what dominates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heard {
    Tone,
    Music,
    Other,
}

fn windows(samples: &[f64], tone_hz: f64) -> Vec<Heard> {
    samples
        .chunks(4000)
        .filter(|w| w.len() == 4000)
        .map(|w| {
            let tone = goertzel(w, tone_hz);
            let music: f64 = MUSIC_HZ.iter().map(|f| goertzel(w, *f)).sum();
            if tone > 10.0 * music {
                Heard::Tone
            } else if music > 10.0 * tone {
                Heard::Music
            } else {
                Heard::Other
            }
        })
        .collect()
}

/// Whether the last two seconds have the tone (what was heard after
/// resuming: the test lets three seconds flow before hanging up).
fn tone_at_the_end(heard: &[Heard]) -> bool {
    heard.iter().rev().take(4).any(|h| *h == Heard::Tone)
}

/// Whether `heard` has `pattern` as a subsequence.
fn in_order(heard: &[Heard], pattern: &[Heard]) -> bool {
    let mut want = pattern.iter().peekable();
    for h in heard {
        if want.peek() == Some(&h) {
            want.next();
        }
    }
    want.peek().is_none()
}

async fn two_phones(policy: &str) -> Option<(System, Phone, Phone)> {
    if !baresip::available() {
        return None;
    }
    let users = vec![
        ("1001".to_string(), "alice-secret-1".to_string()),
        ("1002".to_string(), "bob-secret-2".to_string()),
    ];
    let sys = System::start(Options {
        users: users.clone(),
        rtp_timeout_secs: RTP_TIMEOUT_SECS,
        media_extra: format!("  hold: {policy}\n"),
        ..Default::default()
    })
    .await;
    // Clear of the swrtp ranges of the harness (20000-39999) and soak.sh's.
    let base =
        48_000 + (std::process::id() % 30) as u16 * 200 + if policy == "moh" { 0 } else { 6_000 };
    let mut alice = Phone::start(&sys.dir, "1001", &users[0].1, sys.sip, CALLER_HZ, base);
    let mut bob = Phone::start(
        &sys.dir,
        "1002",
        &users[1].1,
        sys.sip,
        CALLEE_HZ,
        base + 100,
    );
    let mut admin = sys.signaling().await.expect("admin");
    eventually(20, "both phones registered", || {
        let mut admin = admin.clone();
        async move {
            let regs = admin
                .list_registrations(pb::ListRegistrationsRequest::default())
                .await
                .ok()?
                .into_inner()
                .registrations;
            (regs.len() >= 2).then_some(())
        }
    })
    .await;
    alice.command("dial", &format!("sip:1002@127.0.0.1:{}", sys.sip.port()));
    assert!(
        alice.wait_event("CALL_ESTABLISHED", 15),
        "caller established"
    );
    assert!(bob.wait_event("CALL_ESTABLISHED", 5), "callee established");
    let _ = &mut admin;
    Some((sys, alice, bob))
}

async fn hang_up(sys: &System, alice: &mut Phone, bob: &mut Phone) {
    alice.command("hangup", "");
    assert!(alice.wait_event("CALL_CLOSED", 10), "caller closed");
    assert!(bob.wait_event("CALL_CLOSED", 10), "callee got BYE");
    sys.assert_clean().await;
    // baresip finishes its recordings on close.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn heard(phone: &Phone, tone_hz: f64) -> Vec<Heard> {
    let rec = phone
        .recording()
        .unwrap_or_else(|| panic!("{} recorded nothing", phone.user));
    windows(&baresip::read_wav(&rec), tone_hz)
}

#[tokio::test]
async fn baresip_hold_longer_than_the_rtp_timeout_with_music_on_hold() {
    let Some((sys, mut alice, mut bob)) = two_phones("moh").await else {
        return;
    };
    let_audio_flow(&sys, "b", 2).await;
    alice.command("hold", "");
    eventually(10, "A's hold at the node, music to B", || async {
        let a = session(&sys, "a").await?;
        let b = session(&sys, "b").await?;
        (direction(&a) == media::Direction::Recvonly && b.playing == "music-on-hold.wav")
            .then_some(())
    })
    .await;
    outlive_the_timeout(&sys, "a").await;

    alice.command("resume", "");
    eventually(10, "A resumed, legs bridged again", || async {
        let a = session(&sys, "a").await?;
        let b = session(&sys, "b").await?;
        (direction(&a) == media::Direction::Sendrecv
            && b.playing.is_empty()
            && a.bridged_with == b.session_id)
            .then_some(())
    })
    .await;
    let_audio_flow(&sys, "b", 3).await;
    hang_up(&sys, &mut alice, &mut bob).await;

    let bob_heard = heard(&bob, CALLER_HZ);
    assert!(
        in_order(&bob_heard, &[Heard::Tone, Heard::Music, Heard::Tone]),
        "Bob hears Alice, the music on hold, then Alice again: {bob_heard:?}"
    );
    let alice_heard = heard(&alice, CALLEE_HZ);
    assert!(
        tone_at_the_end(&alice_heard),
        "Alice hears Bob after resuming: {alice_heard:?}"
    );
}

#[tokio::test]
async fn baresip_hold_longer_than_the_rtp_timeout_passed_on() {
    let Some((sys, mut alice, mut bob)) = two_phones("pass").await else {
        return;
    };
    let_audio_flow(&sys, "b", 2).await;
    alice.command("hold", "");
    eventually(10, "hold passed on to B", || async {
        let a = session(&sys, "a").await?;
        let b = session(&sys, "b").await?;
        (direction(&a) == media::Direction::Recvonly && direction(&b) == media::Direction::Sendonly)
            .then_some(())
    })
    .await;
    outlive_the_timeout(&sys, "a").await;
    outlive_the_timeout(&sys, "b").await;

    alice.command("resume", "");
    eventually(10, "resume passed on to B", || async {
        let a = session(&sys, "a").await?;
        let b = session(&sys, "b").await?;
        (direction(&a) == media::Direction::Sendrecv && direction(&b) == media::Direction::Sendrecv)
            .then_some(())
    })
    .await;
    let_audio_flow(&sys, "b", 3).await;
    let_audio_flow(&sys, "a", 3).await;
    hang_up(&sys, &mut alice, &mut bob).await;

    let bob_heard = heard(&bob, CALLER_HZ);
    assert!(
        tone_at_the_end(&bob_heard) && !bob_heard.contains(&Heard::Music),
        "Bob hears Alice after resuming, and no music (hold is passed on): {bob_heard:?}"
    );
    let alice_heard = heard(&alice, CALLEE_HZ);
    assert!(
        tone_at_the_end(&alice_heard),
        "Alice hears Bob after resuming: {alice_heard:?}"
    );
}
