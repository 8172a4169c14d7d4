//! swrtp configuration: YAML with `deny_unknown_fields`, defaults for every
//! field, `validate()`, then clap flags merged on top (pingora's order).
//!
//! Durations are plain integers with their unit in the key (`_secs`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use switchboard_proto::support::grpc::Endpoint;
use switchboard_proto::support::yaml::{self, FileError};

/// The whole swrtp configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Node name reported in health and admin status.
    pub node_id: String,
    /// Media control gRPC endpoint (MediaService + health + reflection), for swbd.
    pub listen: String,
    /// Admin gRPC endpoint (MediaAdmin + health + reflection), for swctl.
    /// Empty means `$XDG_RUNTIME_DIR/switchboard/swrtp.sock`, or
    /// `/tmp/switchboard-$UID/swrtp.sock` without XDG_RUNTIME_DIR.
    pub admin: String,
    /// File holding the bearer token every MediaService call must carry
    /// (swbd reads the same file as `media.token_file`), so that another
    /// local user cannot drive this node. Created (mode 0600, random) when
    /// missing; refused unless owned by this user with mode 0600 or
    /// stricter. Unset: `media.token` in the runtime directory, which is
    /// only allowed while `listen` is loopback or a unix socket; beyond
    /// loopback set it and copy the file to every swbd.
    pub media_token_file: Option<PathBuf>,
    /// File holding the bearer token swctl must send when `admin` is a TCP
    /// endpoint (required then, loopback included; same file checks as
    /// `media_token_file`). Ignored for a unix socket, which its file mode
    /// protects.
    pub admin_token_file: Option<PathBuf>,
    /// RTP port range `MIN-MAX`; MIN must be even (RTP even, RTCP = RTP + 1).
    pub rtp_ports: String,
    /// Local address the RTP sockets bind to.
    pub bind_address: IpAddr,
    /// Address advertised in SDP (`c=`, `o=`); defaults to `bind_address`.
    /// Set it when the node sits behind NAT or binds 0.0.0.0.
    pub public_address: Option<IpAddr>,
    /// IPv6 address the RTP sockets of IPv6 legs bind to, so a call can
    /// have an IPv4 leg and an IPv6 leg (each leg's family follows its
    /// peer: the offer's `c=` line, or the signalling flow swbd names).
    /// Unset: `::1` when `bind_address` is IPv4 loopback (the default) and
    /// the host has IPv6 loopback, otherwise no IPv6 media (an IPv6 offer
    /// is refused, swbd answers 488). Must be IPv6; `::` needs
    /// `public_address_v6`. Not allowed when `bind_address` is IPv6 itself.
    pub bind_address_v6: Option<IpAddr>,
    /// Address advertised in SDP (`c=IN IP6`) for IPv6 legs; defaults to
    /// the IPv6 bind address.
    pub public_address_v6: Option<IpAddr>,
    /// Directory Play resolves file names under; `..` escapes are refused.
    pub audio_dir: PathBuf,
    /// A session receiving no RTP for this long is reported as timed out and
    /// its ports are released (0 disables the timeout). A leg on hold (not
    /// `sendrecv`, or `c=0.0.0.0`) is exempt until it resumes, and RTCP
    /// counts as activity (see `hold.rs`).
    pub rtp_timeout_secs: u64,
    /// Lease of a session created by an owner (swbd naming itself, see
    /// `lease` in the crate docs) until that owner announces its own length:
    /// a session not renewed for this long is destroyed, ringing or not, so
    /// a crashed swbd does not leave sessions and ports behind. Sessions of
    /// clients that name no owner never expire this way. 1..86400.
    pub session_lease_secs: u64,
    /// Consecutive valid RTP packets (same SSRC) a new source must send
    /// before media is latched to it (see the crate docs, "Latching").
    pub latch_packets: u32,
    /// Log level or filter.
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: String,
    /// Serve Prometheus `/metrics` on `metrics_listen` (on by default). A
    /// listener that cannot be bound is logged and the node runs on.
    pub metrics_enabled: bool,
    /// Where `/metrics` listens (`127.0.0.1:9461`; swbd's default is 9460).
    /// Beyond loopback it needs `metrics_token_file`.
    pub metrics_listen: std::net::SocketAddr,
    /// File holding the bearer token Prometheus must send for `/metrics`
    /// (required on loopback too when set). Created (0600, random) when
    /// missing; same file checks as `media_token_file`.
    pub metrics_token_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: "swrtp".into(),
            listen: "tcp://127.0.0.1:9090".into(),
            admin: String::new(),
            media_token_file: None,
            admin_token_file: None,
            rtp_ports: "10000-20000".into(),
            bind_address: IpAddr::from([127, 0, 0, 1]),
            public_address: None,
            bind_address_v6: None,
            public_address_v6: None,
            audio_dir: PathBuf::from("testdata/audio"),
            rtp_timeout_secs: 30,
            session_lease_secs: 30,
            latch_packets: 3,
            log_level: "info".into(),
            log_format: "text".into(),
            metrics_enabled: true,
            metrics_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9461)),
            metrics_token_file: None,
        }
    }
}

/// An inclusive RTP port range whose pairs are `(even, even + 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port (even).
    pub min: u16,
    /// Last port.
    pub max: u16,
}

impl PortRange {
    /// Number of `(RTP, RTCP)` pairs that fit in the range.
    pub fn pairs(&self) -> u32 {
        if self.max <= self.min {
            return 0;
        }
        (u32::from(self.max) - u32::from(self.min)).div_ceil(2)
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("rtp_ports {s:?}: expected MIN-MAX, e.g. 10000-20000"))?;
        let min: u16 = a
            .trim()
            .parse()
            .map_err(|_| format!("rtp_ports {s:?}: {a:?} is not a port number"))?;
        let max: u16 = b
            .trim()
            .parse()
            .map_err(|_| format!("rtp_ports {s:?}: {b:?} is not a port number"))?;
        if min == 0 {
            return Err(format!("rtp_ports {s:?}: port 0 is not allowed"));
        }
        if !min.is_multiple_of(2) {
            return Err(format!(
                "rtp_ports {s:?}: MIN must be even (RTP on even ports, RTCP on the next odd one)"
            ));
        }
        if max <= min {
            return Err(format!(
                "rtp_ports {s:?}: MAX must be above MIN and leave room for one RTP/RTCP pair"
            ));
        }
        Ok(Self { min, max })
    }
}

impl Config {
    /// Read, parse and validate a YAML file.
    pub fn load(path: &Path) -> Result<Self, Vec<FileError>> {
        let mut config: Config = yaml::from_path(path).map_err(|e| vec![e])?;
        if let Some(base) = path.parent() {
            config.resolve_token_paths(base);
        }
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    /// Token files named relative to the config file are relative to its
    /// directory.
    pub fn resolve_token_paths(&mut self, base: &Path) {
        for p in [
            &mut self.media_token_file,
            &mut self.admin_token_file,
            &mut self.metrics_token_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Parse and validate YAML text named `name` in errors.
    pub fn from_yaml(name: &str, text: &str) -> Result<Self, Vec<FileError>> {
        let config: Config = yaml::from_str(name, text).map_err(|e| vec![e])?;
        config.validate(name)?;
        Ok(config)
    }

    /// Check the semantic rules serde cannot; every problem is reported.
    pub fn validate(&self, name: &str) -> Result<(), Vec<FileError>> {
        let mut errors = Vec::new();
        if self.node_id.trim().is_empty() {
            errors.push(FileError::whole(name, "node_id must not be empty"));
        }
        match self.listen.parse::<Endpoint>() {
            Err(e) => errors.push(FileError::whole(name, format!("listen: {e}"))),
            Ok(Endpoint::Tcp(addr))
                if !addr.ip().is_loopback() && self.media_token_file.is_none() =>
            {
                errors.push(FileError::whole(
                    name,
                    format!(
                        "listen: {addr} is not loopback, so media_token_file must be set \
                         (a token file you copy to every swbd as media.token_file)"
                    ),
                ));
            }
            Ok(_) => {}
        }
        if !self.admin.is_empty() {
            match self.admin.parse::<Endpoint>() {
                Err(e) => errors.push(FileError::whole(name, format!("admin: {e}"))),
                Ok(Endpoint::Tcp(addr)) if self.admin_token_file.is_none() => {
                    errors.push(FileError::whole(
                        name,
                        format!(
                            "admin: tcp://{addr} needs admin_token_file (any local user can \
                             connect to a TCP port; swctl sends the token with --token-file)"
                        ),
                    ));
                }
                Ok(_) => {}
            }
        }
        if let Err(e) = self.rtp_ports.parse::<PortRange>() {
            errors.push(FileError::whole(name, e));
        }
        if let Some(p) = self.public_address
            && p.is_unspecified()
        {
            errors.push(FileError::whole(
                name,
                "public_address must be a concrete address, not 0.0.0.0 or ::",
            ));
        }
        if self.public_address.is_none() && self.bind_address.is_unspecified() {
            errors.push(FileError::whole(
                name,
                format!(
                    "bind_address {} cannot be advertised in SDP; set public_address",
                    self.bind_address
                ),
            ));
        }
        self.validate_v6(name, &mut errors);
        if self.latch_packets == 0 || self.latch_packets > 1000 {
            errors.push(FileError::whole(
                name,
                "latch_packets must be between 1 and 1000",
            ));
        }
        if self.rtp_timeout_secs > 86_400 {
            errors.push(FileError::whole(
                name,
                "rtp_timeout_secs must be at most 86400 (one day); 0 disables it",
            ));
        }
        if self.session_lease_secs == 0 || self.session_lease_secs > 86_400 {
            errors.push(FileError::whole(
                name,
                "session_lease_secs must be between 1 and 86400 (one day)",
            ));
        }
        if self.metrics_enabled
            && let Err(e) = switchboard_proto::support::metrics_http::check_listen(
                self.metrics_listen,
                self.metrics_token_file.is_some(),
                "metrics_listen",
                "metrics_token_file",
            )
        {
            errors.push(FileError::whole(name, e));
        }
        if self.log_format != "text" && self.log_format != "json" {
            errors.push(FileError::whole(
                name,
                format!("log_format {:?}: expected text or json", self.log_format),
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The validated port range (call after `validate`).
    pub fn port_range(&self) -> Result<PortRange, String> {
        self.rtp_ports.parse()
    }

    /// Address written into SDP (`validate` refuses a wildcard bind
    /// address without `public_address`).
    pub fn advertised_address(&self) -> IpAddr {
        self.public_address.unwrap_or(self.bind_address)
    }

    /// The IPv6 media address pair `(bind, advertised)` when one is
    /// configured or defaulted (see `bind_address_v6`); `None`: IPv6 legs
    /// only if `bind_address` itself is IPv6. The default (`::1` next to an
    /// IPv4 loopback `bind_address`) is only a candidate: [`crate::start`]
    /// drops it when the host cannot bind `::1`.
    pub fn media_v6(&self) -> Option<(IpAddr, IpAddr)> {
        if self.bind_address.is_ipv6() {
            return None;
        }
        let bind = match self.bind_address_v6 {
            Some(b) => b,
            None if self.bind_address.is_loopback() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            None => return None,
        };
        Some((bind, self.public_address_v6.unwrap_or(bind)))
    }

    fn validate_v6(&self, name: &str, errors: &mut Vec<FileError>) {
        if let Some(b) = self.bind_address_v6 {
            if !b.is_ipv6() {
                errors.push(FileError::whole(
                    name,
                    format!("bind_address_v6 {b} is not an IPv6 address"),
                ));
            } else if self.bind_address.is_ipv6() {
                errors.push(FileError::whole(
                    name,
                    format!(
                        "bind_address_v6 is set but bind_address {} is IPv6 already; \
                         set bind_address_v6 only next to an IPv4 bind_address",
                        self.bind_address
                    ),
                ));
            } else if b.is_unspecified() && self.public_address_v6.is_none() {
                errors.push(FileError::whole(
                    name,
                    format!(
                        "bind_address_v6 {b} cannot be advertised in SDP; set public_address_v6"
                    ),
                ));
            }
        }
        if let Some(p) = self.public_address_v6 {
            if !p.is_ipv6() || p.is_unspecified() {
                errors.push(FileError::whole(
                    name,
                    format!("public_address_v6 {p} must be a concrete IPv6 address"),
                ));
            } else if self.bind_address_v6.is_none() && !self.bind_address.is_loopback() {
                errors.push(FileError::whole(
                    name,
                    "public_address_v6 needs bind_address_v6 (the IPv6 address RTP binds to)",
                ));
            }
        }
    }

    /// The admin endpoint, with the per-user default when not configured.
    pub fn admin_endpoint(&self) -> Result<Endpoint, String> {
        if !self.admin.is_empty() {
            return self.admin.parse();
        }
        Ok(Endpoint::Unix(default_admin_dir().join("swrtp.sock")))
    }
}

/// `$XDG_RUNTIME_DIR/switchboard`, or `/tmp/switchboard-$UID` (shared with
/// swbd and swctl, see `switchboard_proto::support::paths`).
pub fn default_admin_dir() -> PathBuf {
    switchboard_proto::support::paths::runtime_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(yaml_text: &str) -> String {
        match Config::from_yaml("t.yaml", yaml_text) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::from_yaml("t.yaml", "{}\n").expect("defaults");
        assert_eq!(c, Config::default());
        assert_eq!(
            c.port_range(),
            Ok(PortRange {
                min: 10000,
                max: 20000
            })
        );
        assert_eq!(c.port_range().map(|r| r.pairs()), Ok(5000));
    }

    #[test]
    fn example_file_is_valid() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/config/swrtp-example.yaml"
        );
        let c = Config::load(Path::new(path)).expect("example config");
        assert_eq!(c.node_id, "rtp-a");
    }

    #[test]
    fn bad_files_are_refused() {
        for f in ["bad-swrtp-odd-ports.yaml", "bad-swrtp-unknown-key.yaml"] {
            let path = format!("{}/../testdata/config/{f}", env!("CARGO_MANIFEST_DIR"));
            assert!(Config::load(Path::new(&path)).is_err(), "{f}");
        }
    }

    #[test]
    fn odd_port_start_is_refused() {
        assert!(bad("rtp_ports: 10001-20000\n").contains("even"));
    }

    #[test]
    fn inverted_range_is_refused() {
        assert!(bad("rtp_ports: 20000-10000\n").contains("MAX must be above"));
    }

    #[test]
    fn garbage_range_is_refused() {
        assert!(bad("rtp_ports: lots\n").contains("MIN-MAX"));
        assert!(bad("rtp_ports: 0-100\n").contains("port 0"));
        assert!(bad("rtp_ports: 10000-70000\n").contains("not a port"));
    }

    #[test]
    fn unknown_key_is_located() {
        let e = bad("node_id: a\nrtp_port: 1\n");
        assert!(e.starts_with("t.yaml:2:1:"), "{e}");
    }

    #[test]
    fn bad_endpoint_is_refused() {
        assert!(bad("listen: nowhere\n").contains("listen"));
        assert!(bad("admin: unix://\n").contains("admin"));
    }

    #[test]
    fn media_beyond_loopback_needs_a_token_file() {
        let e = bad("listen: tcp://0.0.0.0:9090\n");
        assert!(e.contains("media_token_file must be set"), "{e}");
        Config::from_yaml(
            "t.yaml",
            "listen: tcp://0.0.0.0:9090\nmedia_token_file: /etc/sb/media.token\n",
        )
        .expect("valid with a token file");
        Config::from_yaml("t.yaml", "listen: tcp://[::1]:9090\n").expect("loopback is fine");
    }

    #[test]
    fn tcp_admin_needs_a_token_file_even_on_loopback() {
        let e = bad("admin: tcp://127.0.0.1:7071\n");
        assert!(e.contains("admin_token_file"), "{e}");
        Config::from_yaml(
            "t.yaml",
            "admin: tcp://127.0.0.1:7071\nadmin_token_file: admin.token\n",
        )
        .expect("valid with a token file");
    }

    #[test]
    fn unspecified_public_address_is_refused() {
        assert!(bad("public_address: 0.0.0.0\n").contains("public_address"));
    }

    #[test]
    fn wildcard_bind_needs_a_public_address() {
        assert!(bad("bind_address: 0.0.0.0\n").contains("set public_address"));
        let c = Config::from_yaml(
            "t.yaml",
            "bind_address: 0.0.0.0\npublic_address: 192.0.2.1\n",
        )
        .expect("valid");
        assert_eq!(c.advertised_address(), IpAddr::from([192, 0, 2, 1]));
    }

    #[test]
    fn ipv6_media_defaults_to_loopback_next_to_ipv4_loopback() {
        let c = Config::default();
        let v6 = IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
        assert_eq!(c.media_v6(), Some((v6, v6)));
        let c = Config::from_yaml("t.yaml", "bind_address: 192.0.2.1\n").expect("valid");
        assert_eq!(c.media_v6(), None, "no IPv6 guessed beyond loopback");
        let c = Config::from_yaml(
            "t.yaml",
            "bind_address: 0.0.0.0\npublic_address: 192.0.2.1\nbind_address_v6: \"::\"\npublic_address_v6: 2001:db8::1\n",
        )
        .expect("valid");
        assert_eq!(
            c.media_v6().map(|(_, p)| p.to_string()).as_deref(),
            Some("2001:db8::1")
        );
        let c = Config::from_yaml("t.yaml", "bind_address: \"::1\"\n").expect("valid");
        assert_eq!(
            c.media_v6(),
            None,
            "an IPv6 bind_address is the only family"
        );
    }

    #[test]
    fn bad_ipv6_media_keys_are_refused() {
        assert!(bad("bind_address_v6: 127.0.0.1\n").contains("not an IPv6"));
        assert!(bad("bind_address_v6: \"::\"\n").contains("set public_address_v6"));
        assert!(bad("public_address_v6: 192.0.2.1\n").contains("concrete IPv6"));
        assert!(bad("bind_address: \"::1\"\nbind_address_v6: \"::1\"\n").contains("IPv6 already"));
        assert!(
            bad("bind_address: 192.0.2.1\npublic_address_v6: 2001:db8::1\n")
                .contains("needs bind_address_v6")
        );
    }

    #[test]
    fn zero_latch_packets_is_refused() {
        assert!(bad("latch_packets: 0\n").contains("latch_packets"));
    }

    #[test]
    fn bad_log_format_is_refused() {
        assert!(bad("log_format: xml\n").contains("log_format"));
    }

    #[test]
    fn wrong_type_is_located() {
        let e = bad("rtp_timeout_secs: soon\n");
        assert!(e.starts_with("t.yaml:1:"), "{e}");
    }
}
