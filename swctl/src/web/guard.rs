//! Who may use `swctl web`, checked on every request before any handler.
//!
//! The page can hang up calls and drain nodes, so a browser must not be
//! tricked into doing it (CSRF), a hostile page must not read it through
//! a DNS name that resolves to this host (DNS rebinding), and beyond
//! loopback nobody without the secret may use it at all:
//!
//! 1. `Host` must name this console: `localhost`, the listen IP (any IP
//!    literal when listening on `0.0.0.0`/`::`; a loopback IP when on
//!    loopback), or a name given with `--allow-host`. A rebinding attack
//!    arrives with the attacker's DNS name in `Host`, so it gets 403.
//! 2. `Origin`, when the browser sends one, must be `http(s)://` + that same
//!    `Host`: a form posted from another site (or another port) gets 403.
//! 3. With `--token FILE`, HTTP Basic auth with the file's secret as the
//!    password (any user name), else 401 with `WWW-Authenticate`.
//! 4. Every POST carries the per-process CSRF token ([`CsrfToken`]), checked
//!    by the action handlers (they read the form) in constant time.
//!
//! Responses get `Content-Security-Policy` (scripts and frames from this
//! origin only; no framing, against clickjacking the buttons),
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: same-origin`
//! (not `no-referrer`: under it a browser sends `Origin: null` on a plain
//! form POST, which check 2 refuses; `swctl/tests/web_page.rs` clicks the
//! button with scripts off to keep that working).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rand::TryRngCore as _;
use switchboard_proto::support::secret::Token;

/// Realm shown by the browser's login prompt.
const REALM: &str = "Basic realm=\"swctl web\", charset=\"UTF-8\"";

/// The policy of the module docs: scripts, styles and form targets from
/// this origin only (styles also inline: the page's own `<style>` and the
/// indicator styles htmx inserts), never framed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Compare secrets in time that depends on their lengths only, not on
/// where they first differ. (`subtle` is not in the tree; these few lines
/// are what its `ct_eq` does for byte slices.)
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The random token every form carries: 32 bytes from the OS RNG, hex.
/// New at every start, so a page from an earlier `swctl web` must be
/// reloaded before its buttons work again.
#[derive(Clone)]
pub struct CsrfToken(Arc<str>);

impl std::fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfToken(..)")
    }
}

impl CsrfToken {
    /// A fresh token from the operating system's RNG.
    pub fn generate() -> Result<Self, rand::rand_core::OsError> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.try_fill_bytes(&mut bytes)?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self(hex.into()))
    }

    /// The text put in forms.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a submitted value is this token.
    pub fn matches(&self, submitted: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), submitted.as_bytes())
    }
}

/// The names a request's `Host` may carry (see the module docs).
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    listen: IpAddr,
    names: Vec<String>,
}

impl AllowedHosts {
    /// For a console listening on `listen`, plus `names` (`--allow-host`).
    pub fn new(listen: SocketAddr, names: &[String]) -> Self {
        Self {
            listen: listen.ip(),
            names: names
                .iter()
                .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Check an `--allow-host` value: a DNS name or IP literal, no port.
    pub fn valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    }

    /// Whether a `Host` header value (`name[:port]`, `[v6][:port]`) names
    /// this console.
    pub fn allows(&self, host: &str) -> bool {
        let Some(name) = host_name(host) else {
            return false;
        };
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            // An IP literal cannot be rebound to another address.
            return self.listen.is_unspecified()
                || ip == self.listen
                || (ip.is_loopback() && self.listen.is_loopback());
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name == "localhost" || self.names.contains(&name)
    }
}

/// The name part of a `Host` value, or `None` when it is malformed.
fn host_name(host: &str) -> Option<&str> {
    let port_ok = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = host.strip_prefix('[') {
        let end = rest.find(']')?;
        let after = rest.get(end + 1..)?;
        if !after.is_empty() && !after.strip_prefix(':').is_some_and(port_ok) {
            return None;
        }
        return host.get(..end + 2);
    }
    let name = match host.rsplit_once(':') {
        None => host,
        Some((name, port)) if port_ok(port) && !name.contains(':') => name,
        Some(_) => return None,
    };
    (!name.is_empty()).then_some(name)
}

/// What the guard checks.
#[derive(Debug, Clone)]
pub struct Guard {
    /// `Host` names that reach this console.
    pub hosts: AllowedHosts,
    /// The `--token` secret, when given: Basic auth is required.
    pub password: Option<Token>,
}

impl Guard {
    /// The request's verdict: `None` lets it through.
    pub fn refuse(&self, headers: &HeaderMap) -> Option<Response> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if !self.hosts.allows(host) {
            return Some(forbidden(
                "the Host header does not name this console (open it by its listen address, or start swctl web with --allow-host NAME)",
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let same = origin.to_str().ok().is_some_and(|o| {
                let o = o.to_ascii_lowercase();
                let h = host.to_ascii_lowercase();
                o.strip_prefix("http://") == Some(h.as_str())
                    || o.strip_prefix("https://") == Some(h.as_str())
            });
            if !same {
                return Some(forbidden("cross-origin request refused"));
            }
        }
        if let Some(password) = &self.password
            && !basic_auth_ok(headers, password)
        {
            return Some(
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, REALM)],
                    "401 unauthorized: log in with any user name and the secret of swctl web's --token file as the password\n",
                )
                    .into_response(),
            );
        }
        None
    }
}

/// Whether `Authorization: Basic ...` carries `password` (any user name).
fn basic_auth_ok(headers: &HeaderMap, password: &Token) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|b| *b == b':') else {
        return false;
    };
    let given = decoded.get(colon + 1..).unwrap_or_default();
    constant_time_eq(given, password.as_str().as_bytes())
}

/// 403 with a short plain-text reason (never echoing request bytes).
pub fn forbidden(why: &str) -> Response {
    (StatusCode::FORBIDDEN, format!("403 forbidden: {why}\n")).into_response()
}

/// The middleware: refuse, or run the handler and add the security headers.
pub async fn check(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let mut resp = match guard.refuse(req.headers()) {
        Some(r) => {
            if r.status() == StatusCode::FORBIDDEN {
                let peer = req
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.to_string())
                    .unwrap_or_else(|| "?".into());
                eprintln!(
                    "swctl web: {peer}: refused {} {:?}: Host or Origin is not this console",
                    req.method(),
                    req.uri().path()
                );
            }
            r
        }
        None => next.run(req).await,
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(listen: &str, names: &[&str]) -> AllowedHosts {
        AllowedHosts::new(
            listen.parse().expect("addr"),
            &names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn host_names_that_reach_the_console() {
        let h = hosts("127.0.0.1:8080", &["Pbx1.example"]);
        for ok in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "localhost:8080",
            "LOCALHOST",
            "localhost.",
            "[::1]:8080",
            "pbx1.example:8080",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.8:8080",
            "127.0.0.1:80:80",
            "127.0.0.1:",
            "[::1]x",
            "::1",
            "127.0.0.1:8080@evil",
        ] {
            assert!(!h.allows(bad), "{bad}");
        }
        let any = hosts("0.0.0.0:8080", &[]);
        assert!(any.allows("10.0.0.8:8080"));
        assert!(any.allows("[fe80::1]:8080"));
        assert!(!any.allows("pbx1.example:8080"), "names must be allowed");
        let one = hosts("10.0.0.8:8080", &[]);
        assert!(one.allows("10.0.0.8:8080"));
        assert!(!one.allows("10.0.0.9:8080"));
    }

    #[test]
    fn allow_host_values_are_names() {
        assert!(AllowedHosts::valid_name("pbx1.example.com"));
        assert!(AllowedHosts::valid_name("10.0.0.8"));
        for bad in ["", "pbx1:8080", "http://pbx1", "a b", "[::1]"] {
            assert!(!AllowedHosts::valid_name(bad), "{bad}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn origin_must_be_the_host() {
        let g = Guard {
            hosts: hosts("127.0.0.1:8080", &[]),
            password: None,
        };
        assert!(g.refuse(&headers(&[("host", "127.0.0.1:8080")])).is_none());
        assert!(
            g.refuse(&headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080")
            ]))
            .is_none()
        );
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:9999",
            "null",
            "http://127.0.0.1:8080.evil.example",
        ] {
            let r = g
                .refuse(&headers(&[("host", "127.0.0.1:8080"), ("origin", origin)]))
                .expect("refused");
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{origin}");
        }
        let r = g.refuse(&HeaderMap::new()).expect("no Host");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn basic_auth_takes_any_user_and_the_secret() {
        let g = Guard {
            hosts: hosts("127.0.0.1:8080", &[]),
            password: Some(Token::new("s3cret").expect("token")),
        };
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let with = |auth: String| headers(&[("host", "127.0.0.1:8080"), ("authorization", &auth)]);
        assert!(
            g.refuse(&with(format!("Basic {}", b64("ops:s3cret"))))
                .is_none()
        );
        assert!(
            g.refuse(&with(format!("basic {}", b64(":s3cret"))))
                .is_none()
        );
        for bad in [
            format!("Basic {}", b64("ops:s3cre")),
            format!("Basic {}", b64("ops:s3cret2")),
            format!("Basic {}", b64("s3cret")),
            format!("Bearer {}", b64("ops:s3cret")),
            "Basic !!!".to_string(),
        ] {
            let r = g.refuse(&with(bad.clone())).expect("refused");
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
            assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        }
    }

    #[test]
    fn csrf_tokens_are_random_and_compared_exactly() {
        let a = CsrfToken::generate().expect("os rng");
        let b = CsrfToken::generate().expect("os rng");
        assert_eq!(a.as_str().len(), 64);
        assert_ne!(a.as_str(), b.as_str());
        assert!(a.matches(a.as_str()));
        assert!(!a.matches(b.as_str()));
        assert!(!a.matches(""));
        assert!(!a.matches(&a.as_str()[..63]));
        assert!(!format!("{a:?}").contains(a.as_str()));
    }
}
