//! Fuzz swrtp's config loader (`Config::from_yaml`, the path `--config`
//! takes after reading the file). Beyond "no panic":
//! - every error names the file, says something, and a located error points
//!   inside the input (line <= lines + 1, column <= that line's length + 1);
//! - a config that loads is usable: its port range has a pair, its admin
//!   endpoint resolves, its advertised address is concrete;
//! - it round-trips: written back as YAML (every string double-quoted and
//!   escaped) it loads again to an equal `Config`.
//!
//! cargo +nightly fuzz run swrtp_config -- -max_total_time=600
#![no_main]

use std::fmt::Write;

use libfuzzer_sys::fuzz_target;
use swrtp::config::Config;

/// A YAML double-quoted scalar: printable ASCII verbatim, everything else
/// as a `\u`/`\U` escape, so no character can be folded or reinterpreted.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

fn to_yaml(c: &Config) -> String {
    let mut y = String::new();
    let _ = writeln!(y, "node_id: {}", quoted(&c.node_id));
    let _ = writeln!(y, "listen: {}", quoted(&c.listen));
    let _ = writeln!(y, "admin: {}", quoted(&c.admin));
    let _ = writeln!(y, "rtp_ports: {}", quoted(&c.rtp_ports));
    let _ = writeln!(y, "bind_address: {}", quoted(&c.bind_address.to_string()));
    match c.public_address {
        Some(a) => {
            let _ = writeln!(y, "public_address: {}", quoted(&a.to_string()));
        }
        None => y.push_str("public_address: null\n"),
    }
    let dir = c.audio_dir.to_str().expect("paths from YAML are UTF-8");
    let _ = writeln!(y, "audio_dir: {}", quoted(dir));
    let _ = writeln!(y, "rtp_timeout_secs: {}", c.rtp_timeout_secs);
    let _ = writeln!(y, "latch_packets: {}", c.latch_packets);
    let _ = writeln!(y, "log_level: {}", quoted(&c.log_level));
    let _ = writeln!(y, "log_format: {}", quoted(&c.log_format));
    y
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_yaml("fuzz.yaml", text) {
        Ok(c) => {
            let range = c.port_range().expect("a valid config has a port range");
            assert!(range.pairs() >= 1 && range.min % 2 == 0 && range.min > 0);
            assert!(c.admin_endpoint().is_ok());
            assert!(!c.advertised_address().is_unspecified());
            assert!((1..=1000).contains(&c.latch_packets));
            let y = to_yaml(&c);
            let again = Config::from_yaml("again.yaml", &y)
                .unwrap_or_else(|e| panic!("written back, it does not load: {e:?}\n{y}"));
            assert_eq!(again, c, "round trip changed the config:\n{y}");
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            // YAML line breaks: LF, CR LF, and a lone CR.
            let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
            let lines: Vec<&str> = normalized.split('\n').collect();
            for e in &errors {
                assert_eq!(e.file, "fuzz.yaml");
                assert!(!e.message.trim().is_empty(), "{e:?}");
                if e.line > 0 {
                    let line = e.line as usize;
                    assert!(
                        line <= lines.len() + 1,
                        "{e} past the end ({} lines)",
                        lines.len()
                    );
                    let width = lines.get(line - 1).map_or(0, |l| l.len());
                    assert!(
                        e.column as usize <= width + 1,
                        "{e} past the end of its line ({width} bytes)"
                    );
                }
            }
        }
    }
});
