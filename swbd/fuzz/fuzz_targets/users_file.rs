//! Fuzz the digest users file (`Users::from_yaml`, what `Users::load` does
//! after reading the file). Beyond "no panic":
//! - an error names the file, says something, points inside the input, and
//!   never repeats a password or HA1 of the input;
//! - a loaded file round-trips: each user written back with its HA1s loads
//!   to equal `Users`; every HA1 is lowercase hex of the algorithm's length.
//!
//! The first byte picks the realm; the rest is the file.
//!
//! cargo +nightly fuzz run users_file -- -max_total_time=600
#![no_main]

#[path = "support/yaml_checks.rs"]
mod yaml_checks;

use libfuzzer_sys::fuzz_target;
use swbd::auth::digest::Algorithm;
use swbd::auth::users::Users;
use yaml_checks::{errors_are_located, no_secret_echoed, quoted};

const SECRET_KEYS: &[&str] = &["password", "ha1_md5", "ha1_sha256"];

fuzz_target!(|data: &[u8]| {
    let Some((&r, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let realm = if r & 1 == 0 {
        "switchboard"
    } else {
        "ex\"ample\u{e9}.org"
    };
    match Users::from_yaml("users.yaml", text, realm) {
        Ok(users) => {
            let mut y = String::from("users:\n");
            for (name, secret) in users.iter() {
                assert!(!name.is_empty());
                y.push_str(&format!("  - username: {}\n", quoted(name)));
                for (alg, key, len) in [
                    (Algorithm::Md5, "ha1_md5", 32),
                    (Algorithm::Sha256, "ha1_sha256", 64),
                ] {
                    if let Some(h) = secret.ha1(alg) {
                        y.push_str(&format!("    {key}: {}\n", quoted(h)));
                        // A given HA1 is taken as written (lowercased); with
                        // none given, each is derived from a password: hex of
                        // the algorithm's length.
                        assert!(!h.chars().any(|c| c.is_ascii_uppercase()), "{h:?}");
                        if !text.contains("ha1_") {
                            assert!(
                                h.len() == len && h.chars().all(|c| c.is_ascii_hexdigit()),
                                "{h:?}"
                            );
                        }
                    }
                }
                assert!(users.get(name).is_some());
            }
            if users.is_empty() {
                y = "users: []\n".into();
            }
            let again = Users::from_yaml("again.yaml", &y, realm)
                .unwrap_or_else(|e| panic!("written back, it does not load: {e}\n{y}"));
            assert_eq!(again, users, "round trip changed the users:\n{y}");
        }
        Err(e) => {
            let errors = [e];
            errors_are_located("users.yaml", text, &errors);
            no_secret_echoed(text, SECRET_KEYS, &errors, |t| {
                Users::from_yaml("users.yaml", t, realm)
                    .err()
                    .into_iter()
                    .collect()
            });
        }
    }
});
