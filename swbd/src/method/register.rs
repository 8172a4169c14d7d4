//! REGISTER (RFC 3261 §10.3): the front door has authenticated it (401
//! challenges are sent there); check the authenticated user may register
//! the AOR, apply to the registrar, answer with all current bindings.

use crate::sip::Name;

use super::Context;
use crate::auth::Principal;
use crate::registrar::{Error as RegistrarError, RegisterRequest};
use crate::sip::message::HeaderAccess;
use crate::transaction::ServerTransaction;

/// Handle a REGISTER.
pub fn handle(ctx: &Context, tx: ServerTransaction) {
    let resp = respond(ctx, &tx);
    let _ = tx.respond(resp);
}

fn respond(ctx: &Context, tx: &ServerTransaction) -> crate::sip::Response {
    let r = tx.request();
    let source = *tx.source();
    let (to, contacts, expires, call_id, cseq) = match (
        r.header_to(),
        r.contacts(),
        r.expires(),
        r.call_id(),
        r.cseq(),
    ) {
        (Ok(to), Ok(c), Ok(e), Ok(id), Ok(cseq)) => (to, c, e, id.to_string(), cseq.number),
        _ => return tx.response(400, "Bad Request"),
    };
    // The front door authenticated the REGISTER (or found auth off, or a
    // trusted network): a user may register only their own AOR.
    match tx.principal() {
        Some(Principal::User(user)) => {
            if to.uri.user().as_deref() != Some(&**user) {
                return tx.response(403, "Forbidden (user may not register this AOR)");
            }
        }
        Some(Principal::Unverified) => {}
        // Trusted networks place calls; registering needs a password.
        Some(Principal::Trusted(_)) => {
            return tx.response(403, "Forbidden (not authenticated)");
        }
        None if !ctx.auth.enabled() => {}
        None => return tx.response(403, "Forbidden (not authenticated)"),
    }
    let req = RegisterRequest {
        aor: to.uri,
        contacts,
        expires,
        call_id,
        cseq,
        source,
        user_agent: r.raw(&Name::USER_AGENT).unwrap_or_default().to_string(),
    };
    let rendered = ctx.registrar.register_with(&req, |bindings| {
        bindings
            .iter()
            .map(|b| {
                use std::fmt::Write as _;
                let mut v = String::with_capacity(96);
                let _ = write!(v, "<{}>;expires={}", b.contact, b.remaining_secs());
                if b.q < 1.0 {
                    let _ = write!(v, ";q={}", b.q);
                }
                for (n, val) in &b.params {
                    let _ = match val {
                        Some(val) => write!(v, ";{n}={val}"),
                        None => write!(v, ";{n}"),
                    };
                }
                v
            })
            .collect::<Vec<_>>()
    });
    match rendered {
        Ok(contacts) => {
            let mut resp = tx.response(200, "OK");
            for v in contacts {
                resp.headers.insert(Name::CONTACT, v);
            }
            resp
        }
        Err(e) => {
            let reason = match &e {
                RegistrarError::NotOurDomain(_) => "Not Found".to_string(),
                RegistrarError::IntervalTooBrief { .. } => "Interval Too Brief".to_string(),
                RegistrarError::BadRequest(m) => format!("Bad Request ({m})"),
                RegistrarError::TooManyContacts { .. } => format!("Forbidden ({e})"),
            };
            let mut resp = tx.response(e.status_code(), &reason);
            if let RegistrarError::TooManyContacts { .. } = e {
                // RFC 3261 §20.43: 399 is the miscellaneous warning.
                resp.headers
                    .insert(Name::WARNING, format!("399 swbd \"{e}\""));
            }
            if let RegistrarError::IntervalTooBrief { min_expires } = e {
                resp.headers
                    .insert(Name::MIN_EXPIRES, min_expires.to_string());
            }
            resp
        }
    }
}
