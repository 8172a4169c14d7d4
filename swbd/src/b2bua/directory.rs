//! Who exists and where they are: the [`Locator`] calls use, over the
//! registrar (contacts) and the users file (who is known).
//!
//! A dial to `user/NAME` with no contact fails with `480 Temporarily
//! Unavailable` when NAME is in the users file (known, not registered) and
//! `404 Not Found` otherwise.

use super::call::{Contact, Locator};
use crate::auth::Authenticator;
use crate::registrar::Registrar;

/// The registrar's contacts plus the users file's names.
#[derive(Debug, Clone)]
pub struct Directory {
    registrar: Registrar,
    auth: Authenticator,
}

impl Directory {
    /// Over `registrar` (contacts) and `auth` (its users file).
    pub fn new(registrar: Registrar, auth: Authenticator) -> Self {
        Self { registrar, auth }
    }
}

impl Locator for Directory {
    fn lookup(&self, user: &str) -> Vec<Contact> {
        Locator::lookup(&self.registrar, user)
    }

    fn is_known(&self, user: &str) -> bool {
        self.auth.has_user(user)
    }
}
