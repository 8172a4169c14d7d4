//! Call transfer in the B2BUA: swbd takes a REFER itself (it never
//! forwards one) and moves the legs of its calls around.
//!
//! - **Blind** (RFC 3515): a REFER arrives in the dialog of one leg of a
//!   bridged call, the *transferor*; the other leg is the *transferee*.
//!   swbd answers `202 Accepted`, NOTIFYs `100 Trying`, routes the
//!   Refer-To user through the dialplan as if the transferee called it
//!   (`${caller}` the transferee, `${referrer}` the transferor), places the
//!   new B-leg from the transferee's media session, NOTIFYs the outcome
//!   (`200 OK`, or the failure) and, on success, BYEs the transferor.
//!   A failed transfer leaves the call as it was.
//! - **Attended** (RFC 3891 in the Refer-To): the Replaces names the
//!   transferor's dialog in *another* call through swbd (transferor and
//!   target talking). That call hands its other party (the target) over
//!   ([`TransferInput::Handoff`]), releases the transferor's leg and ends;
//!   the transferee is bridged with the target, and the transferor's leg
//!   in this call is released too. Both calls must be on one media node.
//! - **INVITE with Replaces** from a phone (call pickup, a transferee that
//!   was referred elsewhere): the call owning the named dialog answers the
//!   new INVITE, bridges it with the other party and releases the replaced
//!   leg ([`TransferInput::Replacing`]); `481` when no dialog matches.
//!
//! Who may transfer is the route's `transfer:` policy
//! ([`crate::dialplan::transfer`]). Refusals keep the call up: `403` for
//! policy, `400`/`416` for a Refer-To swbd cannot use (see
//! [`super::refer_to`]), `491` while another transfer of the call runs.
//! A call takes at most [`MAX_TRANSFERS`] REFERs.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::identity::CallerIdentity;
use super::record::LegRecord;
use super::refer_to::{self, Refusal};
use super::table::{CallTable, LegInput};
use crate::auth::Principal;
use crate::dialog::Dialog;
use crate::dialplan::{Dialplan, Target, TransferPolicy};
use crate::sip::message::HeaderAccess as _;
use crate::sip::uri::encode_user;
use crate::sip::{Name, Request, Uri};
use crate::transaction::{AcceptedInvite, ServerInviteTransaction};

/// REFERs one call accepts over its life (each may add a leg record).
pub const MAX_TRANSFERS: u32 = 16;

/// How long a call waits for another to hand a party over (the other
/// call answers at once unless it is busy, and a busy call refuses).
pub const HANDOFF_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// `Referred-By` (RFC 3892).
pub fn referred_by() -> Name {
    Name::new("Referred-By")
}

/// `Refer-Sub` (RFC 4488).
pub fn refer_sub() -> Name {
    Name::new("Refer-Sub")
}

/// One side of a call, as transfer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// Who it is (its user is `${caller}` when it is transferred).
    pub identity: CallerIdentity,
    /// A local user: authenticated (or auth is off) or reached as
    /// `user/NAME`; trunks are not.
    pub local: bool,
}

impl Party {
    /// The caller of an A-leg that arrived with `principal`.
    pub fn local_principal(principal: Option<&Principal>) -> bool {
        matches!(principal, Some(Principal::User(_) | Principal::Unverified))
    }

    /// The party a B-leg reached through `target` (a dial target as the
    /// call record shows it: `user/NAME`, `gateway/GW/USER`, `sip:...`).
    pub fn of_target(target: &str) -> Party {
        let (user, local) = if let Some(user) = target.strip_prefix("user/") {
            (user.to_string(), true)
        } else if let Some(rest) = target.strip_prefix("gateway/") {
            (
                rest.split_once('/')
                    .map(|(_, u)| u)
                    .unwrap_or("")
                    .to_string(),
                false,
            )
        } else {
            (
                Uri::parse(target)
                    .and_then(|u| u.user())
                    .unwrap_or_default(),
                false,
            )
        };
        Party {
            identity: CallerIdentity {
                user,
                display: None,
                asserted: local,
            },
            local,
        }
    }

    /// The party reached through a resolved dial target.
    pub fn of_dial_target(target: &Target) -> Party {
        Self::of_target(&target.to_string())
    }
}

/// A call's transfer state, owned by its call task.
#[derive(Debug, Default)]
pub struct State {
    /// The plan the call was routed with (a transfer is routed with it too).
    pub plan: Option<Arc<Dialplan>>,
    /// The policy of the route the call (or its last transfer) took.
    pub policy: TransferPolicy,
    /// Whether the party in the A slot is a local user.
    pub a_local: bool,
    /// The party in the B slot when a transfer put it there (else it is
    /// known from the winning B-leg's dial target).
    pub b_party: Option<Box<Party>>,
    /// The transferor while a transfer's B-leg is placed (`Referred-By`).
    pub referrer: Option<Box<CallerIdentity>>,
    /// REFERs accepted so far.
    pub count: u32,
}

impl State {
    /// The state of a new call routed by `plan` along the route with
    /// `policy`; `a_local` for its caller.
    pub fn new(plan: Arc<Dialplan>, policy: TransferPolicy, a_local: bool) -> Self {
        Self {
            plan: Some(plan),
            policy,
            a_local,
            ..Self::default()
        }
    }

    /// The `Referred-By` value of a B-leg placed for a transfer (built from
    /// the transferor's identity, never copied from the REFER).
    pub fn referred_by_value(&self, host: &str) -> Option<String> {
        let r = self.referrer.as_ref().filter(|r| !r.user.is_empty())?;
        Some(format!("<sip:{}@{host}>", encode_user(&r.user)))
    }
}

/// What one call asks of another, over the other's dialog route.
#[derive(Debug)]
pub enum TransferInput {
    /// An attended transfer elsewhere replaces the named dialog: hand its
    /// other party over and release the named leg.
    Handoff(Handoff),
    /// An INVITE with Replaces naming one of this call's dialogs.
    Replacing(ServerInviteTransaction),
}

impl TransferInput {
    /// Refuse (the call cannot do it now).
    pub fn refuse(self, code: u16, reason: &'static str) {
        match self {
            TransferInput::Handoff(h) => {
                let _ = h.reply.send(Err(Refusal { code, reason }));
            }
            TransferInput::Replacing(txn) => {
                let _ = txn.respond(txn.response(code, reason));
            }
        }
    }
}

/// A request for a party (see [`TransferInput::Handoff`]).
#[derive(Debug)]
pub struct Handoff {
    /// The media node of the asking call (the party's session must be there).
    pub node: String,
    /// The asking call's id (for logs).
    pub by: String,
    /// Where the party (or the refusal) goes.
    pub reply: oneshot::Sender<Result<HandedOver, Refusal>>,
}

/// A party moving from one call to another: its dialog with swbd, its
/// media session (on the same node) and what the admin shows of it.
#[derive(Debug)]
pub struct HandedOver {
    /// swbd's dialog with the party.
    pub dialog: Dialog,
    /// Its media session (unbridged).
    pub session_id: String,
    /// When the party answered swbd's INVITE: that transaction, to re-ACK
    /// retransmitted 2xx.
    pub accepted: Option<AcceptedInvite>,
    /// The ACK for that 2xx.
    pub ack: Option<Request>,
    /// Who it is.
    pub party: Party,
    /// Its leg record.
    pub leg: LegRecord,
}

/// An INVITE with `Replaces` (RFC 3891 §3): to the call that owns the
/// named dialog, or `481`; a malformed Replaces gets `400`.
pub fn route_replacing_invite(calls: &CallTable, txn: ServerInviteTransaction) {
    let replaces = {
        let mut values = txn.request().raw_values(&Name::REPLACES);
        match (values.next(), values.next()) {
            (Some(v), None) => refer_to::parse_replaces(v),
            _ => None,
        }
    };
    let Some(replaces) = replaces else {
        let _ = txn.respond(txn.response(400, "Bad Request (malformed Replaces)"));
        return;
    };
    let id = replaces.dialog_id();
    let Some(tx) = calls.dialog_route(&id) else {
        tracing::info!(call_id = ?id.call_id, "INVITE with Replaces for no dialog of ours");
        let _ = txn.respond(txn.response(481, "Call/Transaction Does Not Exist"));
        return;
    };
    if let Err(e) = tx.send(Box::new((
        id,
        LegInput::Transfer(Box::new(TransferInput::Replacing(txn))),
    ))) {
        let (_, input) = *e.0;
        if let LegInput::Transfer(t) = input {
            t.refuse(481, "Call/Transaction Does Not Exist");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parties_of_dial_targets() {
        let p = Party::of_target("user/1003");
        assert!(p.local && p.identity.asserted);
        assert_eq!(p.identity.user, "1003");
        let p = Party::of_target("gateway/carrier/+15550100");
        assert!(!p.local);
        assert_eq!(p.identity.user, "+15550100");
        let p = Party::of_target("sip:bob@example.com");
        assert_eq!((p.identity.user.as_str(), p.local), ("bob", false));
    }

    #[test]
    fn referred_by_is_built_escaped() {
        let mut s = State::default();
        assert_eq!(s.referred_by_value("h"), None);
        s.referrer = Some(Box::new(CallerIdentity {
            user: "10 02>\r\nX".into(),
            display: None,
            asserted: true,
        }));
        let v = s.referred_by_value("pbx").expect("value");
        assert_eq!(v, "<sip:10%2002%3E%0D%0AX@pbx>");
    }
}
