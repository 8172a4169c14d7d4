//! Fuzz the dialplan loader: the YAML fast path either declines or gives
//! exactly serde-saphyr's `DialplanFile` (every span included), and
//! `Dialplan::parse` gives a plan or located errors, never a panic.
//!
//! cargo +nightly fuzz run dialplan_fast_path -- -max_total_time=300
#![no_main]

use libfuzzer_sys::fuzz_target;
use swbd::dialplan::file::DialplanFile;
use swbd::dialplan::{Dialplan, DialplanContext};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(fast) = swbd::dialplan::fast_path::parse(text) {
        match serde_saphyr::from_str::<DialplanFile>(text) {
            Ok(slow) => assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{text:?}"),
            Err(e) => panic!("the fast path took what serde-saphyr refuses ({e}): {text:?}"),
        }
    }
    if let Err(errs) = Dialplan::parse("fuzz.yaml", text, &DialplanContext::default()) {
        assert!(!errs.is_empty());
    }
});
