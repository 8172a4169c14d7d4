//! One drain model (issue #16): a drain set on a swrtp node itself (what
//! `swctl top` does on a swrtp row) could not be undone from the CLI,
//! whose `nodes drain|undrain` only touched swbd's pool. Now `swctl nodes
//! drain|undrain NODE` sets both: every swbd pool that has NODE and every
//! swrtp among the targets whose node id is NODE.
#![allow(clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use common::{hold_dialplan, start_pbx, swctl, tempdir};

fn swrtp_draining(host: &str) -> bool {
    let (code, out, err) = swctl(&["--host", host, "status", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("status json");
    let s = v.as_array().and_then(|a| a.first()).cloned().unwrap_or(v);
    let detail = s
        .get("detail")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("no detail in {s}"));
    detail.contains("draining")
}

#[test]
fn nodes_undrain_clears_a_drain_set_on_the_swrtp_itself() {
    let dir = tempdir("drain-model");
    let plan = hold_dialplan(&dir, "1s");
    let pbx = start_pbx(&dir, &plan);
    let swrtp = format!("unix://{}", pbx.swrtp_socket.display());
    let swbd = format!("unix://{}", pbx.swbd_socket.display());
    assert!(!swrtp_draining(&swrtp));

    // Drain on the node, as top does on a swrtp row.
    let (code, out, err) = swctl(&["--host", &swrtp, "nodes", "drain", "rtp-a"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("swrtp rtp-a"), "{out}");
    assert!(swrtp_draining(&swrtp));

    // Undone from the CLI, addressing both daemons as an operator would.
    let (code, out, err) = swctl(&[
        "--host", &swbd, "--host", &swrtp, "nodes", "undrain", "rtp-a",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!swrtp_draining(&swrtp), "{out}");
    // A name no swrtp and no pool has is still an error.
    let (code, _, err) = swctl(&["--host", &swrtp, "nodes", "undrain", "rtp-zz"]);
    assert_ne!(code, 0, "{err}");
}
