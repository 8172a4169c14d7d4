//! The error every gRPC handler returns, and its one mapping to
//! `tonic::Status`.

use tonic::Status;

use crate::ports::PortError;
use crate::relay::dtmf::DtmfError;
use crate::sdp::SdpError;

/// Errors of media control operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Remote SDP refused.
    #[error("{0}")]
    Sdp(#[from] SdpError),
    /// No port pair.
    #[error("{0}")]
    Ports(#[from] PortError),
    /// The node refuses new sessions.
    #[error("media node {0} is draining and refuses new sessions; use another node")]
    Draining(String),
    /// Unknown session id.
    #[error("session {0:?} not found")]
    NotFound(String),
    /// A required request field is empty.
    #[error("{0} is required")]
    Missing(&'static str),
    /// Bridge of a session with itself.
    #[error("cannot bridge session {0:?} with itself")]
    SelfBridge(String),
    /// Bridge of a session that already has a peer.
    #[error("session {session:?} is already bridged with {peer:?}; unbridge it first")]
    AlreadyBridged {
        /// Session.
        session: String,
        /// Its current peer.
        peer: String,
    },
    /// Unbridge of an unbridged session.
    #[error("session {0:?} is not bridged")]
    NotBridged(String),
    /// Play on a bridged session (see the crate docs, "Playback while bridged").
    #[error("session {session:?} is bridged with {peer:?}; unbridge it before playing")]
    PlayWhileBridged {
        /// Session.
        session: String,
        /// Its peer.
        peer: String,
    },
    /// Play before the codec is known.
    #[error("session {0:?} has no negotiated codec yet (apply the remote answer first)")]
    NotNegotiated(String),
    /// The session's RTP timed out and its ports are released.
    #[error("session {0:?} timed out (no RTP) and its ports are released; destroy it")]
    TimedOut(String),
    /// Play path refused.
    #[error("audio file {file:?} refused: {reason}")]
    BadPath {
        /// As given.
        file: String,
        /// Why.
        reason: &'static str,
    },
    /// `SendDtmf` refused.
    #[error("{0}")]
    Dtmf(#[from] DtmfError),
    /// An offer in (or a request for) a family the node has no media
    /// address for.
    #[error(
        "this media node has no {0} media address (swrtp bind_address / bind_address_v6): cannot serve that leg"
    )]
    NoMediaAddress(&'static str),
    /// A re-offer changing the session's address family.
    #[error(
        "the offer moves the session from {from} to {to}; a session cannot change address family"
    )]
    FamilyChange {
        /// The session's family.
        from: &'static str,
        /// The offer's.
        to: &'static str,
    },
    /// An address family value this node does not know.
    #[error("address_family {0} is not a known AddressFamily")]
    BadFamily(i32),
    /// A bug: an invariant did not hold.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// Result type of the control plane.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let msg = e.to_string();
        match e {
            Error::Sdp(_)
            | Error::Missing(_)
            | Error::SelfBridge(_)
            | Error::BadPath { .. }
            | Error::NoMediaAddress(_)
            | Error::FamilyChange { .. }
            | Error::BadFamily(_)
            | Error::Dtmf(DtmfError::BadDigits(_) | DtmfError::BadDuration(_)) => {
                Status::invalid_argument(msg)
            }
            Error::Dtmf(DtmfError::QueueFull(..)) => Status::resource_exhausted(msg),
            Error::Dtmf(DtmfError::NoTelephoneEvent(_) | DtmfError::NotSending(_)) => {
                Status::failed_precondition(msg)
            }
            Error::Ports(PortError::Exhausted { .. }) => Status::resource_exhausted(msg),
            Error::Ports(PortError::Register(..)) | Error::Internal(_) => Status::internal(msg),
            Error::Draining(_) => Status::unavailable(msg),
            Error::NotFound(_) => Status::not_found(msg),
            Error::AlreadyBridged { .. }
            | Error::NotBridged(_)
            | Error::PlayWhileBridged { .. }
            | Error::NotNegotiated(_)
            | Error::TimedOut(_) => Status::failed_precondition(msg),
        }
    }
}
