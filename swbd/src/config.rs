//! swbd configuration: YAML with `deny_unknown_fields`, defaults for every
//! field, `validate()`, then clap flags merged on top (pingora's order).
//!
//! Durations are plain integers with their unit in the key (`_secs`, `_ms`),
//! so a YAML file never needs a duration syntax.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use switchboard_proto::support::grpc::Endpoint;
use switchboard_proto::support::yaml::{self, FileError};

mod auth;
mod media;

pub use auth::*;
pub use media::*;

/// The whole swbd configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Instance name shown by admin tools.
    pub node_id: String,
    /// Threads of swbd's async runtime (0, the default: one per CPU this
    /// process may run on, i.e. its CPU affinity mask and cgroup quota).
    /// Set it when several swbd share a machine (e.g. `1` each for two
    /// instances on two cores): more runtime threads than cores spend
    /// their time parking and waking (docs/BENCHMARKS.md, "Shared
    /// state"). `sip.udp_workers: 0` follows this count. `--worker-threads`
    /// overrides it.
    pub worker_threads: usize,
    /// SIP transports and protocol knobs.
    pub sip: SipConfig,
    /// Registrar expiry policy.
    pub registrar: RegistrarConfig,
    /// Digest authentication.
    pub auth: AuthConfig,
    /// Dialplan source.
    pub dialplan: DialplanConfig,
    /// Outbound trunks usable as `gateway/NAME` dial targets.
    pub gateways: Vec<GatewayConfig>,
    /// Media nodes (swrtp) swbd controls.
    pub media: MediaConfig,
    /// Admin gRPC listeners.
    pub admin: AdminConfig,
    /// Who may send anything, and which networks are trusted (trunks).
    pub acl: AclConfig,
    /// Per-call limits of the B2BUA.
    pub b2bua: B2buaConfig,
    /// Recent events kept for `swctl events`, security-event aggregation.
    pub events: crate::events::config::EventsConfig,
    /// SIP capture: messages of recent calls (`swctl calls pcap`), HEP export.
    pub capture: crate::capture::config::CaptureConfig,
    /// Call detail records (JSON-lines file, PostgreSQL): `cdr/config.rs`.
    pub cdr: crate::cdr::config::CdrConfig,
    /// Ended calls kept in memory (`calls.keep_ended`, `calls.keep_ended_secs`).
    pub calls: crate::cdr::config::CallsConfig,
    /// The Prometheus `/metrics` endpoint (on, loopback).
    pub metrics: crate::metrics::MetricsConfig,
    /// Where registrations and drain flags live: `memory` (default) or
    /// `redis`, shared by several swbd and kept across restarts
    /// (`state/config.rs`).
    pub state: crate::state::StateConfig,
}

/// The most runtime threads `worker_threads` may ask for.
pub const MAX_WORKER_THREADS: usize = 256;

impl Config {
    /// The runtime's thread count: `worker_threads`, or one per CPU this
    /// process may use (`available_parallelism` reads the affinity mask
    /// and the cgroup CPU quota).
    pub fn runtime_threads(&self) -> usize {
        match self.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: "swbd".into(),
            worker_threads: 0,
            sip: SipConfig::default(),
            registrar: RegistrarConfig::default(),
            auth: AuthConfig::default(),
            dialplan: DialplanConfig::default(),
            gateways: Vec::new(),
            media: MediaConfig::default(),
            admin: AdminConfig::default(),
            acl: AclConfig::default(),
            b2bua: B2buaConfig::default(),
            events: Default::default(),
            capture: Default::default(),
            cdr: Default::default(),
            calls: Default::default(),
            metrics: crate::metrics::MetricsConfig::default(),
            state: Default::default(),
        }
    }
}

/// Source-address access control (see [`crate::auth::acl`]).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AclConfig {
    /// Networks (CIDR) allowed to send anything at all; everything else is
    /// dropped unanswered. Empty (the default): every address may try, and
    /// is challenged.
    pub allow: Vec<String>,
    /// Networks trusted by source address instead of digest (trunks, SBCs).
    /// Their requests are not challenged and the identity they assert
    /// (P-Asserted-Identity, else From) is believed. Default: none.
    pub trusted: Vec<TrustedNetworkConfig>,
}

/// One trusted network.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrustedNetworkConfig {
    /// Name in logs and events (`carrier-a`).
    pub name: String,
    /// CIDRs (`203.0.113.0/24`, `2001:db8::/32`, a bare address).
    pub networks: Vec<String>,
}

/// Per-call limits of the B2BUA.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct B2buaConfig {
    /// B-legs one call may have ringing at once (a dial over a user with
    /// many contacts, a ring group). Targets beyond it are not called, and
    /// a warning is logged. Each B-leg holds an RTP port pair.
    pub max_branches: usize,
}

impl Default for B2buaConfig {
    fn default() -> Self {
        Self { max_branches: 16 }
    }
}

/// A SIP listen address: `udp:IP:PORT` or `tcp:IP:PORT` (IPv6 as `[::1]:5060`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenAddr {
    /// Transport.
    pub transport: Transport,
    /// Socket address.
    pub addr: SocketAddr,
}

/// SIP transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        })
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

impl std::str::FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (transport, rest) = match s.split_once(':') {
            Some(("udp", rest)) => (Transport::Udp, rest),
            Some(("tcp", rest)) => (Transport::Tcp, rest),
            _ => {
                return Err(format!(
                    "{s:?} is not a listen address (expected udp:IP:PORT or tcp:IP:PORT, IPv6 as tcp:[::1]:5060)"
                ));
            }
        };
        let addr = rest
            .parse::<SocketAddr>()
            .map_err(|_| format!("{s:?}: {rest:?} is not IP:PORT"))?;
        Ok(Self { transport, addr })
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// SIP transport and protocol settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// Where to listen. Loopback only by default.
    pub listen: Vec<ListenAddr>,
    /// Domains we are authoritative for (registrar AORs, our Request-URIs).
    /// Requests for other domains are refused with 404 (registrar) .
    pub domains: Vec<String>,
    /// Address to put in Via/Contact/Record-Route when it differs from the
    /// listen address (NAT, 0.0.0.0 binds).
    pub public_address: Option<IpAddr>,
    /// Largest SIP message accepted, in bytes (both transports).
    pub max_message_size: usize,
    /// Close TCP connections idle this long (any byte, a keepalive CRLF
    /// too, restarts it).
    pub tcp_idle_timeout_secs: u64,
    /// Open TCP connections at most (accepted and opened); a connection
    /// accepted beyond it is closed at once. 0 = no limit. Lowered at start
    /// when the open-file limit would not stretch that far (a reserve of
    /// descriptors is kept for admin, media nodes, UDP; logged).
    pub tcp_max_connections: usize,
    /// Open TCP connections from one source (IPv4 address or IPv6 /64) at
    /// most, so one host cannot take every slot; an accepted connection
    /// beyond it is closed at once and counted. 0 = no limit. Raise it for
    /// many TCP phones behind one NAT address.
    pub tcp_max_connections_per_source: usize,
    /// A TCP message head must be complete (through the empty line) this
    /// long after its first byte, else the connection is closed and counted
    /// (slowloris: a byte every few seconds would otherwise hold a
    /// connection forever, the idle timeout restarting on each). Keepalive
    /// CRLFs between messages do not start it.
    pub tcp_head_timeout_secs: u64,
    /// A TCP message body must be complete this long after its head, else
    /// the connection is closed and counted.
    pub tcp_body_timeout_secs: u64,
    /// SO_RCVBUF/SO_SNDBUF for UDP sockets, bytes (the kernel may cap it).
    pub udp_buffer_bytes: usize,
    /// Tasks reading each UDP socket. Default 1: a peer's datagrams are
    /// handed on in the order they arrived. More (0 = one per CPU) read on
    /// every core but lose that order across tasks: requests a phone sends
    /// back to back (pjsua2 sends DTMF INFOs within a millisecond) may
    /// then reach the call out of CSeq order, and RFC 3261 §12.2.2 makes
    /// the late one a `500`, so a digit is lost. Reading is cheap; the work
    /// is spread by `udp_workers`, which keeps that order.
    pub udp_receivers: usize,
    /// Tasks that parse and handle UDP messages (0, the default: one per
    /// CPU). Each message goes to the worker its Call-ID hashes to (the
    /// source address when it has none), so the messages of one call are
    /// handled in arrival order while different calls use every core. 1:
    /// the receive task handles what it reads itself (no hand-off). A
    /// worker's queue holds 2,048 messages; beyond, a message is dropped
    /// and counted (`swbd_sip_udp_queue_dropped`), as a full socket buffer
    /// would drop it (crate::transport::workers).
    pub udp_workers: usize,
    /// RFC 3261 timers.
    pub timers: TimerConfig,
    /// Per-source request rate limit (off by default).
    pub rate_limit: RateLimitConfig,
    /// Overload control: new INVITEs refused with `503` + `Retry-After`
    /// when swbd's measured queueing delay says it cannot take more (on
    /// by default; [`crate::overload`]).
    pub overload: crate::overload::OverloadConfig,
    /// Server / User-Agent header value.
    pub user_agent: String,
    /// Session timers (RFC 4028) on both legs of every call.
    pub session_timer: SessionTimerConfig,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                ListenAddr {
                    transport: Transport::Udp,
                    addr: SocketAddr::from(([127, 0, 0, 1], 5060)),
                },
                ListenAddr {
                    transport: Transport::Tcp,
                    addr: SocketAddr::from(([127, 0, 0, 1], 5060)),
                },
            ],
            domains: vec!["localhost".into(), "127.0.0.1".into()],
            public_address: None,
            max_message_size: 65_535,
            tcp_idle_timeout_secs: 600,
            tcp_max_connections: 4096,
            tcp_max_connections_per_source: 32,
            tcp_head_timeout_secs: 15,
            tcp_body_timeout_secs: 30,
            udp_buffer_bytes: 8 * 1024 * 1024,
            udp_receivers: 1,
            udp_workers: 0,
            timers: TimerConfig::default(),
            rate_limit: RateLimitConfig::default(),
            overload: crate::overload::OverloadConfig::default(),
            user_agent: format!("Switchboard/{}", env!("CARGO_PKG_VERSION")),
            session_timer: SessionTimerConfig::default(),
        }
    }
}

/// Session timers (`sip.session_timer`, RFC 4028): each leg of a call
/// agrees a session interval with its peer and is refreshed within it; a
/// leg whose refresh fails or does not come ends the call (BYE both legs,
/// end cause `session timer expired`), so a call whose far end vanished
/// is cleaned up. See `b2bua/call/session_timer.rs`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SessionTimerConfig {
    /// On by default: calls are timed on both legs, callers asking for it
    /// or not (swbd refreshes those that do not). Off: no timer is offered
    /// or answered, and `Require: timer` gets `420`.
    pub enabled: bool,
    /// The session interval swbd asks for on B-legs and grants at most on
    /// A-legs, seconds (1800, RFC 4028's recommendation).
    pub session_expires: u32,
    /// The shortest interval swbd accepts (`Min-SE`, seconds); shorter
    /// requests get `422`. RFC 4028 §4 puts the floor at 90; a lower value
    /// is accepted (and logged at start) for tests that must not wait
    /// minutes, never for production.
    pub min_se: u32,
}

impl Default for SessionTimerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_expires: 1800,
            min_se: 90,
        }
    }
}

/// Per-source request rate limit (`sip.rate_limit`), a token bucket per
/// source IPv4 address or IPv6 /64 (`auth::ratelimit`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per second one source may send; 0 = off (the
    /// default: what one address carries, a phone or a trunk, is the
    /// operator's to know). 50 suits sources that are single phones.
    pub requests_per_sec: u32,
    /// Requests a source may send at once before the rate applies (the
    /// bucket size): a phone's start-up burst (REGISTER, SUBSCRIBEs,
    /// retransmissions) must fit.
    pub burst: u32,
    /// Sources tracked at most (about 100 bytes each); when full, the
    /// source seen least recently is forgotten.
    pub max_sources: usize,
    /// What a limited request gets: `reply` (`503` with `Retry-After`, once,
    /// statelessly: a phone backs off and its operator sees why) or `drop`
    /// (nothing: cheaper under a flood, and a spoofed source gets nothing
    /// reflected at it).
    pub action: RateLimitAction,
}

/// See [`RateLimitConfig::action`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitAction {
    /// `503 Service Unavailable` with `Retry-After`.
    #[default]
    Reply,
    /// No answer.
    Drop,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_sec: 0,
            burst: 200,
            max_sources: 65_536,
            action: RateLimitAction::Reply,
        }
    }
}

/// RFC 3261 §17 timer bases, in milliseconds.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TimerConfig {
    /// T1: RTT estimate (500 ms).
    pub t1_ms: u64,
    /// T2: maximum retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2_ms: u64,
    /// T4: maximum duration a message remains in the network (5 s).
    pub t4_ms: u64,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
        }
    }
}

/// Admin gRPC listeners.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Unix socket path (mode 0660). Its directory must not be writable by
    /// group/other (unless sticky) and must belong to this user or root.
    pub socket: Option<PathBuf>,
    /// Optional TCP listener (`127.0.0.1:7070`). Needs `token_file` (or
    /// `token`), loopback included: any local user can connect to a port.
    pub tcp: Option<SocketAddr>,
    /// File holding the bearer token required on the TCP listener
    /// (`swctl --token-file FILE`). Created (0600, random) when missing;
    /// refused unless owned by this user with mode 0600 or stricter.
    pub token_file: Option<PathBuf>,
    /// The bearer token inline. Kept for compatibility; a config file is
    /// easy to leak, so prefer `token_file` (a warning is logged).
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            socket: Some(switchboard_proto::support::paths::swbd_socket()),
            tcp: None,
            token_file: None,
            token: None,
        }
    }
}

impl Config {
    /// Load a file: parse (located errors), resolve relative paths against
    /// the file's directory, then validate.
    pub fn load(path: &Path) -> Result<Self, Vec<FileError>> {
        let mut cfg: Config = yaml::from_path(path).map_err(|e| vec![e])?;
        if let Some(base) = path.parent() {
            cfg.resolve_paths(base);
        }
        cfg.validate(&path.display().to_string())?;
        Ok(cfg)
    }

    /// Make every relative file path in the config relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(path) = p
                && path.is_relative()
            {
                *path = base.join(&*path);
            }
        };
        fix(&mut self.auth.users_file);
        fix(&mut self.dialplan.file);
        fix(&mut self.dialplan.audio_dir);
        fix(&mut self.admin.socket);
        fix(&mut self.admin.token_file);
        fix(&mut self.media.token_file);
        fix(&mut self.metrics.token_file);
        for n in &mut self.media.nodes {
            fix(&mut n.token_file);
        }
        self.cdr.resolve_paths(base);
    }

    /// Check cross-field rules. Errors name the file (no position: these
    /// are about values, and the key is named in the message).
    pub fn validate(&self, file: &str) -> Result<(), Vec<FileError>> {
        let mut errors = Vec::new();
        let mut err = |m: String| errors.push(FileError::whole(file, m));
        if self.sip.listen.is_empty() {
            err("sip.listen: at least one listen address is needed".into());
        }
        if self.sip.max_message_size < 1024 {
            err("sip.max_message_size: must be at least 1024 bytes".into());
        }
        if self.sip.tcp_head_timeout_secs == 0 || self.sip.tcp_body_timeout_secs == 0 {
            err("sip.tcp_head_timeout_secs, sip.tcp_body_timeout_secs: must be above 0".into());
        }
        let t = self.sip.timers;
        if t.t1_ms == 0 || t.t2_ms < t.t1_ms || t.t4_ms == 0 {
            err("sip.timers: need t1_ms > 0, t2_ms >= t1_ms and t4_ms > 0".into());
        }
        let st = self.sip.session_timer;
        if st.min_se == 0 || st.session_expires < st.min_se || st.session_expires > 86_400 {
            err("sip.session_timer: need 1 <= min_se <= session_expires <= 86400 (seconds)".into());
        }
        let rl = self.sip.rate_limit;
        if rl.requests_per_sec > 0 && (rl.burst == 0 || rl.max_sources == 0) {
            err("sip.rate_limit: burst and max_sources must be at least 1 when requests_per_sec is set".into());
        }
        for e in self.sip.overload.validate() {
            err(e);
        }
        let r = self.registrar;
        if r.min_expires_secs > r.max_expires_secs
            || r.default_expires_secs < r.min_expires_secs
            || r.default_expires_secs > r.max_expires_secs
        {
            err(
                "registrar: need min_expires_secs <= default_expires_secs <= max_expires_secs"
                    .into(),
            );
        }
        if self.auth.realm.trim().is_empty() {
            err("auth.realm: must not be empty".into());
        }
        if self.auth.algorithms.is_empty() {
            err("auth.algorithms: at least one of md5, sha256 is needed".into());
        }
        if self.auth.nonce_ttl_secs == 0 {
            err("auth.nonce_ttl_secs: must be above 0".into());
        }
        let mut seen = std::collections::HashSet::new();
        for g in &self.gateways {
            if !seen.insert(g.name.as_str()) {
                err(format!("gateways: duplicate gateway name {:?}", g.name));
            }
            if g.addresses.is_empty() {
                err(format!(
                    "gateways.{}: at least one address is needed",
                    g.name
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for n in &self.media.nodes {
            if !seen.insert(n.name.as_str()) {
                err(format!("media.nodes: duplicate node name {:?}", n.name));
            }
            if n.address.parse::<Endpoint>().is_err() {
                err(format!(
                    "media.nodes.{}: {:?} is not an endpoint (expected tcp://IP:PORT or unix:///path)",
                    n.name, n.address
                ));
            }
        }
        if let Err(e) = crate::auth::acl::Acl::from_config(&self.acl) {
            err(e);
        }
        if self.b2bua.max_branches == 0 {
            err("b2bua.max_branches: must be at least 1".into());
        }
        if self.media.health_interval_ms < 50 {
            err("media.health_interval_ms: must be at least 50".into());
        }
        if !(1..=86_400).contains(&self.media.lease_secs) {
            err("media.lease_secs: must be between 1 and 86400".into());
        }
        if self.media.lease_renew_secs == 0 || self.media.lease_renew_secs >= self.media.lease_secs
        {
            err("media.lease_renew_secs: must be at least 1 and less than media.lease_secs".into());
        }
        if !(1..=64).contains(&self.media.migrate_concurrency) {
            err("media.migrate_concurrency: must be 1..=64".into());
        }
        for e in self.cdr.validate() {
            err(e);
        }
        if let Err(why) = crate::b2bua::hold_policy::check_audio_file(&self.media.music_on_hold) {
            err(format!("media.music_on_hold: {why}"));
        }
        let inline_token = self.admin.token.as_deref().is_some_and(|t| !t.is_empty());
        if let Some(tcp) = self.admin.tcp
            && !inline_token
            && self.admin.token_file.is_none()
        {
            err(format!(
                "admin.tcp: {tcp} needs admin.token_file (or admin.token): any local user can connect to a TCP port"
            ));
        }
        if let Err(e) = self.metrics.validate() {
            err(e);
        }
        if inline_token && self.admin.token_file.is_some() {
            err("admin: set admin.token_file or admin.token, not both".into());
        }
        if let Some(t) = self.admin.token.as_deref()
            && inline_token
            && let Err(e) = switchboard_proto::support::secret::Token::new(t)
        {
            err(format!("admin.token: {e}"));
        }
        for e in self.events.validate() {
            err(e);
        }
        for e in self.capture.validate() {
            err(e);
        }
        for e in self.state.validate(&self.node_id) {
            err(e);
        }
        if self.worker_threads > MAX_WORKER_THREADS {
            err(format!(
                "worker_threads: {} is more than {MAX_WORKER_THREADS}",
                self.worker_threads
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        assert_eq!(Config::default().validate("x"), Ok(()));
    }

    #[test]
    fn music_on_hold_stays_in_the_audio_directory() {
        let c: Config = yaml::from_str(
            "c.yaml",
            "media:\n  hold: pass\n  music_on_hold: ../secret.wav\n",
        )
        .expect("parses");
        assert_eq!(c.media.hold, HoldPolicy::Pass);
        let errors = c.validate("c.yaml").expect_err("escapes the audio dir");
        assert!(
            errors
                .iter()
                .any(|e| e.to_string().contains("media.music_on_hold")),
            "{errors:?}"
        );
        assert!(yaml::from_str::<Config>("c.yaml", "media:\n  hold: bounce\n").is_err());
    }

    #[test]
    fn empty_file_is_defaults() {
        let c: Config = yaml::from_str("c.yaml", "{}").expect("empty map parses");
        assert_eq!(c, Config::default());
    }

    #[test]
    fn listen_addresses_parse() {
        let c: Config = yaml::from_str(
            "c.yaml",
            "sip:\n  listen: [\"udp:127.0.0.1:5070\", \"tcp:[::1]:5070\"]\n",
        )
        .expect("parses");
        assert_eq!(c.sip.listen[1].to_string(), "tcp:[::1]:5070");
    }

    #[test]
    fn bad_listen_address_is_located() {
        let e = yaml::from_str::<Config>("c.yaml", "sip:\n  listen: [\"sctp:1.2.3.4:5\"]\n")
            .expect_err("refused");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("expected udp:IP:PORT"), "{e}");
    }

    #[test]
    fn tcp_admin_needs_a_token_even_on_loopback() {
        for addr in ["0.0.0.0:7070", "127.0.0.1:7070"] {
            let mut c = Config::default();
            c.admin.tcp = Some(addr.parse().expect("addr"));
            let errs = c.validate("c.yaml").expect_err("refused");
            assert!(errs[0].message.contains("admin.token_file"), "{errs:?}");
            c.admin.token_file = Some("admin.token".into());
            assert_eq!(c.validate("c.yaml"), Ok(()));
            c.admin.token = Some("inline".into());
            let errs = c.validate("c.yaml").expect_err("both refused");
            assert!(errs[0].message.contains("not both"), "{errs:?}");
            c.admin.token_file = None;
            assert_eq!(c.validate("c.yaml"), Ok(()), "inline still works");
            c.admin.token = Some("two words".into());
            assert!(c.validate("c.yaml").is_err());
        }
    }

    #[test]
    fn token_files_are_relative_to_the_config_file() {
        let c: Config = yaml::from_str(
            "c.yaml",
            "admin: { token_file: a.token }
media:
  token_file: m.token
  nodes: [{ name: x, address: \"tcp://127.0.0.1:1\", token_file: x.token }]
",
        )
        .expect("parses");
        let mut c = c;
        c.resolve_paths(Path::new("/etc/sb"));
        assert_eq!(c.admin.token_file, Some(PathBuf::from("/etc/sb/a.token")));
        assert_eq!(c.media.token_file, Some(PathBuf::from("/etc/sb/m.token")));
        assert_eq!(
            c.media.nodes[0].token_file,
            Some(PathBuf::from("/etc/sb/x.token"))
        );
    }

    #[test]
    fn expiry_order_is_checked() {
        let mut c = Config::default();
        c.registrar.min_expires_secs = 9000;
        assert!(c.validate("c.yaml").is_err());
    }

    #[test]
    fn lease_renewal_must_come_before_the_lease_lapses() {
        let mut c = Config::default();
        c.media.lease_renew_secs = c.media.lease_secs;
        let errs = c.validate("c.yaml").expect_err("renewal too late");
        assert!(errs[0].to_string().contains("media.lease_renew_secs"));
        c.media.lease_renew_secs = 1;
        c.media.lease_secs = 0;
        assert!(c.validate("c.yaml").is_err());
    }

    #[test]
    fn session_timer_parses_and_its_bounds_are_checked() {
        let c: Config = yaml::from_str(
            "c.yaml",
            "sip:\n  session_timer: { enabled: true, session_expires: 4, min_se: 2 }\n",
        )
        .expect("parses");
        assert_eq!(c.sip.session_timer.session_expires, 4);
        assert_eq!(
            c.validate("c.yaml"),
            Ok(()),
            "below 90 s is allowed (tests)"
        );
        let mut c = Config::default();
        c.sip.session_timer.min_se = 1900;
        let errs = c
            .validate("c.yaml")
            .expect_err("min_se above session_expires");
        assert!(errs[0].to_string().contains("sip.session_timer"));
        c.sip.session_timer.min_se = 0;
        assert!(c.validate("c.yaml").is_err());
    }
}
