//! The command tree (clap derive). kubectl-like verbs, one file per
//! subcommand under `cmd/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Switchboard operator console.
#[derive(Debug, Parser)]
#[command(name = "swctl", version, about, propagate_version = true)]
pub struct Cli {
    /// Daemon to talk to: unix:///path.sock, tcp://host:port or ssh://[user@]host[:port].
    /// Repeat to address several daemons. Default: the local swbd admin socket.
    #[arg(
        long = "host",
        short = 'H',
        global = true,
        env = "SWCTL_HOST",
        value_name = "URL"
    )]
    pub hosts: Vec<String>,
    /// Output format of listings.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns that fit 80 columns.
    Table,
    /// All columns.
    Wide,
    /// JSON, stable field names.
    Json,
    /// YAML.
    Yaml,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Daemon summary.
    Status,
    /// Calls in progress.
    #[command(subcommand)]
    Calls(CallsCommand),
    /// Registrar bindings.
    #[command(subcommand)]
    Registrations(RegistrationsCommand),
    /// Media sessions on swrtp nodes.
    #[command(subcommand)]
    Media(MediaCommand),
    /// Media nodes of swbd's pool.
    #[command(subcommand)]
    Nodes(NodesCommand),
    /// Dialplan tools.
    #[command(subcommand)]
    Dialplan(DialplanCommand),
    /// Live terminal view of calls, registrations and nodes.
    Top,
    /// Serve a small live web page.
    Web {
        /// Address to listen on (loopback by default).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// Print shell completions.
    Completions {
        /// Shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
    /// Pipe stdin/stdout to the local admin socket (used by ssh://).
    #[command(hide = true)]
    DialStdio {
        /// Socket to connect to.
        #[arg(long)]
        socket: Option<PathBuf>,
    },
}

/// `swctl calls ...`
#[derive(Debug, Subcommand)]
pub enum CallsCommand {
    /// List calls.
    List,
    /// Show one call with both legs and its SIP ladder.
    Show {
        /// Call id.
        id: String,
    },
    /// Hang up a call.
    Hangup {
        /// Call id.
        id: String,
    },
}

/// `swctl registrations ...`
#[derive(Debug, Subcommand)]
pub enum RegistrationsCommand {
    /// List bindings.
    List,
}

/// `swctl media ...`
#[derive(Debug, Subcommand)]
pub enum MediaCommand {
    /// List sessions with RTP stats.
    Sessions,
}

/// `swctl nodes ...`
#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// List media nodes.
    List,
    /// Stop sending new calls to a node.
    Drain {
        /// Node name.
        node: String,
    },
    /// Send new calls to a node again.
    Undrain {
        /// Node name.
        node: String,
    },
}

/// `swctl dialplan ...`
#[derive(Debug, Subcommand)]
pub enum DialplanCommand {
    /// Validate a dialplan file locally.
    Check {
        /// File.
        file: PathBuf,
    },
    /// Reload the dialplan on swbd.
    Reload,
    /// Show the dialplan in force.
    Show,
    /// Which route a destination hits.
    Test {
        /// Destination (Request-URI user).
        dest: String,
        /// Caller (From user).
        #[arg(long)]
        from: Option<String>,
    },
}
