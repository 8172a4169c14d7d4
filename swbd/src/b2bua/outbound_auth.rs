//! Answering a trunk's digest challenge (RFC 3261 §22.2) on a B-leg INVITE:
//! `401` -> `Authorization`, `407` -> `Proxy-Authorization`, MD5 or
//! SHA-256, `qop=auth` when offered.

use crate::sip::Name;

use crate::auth::digest::{self, Algorithm, split_params, unquote};
use crate::sip::message::HeaderAccess;
use crate::sip::{Request, Response, random_token};

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Realm.
    pub realm: String,
    /// Nonce.
    pub nonce: String,
    /// Algorithm (MD5 when absent).
    pub algorithm: Algorithm,
    /// `auth` offered in `qop`.
    pub qop_auth: bool,
    /// Opaque, echoed back.
    pub opaque: Option<String>,
}

impl Challenge {
    /// Parse one challenge value; `None` for non-Digest or unknown algorithms.
    pub fn parse(value: &str) -> Option<Challenge> {
        let (scheme, rest) = value.trim().split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let (mut realm, mut nonce, mut algorithm, mut qop, mut opaque) =
            (None, None, None, None, None);
        for item in split_params(rest) {
            let Some((k, v)) = item.split_once('=') else {
                continue;
            };
            let v = unquote(v.trim());
            match k.trim().to_ascii_lowercase().as_str() {
                "realm" => realm = Some(v),
                "nonce" => nonce = Some(v),
                "algorithm" => algorithm = Some(v),
                "qop" => qop = Some(v),
                "opaque" => opaque = Some(v),
                _ => {}
            }
        }
        Some(Challenge {
            realm: realm?.into_owned(),
            nonce: nonce?.into_owned(),
            algorithm: Algorithm::from_token(algorithm.as_deref())?,
            qop_auth: qop.is_some_and(|q| q.split(',').any(|t| t.trim() == "auth")),
            opaque: opaque.map(std::borrow::Cow::into_owned),
        })
    }
}

/// The challenge of a 401/407 we can answer, preferring SHA-256.
pub fn pick_challenge(resp: &Response) -> Option<Challenge> {
    let name = if resp.code == 407 {
        Name::PROXY_AUTHENTICATE
    } else {
        Name::WWW_AUTHENTICATE
    };
    let mut all: Vec<Challenge> = resp
        .raw_values(&name)
        .filter_map(Challenge::parse)
        .collect();
    all.sort_by_key(|c| c.algorithm != Algorithm::Sha256);
    all.into_iter().next()
}

/// `invite` again with credentials for `challenge` (new CSeq; the
/// transaction layer adds a new Via).
pub fn authorize(
    invite: &Request,
    status: u16,
    challenge: &Challenge,
    username: &str,
    password: &str,
) -> Request {
    let mut r = Request::new(invite.method.clone(), invite.uri.clone());
    for (name, value) in invite.headers.iter() {
        if *name == Name::VIA || *name == Name::CSEQ {
            continue;
        }
        r.headers.insert(name.clone(), value.clone());
    }
    let seq = invite.cseq().map(|c| c.number).unwrap_or(1).wrapping_add(1);
    r.headers.insert(Name::CSEQ, format!("{seq} INVITE"));
    r.body = invite.body.clone();
    let uri = invite.uri.to_string();
    let alg = challenge.algorithm;
    let ha1 = alg.ha1(username, &challenge.realm, password);
    let mut value = format!(
        "Digest username=\"{username}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", algorithm={}",
        challenge.realm,
        challenge.nonce,
        alg.as_str()
    );
    if challenge.qop_auth {
        let cnonce = random_token(16);
        let response = digest::response(
            alg,
            &ha1,
            &challenge.nonce,
            "00000001",
            &cnonce,
            "auth",
            "INVITE",
            &uri,
        );
        value.push_str(&format!(
            ", response=\"{response}\", qop=auth, nc=00000001, cnonce=\"{cnonce}\""
        ));
    } else {
        let ha2 = alg.hex(&format!("INVITE:{uri}"));
        let response = alg.hex(&format!("{ha1}:{}:{ha2}", challenge.nonce));
        value.push_str(&format!(", response=\"{response}\""));
    }
    if let Some(o) = &challenge.opaque {
        value.push_str(&format!(", opaque=\"{o}\""));
    }
    let header = if status == 407 {
        Name::PROXY_AUTHORIZATION
    } else {
        Name::AUTHORIZATION
    };
    r.headers.insert(header, value);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let c = Challenge::parse(
            "Digest realm=\"carrier\", nonce=\"abc\", algorithm=SHA-256, qop=\"auth,auth-int\", opaque=\"o\"",
        )
        .expect("parses");
        assert_eq!(c.realm, "carrier");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert!(c.qop_auth);
        assert_eq!(c.opaque.as_deref(), Some("o"));
        assert!(Challenge::parse("Basic realm=\"x\"").is_none());
        assert!(
            Challenge::parse("Digest realm=\"x\", nonce=\"n\", algorithm=SHA-512-256").is_none()
        );
        let md5 = Challenge::parse("Digest realm=\"x\", nonce=\"n\"").expect("md5 default");
        assert_eq!(md5.algorithm, Algorithm::Md5);
        assert!(!md5.qop_auth);
    }
}
