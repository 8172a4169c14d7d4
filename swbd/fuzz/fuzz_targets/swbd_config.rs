//! Fuzz swbd's config loader: `serde-saphyr` through proto's YAML loader
//! into `Config`, then `validate` (the path `--config` takes after reading
//! the file). Beyond "no panic":
//! - every error names the file and says something; a located error points
//!   inside the input; no error repeats a secret (`token`, `password`);
//! - a config that validates round-trips: written back as YAML (strings
//!   double-quoted and escaped) it parses to an equal `Config`, which
//!   validates again.
//!
//! cargo +nightly fuzz run swbd_config -- -max_total_time=600
#![no_main]

#[path = "support/yaml_checks.rs"]
mod yaml_checks;

use std::fmt::Write;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use swbd::config::{Config, DigestAlgorithm};
use switchboard_proto::support::yaml::{self, FileError};
use yaml_checks::{errors_are_located, no_secret_echoed, quoted};

const SECRET_KEYS: &[&str] = &["token", "password"];

fn path(p: &Path) -> String {
    quoted(p.to_str().expect("paths from YAML are UTF-8"))
}

fn opt<T>(v: &Option<T>, f: impl Fn(&T) -> String) -> String {
    v.as_ref().map_or_else(|| "null".to_string(), f)
}

fn list<T>(v: &[T], f: impl Fn(&T) -> String) -> String {
    let items: Vec<String> = v.iter().map(f).collect();
    format!("[{}]", items.join(", "))
}

fn to_yaml(c: &Config) -> String {
    let mut y = String::new();
    let s = &c.sip;
    let _ = write!(
        y,
        "node_id: {}\nsip:\n  listen: {}\n  domains: {}\n  public_address: {}\n  \
         max_message_size: {}\n  tcp_idle_timeout_secs: {}\n  tcp_max_connections: {}\n  \
         udp_buffer_bytes: {}\n  udp_receivers: {}\n  timers: {{ t1_ms: {}, t2_ms: {}, t4_ms: {} }}\n  \
         user_agent: {}\n",
        quoted(&c.node_id),
        list(&s.listen, |l| quoted(&l.to_string())),
        list(&s.domains, |d| quoted(d)),
        opt(&s.public_address, |a| quoted(&a.to_string())),
        s.max_message_size,
        s.tcp_idle_timeout_secs,
        s.tcp_max_connections,
        s.udp_buffer_bytes,
        s.udp_receivers,
        s.timers.t1_ms,
        s.timers.t2_ms,
        s.timers.t4_ms,
        quoted(&s.user_agent),
    );
    let r = &c.registrar;
    let _ = write!(
        y,
        "registrar: {{ min_expires_secs: {}, max_expires_secs: {}, default_expires_secs: {} }}\n",
        r.min_expires_secs, r.max_expires_secs, r.default_expires_secs
    );
    let a = &c.auth;
    let _ = write!(
        y,
        "auth:\n  enabled: {}\n  realm: {}\n  users_file: {}\n  nonce_ttl_secs: {}\n  \
         max_failures: {}\n  failure_window_secs: {}\n  block_secs: {}\n  algorithms: {}\n",
        a.enabled,
        quoted(&a.realm),
        opt(&a.users_file, |p| path(p)),
        a.nonce_ttl_secs,
        a.max_failures,
        a.failure_window_secs,
        a.block_secs,
        list(&a.algorithms, |g| match g {
            DigestAlgorithm::Md5 => "md5".to_string(),
            DigestAlgorithm::Sha256 => "sha256".to_string(),
        }),
    );
    let _ = write!(
        y,
        "dialplan: {{ file: {}, audio_dir: {} }}\n",
        opt(&c.dialplan.file, |p| path(p)),
        opt(&c.dialplan.audio_dir, |p| path(p)),
    );
    let _ = write!(
        y,
        "gateways: {}\n",
        list(&c.gateways, |g| format!(
            "{{ name: {}, addresses: {}, transport: {}, username: {}, password: {} }}",
            quoted(&g.name),
            list(&g.addresses, |s| quoted(s)),
            g.transport,
            opt(&g.username, |s| quoted(s)),
            opt(&g.password, |s| quoted(s)),
        ))
    );
    let _ = write!(
        y,
        "media:\n  health_interval_ms: {}\n  nodes: {}\n",
        c.media.health_interval_ms,
        list(&c.media.nodes, |n| format!(
            "{{ name: {}, address: {} }}",
            quoted(&n.name),
            quoted(&n.address)
        )),
    );
    let _ = write!(
        y,
        "admin: {{ socket: {}, tcp: {}, token: {} }}\n",
        opt(&c.admin.socket, |p| path(p)),
        opt(&c.admin.tcp, |a| quoted(&a.to_string())),
        opt(&c.admin.token, |t| quoted(t)),
    );
    y
}

/// What `Config::load` does after reading the file.
fn load(text: &str) -> Result<Config, Vec<FileError>> {
    let c = yaml::from_str::<Config>("fuzz.yaml", text).map_err(|e| vec![e])?;
    c.validate("fuzz.yaml")?;
    Ok(c)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match load(text) {
        Ok(c) => {
            let y = to_yaml(&c);
            let again: Config = yaml::from_str("again.yaml", &y)
                .unwrap_or_else(|e| panic!("written back, it does not parse: {e}\n{y}"));
            assert_eq!(again, c, "round trip changed the config:\n{y}");
            assert_eq!(again.validate("again.yaml"), Ok(()));
        }
        Err(errors) => {
            errors_are_located("fuzz.yaml", text, &errors);
            no_secret_echoed(text, SECRET_KEYS, &errors, |t| {
                load(t).err().unwrap_or_default()
            });
        }
    }
});
