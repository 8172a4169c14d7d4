//! swctl, Switchboard's operator console.
//!
//! # Layout
//! - [`cli`]: the clap command tree.
//! - [`connect`]: `unix://`, `tcp://` and `ssh://` transports to the admin services.
//! - [`cmd`]: one module per subcommand.
//! - [`config`]: `~/.config/swctl/config.yaml` contexts.
//! - [`output`]: table / wide / json / yaml rendering.
//! - [`views`]: what is printed, with stable JSON field names (see `JSON.md`).
//! - [`tui`]: `swctl top` (app state, event feed, one state struct per screen).
//! - [`web`]: `swctl web`, the HTMX page.
//!
//! # Exit codes
//! `0` success, `1` the daemon answered with an error, `2` bad usage,
//! `3` a daemon could not be reached, `4` a local file was invalid.
#![forbid(unsafe_code)]

pub mod cli;
pub mod cmd;
pub mod config;
pub mod connect;
#[doc(hidden)]
pub mod fixtures;
pub mod output;
pub mod tui;
pub mod views;
pub mod web;

use std::process::ExitCode;

/// Errors of a swctl command, mapped to documented exit codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The daemon answered with an error status.
    #[error("{daemon} refused: {message}")]
    Daemon {
        /// Which daemon.
        daemon: String,
        /// Status message.
        message: String,
    },
    /// Bad flags or arguments.
    #[error("{0}")]
    Usage(String),
    /// Could not connect.
    #[error(transparent)]
    Connect(Box<connect::ConnectError>),
    /// A local file is invalid.
    #[error("{0}")]
    InvalidFile(String),
    /// Anything else (I/O on stdout, ...).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<connect::ConnectError> for Error {
    fn from(e: connect::ConnectError) -> Self {
        Error::Connect(Box::new(e))
    }
}

impl Error {
    /// Process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Error::Daemon { .. } | Error::Other(_) => 1,
            Error::Usage(_) => 2,
            Error::Connect(_) => 3,
            Error::InvalidFile(_) => 4,
        })
    }

    /// Turn a gRPC status into an error that says what to do.
    pub fn from_status(daemon: &str, status: tonic::Status) -> Self {
        let message = match status.code() {
            tonic::Code::Unimplemented => format!(
                "{} (this daemon does not offer it; is --host pointing at the right daemon?)",
                status.message()
            ),
            _ => status.message().to_string(),
        };
        Error::Daemon {
            daemon: daemon.to_string(),
            message,
        }
    }
}

/// Run a parsed command line.
pub async fn run(cli: cli::Cli) -> Result<(), Error> {
    cmd::dispatch(cli).await
}
