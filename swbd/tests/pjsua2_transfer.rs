//! Transfer with a real SIP stack: pjsua2 (PyPI `pjsua2-python`) runs
//! Alice, Bob and Carol (`tests/pjsua2/transfer.py`). Attended: Bob calls
//! Carol while Alice waits, then transfers Alice to Carol with
//! `Call.xferReplaces`; blind: Bob transfers Alice with `Call.xfer`. The
//! script checks the signalling (NOTIFY 200 to Bob, Bob's calls released,
//! Alice and Carol up); this test checks the audio: at the end Alice hears
//! Carol's 700 Hz and Carol hears Alice's 1 kHz, not Bob's 440 Hz.
//!
//! Fails in CI when pjsua2 is missing (`scripts/test.sh` installs it).
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::process::{Command, Stdio};

use support::baresip_phone::{tail_tone, write_tone};
use support::{Options, System};

fn pjsua2_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import pjsua2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn pjsua2_attended_transfer_joins_alice_and_carol() {
    transfer("attended").await;
}

#[tokio::test]
async fn pjsua2_blind_transfer_joins_alice_and_carol() {
    transfer("blind").await;
}

async fn transfer(mode: &str) {
    if !pjsua2_installed() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "pjsua2 is missing; in CI that is a failure (scripts/test.sh installs it)"
        );
        eprintln!(
            "SKIP: pjsua2 is not installed (pip install pjsua2-python; scripts/test.sh does)"
        );
        return;
    }
    let phones = [
        ("1001", "alice-pw-1", 1000.0),
        ("1002", "bob-pw-2", 440.0),
        ("1003", "carol-pw-3", 700.0),
    ];
    let sys = System::start(Options {
        users: phones
            .iter()
            .map(|(u, p, _)| (u.to_string(), p.to_string()))
            .collect(),
        ..Default::default()
    })
    .await;
    let mut args = vec![
        mode.to_string(),
        sys.sip.port().to_string(),
        sys.dir.display().to_string(),
        // Disjoint from the other mode's (tests run in parallel) and
        // from baresip's ranges.
        // Above the ephemeral range (32768-60999), where sockets bound to
        // port 0 by any test land.
        (61_000 + (std::process::id() % 6) * 600 + if mode == "blind" { 300 } else { 0 })
            .to_string(),
    ];
    for (user, password, hz) in phones {
        let wav = sys.dir.join(format!("tone-{user}.wav"));
        write_tone(&wav, hz, 30);
        args.push(format!("{user}:{password}:{}", wav.display()));
    }
    let script = support::repo().join("swbd/tests/pjsua2/transfer.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run python3")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pjsua2 scenario failed ({}):\n{stdout}\n{stderr}\nlog: {}",
        out.status,
        sys.dir.join("pjsua2.log").display()
    );
    assert!(stdout.contains(&format!("OK {mode} transfer")), "{stdout}");
    sys.assert_clean().await;

    for (user, want, not) in [("1001", 700.0, 440.0), ("1003", 1000.0, 440.0)] {
        let rec = sys.dir.join(format!("pjsua2-{user}.wav"));
        let (hit, miss) = tail_tone(&rec, 2, want, not);
        assert!(
            hit > 10.0 * miss,
            "{user} hears {want} Hz at the end: {hit:e} vs {not} Hz {miss:e}"
        );
    }
}
