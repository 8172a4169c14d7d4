//! Who a request speaks for: decided once, at the front door
//! ([`crate::method::front_door`]), and carried by the server transaction
//! into the registrar and the B2BUA. Identity is this value, never a header
//! a peer wrote (issue #13: a phone authenticated as 1002 calling out as
//! 1001).

use std::sync::Arc;

/// The principal of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Passed digest authentication as this user of the users file.
    User(Arc<str>),
    /// Came from a trusted network (`acl.trusted`, a trunk): not
    /// challenged; the identity it asserts (P-Asserted-Identity, else the
    /// From user) is believed.
    Trusted(Arc<str>),
    /// Authentication is off by config (`auth.enabled: false`): nobody is
    /// verified and the From user is taken as said.
    Unverified,
}

impl Principal {
    /// The authenticated username, for a [`Principal::User`].
    pub fn username(&self) -> Option<&str> {
        match self {
            Principal::User(u) => Some(u),
            _ => None,
        }
    }
}
