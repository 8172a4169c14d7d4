//! Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760): MD5 and
//! SHA-256 with `qop=auth`.
//!
//! # Layout
//! - [`Authenticator`]: `check(&request, source, kind)` ->
//!   [`AuthedUser`] or an [`AuthRejection`] to send (401/407 challenge, or
//!   403 for a blocked source).
//! - [`digest`]: hashing and the `Authorization` header.
//! - [`nonce`]: stateless, expiring nonces carrying a MAC.
//! - [`users`]: the YAML users file (plain password or HA1).
//! - [`blocklist`]: failed attempts per source IP, temporary blocks.
//!
//! Behaviour worth knowing:
//! - An unknown user and a wrong password both get the same fresh
//!   challenge (the digest is computed either way).
//! - A correct digest over an expired nonce gets `stale=true`; a reused
//!   `nc` (replay) gets a fresh challenge with `stale=true` too and is not
//!   accepted.
//! - Nonces are bound to the address they were sent to. Only a bad digest
//!   over a nonce issued to the request's source address counts as a
//!   failure of that address; made-up nonces get a fresh challenge and count
//!   for nobody, so spoofed floods cannot lock a phone out.
//! - The digest `uri` must be the Request-URI (else `400`).
//! - `max_failures` bad digests within `failure_window_secs` from one IP
//!   block that IP for `block_secs`: its requests are answered
//!   `403 Forbidden` without a challenge (answered rather than dropped so a
//!   misconfigured phone's operator sees why). Other sources are unaffected.
//! - Requests without credentials are challenged and not counted.
//! - Challenges offer `auth.algorithms` in order (default SHA-256, then
//!   MD5); credentials with an algorithm not in the list are challenged.

pub mod acl;
pub mod blocklist;
pub mod digest;
pub mod nonce;
pub mod principal;
pub mod ratelimit;
pub mod users;

pub use principal::Principal;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sip::Name;
use switchboard_proto::support::yaml::FileError;

use crate::config::{AuthConfig, DigestAlgorithm};
use crate::sip::message::HeaderAccess;
use crate::sip::{Request, Response};
use crate::transport::{SipCounters, Source};
use blocklist::Blocklist;
use digest::{Algorithm, Credentials, constant_time_eq};
use nonce::{NonceIssuer, NonceState};
use users::Users;

/// Which challenge to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// `401` + `WWW-Authenticate` (registrar: REGISTER).
    Www,
    /// `407` + `Proxy-Authenticate` (INVITE and other requests we route).
    Proxy,
}

impl ChallengeKind {
    fn credentials_header(self) -> Name {
        match self {
            ChallengeKind::Www => Name::AUTHORIZATION,
            ChallengeKind::Proxy => Name::PROXY_AUTHORIZATION,
        }
    }
    fn challenge_header(self) -> Name {
        match self {
            ChallengeKind::Www => Name::WWW_AUTHENTICATE,
            ChallengeKind::Proxy => Name::PROXY_AUTHENTICATE,
        }
    }
    fn code(self) -> (u16, &'static str) {
        match self {
            ChallengeKind::Www => (401, "Unauthorized"),
            ChallengeKind::Proxy => (407, "Proxy Authentication Required"),
        }
    }
}

/// Who passed authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthedUser {
    /// The digest username (or the From user when auth is disabled).
    pub username: String,
    /// False when auth is disabled by config.
    pub authenticated: bool,
}

/// Why credentials did not authenticate (for security events; the peer
/// sees the same challenge for all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// A digest over our nonce for a known user, with the wrong password.
    WrongPassword,
    /// A digest for a user the users file does not name.
    UnknownUser,
    /// Credentials without `qop=auth`, `nc` or `cnonce`.
    Malformed,
    /// A nonce we did not issue to this address (made up, forged, or
    /// issued to another address).
    ForeignNonce,
    /// A correct digest whose nonce count was already used (a replay).
    ReplayedNonce,
    /// A digest `uri` that is not the Request-URI.
    UriMismatch,
    /// The source is blocked.
    Blocked,
}

impl AuthFailure {
    /// In words, for events and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::WrongPassword => "wrong password",
            AuthFailure::UnknownUser => "unknown user",
            AuthFailure::Malformed => "malformed credentials",
            AuthFailure::ForeignNonce => "nonce not issued to this address",
            AuthFailure::ReplayedNonce => "replayed nonce count",
            AuthFailure::UriMismatch => "digest uri is not the Request-URI",
            AuthFailure::Blocked => "source blocked",
        }
    }
}

/// A refusal to send instead of processing the request.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}")]
pub struct AuthRejection {
    /// 401, 407 or 403.
    pub code: u16,
    /// Reason phrase.
    pub reason: &'static str,
    /// Challenge headers to add.
    pub headers: Vec<(Name, String)>,
    /// Why, when credentials were given and failed (`None`: a plain
    /// challenge, a stale nonce).
    pub failure: Option<AuthFailure>,
    /// The digest username of failed credentials (peer text).
    pub user: Option<String>,
    /// This failure blocked the source: `(failures, block)`.
    pub blocked_now: Option<(u32, Duration)>,
}

impl AuthRejection {
    /// The SIP status.
    pub fn status_code(&self) -> u16 {
        self.code
    }

    /// Add the challenge headers to `response` (built with [`Self::code`]).
    pub fn apply(&self, response: &mut Response) {
        for (n, v) in &self.headers {
            response.headers.insert(n.clone(), v.clone());
        }
    }
}

/// Auth module errors (loading).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The users file is unreadable or invalid.
    #[error("{0}")]
    UsersFile(#[from] FileError),
}

/// Cheap-clone digest authenticator.
#[derive(Clone, Debug)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    enabled: bool,
    realm: String,
    /// Offered and accepted, most preferred first.
    algorithms: Vec<Algorithm>,
    users: Users,
    nonces: NonceIssuer,
    /// Highest `nc` seen per nonce (replay detection). std Mutex: short
    /// lookups only.
    nc_seen: Mutex<NcSeen>,
    blocklist: Mutex<Blocklist>,
    /// `auth.max_failures` and `auth.block_secs`, for block events.
    max_failures: u32,
    block: Duration,
    counters: Arc<SipCounters>,
    /// HA1s of a password nobody has (MD5, SHA-256): an unknown user's
    /// digest is computed against them, so it takes as long as a known one.
    dummy_ha1: (String, String),
}

impl Authenticator {
    /// From config: loads the users file (none: nobody can authenticate).
    pub fn from_config(config: &AuthConfig, counters: Arc<SipCounters>) -> Result<Self, Error> {
        let users = match &config.users_file {
            Some(p) => Users::load(p, &config.realm)?,
            None => {
                if config.enabled {
                    tracing::warn!("auth.users_file is not set: every authentication will fail");
                }
                Users::default()
            }
        };
        Ok(Self::new(config, users, counters))
    }

    /// With an explicit user table.
    pub fn new(config: &AuthConfig, users: Users, counters: Arc<SipCounters>) -> Self {
        Self {
            inner: Arc::new(Inner {
                enabled: config.enabled,
                realm: config.realm.clone(),
                algorithms: config
                    .algorithms
                    .iter()
                    .map(|a| match a {
                        DigestAlgorithm::Md5 => Algorithm::Md5,
                        DigestAlgorithm::Sha256 => Algorithm::Sha256,
                    })
                    .collect(),
                users,
                nonces: NonceIssuer::new(config.nonce_ttl_secs),
                nc_seen: Mutex::new(NcSeen::new(Duration::from_secs(
                    config.nonce_ttl_secs.max(1),
                ))),
                blocklist: Mutex::new(Blocklist::new(
                    config.max_failures,
                    Duration::from_secs(config.failure_window_secs),
                    Duration::from_secs(config.block_secs),
                )),
                max_failures: config.max_failures,
                block: Duration::from_secs(config.block_secs),
                counters,
                dummy_ha1: {
                    let secret = hex::encode(rand::random::<[u8; 16]>());
                    (
                        Algorithm::Md5.ha1("", &config.realm, &secret),
                        Algorithm::Sha256.ha1("", &config.realm, &secret),
                    )
                },
            }),
        }
    }

    /// The endpoint's counters this authenticator adds to.
    pub fn counters(&self) -> &Arc<SipCounters> {
        &self.inner.counters
    }

    /// Whether auth is on.
    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.inner.realm
    }

    /// Whether the users file names `username` (known, registered or not).
    pub fn has_user(&self, username: &str) -> bool {
        self.inner.users.get(username).is_some()
    }

    /// Check a request's credentials.
    pub fn check(
        &self,
        request: &Request,
        source: &Source,
        kind: ChallengeKind,
    ) -> Result<AuthedUser, AuthRejection> {
        let inner = &*self.inner;
        if !inner.enabled {
            let username = request
                .header_from()
                .ok()
                .and_then(|f| f.uri.user())
                .unwrap_or_default();
            return Ok(AuthedUser {
                username,
                authenticated: false,
            });
        }
        let ip = source.remote.ip();
        if inner
            .blocklist
            .lock()
            .map(|mut b| b.is_blocked(ip))
            .unwrap_or(false)
        {
            SipCounters::inc(&inner.counters.blocked_requests);
            return Err(AuthRejection {
                code: 403,
                reason: "Forbidden (too many failed attempts)",
                headers: Vec::new(),
                failure: Some(AuthFailure::Blocked),
                user: digest_username(request, kind),
                blocked_now: None,
            });
        }
        let creds = request
            .headers
            .get_raw(&kind.credentials_header())
            .filter_map(|v| Credentials::parse(v))
            .find(|c| c.realm == inner.realm);
        let Some(creds) = creds else {
            return Err(self.challenge_for(ip, kind, false));
        };
        let Some(alg) = Algorithm::from_token(creds.algorithm.as_deref())
            .filter(|a| inner.algorithms.contains(a))
        else {
            return Err(self.challenge_for(ip, kind, false));
        };
        // Only a nonce we issued to this very address makes a failure count
        // (see `nonce`): made-up nonces and nonces issued elsewhere are
        // answered with a fresh challenge and never block anyone, so a
        // flood spoofing a phone's address cannot lock the phone out.
        let nonce_state = inner.nonces.check(&creds.nonce, ip);
        if nonce_state == NonceState::Invalid {
            SipCounters::inc(&inner.counters.auth_failures);
            return Err(self
                .challenge_for(ip, kind, false)
                .failed(AuthFailure::ForeignNonce, &creds.username));
        }
        // RFC 3261 §22.4 / RFC 7616 §3.4.6: the digest covers the
        // Request-URI; a response computed for another URI proves nothing
        // about this request.
        if !digest_uri_matches(&creds.uri, request) {
            SipCounters::inc(&inner.counters.auth_failures);
            return Err(AuthRejection {
                code: 400,
                reason: "Bad Request (digest uri does not match the Request-URI)",
                headers: Vec::new(),
                failure: Some(AuthFailure::UriMismatch),
                user: Some(creds.username.to_string()),
                blocked_now: None,
            });
        }
        let (Some(qop), Some(nc_text), Some(cnonce)) = (&creds.qop, &creds.nc, &creds.cnonce)
        else {
            return Err(self.fail(ip, kind, AuthFailure::Malformed, &creds.username));
        };
        let nc = match u32::from_str_radix(nc_text, 16) {
            Ok(n) if qop.eq_ignore_ascii_case("auth") => n,
            _ => return Err(self.fail(ip, kind, AuthFailure::Malformed, &creds.username)),
        };
        // Compute the digest even for unknown users so both look the same.
        let dummy = match alg {
            Algorithm::Md5 => &inner.dummy_ha1.0,
            Algorithm::Sha256 => &inner.dummy_ha1.1,
        };
        let ha1 = inner
            .users
            .get(&creds.username)
            .and_then(|u| u.ha1(alg))
            .unwrap_or(dummy);
        let expected = digest::response(
            alg,
            ha1,
            &creds.nonce,
            nc_text,
            cnonce,
            qop,
            request.method.as_str(),
            &creds.uri,
        );
        let known = inner
            .users
            .get(&creds.username)
            .and_then(|u| u.ha1(alg))
            .is_some();
        // Compared either way, so both refusals cost the same.
        let matches = constant_time_eq(&expected, &creds.response);
        if !known {
            return Err(self.fail(ip, kind, AuthFailure::UnknownUser, &creds.username));
        }
        if !matches {
            return Err(self.fail(ip, kind, AuthFailure::WrongPassword, &creds.username));
        }
        if nonce_state == NonceState::Stale {
            return Err(self.challenge_for(ip, kind, true));
        }
        // Replay: nc must grow per nonce.
        {
            let Ok(mut seen) = inner.nc_seen.lock() else {
                return Err(self.challenge_for(ip, kind, true));
            };
            if seen.get(&creds.nonce).is_some_and(|last| nc <= last) {
                drop(seen);
                SipCounters::inc(&inner.counters.auth_failures);
                return Err(self
                    .challenge_for(ip, kind, true)
                    .failed(AuthFailure::ReplayedNonce, &creds.username));
            }
            seen.insert(&creds.nonce, nc);
        }
        if let Ok(mut b) = inner.blocklist.lock() {
            b.record_success(ip);
        }
        Ok(AuthedUser {
            username: creds.username.into_owned(),
            authenticated: true,
        })
    }

    /// A failed digest over a nonce issued to `ip`: counted, and `ip` is
    /// blocked after `max_failures` of them (the rejection says so; the
    /// front door reports it as a security event).
    fn fail(
        &self,
        ip: std::net::IpAddr,
        kind: ChallengeKind,
        why: AuthFailure,
        user: &str,
    ) -> AuthRejection {
        SipCounters::inc(&self.inner.counters.auth_failures);
        let blocked = self
            .inner
            .blocklist
            .lock()
            .map(|mut b| b.record_failure(ip))
            .unwrap_or(false);
        let mut rejection = self.challenge_for(ip, kind, false).failed(why, user);
        if blocked {
            rejection.blocked_now = Some((self.inner.max_failures, self.inner.block));
        }
        rejection
    }

    /// A fresh challenge (SHA-256 and MD5) for a request from `ip`: its
    /// nonce is only good from `ip`.
    pub fn challenge_for(
        &self,
        ip: std::net::IpAddr,
        kind: ChallengeKind,
        stale: bool,
    ) -> AuthRejection {
        let (code, reason) = kind.code();
        let nonce = self.inner.nonces.issue(ip);
        let stale = if stale { ", stale=true" } else { "" };
        let headers = self
            .inner
            .algorithms
            .iter()
            .copied()
            .map(|alg| {
                (
                    kind.challenge_header(),
                    format!(
                        "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
                        self.inner.realm,
                        alg.as_str()
                    ),
                )
            })
            .collect();
        AuthRejection {
            code,
            reason,
            headers,
            failure: None,
            user: None,
            blocked_now: None,
        }
    }
}

impl AuthRejection {
    /// The same rejection, recording why the credentials of `user` failed.
    fn failed(mut self, why: AuthFailure, user: &str) -> Self {
        self.failure = Some(why);
        self.user = Some(user.to_string());
        self
    }
}

/// The digest username of the credentials a request carries, if any (for
/// the event of a blocked source's request).
fn digest_username(request: &Request, kind: ChallengeKind) -> Option<String> {
    request
        .headers
        .get_raw(&kind.credentials_header())
        .find_map(|v| Credentials::parse(v))
        .map(|c| c.username.into_owned())
}

/// Whether the digest `uri` names the request's Request-URI: the same
/// text, or the same URI by RFC 3261 §19.1.4 comparison (clients differ in
/// escaping and parameter order).
fn digest_uri_matches(digest_uri: &str, request: &Request) -> bool {
    let ruri = match &request.uri {
        crate::sip::Uri::Sip(u) => u.as_str(),
        crate::sip::Uri::Tel(s) | crate::sip::Uri::Other(s) => s.as_str(),
    };
    if digest_uri == ruri {
        return true;
    }
    match crate::sip::Uri::parse(digest_uri) {
        Some(u) => crate::sip::uri::same_uri(&u, &request.uri),
        None => false,
    }
}

/// Highest `nc` seen per nonce, for replay detection, in two generations
/// rotated every nonce lifetime: an entry lives at least one lifetime (older
/// nonces are refused as stale before this table is asked), memory stays
/// bounded by two lifetimes of traffic, and no request ever pays for a scan.
#[derive(Debug)]
struct NcSeen {
    current: HashMap<u64, u32, IdHash>,
    previous: HashMap<u64, u32, IdHash>,
    rotated_at: std::time::Instant,
    every: Duration,
}

/// Hashes a nonce id as itself: ids are keyed-MAC bits nobody but us can
/// choose (only nonces whose MAC checked out get here), so the table needs
/// no SipHash of its own.
type IdHash = std::hash::BuildHasherDefault<IdHasher>;

#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The id of a nonce in [`NcSeen`]: 64 bits of its MAC.
fn nonce_id(nonce: &str) -> u64 {
    nonce
        .rsplit('-')
        .next()
        .and_then(|mac| mac.get(..16))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or_else(|| {
            // Not one of ours (cannot pass the MAC check): a keyed hash.
            use std::hash::BuildHasher;
            static SEED: std::sync::OnceLock<std::collections::hash_map::RandomState> =
                std::sync::OnceLock::new();
            SEED.get_or_init(Default::default).hash_one(nonce)
        })
}

impl NcSeen {
    fn new(every: Duration) -> Self {
        Self {
            current: HashMap::default(),
            previous: HashMap::default(),
            rotated_at: std::time::Instant::now(),
            every,
        }
    }

    fn rotate_if_due(&mut self) {
        if self.rotated_at.elapsed() >= self.every {
            self.previous = std::mem::take(&mut self.current);
            self.rotated_at = std::time::Instant::now();
        }
    }

    fn get(&mut self, nonce: &str) -> Option<u32> {
        self.rotate_if_due();
        let id = nonce_id(nonce);
        self.current
            .get(&id)
            .or_else(|| self.previous.get(&id))
            .copied()
    }

    fn insert(&mut self, nonce: &str, nc: u32) {
        self.rotate_if_due();
        let id = nonce_id(nonce);
        self.previous.remove(&id);
        self.current.insert(id, nc);
    }
}

#[cfg(test)]
mod nc_seen_tests {
    use super::*;

    #[test]
    fn entries_survive_one_rotation_and_go_after_two() {
        let mut t = NcSeen::new(Duration::from_millis(20));
        t.insert("n1", 1);
        assert_eq!(t.get("n1"), Some(1));
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(t.get("n1"), Some(1), "kept in the previous generation");
        t.insert("n1", 2);
        assert_eq!(t.get("n1"), Some(2));
        std::thread::sleep(Duration::from_millis(25));
        std::thread::sleep(Duration::from_millis(25));
        t.rotate_if_due();
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(t.get("n1"), None, "gone after two lifetimes");
    }
}
