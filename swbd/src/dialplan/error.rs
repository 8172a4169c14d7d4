//! What can be wrong with a dialplan, before it is located in a file.

use std::path::PathBuf;

use switchboard_proto::support::yaml::FileError;

/// One semantic problem in a dialplan. [`Error::at`] places it in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A glob that cannot be compiled.
    #[error("bad glob {pattern:?}: {reason}")]
    BadGlob {
        /// As written.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
    /// A regex that cannot be compiled.
    #[error("bad regex {pattern:?}: {reason}")]
    BadRegex {
        /// As written.
        pattern: String,
        /// The regex crate's complaint.
        reason: String,
    },
    /// A source-address condition that is not a network.
    #[error("bad source network {cidr:?}: {reason} (expected like 10.0.0.0/8 or 2001:db8::/32)")]
    BadCidr {
        /// As written.
        cidr: String,
        /// What is wrong.
        reason: String,
    },
    /// A `${...}` template that cannot be parsed.
    #[error("bad template {text:?}: {reason}")]
    BadTemplate {
        /// As written.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// `${name}` where nothing defines `name`.
    #[error(
        "undefined variable ${{{name}}} (defined here: {})",
        defined.join(", ")
    )]
    UndefinedVariable {
        /// The name.
        name: String,
        /// Names that are defined at this point, for the message.
        defined: Vec<String>,
    },
    /// A `set` of a name the engine owns.
    #[error(
        "cannot set built-in variable {name:?} (built-ins: destination, caller, source_ip, domain, from_domain, route_id, referrer)"
    )]
    SetBuiltin {
        /// The name.
        name: String,
    },
    /// A `set` name that is not an identifier.
    #[error(
        "bad variable name {name:?} (expected letters, digits and `_`, not starting with a digit)"
    )]
    BadVariableName {
        /// The name.
        name: String,
    },
    /// Two routes with the same id.
    #[error("duplicate route id {id:?} (first defined at line {first_line})")]
    DuplicateId {
        /// The id.
        id: String,
        /// Where the first one is.
        first_line: u32,
    },
    /// An empty route id.
    #[error("route id must not be empty (expected a short name like \"extensions\")")]
    EmptyId,
    /// `gateway/NAME` for a gateway the config does not define.
    #[error("unknown gateway {name:?} (configured gateways: {})", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownGateway {
        /// The name.
        name: String,
        /// Configured names.
        known: Vec<String>,
    },
    /// A dial target that is none of the known kinds.
    #[error(
        "bad dial target {target:?}: {reason} (expected user/NAME, sip:URI or gateway/NAME[/USER])"
    )]
    BadTarget {
        /// As written.
        target: String,
        /// What is wrong.
        reason: String,
    },
    /// `dial` with neither or both of `target` and `targets`, or an empty list.
    #[error("dial needs exactly one of `target: X` or a non-empty `targets: [X, Y]`")]
    DialTargets,
    /// A playback file missing under the audio directory.
    #[error("playback file {file:?} not found under audio directory {}", dir.display())]
    MissingAudio {
        /// As written.
        file: String,
        /// The audio directory.
        dir: PathBuf,
    },
    /// A playback path that escapes the audio directory.
    #[error(
        "playback file {file:?} must be a relative path inside the audio directory (no leading `/`, no `..`)"
    )]
    AudioPathEscapes {
        /// As written.
        file: String,
    },
    /// A SIP status outside the allowed range.
    #[error("bad SIP status {code}: expected {expected}")]
    BadStatus {
        /// The code.
        code: u16,
        /// The allowed range, in words.
        expected: &'static str,
    },
    /// A route with no actions.
    #[error("route has no actions (expected at least one, like `- hangup: {{code: 404}}`)")]
    NoActions,
    /// Both `destination` and `destination_regex`.
    #[error("give either `destination` (glob) or `destination_regex`, not both")]
    BothDestinations,
    /// An unsupported format version.
    #[error("unsupported dialplan version {0} (expected 1)")]
    FormatVersion(u32),
    /// A duration out of range.
    #[error("bad duration: {0}")]
    BadDuration(String),
    /// A `read` parameter out of range.
    #[error("bad read: {0}")]
    BadRead(String),
    /// A `context:` or `transfer:` name that cannot be one.
    #[error("bad context name {name:?}: {reason}")]
    BadContext {
        /// As written.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// `transfer: NAME` where no route has `context: NAME`.
    #[error("transfer context {name:?} has no routes (routes join it with `context: {name}`; contexts in this file: {})", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownContext {
        /// The name.
        name: String,
        /// Contexts the file declares.
        known: Vec<String>,
    },
}

impl Error {
    /// Place the error in `file` at a serde-saphyr location.
    pub fn at(&self, file: &str, loc: &serde_saphyr::Location) -> FileError {
        FileError::at(
            file,
            clamp(loc.line()),
            clamp(loc.column()),
            self.to_string(),
        )
    }
}

/// serde-saphyr lines/columns are `u64`; `FileError` wants `u32`.
pub(crate) fn clamp(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}
