//! HTTP digest (RFC 2617, as used by RFC 3261 §22.4) for the client side:
//! parse a `WWW-Authenticate`/`Proxy-Authenticate` challenge, answer it with
//! MD5 and `qop=auth` (or the RFC 2069 form when the server offers no qop).

use md5::{Digest, Md5};

/// A parsed `Digest` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// The server offers `qop=auth`.
    pub qop_auth: bool,
}

impl Challenge {
    /// Parse one header value; `None` unless it is an MD5 (or unnamed
    /// algorithm) Digest challenge with realm and nonce.
    pub fn parse(value: &str) -> Option<Challenge> {
        let rest = value.trim().strip_prefix("Digest")?.trim_start();
        let mut realm = None;
        let mut nonce = None;
        let mut opaque = None;
        let mut qop_auth = false;
        let mut md5 = true;
        for part in crate::sip::split_list(rest) {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "realm" => realm = Some(v),
                "nonce" => nonce = Some(v),
                "opaque" => opaque = Some(v),
                "qop" => qop_auth = v.split(',').any(|q| q.trim() == "auth"),
                "algorithm" => md5 = v.eq_ignore_ascii_case("MD5"),
                _ => {}
            }
        }
        if !md5 {
            return None;
        }
        Some(Challenge {
            realm: realm?,
            nonce: nonce?,
            opaque,
            qop_auth,
        })
    }

    /// The first usable challenge among several header values.
    pub fn pick<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
        values.into_iter().find_map(Challenge::parse)
    }
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// The `response` value (RFC 2617 §3.2.2.1); `qop` is `Some((nc, cnonce))`
/// for `qop=auth`.
pub fn response(
    user: &str,
    password: &str,
    realm: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<(&str, &str)>,
) -> String {
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    match qop {
        Some((nc, cnonce)) => md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")),
        None => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
    }
}

/// The credentials header value answering `ch` (nc is always 1: every
/// challenge is answered once).
pub fn authorization(
    ch: &Challenge,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
) -> String {
    let nc = "00000001";
    let qop = ch.qop_auth.then_some((nc, cnonce));
    let resp = response(user, password, &ch.realm, method, uri, &ch.nonce, qop);
    let mut v = format!(
        "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5",
        ch.realm, ch.nonce
    );
    if ch.qop_auth {
        v.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
    }
    if let Some(o) = &ch.opaque {
        v.push_str(&format!(", opaque=\"{o}\""));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5: the worked example.
    #[test]
    fn rfc2617_example_vector() {
        let r = response(
            "Mufasa",
            "Circle Of Life",
            "testrealm@host.com",
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(("00000001", "0a4f113b")),
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn parses_the_rfc_challenge_and_answers_it() {
        let ch = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert!(ch.qop_auth);
        assert_eq!(ch.realm, "testrealm@host.com");
        let a = authorization(
            &ch,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "0a4f113b",
        );
        assert!(
            a.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{a}"
        );
        assert!(a.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
        assert!(a.contains("qop=auth, nc=00000001"));
    }

    #[test]
    fn skips_sha256_and_falls_back_to_rfc2069() {
        let sha = "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256, qop=\"auth\"";
        let md5 = "Digest realm=\"r\", nonce=\"n2\", algorithm=MD5";
        let ch = Challenge::pick([sha, md5]).unwrap();
        assert_eq!(ch.nonce, "n2");
        assert!(!ch.qop_auth);
        let a = authorization(&ch, "u", "p", "REGISTER", "sip:h", "c");
        assert!(!a.contains("qop"));
        assert!(a.contains(&response("u", "p", "r", "REGISTER", "sip:h", "n2", None)));
        assert_eq!(Challenge::parse("Basic realm=\"r\""), None);
    }
}
