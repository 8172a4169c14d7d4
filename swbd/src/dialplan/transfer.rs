//! Call transfer in the dialplan: each route's `transfer:` policy and the
//! `context:` routes a transfer may be confined to.
//!
//! ```yaml
//! routes:
//!   - id: extensions
//!     match: {destination: "1???"}
//!     transfer: allow            # or deny, or a context name
//!     actions: [{dial: {target: "user/${destination}"}}]
//!   - id: to-reception
//!     context: transfers         # only transfers under `transfer: transfers` get here
//!     match: {destination: "0"}
//!     actions: [{dial: {target: "user/1000"}}]
//! ```
//!
//! A REFER from either leg of a bridged call is judged by the policy of
//! the route the call took:
//!
//! | `transfer:` | who may transfer | where the target is routed |
//! |---|---|---|
//! | absent | local users: an A-leg caller who authenticated (or any caller when `auth.enabled: false`), a B-leg that dialled `user/NAME`; not trunks (`acl.trusted`, `gateway/`, `sip:` targets) | the default context |
//! | `allow` | anyone on the call | the default context |
//! | `deny` | nobody (`403`, the call stays up) | - |
//! | `NAME` | anyone on the call | only routes with `context: NAME` |
//!
//! Routes with a `context:` never take new calls. While a transfer is
//! routed, `${caller}` is the transferee (the party being transferred) and
//! `${referrer}` the transferor; `${destination}` is the user of the
//! Refer-To URI.

use super::Error;

/// A route's `transfer:` policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TransferPolicy {
    /// No `transfer:` key: local users may transfer, trunks may not.
    #[default]
    LocalUsers,
    /// `transfer: allow`.
    Allow,
    /// `transfer: deny`.
    Deny,
    /// `transfer: NAME`: allowed, routed among `context: NAME` routes.
    Context(String),
}

impl TransferPolicy {
    /// Parse the value of a `transfer:` key.
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "allow" => Ok(Self::Allow),
            "deny" => Ok(Self::Deny),
            name => {
                check_context_name(name)?;
                Ok(Self::Context(name.to_string()))
            }
        }
    }

    /// Whether a transferor may transfer; `local` says whether it is a
    /// local user (see the module docs).
    pub fn permits(&self, local: bool) -> bool {
        match self {
            Self::LocalUsers => local,
            Self::Allow | Self::Context(_) => true,
            Self::Deny => false,
        }
    }

    /// The context a permitted transfer is routed in (`None`: the default).
    pub fn context(&self) -> Option<&str> {
        match self {
            Self::Context(name) => Some(name),
            _ => None,
        }
    }
}

/// A context name: `[A-Za-z0-9_-]{1,64}`, and not `allow` or `deny`.
pub fn check_context_name(name: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::BadContext {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 64 {
        return bad("expected 1 to 64 characters, like \"transfers\"");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return bad("expected letters, digits, `_` and `-` only");
    }
    if name == "allow" || name == "deny" {
        return bad("`allow` and `deny` are transfer policies, not context names");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_judge() {
        assert_eq!(TransferPolicy::parse("allow"), Ok(TransferPolicy::Allow));
        assert_eq!(TransferPolicy::parse("deny"), Ok(TransferPolicy::Deny));
        assert_eq!(
            TransferPolicy::parse("front-desk"),
            Ok(TransferPolicy::Context("front-desk".into()))
        );
        for bad in ["", "a b", "x\r\ny", &"c".repeat(65)] {
            assert!(TransferPolicy::parse(bad).is_err(), "{bad:?}");
        }
        let local = TransferPolicy::LocalUsers;
        assert!(local.permits(true) && !local.permits(false));
        assert!(TransferPolicy::Allow.permits(false));
        assert!(!TransferPolicy::Deny.permits(true));
        assert_eq!(
            TransferPolicy::Context("t".into()).context(),
            Some("t"),
            "a context names where the target is routed"
        );
        assert!(check_context_name("deny").is_err());
    }
}
