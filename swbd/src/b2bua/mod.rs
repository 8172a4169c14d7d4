//! The B2BUA: every inbound INVITE becomes a call task that owns the A-leg,
//! runs the dialplan against [`CallControl`](crate::dialplan::CallControl),
//! places B-legs with their own Call-ID, tags and SDP offer from the media
//! node, bridges media on the node, and tears everything down.
//!
//! # Layout
//! - [`call`]: the call task and its `CallControl` implementation.
//! - [`table`]: [`CallTable`], admin records, dialog routes, media index.
//! - [`record`]: [`CallRecord`], what the admin sees of a call.
//! - [`dispatch`]: routing of INVITE / in-dialog requests to call tasks.
//! - [`directory`]: who is known (users file) and registered (registrar).
//! - [`outbound_auth`]: answering a trunk's digest challenge.
//! - [`transfer`]: REFER (blind, attended) and INVITE with Replaces;
//!   [`refer_to`]: reading what a REFER asks for.
//! - [`hold_policy`]: what an offer says about hold, a call's hold settings
//!   (`media.hold`, `media.music_on_hold`, route variables).
//! - [`migrate`]: drain with migration, moving a node's bridged calls to
//!   other nodes a few at a time (each call moves itself: `call/migrate.rs`).
//!
//! In-dialog requests: a re-INVITE with an offer on a bridged leg (hold,
//! resume) is answered by the media node for that leg and refreshes the
//! remote target; a hold then plays music on hold to the other leg, or
//! re-INVITEs it with the mirrored direction (`media.hold: pass`), until
//! the holder resumes (`call/hold.rs`). While our own re-INVITE on a leg
//! is pending, that leg's re-INVITE gets `491 Request Pending` (RFC 3261
//! §14.2). A re-INVITE without an offer, one the node refuses,
//! or one that arrives while the dialplan still runs gets
//! `488 Not Acceptable Here` (the session stays as it was, RFC 3261 §14.2).
//! UPDATE (RFC 3311) is answered in early and confirmed dialogs, an offer
//! in it by the media node, and relayed to the other leg when confirmed
//! (`call/update.rs`). INFO carries DTMF between the legs (`call/dtmf.rs`:
//! `200` for a DTMF body or none, `415`/`400` otherwise); OPTIONS gets
//! `200 OK`, requests for unknown dialogs `481`, a PRACK that no reliable
//! provisional waits for `481` (`call/prack.rs`). A REFER on a bridged call transfers it
//! ([`transfer`]); before the call is bridged it gets `403`. Nothing is left
//! hanging. Session timers run on both legs of a bridged call
//! (`call/session_timer.rs`).

pub mod call;
pub mod directory;
pub mod dispatch;
pub mod hold_policy;
pub mod identity;
pub mod migrate;
pub mod outbound_auth;
pub mod record;
pub mod refer_to;
pub mod restart;
pub mod table;
pub mod transfer;

pub use call::{CallDeps, Contact, Locator};
pub use record::{CallRecord, CallState};
pub use table::{CallCommand, CallTable, LegInput};
