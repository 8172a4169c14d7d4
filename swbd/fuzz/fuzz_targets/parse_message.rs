//! Fuzz the SIP message layer: parse (datagram and stream rules), typed
//! headers, printing round trip, 400 construction, stream framing.
//!
//! cargo +nightly fuzz run parse_message -- -max_total_time=300
//! Crashes found go to testdata/sip/fuzz-regressions/ (replayed by
//! `cargo test -p swbd --test fuzz_regressions`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = swbd::sip::exercise(data) {
        panic!("{e}");
    }
});
