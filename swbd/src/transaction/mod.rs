//! The transaction layer (RFC 3261 §17, RFC 6026 for INVITE 2xx).
//!
//! # Layout
//! - [`TransactionLayer`]: receives every message from the transports,
//!   parses it, answers unparseable requests (`400` with the reason), and
//!   routes it to the transaction it belongs to or hands a new server
//!   transaction to the TU as an [`IncomingRequest`].
//! - [`key`] - [`TransactionKey`] (RFC 3261 §17.1.3 / §17.2.3).
//! - [`server`] - [`ServerTransaction`], non-INVITE server (Timer J).
//! - [`server_inv`] - [`ServerInviteTransaction`] (100 Trying, provisional
//!   resend, Timers G/H/I, RFC 6026 Accepted state with Timer L and 2xx
//!   retransmission until the ACK).
//! - [`reliable`] - reliable provisional responses and PRACK, UAS side
//!   (RFC 3262 §3), run by the INVITE server transaction.
//! - [`client`] - [`ClientTransaction`], non-INVITE client (Timers E/F/K).
//! - [`client_inv`] - [`ClientInviteTransaction`] (Timers A/B/D, ACK for
//!   non-2xx, RFC 6026 Accepted state with Timer M, CANCEL with the
//!   INVITE's branch).
//! - [`timers`]: T1/T2/T4 from config.
//!
//! Every transaction is one task that owns its state and is fed by
//! channels, so everything about one transaction is processed in order,
//! until it has nothing left to do but absorb retransmissions: then the
//! task ends and the [`table`] keeps a compact entry for the rest of the
//! RFC 3261 window (an ACKed INVITE's key until Timer L, a non-INVITE
//! server transaction's last response until Timer J, a completed client
//! transaction's key, and a non-2xx INVITE's ACK, until Timer K or D);
//! the transports hand messages over in arrival order per socket /
//! connection. Handles are safe to drop: a dropped server handle without a
//! final response answers `500`, a dropped client INVITE handle CANCELs.
//! All timers are `tokio::time`, so tests can pause time.

pub mod client;
pub mod client_inv;
pub mod key;
pub mod layer;
pub mod reliable;
pub mod server;
pub mod server_inv;
pub mod table;
pub mod timers;

pub use client::ClientTransaction;
pub use client_inv::{AcceptedInvite, ClientInviteTransaction};
pub use key::TransactionKey;
pub use layer::{IncomingRequest, RequestHandler, TransactionLayer};
pub use server::ServerTransaction;
pub use server_inv::{InviteResponder, ServerInviteEvent, ServerInviteTransaction};
pub use timers::Timers;

/// Transaction errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No final response in time (Timer B / F).
    #[error("transaction timed out")]
    Timeout,
    /// Sending failed.
    #[error("transport error: {0}")]
    Transport(String),
    /// The transaction has ended; nothing more will come.
    #[error("transaction terminated")]
    Terminated,
    /// The request cannot be sent as given.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl Error {
    /// The status a TU reports upstream for this failure (RFC 3261 §8.1.3.1,
    /// §16.7: 408 for timeouts, 503 for transport errors).
    pub fn status_code(&self) -> u16 {
        match self {
            Error::Timeout => 408,
            Error::Transport(_) => 503,
            Error::Terminated | Error::InvalidRequest(_) => 500,
        }
    }
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;
