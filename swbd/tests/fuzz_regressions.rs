//! Replays every input in testdata/sip/fuzz-regressions/ (crashes once
//! found by `cargo +nightly fuzz run parse_message`, plus seeds) through
//! the same checks as the fuzz target: no panic, printing round-trips.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

#[test]
fn fuzz_regressions_do_not_panic() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/sip/fuzz-regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("regression dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let data = std::fs::read(&path).expect("read");
            println!("{}", path.display());
            swbd::sip::exercise(&data).expect("round trip");
            n += 1;
        }
    }
    assert!(n > 0, "no inputs in {}", dir.display());
}

#[test]
fn torture_messages_survive_the_fuzz_checks() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/rfc4475");
    for entry in std::fs::read_dir(&dir).expect("rfc4475 dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "dat") {
            swbd::sip::exercise(&std::fs::read(&path).expect("read")).expect("round trip");
        }
    }
}
