//! Digest computations and the `Authorization` header (RFC 7616 §3.4,
//! RFC 8760 for SHA-256 in SIP).

use std::borrow::Cow;

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// Digest hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5 (RFC 3261 default).
    Md5,
    /// SHA-256 (RFC 8760).
    Sha256,
}

impl Algorithm {
    /// Token as written in challenges.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// From a header token (absent means MD5).
    pub fn from_token(s: Option<&str>) -> Option<Self> {
        match s {
            None => Some(Algorithm::Md5),
            Some(s) if s.eq_ignore_ascii_case("MD5") => Some(Algorithm::Md5),
            Some(s) if s.eq_ignore_ascii_case("SHA-256") => Some(Algorithm::Sha256),
            _ => None,
        }
    }

    /// Lowercase hex digest of `data`.
    pub fn hex(self, data: &str) -> String {
        self.hex_joined(&[data])
    }

    /// Lowercase hex digest of `parts` joined with `:` (fed to the hash
    /// piece by piece, never concatenated).
    pub fn hex_joined(self, parts: &[&str]) -> String {
        fn feed<D: sha2::Digest>(mut h: D, parts: &[&str]) -> String {
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    h.update(b":");
                }
                h.update(p.as_bytes());
            }
            hex::encode(h.finalize())
        }
        match self {
            Algorithm::Md5 => feed(Md5::new(), parts),
            Algorithm::Sha256 => feed(Sha256::new(), parts),
        }
    }

    /// HA1 = H(username:realm:password).
    pub fn ha1(self, username: &str, realm: &str, password: &str) -> String {
        self.hex_joined(&[username, realm, password])
    }
}

/// The `response` value for `qop=auth` (RFC 7616 §3.4.1).
#[allow(clippy::too_many_arguments)]
pub fn response(
    alg: Algorithm,
    ha1: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop: &str,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = alg.hex_joined(&[method, uri]);
    alg.hex_joined(&[ha1, nonce, nc, cnonce, qop, &ha2])
}

/// Parsed `Digest` credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// username.
    pub username: Cow<'a, str>,
    /// realm.
    pub realm: Cow<'a, str>,
    /// nonce.
    pub nonce: Cow<'a, str>,
    /// digest-uri.
    pub uri: Cow<'a, str>,
    /// response.
    pub response: Cow<'a, str>,
    /// algorithm token, if given.
    pub algorithm: Option<Cow<'a, str>>,
    /// cnonce.
    pub cnonce: Option<Cow<'a, str>>,
    /// qop.
    pub qop: Option<Cow<'a, str>>,
    /// nc (8 hex digits).
    pub nc: Option<Cow<'a, str>>,
}

impl<'a> Credentials<'a> {
    /// Parse an `Authorization`/`Proxy-Authorization` value; `None` when it
    /// is not `Digest` or lacks a mandatory field.
    pub fn parse(value: &'a str) -> Option<Credentials<'a>> {
        let value = value.trim();
        let (scheme, rest) = value.split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let mut c = Credentials::default();
        let (mut has_user, mut has_nonce, mut has_resp) = (false, false, false);
        for item in split_params(rest) {
            let (k, v) = item.split_once('=')?;
            let k = k.trim();
            let v = unquote(v.trim());
            // Names are case-insensitive; match without lowercasing a copy.
            let k = [
                "username",
                "realm",
                "nonce",
                "uri",
                "response",
                "algorithm",
                "cnonce",
                "qop",
                "nc",
            ]
            .into_iter()
            .find(|n| n.eq_ignore_ascii_case(k))
            .unwrap_or_default();
            match k {
                "username" => {
                    c.username = v;
                    has_user = true;
                }
                "realm" => c.realm = v,
                "nonce" => {
                    c.nonce = v;
                    has_nonce = true;
                }
                "uri" => c.uri = v,
                "response" => {
                    c.response = if v.bytes().any(|b| b.is_ascii_uppercase()) {
                        Cow::Owned(v.to_ascii_lowercase())
                    } else {
                        v
                    };
                    has_resp = true;
                }
                "algorithm" => c.algorithm = Some(v),
                "cnonce" => c.cnonce = Some(v),
                "qop" => c.qop = Some(v),
                "nc" => c.nc = Some(v),
                _ => {}
            }
        }
        (has_user && has_nonce && has_resp).then_some(c)
    }
}

pub(crate) fn split_params(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, ch) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match ch {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out.retain(|p| !p.is_empty());
    out
}

pub(crate) fn unquote(v: &str) -> Cow<'_, str> {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) if inner.contains('\\') => {
            Cow::Owned(inner.replace("\\\"", "\"").replace("\\\\", "\\"))
        }
        Some(inner) => Cow::Borrowed(inner),
        None => Cow::Borrowed(v),
    }
}

/// Constant-time comparison of two ASCII strings.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.bytes()
        .zip(b.bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_md5_example() {
        // RFC 2617 §3.5 example (qop=auth).
        let ha1 = Algorithm::Md5.ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        let r = response(
            Algorithm::Md5,
            &ha1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "00000001",
            "0a4f113b",
            "auth",
            "GET",
            "/dir/index.html",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc7616_sha256_example() {
        // RFC 7616 §3.9.1.
        let ha1 = Algorithm::Sha256.ha1("Mufasa", "http-auth@example.org", "Circle of Life");
        let r = response(
            Algorithm::Sha256,
            &ha1,
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            "00000001",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            "auth",
            "GET",
            "/dir/index.html",
        );
        assert_eq!(
            r,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn parses_credentials() {
        let c = Credentials::parse(
            "Digest username=\"bob\", realm=\"x,y\", nonce=\"n\", uri=\"sip:a\", response=\"AB\", qop=auth, nc=00000001, cnonce=\"c\", algorithm=SHA-256",
        )
        .expect("parses");
        assert_eq!(c.realm, "x,y");
        assert_eq!(c.response, "ab");
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        assert!(Credentials::parse("Basic abc").is_none());
    }
}
