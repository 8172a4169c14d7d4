//! BYE: no dialogs exist yet in the SIP core, so every BYE is outside a
//! dialog (RFC 3261 §15.1.2: `481 Call/Transaction Does Not Exist`). The
//! B2BUA issue replaces this.

use super::Context;
use crate::transaction::ServerTransaction;

/// Answer a BYE.
pub fn handle(_ctx: &Context, tx: ServerTransaction) {
    let resp = tx.response(481, "Call/Transaction Does Not Exist");
    let _ = tx.respond(resp);
}
