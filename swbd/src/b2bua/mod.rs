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
//!
//! In-dialog requests we do not handle yet are refused, never left
//! hanging: a re-INVITE gets `488 Not Acceptable Here` (the session stays
//! as it was, RFC 3261 §14.2), UPDATE and INFO get `501 Not Implemented`,
//! OPTIONS gets `200 OK`, and requests for unknown dialogs `481`.

pub mod call;
pub mod dispatch;
pub mod record;
pub mod table;

pub use call::{CallDeps, Contact, Locator};
pub use record::{CallRecord, CallState};
pub use table::{CallCommand, CallTable, LegInput};
