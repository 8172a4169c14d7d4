//! Fuzz the SIP URI parser: no panic on any input, and a parsed URI prints
//! back its text, which parses again to the same user, host and port.
//!
//! cargo +nightly fuzz run parse_uri -- -max_total_time=300
#![no_main]

use libfuzzer_sys::fuzz_target;
use swbd::sip::uri::{SipUri, Uri};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(u) = SipUri::parse(text) {
        let printed = u.to_string();
        assert_eq!(printed, text, "Display is lossless");
        let again = SipUri::parse(&printed).expect("printed URI parses again");
        assert_eq!(again.user(), u.user());
        assert_eq!(again.user_decoded(), u.user_decoded());
        assert_eq!(again.host(), u.host());
        assert_eq!(again.host_text(), u.host_text());
        assert_eq!(again.port(), u.port());
        assert_eq!(again.is_sips(), u.is_sips());
        assert!(again.same_as(&u));
        // Accessors must not panic.
        let _ = (u.password(), u.params(), u.headers(), u.param("transport"));
    }
    if let Some(u) = Uri::parse(text) {
        let again = Uri::parse(&u.to_string()).expect("printed URI parses again");
        assert_eq!(again.user(), u.user());
        assert_eq!(again.host(), u.host());
        assert!(swbd::sip::uri::same_uri(&again, &u));
    }
});
