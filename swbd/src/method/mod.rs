//! Method handlers for new server transactions, one file per method,
//! dispatched from [`dispatch`] (mini-redis `cmd/` style).
//!
//! Checks before any method (RFC 3261 §8.2 / §16.3): `Max-Forwards: 0`
//! gets `483 Too Many Hops`; a `Require` with extensions gets
//! `420 Bad Extension`. Unknown methods get `501 Not Implemented`, known
//! ones swbd does not handle get `405 Method Not Allowed`; both carry
//! `Allow`. BYE outside a dialog gets `481`.

pub mod bye;
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
use crate::sip::message::HeaderAccess;
use crate::transaction::{IncomingRequest, ServerTransaction};
pub use invite::IncomingInvite;

/// Methods swbd answers.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER";

/// Takes in-dialog requests (those with a To tag) and unmatched ACKs
/// before the method handlers see them; the B2BUA implements it.
pub trait DialogRouter: Send + Sync + std::fmt::Debug {
    /// Claim `incoming` (`None`) or hand it back for the method handlers.
    fn route(&self, incoming: IncomingRequest) -> Option<IncomingRequest>;
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
        IncomingRequest::Invite(tx) => {
            let r = tx.request();
            if let Some((code, reason, extra)) = precheck(r) {
                let mut resp = tx.response(code, reason);
                if let Some((n, v)) = extra {
                    resp.headers.insert(n, v);
                }
                let _ = tx.respond(resp);
                return;
            }
            invite::handle(ctx, tx);
        }
        IncomingRequest::Request(tx) => {
            if let Some((code, reason, extra)) = precheck(tx.request()) {
                let mut resp = tx.response(code, reason);
                if let Some((n, v)) = extra {
                    resp.headers.insert(n, v);
                }
                let _ = tx.respond(resp);
                return;
            }
            match tx.request().method.clone() {
                Method::Register => register::handle(ctx, tx),
                Method::Options => options::handle(ctx, tx),
                Method::Bye => bye::handle(ctx, tx),
                Method::Other(_) => refuse(tx, 501, "Not Implemented"),
                _ => refuse(tx, 405, "Method Not Allowed"),
            }
        }
    }
}

type Precheck = (u16, &'static str, Option<(Name, String)>);

fn precheck(r: &crate::sip::Request) -> Option<Precheck> {
    if r.max_forwards().ok().flatten() == Some(0) {
        return Some((483, "Too Many Hops", None));
    }
    let required: Vec<String> = r
        .raw_values(&Name::REQUIRE)
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if !required.is_empty() {
        return Some((
            420,
            "Bad Extension",
            Some((Name::UNSUPPORTED, required.join(", "))),
        ));
    }
    None
}

fn refuse(tx: ServerTransaction, code: u16, reason: &str) {
    let mut resp = tx.response(code, reason);
    resp.headers.insert(Name::ALLOW, ALLOW);
    let _ = tx.respond(resp);
}
