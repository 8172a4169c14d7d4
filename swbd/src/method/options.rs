//! OPTIONS (RFC 3261 §11.2): `200 OK` with Allow, Accept and Supported, so
//! trunks and monitoring can ping swbd. No authentication.

use crate::sip::Name;

use super::{ALLOW, Context};
use crate::transaction::ServerTransaction;

/// Answer an OPTIONS.
pub fn handle(_ctx: &Context, tx: ServerTransaction) {
    let mut resp = tx.response(200, "OK");
    resp.headers.insert(Name::ALLOW, ALLOW);
    resp.headers.insert(Name::ACCEPT, "application/sdp");
    resp.headers.insert(
        Name::SUPPORTED,
        crate::sip::capabilities::supported_header().unwrap_or_default(),
    );
    let _ = tx.respond(resp);
}
