//! The command tree (clap derive). kubectl-like verbs, one file per
//! subcommand under `cmd/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Switchboard operator console.
#[derive(Debug, Parser)]
#[command(name = "swctl", version, about, propagate_version = true)]
pub struct Cli {
    /// Daemon to talk to: `unix:///path.sock`, `tcp://host:port` or
    /// `ssh://[user@]host[:port][/remote/admin.sock]`. Repeat to address several
    /// daemons. Default: the --context hosts, else the local swbd admin socket.
    #[arg(
        long = "host",
        short = 'H',
        global = true,
        env = "SWCTL_HOST",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub hosts: Vec<String>,
    /// Named context from the config file (a list of swbd and swrtp hosts).
    #[arg(long, global = true, env = "SWCTL_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// Config file with contexts. Default: $XDG_CONFIG_HOME/swctl/config.yaml
    /// (or ~/.config/swctl/config.yaml).
    #[arg(long, global = true, env = "SWCTL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// File holding the bearer token of TCP admin listeners (swbd's
    /// admin.token_file, swrtp's admin_token_file), sent to tcp:// hosts.
    /// $SWCTL_TOKEN gives the token itself instead; a context may name a
    /// token_file too.
    #[arg(long, global = true, env = "SWCTL_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// ssh program and options used for ssh:// hosts (split on spaces),
    /// e.g. "ssh -o StrictHostKeyChecking=no -i KEY".
    #[arg(long, global = true, env = "SWCTL_SSH", value_name = "COMMAND")]
    pub ssh_command: Option<String>,
    /// Path of swctl on ssh:// hosts.
    #[arg(
        long,
        global = true,
        env = "SWCTL_REMOTE",
        value_name = "PATH",
        default_value = "swctl"
    )]
    pub remote_swctl: String,
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
    /// CSV, RFC 4180 (`calls history` only).
    Csv,
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
    /// Recent events of every kind (calls, registrations, security,
    /// dialplan, nodes), oldest first; `-f` keeps following new ones.
    Events {
        /// Keep printing new events until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only events not older than this (`90s`, `10m`, `2h`, `1d`,
        /// `1h30m`). Default: every event swbd kept (events.recent).
        #[arg(long, value_name = "DURATION", value_parser = crate::cmd::events::parse_duration)]
        since: Option<std::time::Duration>,
        /// Only these kinds (repeatable).
        #[arg(long, value_enum)]
        kind: Vec<EventKind>,
    },
    /// Live terminal view of calls, registrations and nodes.
    Top {
        /// RTP stats refresh of swrtp Watch streams, in milliseconds (min 250).
        #[arg(long, default_value_t = 1000)]
        stats_interval_ms: u32,
    },
    /// Serve a small live web page, with buttons to hang up calls and
    /// drain or undrain media nodes.
    Web {
        /// Address to listen on (loopback by default). Any other address
        /// needs --token.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// File holding a secret (mode 0600, owned by you): every request
        /// then needs HTTP Basic auth with any user name and this secret as
        /// the password. Required to listen beyond loopback. Not the admin
        /// token of --token-file, which swctl sends to the daemons.
        #[arg(long, value_name = "FILE")]
        token: Option<PathBuf>,
        /// A host name the page may be opened by, besides localhost and
        /// the listen address (repeatable). Requests naming any other host
        /// are refused (DNS rebinding).
        #[arg(long = "allow-host", value_name = "NAME")]
        allow_hosts: Vec<String>,
    },
    /// Call history: records of ended calls (same as `calls history`).
    Cdr(HistoryArgs),
    /// Print shell completions.
    Completions {
        /// Shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write every page to a directory.
    Man {
        /// Write swctl.1 and one page per subcommand (swctl-calls.1,
        /// swctl-calls-list.1, ...: the pages swctl(1) refers to) into DIR,
        /// e.g. /usr/local/share/man/man1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
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
    List {
        /// Include ended calls still kept for inspection.
        #[arg(long, short = 'a')]
        all: bool,
    },
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
    /// Write the SIP messages swbd kept of a call as a pcap file (both
    /// legs; opens in Wireshark, tshark, sngrep): `swctl calls pcap ID > call.pcap`.
    Pcap {
        /// Call id (or a unique prefix), or the SIP Call-ID of one of its legs.
        id: String,
        /// Write to FILE instead of stdout (stdout must not be a terminal).
        #[arg(long, short = 'w', value_name = "FILE")]
        write: Option<PathBuf>,
    },
    /// Call detail records of ended calls, newest first (from swbd's CDR
    /// file or PostgreSQL). Alias: `swctl cdr`.
    History(HistoryArgs),
}

/// Kinds of events (`swctl events --kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventKind {
    /// Call state changes.
    Call,
    /// Registrar bindings.
    Registration,
    /// What the trust boundary refused.
    Security,
    /// Dialplan reloads.
    Dialplan,
    /// Media nodes.
    Node,
}

impl EventKind {
    /// The `kind` field of `swctl events` output.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Call => "call",
            EventKind::Registration => "registration",
            EventKind::Security => "security",
            EventKind::Dialplan => "dialplan",
            EventKind::Node => "node",
        }
    }
}

/// Filters of `swctl calls history` / `swctl cdr`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HistoryArgs {
    /// Calls that started at or after: a duration back from now (`90s`,
    /// `15m`, `1h30m`, `2d`, `1w`) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Calls that started before: a duration back from now or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Caller (the authenticated identity), exact.
    #[arg(long, value_name = "USER")]
    pub from: Option<String>,
    /// Destination (the dialled user), exact.
    #[arg(long, value_name = "USER")]
    pub to: Option<String>,
    /// Answered or failed (never answered) calls only.
    #[arg(long, value_enum)]
    pub status: Option<HistoryStatus>,
    /// Final SIP status the caller got (200 for answered calls).
    #[arg(long)]
    pub code: Option<u16>,
    /// swbd's call id, or the SIP Call-ID of any leg.
    #[arg(long, value_name = "ID")]
    pub call_id: Option<String>,
    /// Media node.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Records at most (swbd caps it at 1000).
    #[arg(long, short = 'n', default_value_t = 50)]
    pub limit: u32,
}

/// `--status` of the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HistoryStatus {
    /// The caller got a 2xx.
    Answered,
    /// Never answered: rejected, cancelled, failed.
    Failed,
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
        /// Also move its bridged calls to other nodes now (re-INVITE of
        /// both legs; a few at a time; progress in `swctl nodes` and
        /// `swctl top`).
        #[arg(long)]
        migrate: bool,
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
    /// Validate a dialplan file against swbd's own config (gateways, audio
    /// directory); with no swbd reachable, locally (`swbd --check-dialplan`).
    Check {
        /// File.
        file: PathBuf,
    },
    /// Reload the dialplan on swbd (refused with file:line:column errors when invalid).
    Reload {
        /// Load this file instead of the configured one: read here and sent
        /// (an absolute path that is not here names a file on the swbd host).
        #[arg(long)]
        path: Option<String>,
    },
    /// Show the dialplan in force.
    Show,
    /// Which route a destination hits.
    Test {
        /// Destination (Request-URI user).
        dest: String,
        /// Caller (From user).
        #[arg(long)]
        from: Option<String>,
        /// Source IP address of the INVITE.
        #[arg(long)]
        source_ip: Option<String>,
        /// Request domain (Request-URI / To host).
        #[arg(long)]
        domain: Option<String>,
        /// From domain (the caller's host).
        #[arg(long)]
        from_domain: Option<String>,
    },
}
