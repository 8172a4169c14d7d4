//! swctl, Switchboard's operator console.
//!
//! # Layout
//! - [`cli`]: the clap command tree.
//! - [`connect`]: `unix://`, `tcp://` and `ssh://` transports to the admin services.
//! - [`cmd`]: one module per subcommand.
//! - [`config`]: `~/.config/swctl/config.yaml` contexts.
//! - [`output`]: table / wide / json / yaml rendering.
//! - [`pcap`]: a call's captured SIP messages as a libpcap file (`calls pcap`).
//! - [`views`]: what is printed, with stable JSON field names (see `JSON.md`).
//! - [`tui`]: `swctl top` (app state, event feed, one state struct per screen).
//! - [`web`]: `swctl web`, the HTMX page.
//!
//! # Backends
//! Every command talks to a list of daemons: the `--host` values (repeatable;
//! their kind is found out by asking), else a context of the config file
//! (`--context NAME` or its `current_context`; `--config FILE`, default
//! `$XDG_CONFIG_HOME/swctl/config.yaml` or `~/.config/swctl/config.yaml`),
//! else the local swbd socket (and the swrtp socket when present). Listings
//! merge every backend and add a BACKEND column when there are several.
//!
//! # Transports
//! `unix:///path.sock`, `tcp://host:port`, `ssh://[user@]host[:port][/remote.sock]`.
//! For ssh, swctl runs `ssh [-p port] -- [user@]host swctl dial-stdio [--socket
//! /remote.sock]` and speaks gRPC over the child's stdin/stdout (like
//! `DOCKER_HOST=ssh://`). `--ssh-command` / `$SWCTL_SSH` replace `ssh` and its
//! options (split on spaces); `--remote-swctl` / `$SWCTL_REMOTE` name swctl on the
//! remote host. When ssh fails, its own stderr (host key, auth) is the error.
//!
//! # Tokens
//! TCP admin listeners require a bearer token: `--token-file FILE` (or
//! `$SWCTL_TOKEN_FILE`), else `$SWCTL_TOKEN` (the token itself), else the
//! context's `token_file`. It is sent on every call to `tcp://` backends
//! only (unix sockets, and ssh which ends at one, are protected by their
//! file mode). A daemon answering UNAUTHENTICATED is reported with these
//! options named. The default local sockets are used only when their
//! runtime directory is ours and private.
//!
//! # `dialplan check`
//! swctl does not link swbd, so `swctl dialplan check FILE` runs
//! `swbd --check-dialplan FILE` with the swbd next to the swctl binary or on
//! `PATH` and relays its `FILE:LINE:COLUMN` errors (exit 4). Without such a
//! swbd, or with one that lacks the flag, it exits 2 and says to use
//! `swctl dialplan reload --path FILE` on the server instead.
//!
//! # Output
//! `-o table` (fits 80 columns or `$COLUMNS`; long cells end with `…`),
//! `-o wide` (every column, no cutting), `-o json`, `-o yaml`. JSON field names are
//! stable and documented in `swctl/JSON.md`.
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
pub mod pcap;
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
            tonic::Code::Unauthenticated => format!(
                "{} (give the admin token: --token-file FILE, $SWCTL_TOKEN_FILE or $SWCTL_TOKEN)",
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
