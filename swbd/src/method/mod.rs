//! Method handlers for new server transactions, one file per method,
//! dispatched from [`dispatch`] (mini-redis `cmd/` style).
//!
//! Requests reach them through the [`front_door`], which has already
//! answered, statelessly, everything that needs no transaction (483, 420,
//! 501, 405, digest challenges, 403) and attached the request's
//! [`crate::auth::Principal`]. BYE outside a dialog gets `481`.

pub mod bye;
pub mod front_door;
pub mod invite;
pub mod options;
pub mod register;

use std::sync::{Arc, Mutex};

use crate::sip::Name;
use tokio::sync::mpsc;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::registrar::Registrar;
use crate::sip::Method;
use crate::transaction::{IncomingRequest, ServerTransaction};
pub use invite::IncomingInvite;

/// Methods swbd answers.
pub use crate::sip::capabilities::ALLOW;

/// Takes in-dialog requests (those with a To tag) and unmatched ACKs
/// before the method handlers see them; the B2BUA implements it.
pub trait DialogRouter: Send + Sync + std::fmt::Debug {
    /// Claim `incoming` (`None`) or hand it back for the method handlers.
    fn route(&self, incoming: IncomingRequest) -> Option<IncomingRequest>;

    /// Whether `request` (which carries a To tag) names a dialog that
    /// exists. The front door answers `481` statelessly when it does not,
    /// so a made-up in-dialog INVITE gets no transaction, no `100 Trying`
    /// and no retransmitted `481`.
    fn knows(&self, request: &crate::sip::Request) -> bool;
}

/// What handlers need.
#[derive(Debug)]
pub struct Context {
    /// Config.
    pub config: Arc<Config>,
    /// Registrar.
    pub registrar: Registrar,
    /// Digest authentication.
    pub auth: Authenticator,
    /// Where authenticated INVITEs go once a B2BUA has taken them.
    pub invites: Mutex<Option<mpsc::Sender<IncomingInvite>>>,
    /// In-dialog routing, once a B2BUA is attached.
    pub dialogs: Mutex<Option<Arc<dyn DialogRouter>>>,
    /// Security events (what the front door and handlers refuse).
    pub security: crate::events::security::SecurityEvents,
    /// Overload control: the front door asks it about new INVITEs.
    pub overload: crate::overload::Overload,
}

/// Handle one new request. Never blocks.
pub fn dispatch(ctx: &Context, incoming: IncomingRequest) {
    let router = ctx.dialogs.lock().ok().and_then(|r| r.clone());
    let incoming = match router {
        Some(router) => match router.route(incoming) {
            Some(i) => i,
            None => return,
        },
        None => incoming,
    };
    match incoming {
        IncomingRequest::Ack { .. } => {
            // No dialogs yet: an ACK nobody claims is dropped (RFC 3261 §17.2.3).
        }
        IncomingRequest::Invite(tx) => invite::handle(ctx, tx),
        IncomingRequest::Request(tx) => match tx.request().method.clone() {
            Method::Register => register::handle(ctx, tx),
            Method::Options => options::handle(ctx, tx),
            Method::Bye => bye::handle(ctx, tx),
            Method::Other(_) => refuse(tx, 501, "Not Implemented"),
            _ => refuse(tx, 405, "Method Not Allowed"),
        },
    }
}

fn refuse(tx: ServerTransaction, code: u16, reason: &str) {
    let mut resp = tx.response(code, reason);
    resp.headers.insert(Name::ALLOW, ALLOW);
    let _ = tx.respond(resp);
}
