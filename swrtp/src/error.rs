//! The error every gRPC handler returns, and its one mapping to
//! `tonic::Status`.

use tonic::Status;

use crate::ports::PortError;
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
            Error::Sdp(_) | Error::Missing(_) | Error::SelfBridge(_) | Error::BadPath { .. } => {
                Status::invalid_argument(msg)
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
