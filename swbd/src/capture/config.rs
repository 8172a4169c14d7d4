//! The `capture:` section of swbd's config.

use serde::Deserialize;

/// SIP capture: the messages of recent calls, kept for `swctl calls pcap`,
/// and an optional HEP v3 copy of every SIP message to a collector.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// Keep the SIP messages of recent calls (default on: the memory is
    /// bounded by `max_calls` and `max_bytes`).
    pub enabled: bool,
    /// Calls whose messages are kept; the call quiet the longest goes first.
    pub max_calls: usize,
    /// Bytes of kept messages over all calls (a message is kept up to
    /// 16 KiB; beyond, cut).
    pub max_bytes: usize,
    /// Messages kept per call: the first 16 and the latest ones (a long
    /// call's refreshes do not push its INVITE out).
    pub max_messages_per_call: usize,
    /// HEP v3 collector (Homer, heplify-server) as `host:port`, over UDP:
    /// every SIP message swbd sends or receives is copied there. Unset: no HEP.
    pub hep: Option<String>,
    /// Capture agent id sent in every HEP packet (chunk 0x000c).
    pub hep_id: u32,
    /// Authentication key sent in every HEP packet (chunk 0x000e), when
    /// the collector wants one. HEP sends it in clear: keep the capture
    /// network private.
    pub hep_password: Option<String>,
    /// HEP packets waiting to be sent; when full, new ones are dropped and
    /// counted (`hep_dropped`): the SIP path never waits for the collector.
    pub hep_queue: usize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_calls: 1000,
            max_bytes: 32 * 1024 * 1024,
            max_messages_per_call: 256,
            hep: None,
            hep_id: 2001,
            hep_password: None,
            hep_queue: 4096,
        }
    }
}

impl CaptureConfig {
    /// Cross-field rules; each error names its key.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.max_calls == 0 || self.max_calls > 1_000_000 {
            errors.push("capture.max_calls: must be between 1 and 1000000".into());
        }
        if self.max_bytes < 64 * 1024 {
            errors.push("capture.max_bytes: must be at least 65536".into());
        }
        if !(super::store::HEAD + 1..=100_000).contains(&self.max_messages_per_call) {
            errors.push(format!(
                "capture.max_messages_per_call: must be between {} and 100000",
                super::store::HEAD + 1
            ));
        }
        if let Some(hep) = &self.hep
            && let Err(why) = parse_host_port(hep)
        {
            errors.push(format!("capture.hep: {hep:?} {why}"));
        }
        if self.hep_queue == 0 || self.hep_queue > 1_000_000 {
            errors.push("capture.hep_queue: must be between 1 and 1000000".into());
        }
        if self
            .hep_password
            .as_deref()
            .is_some_and(|p| p.len() > 1024 || p.chars().any(char::is_control))
        {
            errors.push("capture.hep_password: at most 1024 bytes, no control characters".into());
        }
        errors
    }
}

/// `host:port` or `[v6]:port` -> (host, port).
pub fn parse_host_port(s: &str) -> Result<(String, u16), &'static str> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or("is not host:port (a port is needed)")?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or("has no valid port (1-65535)")?;
    let (host, bracketed) = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) => (inner, true),
        None => (host, false),
    };
    if host.is_empty() || host.contains(['/', ' ', '[', ']']) {
        return Err("has no valid host");
    }
    if host.contains(':') && (!bracketed || host.parse::<std::net::Ipv6Addr>().is_err()) {
        return Err("has an invalid IPv6 address (write [addr]:port)");
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(
            parse_host_port("homer.example:9060"),
            Ok(("homer.example".into(), 9060))
        );
        assert_eq!(parse_host_port("[::1]:9060"), Ok(("::1".into(), 9060)));
        assert!(parse_host_port("homer.example").is_err());
        assert!(parse_host_port("homer:0").is_err());
        assert!(parse_host_port(":9060").is_err());
        assert!(parse_host_port("::1:9060").is_err());
    }

    #[test]
    fn defaults_validate_and_bad_values_name_their_key() {
        assert!(CaptureConfig::default().validate().is_empty());
        let bad = CaptureConfig {
            max_calls: 0,
            hep: Some("nowhere".into()),
            ..Default::default()
        };
        let errors = bad.validate();
        assert!(errors.iter().any(|e| e.starts_with("capture.max_calls")));
        assert!(errors.iter().any(|e| e.starts_with("capture.hep:")));
    }
}
