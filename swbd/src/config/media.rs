//! `dialplan:`, gateways and `media:`: where the plan lives, the trunks
//! it may dial, and the swrtp node pool.

use std::path::PathBuf;

use serde::Deserialize;

use super::Transport;

/// Where the dialplan comes from.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DialplanConfig {
    /// Dialplan YAML; the embedded `dialplans/default.yaml` when unset.
    pub file: Option<PathBuf>,
    /// Directory playback files resolve under (checked at load time).
    /// Must match the media nodes' audio directory.
    pub audio_dir: Option<PathBuf>,
}

/// An outbound trunk.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Name used in `gateway/NAME`.
    pub name: String,
    /// `host:port` of the trunk; several are tried in order on 5xx/timeout.
    pub addresses: Vec<String>,
    /// Transport to use.
    #[serde(default = "default_gateway_transport")]
    pub transport: Transport,
    /// Outbound digest username.
    #[serde(default)]
    pub username: Option<String>,
    /// Outbound digest password.
    #[serde(default)]
    pub password: Option<String>,
    /// Send INVITEs to this trunk without SDP (delayed offer, RFC 3261
    /// §13.2.1): the trunk's 2xx carries the offer and swbd's ACK the
    /// answer. For trunks and SBCs that insist on making the offer. Off by
    /// default (swbd offers, from the media node).
    #[serde(default)]
    pub late_offer: bool,
}

fn default_gateway_transport() -> Transport {
    Transport::Udp
}

/// `media.music_on_hold` unless configured (in the repository's
/// `testdata/audio`, swrtp's default audio directory).
pub const DEFAULT_MUSIC_ON_HOLD: &str = "music-on-hold.wav";

/// Media node pool.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// swrtp nodes.
    pub nodes: Vec<MediaNodeConfig>,
    /// Health check period.
    pub health_interval_ms: u64,
    /// Lease of the media sessions this swbd creates: a node destroys a
    /// session not renewed for this long (this swbd crashed or lost the
    /// node), ringing or not. See docs/ENDURANCE.md, "Session leases". 1..86400.
    pub lease_secs: u32,
    /// How often swbd renews all its sessions' leases on each node (one
    /// command per node); must be less than `lease_secs` (a third of it
    /// lets two renewals be lost).
    pub lease_renew_secs: u32,
    /// File holding the media token sent on every MediaService call (swrtp
    /// refuses calls without it; its `media_token_file` is the same file).
    /// Unset: `media.token` in the runtime directory, shared with a swrtp
    /// of the same user on this host. Created (0600, random) when missing;
    /// refused unless owned by this user with mode 0600 or stricter.
    pub token_file: Option<PathBuf>,
    /// What a leg's hold (a re-INVITE `sendonly`, `inactive` or
    /// `c=0.0.0.0`) does to the other leg: `moh` plays `music_on_hold` to
    /// it until the holder resumes; `pass` re-INVITEs it with the mirrored
    /// direction (the holder's phone then plays its own music, if any). A
    /// route overrides it with `set: {hold: pass}` before its `dial`.
    pub hold: HoldPolicy,
    /// Music on hold (`hold: moh`): a WAV file in the media nodes' audio
    /// directory (relative, no `..`), looped. A route overrides it with
    /// `set: {music_on_hold: FILE}`. A file the node cannot play leaves
    /// the held party in silence (logged).
    pub music_on_hold: String,
    /// Drain with migration (`swctl nodes drain NODE --migrate`): calls
    /// moved at the same time. Each move is two re-INVITEs and a few media
    /// commands; a few at a time keeps a drain of 1,000 calls from
    /// flooding the phones, the nodes and swbd. 1..=64.
    pub migrate_concurrency: u32,
}

/// See [`MediaConfig::hold`].
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HoldPolicy {
    /// Play music on hold to the held party.
    #[default]
    Moh,
    /// Pass hold on: re-INVITE the held party with the mirrored direction.
    Pass,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            nodes: vec![MediaNodeConfig {
                name: "rtp-a".into(),
                address: "tcp://127.0.0.1:9090".into(),
                token_file: None,
            }],
            health_interval_ms: 1000,
            lease_secs: 30,
            lease_renew_secs: 10,
            token_file: None,
            hold: HoldPolicy::Moh,
            music_on_hold: DEFAULT_MUSIC_ON_HOLD.into(),
            migrate_concurrency: 4,
        }
    }
}

/// One swrtp node.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MediaNodeConfig {
    /// Name shown by admin tools.
    pub name: String,
    /// gRPC endpoint of its MediaService (`tcp://127.0.0.1:9090`).
    pub address: String,
    /// This node's media token file, when it differs from `media.token_file`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}
