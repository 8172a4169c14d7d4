//! INVITE: hand the server INVITE transaction (authenticated by the front
//! door, its principal attached) to the B2BUA if one has taken the INVITE
//! channel ([`crate::endpoint::SipEndpoint::take_invites`]); until then
//! answer `480 Temporarily Unavailable (no B2BUA yet)`.

use tokio::sync::mpsc::error::TrySendError;

use super::Context;
use crate::auth::Principal;
use crate::overload::Refusal;
use crate::sip::Name;
use crate::sip::message::HeaderAccess;
use crate::transaction::ServerInviteTransaction;

/// An authenticated INVITE for the B2BUA.
#[derive(Debug)]
pub struct IncomingInvite {
    /// The server transaction: request, source, `respond`, `next_event`
    /// (CANCEL, ACK).
    pub transaction: ServerInviteTransaction,
    /// Who sent it (also on the transaction).
    pub principal: Option<Principal>,
}

/// Handle an INVITE.
pub fn handle(ctx: &Context, tx: ServerInviteTransaction) {
    // A To tag names a dialog, and no dialog claimed it (RFC 3261
    // §12.2.2). Such requests pass the front door unchallenged because a
    // dialog is their credential; without one they go no further.
    if tx
        .request()
        .header_to()
        .ok()
        .is_some_and(|to| to.tag().is_some())
    {
        let resp = tx.response(481, "Call/Transaction Does Not Exist");
        let _ = tx.respond(resp);
        return;
    }
    let principal = tx.principal().cloned();
    let sender = ctx.invites.lock().ok().and_then(|s| s.clone());
    let Some(sender) = sender else {
        let resp = tx.response(480, "Temporarily Unavailable (no B2BUA yet)");
        let _ = tx.respond(resp);
        return;
    };
    match sender.try_send(IncomingInvite {
        transaction: tx,
        principal,
    }) {
        Ok(()) => {}
        Err(TrySendError::Full(inv)) => {
            let user = inv.principal.as_ref().and_then(Principal::username);
            ctx.security
                .overloaded(inv.transaction.source(), user.unwrap_or_default());
            crate::transport::SipCounters::inc(&ctx.auth.counters().messages.overload_shed);
            // Rare: overload control refuses INVITEs statelessly at the
            // front door long before the queue fills.
            ctx.overload.count_refused(Refusal::Queue);
            let mut resp = inv
                .transaction
                .response(503, "Service Unavailable (overloaded)");
            resp.headers.insert(
                Name::RETRY_AFTER,
                ctx.overload.retry_after_secs().to_string(),
            );
            let _ = inv.transaction.respond(resp);
        }
        Err(TrySendError::Closed(inv)) => {
            let resp = inv
                .transaction
                .response(480, "Temporarily Unavailable (no B2BUA)");
            let _ = inv.transaction.respond(resp);
        }
    }
}
