//! Routing of INVITEs and in-dialog requests: a new INVITE starts a call
//! task; a request carrying a To tag belongs to a dialog and goes to its
//! call task, or gets `481 Call/Transaction Does Not Exist`.

use super::call::{self, CallDeps};
use super::table::{CallTable, LegInput};
use crate::dialog::DialogId;
use crate::method::DialogRouter;
use crate::sip::{Method, Name, Request};
use crate::transaction::{IncomingRequest, ServerInviteTransaction, ServerTransaction};

/// The B2BUA's [`DialogRouter`]: requests carrying a To tag go to their
/// call (or get 481) before any method handler or authentication.
#[derive(Debug, Clone)]
pub struct Router {
    /// The call table.
    pub calls: CallTable,
}

impl DialogRouter for Router {
    fn knows(&self, request: &Request) -> bool {
        DialogId::of_incoming(request).is_some_and(|id| self.calls.dialog_route(&id).is_some())
    }

    fn route(&self, incoming: IncomingRequest) -> Option<IncomingRequest> {
        match incoming {
            IncomingRequest::Ack { request, .. } => {
                ack(&self.calls, request);
                None
            }
            IncomingRequest::Request(txn) => {
                request(&self.calls, txn).map(IncomingRequest::Request)
            }
            IncomingRequest::Invite(txn) => match DialogId::of_incoming(txn.request()) {
                None => Some(IncomingRequest::Invite(txn)),
                Some(id) => {
                    match self.calls.dialog_route(&id) {
                        Some(tx) => {
                            let _ = tx.send(Box::new((id, LegInput::Invite(txn))));
                        }
                        None => {
                            let _ =
                                txn.respond(txn.response(481, "Call/Transaction Does Not Exist"));
                        }
                    }
                    None
                }
            },
        }
    }
}

/// An INVITE: a new call, or a re-INVITE for a dialog.
pub fn invite(deps: &CallDeps, txn: ServerInviteTransaction) {
    match DialogId::of_incoming(txn.request()) {
        None if txn.request().headers.contains(&Name::REPLACES) => {
            super::transfer::route_replacing_invite(&deps.calls, txn);
        }
        None => {
            tokio::spawn(call::run(deps.clone(), txn));
        }
        Some(id) => match deps.calls.dialog_route(&id) {
            Some(tx) => {
                let _ = tx.send(Box::new((id, LegInput::Invite(txn))));
            }
            None => {
                let _ = txn.respond(txn.response(481, "Call/Transaction Does Not Exist"));
            }
        },
    }
}

/// A non-INVITE request. In-dialog ones (To tag present) are routed or
/// refused with 481 and `None` is returned; out-of-dialog ones are handed
/// back for the caller to answer (REGISTER, OPTIONS, ...).
pub fn request(calls: &CallTable, txn: ServerTransaction) -> Option<ServerTransaction> {
    // REGISTER never belongs to a dialog (RFC 3261 §10.2): skip the lookup.
    if txn.request().method == Method::Register {
        return Some(txn);
    }
    let Some(id) = DialogId::of_incoming(txn.request()) else {
        return Some(txn);
    };
    match calls.dialog_route(&id) {
        Some(tx) => {
            let _ = tx.send(Box::new((id, LegInput::Request(txn))));
        }
        None => {
            // Kept for nothing: a flood of requests for made-up dialogs
            // must not fill the table for Timer J.
            let _ = txn.respond_statelessly(txn.response(481, "Call/Transaction Does Not Exist"));
        }
    }
    None
}

/// An ACK no transaction claimed (an ACK for a 2xx after the transaction
/// ended): give it to its dialog, or drop it (ACKs are never answered).
pub fn ack(calls: &CallTable, request: Request) {
    if let Some(id) = DialogId::of_incoming(&request)
        && let Some(tx) = calls.dialog_route(&id)
    {
        let _ = tx.send(Box::new((id, LegInput::Ack(request))));
    }
}
