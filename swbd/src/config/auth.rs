//! `registrar:` and `auth:`: expiry policy, contact caps, digest
//! authentication and caller identity.

use std::path::PathBuf;

use serde::Deserialize;

/// Registrar expiry policy (RFC 3261 §10.3).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrarConfig {
    /// Shorter requests get 423 Interval Too Brief.
    pub min_expires_secs: u32,
    /// Longer requests are cut to this.
    pub max_expires_secs: u32,
    /// Used when the REGISTER gives no expiry.
    pub default_expires_secs: u32,
    /// Bindings one AOR may hold at once. An INVITE to a user forks one
    /// B-leg (and one media session) per binding, so without a cap one
    /// REGISTER with hundreds of Contacts turns the next call into hundreds
    /// of legs. A REGISTER with more Contact values than this is refused
    /// (403) before the table is touched; one that would leave more
    /// bindings is handled per `contacts_overflow`. 0 = no limit.
    pub max_contacts_per_aor: usize,
    /// What a REGISTER that would leave more than `max_contacts_per_aor`
    /// bindings gets: `reject` (403, nothing changed) or `replace_oldest`
    /// (the least recently refreshed bindings of the AOR are removed to
    /// make room, for phones that re-register under a new Contact after a
    /// reboot without removing the old one).
    pub contacts_overflow: ContactsOverflow,
}

/// Policy for a REGISTER beyond `registrar.max_contacts_per_aor`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ContactsOverflow {
    /// Refuse it with 403; the AOR's bindings stay as they were.
    #[default]
    Reject,
    /// Apply it, then remove the AOR's least recently refreshed bindings
    /// (never one this REGISTER added or refreshed) down to the cap.
    ReplaceOldest,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            min_expires_secs: 60,
            max_expires_secs: 7200,
            default_expires_secs: 3600,
            max_contacts_per_aor: 10,
            contacts_overflow: ContactsOverflow::Reject,
        }
    }
}

/// Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// On unless explicitly turned off (logged as a warning at start).
    pub enabled: bool,
    /// Digest realm.
    pub realm: String,
    /// YAML users file (`users: [{username, password | ha1_md5 + ha1_sha256}]`).
    /// There are no built-in users.
    pub users_file: Option<PathBuf>,
    /// Nonce lifetime; older nonces get `stale=true`.
    pub nonce_ttl_secs: u64,
    /// Failed attempts from one source IP before it is blocked.
    pub max_failures: u32,
    /// Window over which failures are counted.
    pub failure_window_secs: u64,
    /// How long a blocked source stays blocked.
    pub block_secs: u64,
    /// Digest algorithms offered in challenges and accepted, most preferred
    /// first. Clients built on libre 1.x (baresip 1.0) give up on a
    /// challenge set that contains SHA-256: use `[md5]` for them.
    pub algorithms: Vec<DigestAlgorithm>,
    /// What to do with an INVITE from an authenticated user whose From
    /// names someone else: `reject` (403, the default) or `rewrite` (the
    /// call goes on as the authenticated user). Either way the caller the
    /// dialplan and the B-legs see is the authenticated user.
    pub identity: IdentityPolicy,
}

/// See [`AuthConfig::identity`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityPolicy {
    /// Refuse with `403 Forbidden`.
    #[default]
    Reject,
    /// Go on as the authenticated user.
    Rewrite,
}

/// A digest algorithm (RFC 7616, RFC 8760).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum DigestAlgorithm {
    /// MD5.
    #[serde(rename = "md5", alias = "MD5")]
    Md5,
    /// SHA-256.
    #[serde(rename = "sha256", alias = "sha-256", alias = "SHA-256")]
    Sha256,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            realm: "switchboard".into(),
            users_file: None,
            nonce_ttl_secs: 300,
            max_failures: 20,
            failure_window_secs: 60,
            block_secs: 60,
            algorithms: vec![DigestAlgorithm::Sha256, DigestAlgorithm::Md5],
            identity: IdentityPolicy::Reject,
        }
    }
}
