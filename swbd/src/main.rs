//! `swbd`: parse flags, load and validate config, run until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use swbd::config::{Config, ListenAddr};
use switchboard_proto::support::logging::{self, LogFormat};
use switchboard_proto::support::shutdown;

/// jemalloc, with background threads that purge freed pages
/// (`dirty_decay_ms` set in `.cargo/config.toml`): after a burst swbd's RSS
/// comes back down, where glibc malloc kept the peak (issue #14,
/// docs/features/memory.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Switchboard SIP signaling daemon.
#[derive(Debug, Parser)]
#[command(name = "swbd", version, about)]
struct Args {
    /// YAML config file (defaults are used when not given).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the config and exit (0: valid, 2: errors on stderr).
    #[arg(long)]
    check_config: bool,
    /// Validate a dialplan file (against the config's gateways and audio
    /// directory) and exit (0: valid, 2: every error on stderr).
    #[arg(long, value_name = "FILE")]
    check_dialplan: Option<PathBuf>,
    /// SIP listen address, repeatable (`udp:127.0.0.1:5060`, `tcp:[::1]:5060`); replaces sip.listen.
    #[arg(long = "listen", value_name = "PROTO:IP:PORT")]
    listen: Vec<ListenAddr>,
    /// Admin unix socket path; replaces admin.socket.
    #[arg(long, value_name = "PATH")]
    admin_socket: Option<PathBuf>,
    /// Media token file sent to every swrtp node; replaces media.token_file.
    #[arg(long, value_name = "FILE")]
    media_token_file: Option<PathBuf>,
    /// Users file for digest auth; replaces auth.users_file.
    #[arg(long, value_name = "FILE")]
    users_file: Option<PathBuf>,
    /// Dialplan file; replaces dialplan.file (default: the embedded dialplan).
    #[arg(long, value_name = "FILE")]
    dialplan: Option<PathBuf>,
    /// Directory playback files resolve under; replaces dialplan.audio_dir.
    #[arg(long, value_name = "DIR")]
    audio_dir: Option<PathBuf>,
    /// Node name shown by admin tools.
    #[arg(long)]
    node_id: Option<String>,
    /// Runtime worker threads (overrides `worker_threads`; 0: one per CPU).
    #[arg(long, value_name = "N")]
    worker_threads: Option<usize>,
    /// Log level or filter (RUST_LOG wins when set).
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let format: LogFormat = args.log_format.parse().unwrap_or_default();

    let mut config = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(errors) => {
                for e in errors {
                    eprintln!("{e}");
                }
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    if !args.listen.is_empty() {
        config.sip.listen = args.listen.clone();
    }
    if let Some(p) = &args.admin_socket {
        config.admin.socket = Some(p.clone());
    }
    if let Some(p) = &args.media_token_file {
        config.media.token_file = Some(p.clone());
    }
    if let Some(p) = &args.users_file {
        config.auth.users_file = Some(p.clone());
    }
    if let Some(p) = &args.dialplan {
        config.dialplan.file = Some(p.clone());
    }
    if let Some(p) = &args.audio_dir {
        config.dialplan.audio_dir = Some(p.clone());
    }
    if let Some(n) = &args.node_id {
        config.node_id = n.clone();
    }
    if let Some(n) = args.worker_threads {
        config.worker_threads = n;
    }
    let name = args
        .config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "defaults".into());
    if let Err(errors) = config.validate(&name) {
        for e in errors {
            eprintln!("{e}");
        }
        return ExitCode::from(2);
    }
    if let Some(file) = &args.check_dialplan {
        let ctx = swbd::dialplan::DialplanContext::from_config(&config);
        return match swbd::dialplan::check_file(file, &ctx) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in errors {
                    eprintln!("{e}");
                }
                ExitCode::from(2)
            }
        };
    }
    if args.check_config {
        // Everything the daemon would load at start: users file and dialplan.
        let mut errors = Vec::new();
        if let Some(users) = &config.auth.users_file
            && let Err(e) = swbd::auth::users::Users::load(users, &config.auth.realm)
        {
            errors.push(e);
        }
        let ctx = swbd::dialplan::DialplanContext::from_config(&config);
        let plan = match &config.dialplan.file {
            Some(file) => swbd::dialplan::Dialplan::load(file, &ctx).map(|_| ()),
            None => swbd::dialplan::Dialplan::embedded_default(&ctx).map(|_| ()),
        };
        if let Err(e) = plan {
            errors.extend(e);
        }
        if !errors.is_empty() {
            for e in errors {
                eprintln!("{e}");
            }
            return ExitCode::from(2);
        }
        println!("{name}: ok");
        return ExitCode::SUCCESS;
    }

    logging::init(&args.log_level, format);
    // An explicit thread count also sizes the UDP workers left at "one
    // per CPU", so one knob sets how many cores this swbd uses.
    let threads = (config.worker_threads > 0).then(|| config.runtime_threads());
    if let Some(n) = threads
        && config.sip.udp_workers == 0
    {
        config.sip.udp_workers = n;
    }
    shutdown::run_daemon_with_threads("swbd", threads, |shutdown| swbd::run(config, shutdown))
}
