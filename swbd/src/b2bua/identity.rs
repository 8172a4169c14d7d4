//! Who the caller is, for the dialplan and the B-legs: taken from the
//! request's [`Principal`], never from a header the caller could write
//! (issue #13). The identity is rendered into B-leg headers here, escaped,
//! so nothing a caller put in its From can reach the callee's wire as
//! anything but text.
//!
//! | principal | caller (`${caller}`, B-leg From user, P-Asserted-Identity) |
//! |---|---|
//! | `User(u)` (digest) | `u` (a From naming someone else was refused or rewritten at the front door, `auth.identity`) |
//! | `Trusted(net)` (`acl.trusted`) | the user of its P-Asserted-Identity, else of its From |
//! | `Unverified` (auth off) | the From user, not asserted |

use crate::auth::Principal;
use crate::sip::header::{NameAddr, quoted_display};
use crate::sip::message::HeaderAccess;
use crate::sip::uri::encode_user;
use crate::sip::{Name, Request};

/// `P-Asserted-Identity` (RFC 3325).
pub fn p_asserted_identity() -> Name {
    Name::new("P-Asserted-Identity")
}

/// The caller of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    /// The user (decoded; never holds control characters).
    pub user: String,
    /// The display name the caller gave (cosmetic, escaped when printed).
    pub display: Option<String>,
    /// Whether swbd vouches for `user` (authenticated or trusted network):
    /// B-legs then carry it in P-Asserted-Identity.
    pub asserted: bool,
}

impl CallerIdentity {
    /// The identity of `request`, which arrived with `principal`.
    pub fn of(request: &Request, principal: Option<&Principal>) -> Self {
        let from = request.header_from().ok();
        let from_user = from.as_ref().and_then(|f| f.uri.user());
        let display = from.as_ref().and_then(|f| f.display.clone());
        let (user, asserted) = match principal {
            Some(Principal::User(u)) => (Some(u.to_string()), true),
            Some(Principal::Trusted(_)) => {
                let pai = request
                    .raw(&p_asserted_identity())
                    .and_then(|v| NameAddr::parse(v, "P-Asserted-Identity").ok())
                    .and_then(|n| n.uri.user());
                (pai.or(from_user), true)
            }
            Some(Principal::Unverified) | None => (from_user, false),
        };
        Self {
            user: user.unwrap_or_default(),
            display,
            asserted,
        }
    }

    /// The user for a URI (`anonymous` when there is none), escaped.
    fn uri_user(&self) -> String {
        if self.user.is_empty() {
            return "anonymous".into();
        }
        encode_user(&self.user).into_owned()
    }

    /// A B-leg's From value: `"display" <sip:user@host>;tag=TAG`.
    pub fn from_value(&self, host: &str, tag: &str) -> String {
        let display = self
            .display
            .as_deref()
            .filter(|d| !d.trim().is_empty())
            .map(|d| format!("{} ", quoted_display(d)))
            .unwrap_or_default();
        format!("{display}<sip:{}@{host}>;tag={tag}", self.uri_user())
    }

    /// A B-leg's P-Asserted-Identity value, when swbd vouches for the user.
    pub fn asserted_value(&self, host: &str) -> Option<String> {
        (self.asserted && !self.user.is_empty())
            .then(|| format!("<sip:{}@{host}>", self.uri_user()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::SipMessage;
    use std::sync::Arc;

    fn invite(from: &str, extra: &str) -> Request {
        let text = format!(
            "INVITE sip:500@pbx SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1\r\n\
             From: {from};tag=1\r\nTo: <sip:500@pbx>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n{extra}\
             Content-Length: 0\r\n\r\n"
        );
        match SipMessage::parse(text.as_bytes(), true) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn an_authenticated_user_is_the_caller_whatever_the_from_says() {
        let r = invite("\"Boss\" <sip:1001@pbx>", "");
        let id = CallerIdentity::of(&r, Some(&Principal::User(Arc::from("1002"))));
        assert_eq!(id.user, "1002");
        assert_eq!(id.from_value("swbd", "t"), "\"Boss\" <sip:1002@swbd>;tag=t");
        assert_eq!(
            id.asserted_value("swbd").as_deref(),
            Some("<sip:1002@swbd>")
        );
    }

    #[test]
    fn a_trusted_network_asserts_with_pai() {
        let r = invite(
            "<sip:anonymous@carrier>",
            "P-Asserted-Identity: <sip:+15550100@carrier>\r\n",
        );
        let id = CallerIdentity::of(&r, Some(&Principal::Trusted(Arc::from("carrier"))));
        assert_eq!(id.user, "+15550100");
        assert!(id.asserted);
    }

    #[test]
    fn a_pai_from_an_untrusted_caller_is_ignored() {
        let r = invite(
            "<sip:1001@pbx>",
            "P-Asserted-Identity: <sip:911@carrier>\r\n",
        );
        let id = CallerIdentity::of(&r, Some(&Principal::User(Arc::from("1001"))));
        assert_eq!(id.user, "1001");
        let id = CallerIdentity::of(&r, Some(&Principal::Unverified));
        assert_eq!(id.user, "1001");
        assert_eq!(
            id.asserted_value("swbd"),
            None,
            "unverified is not asserted"
        );
    }

    #[test]
    fn injection_attempts_stay_text() {
        let r = invite("\"a\\\"b\\\\\" <sip:1001%0D%0AX-Injected:%20yes@pbx>", "");
        let id = CallerIdentity::of(&r, Some(&Principal::Unverified));
        let from = id.from_value("swbd", "t");
        assert!(!from.contains('\r') && !from.contains('\n'), "{from:?}");
        // Kept escaped, then escaped again for the URI: text, not a line.
        assert!(from.contains("1001%250D%250AX-Injected"), "{from:?}");
        // The display name's quotes and backslash are escaped, not ended.
        assert!(from.starts_with("\"a\\\"b\\\\\" <sip:"), "{from:?}");
    }
}
