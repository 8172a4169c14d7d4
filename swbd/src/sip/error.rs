//! Parse errors of the message layer.

use super::headers::Headers;

/// Why a message could not be accepted, and what is left of it.
///
/// When the message was a request with Via, From, To, Call-ID and CSeq
/// present, [`ParseError::headers`] holds them so a `400 Bad Request` (or the
/// status in [`ParseError::status_code`]) can be formed with the reason in
/// [`ParseError::reason`]. Otherwise the message is dropped and counted.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct ParseError {
    /// What is wrong, fit for a reason phrase ("missing Call-ID header").
    pub reason: String,
    /// Status to answer with (400, or 505 for a bad SIP version, 416 for an
    /// unknown URI scheme).
    pub status: u16,
    /// Whether the message looked like a request (only requests get answers).
    pub is_request: bool,
    /// The headers parsed so far (raw), when the message head was readable.
    pub headers: Option<Headers>,
}

impl ParseError {
    /// A 400 with this reason and no headers (yet).
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            status: 400,
            is_request: false,
            headers: None,
        }
    }

    /// The SIP status this error leaves as.
    pub fn status_code(&self) -> u16 {
        self.status
    }
}

/// Shorthand for the message layer.
pub type Result<T, E = ParseError> = std::result::Result<T, E>;
