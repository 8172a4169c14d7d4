//! `swrtp`: parse flags, load and validate config, run until SIGINT/SIGTERM.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use switchboard_proto::support::logging::{self, LogFormat};
use switchboard_proto::support::shutdown;
use swrtp::config::Config;

/// Switchboard media daemon.
#[derive(Debug, Parser)]
#[command(name = "swrtp", version, about)]
struct Args {
    /// YAML config file (defaults are used when not given).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the config and exit (0: valid, 2: errors on stderr).
    #[arg(long)]
    check_config: bool,
    /// Media control gRPC endpoint (tcp://IP:PORT or unix:///path).
    #[arg(long, value_name = "ENDPOINT")]
    listen: Option<String>,
    /// MediaAdmin gRPC endpoint (unix:///path or tcp://IP:PORT).
    #[arg(long, value_name = "ENDPOINT")]
    admin: Option<String>,
    /// Token file MediaService clients (swbd) must present; replaces media_token_file.
    #[arg(long, value_name = "FILE")]
    media_token_file: Option<PathBuf>,
    /// Token file required on a TCP admin endpoint; replaces admin_token_file.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// RTP port range MIN-MAX (MIN even).
    #[arg(long, value_name = "MIN-MAX")]
    rtp_ports: Option<String>,
    /// Address advertised in SDP.
    #[arg(long, value_name = "IP")]
    public_address: Option<IpAddr>,
    /// Address RTP sockets bind to.
    #[arg(long, value_name = "IP")]
    bind_address: Option<IpAddr>,
    /// IPv6 address the RTP sockets of IPv6 legs bind to.
    #[arg(long, value_name = "IPV6")]
    bind_address_v6: Option<IpAddr>,
    /// Address advertised in SDP for IPv6 legs.
    #[arg(long, value_name = "IPV6")]
    public_address_v6: Option<IpAddr>,
    /// Node name.
    #[arg(long)]
    node_id: Option<String>,
    /// Directory Play resolves files under.
    #[arg(long, value_name = "DIR")]
    audio_dir: Option<PathBuf>,
    /// Log level or filter (RUST_LOG wins when set).
    #[arg(long)]
    log_level: Option<String>,
    /// Log format: text or json.
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Prometheus /metrics address (IP:PORT); replaces metrics_listen.
    #[arg(long, value_name = "IP:PORT")]
    metrics_listen: Option<std::net::SocketAddr>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let name = args
        .config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "defaults".into());
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
    if let Some(v) = args.listen {
        config.listen = v;
    }
    if let Some(v) = args.admin {
        config.admin = v;
    }
    if let Some(v) = args.media_token_file {
        config.media_token_file = Some(v);
    }
    if let Some(v) = args.admin_token_file {
        config.admin_token_file = Some(v);
    }
    if let Some(v) = args.rtp_ports {
        config.rtp_ports = v;
    }
    if let Some(v) = args.public_address {
        config.public_address = Some(v);
    }
    if let Some(v) = args.bind_address {
        config.bind_address = v;
    }
    if let Some(v) = args.bind_address_v6 {
        config.bind_address_v6 = Some(v);
    }
    if let Some(v) = args.public_address_v6 {
        config.public_address_v6 = Some(v);
    }
    if let Some(v) = args.node_id {
        config.node_id = v;
    }
    if let Some(v) = args.audio_dir {
        config.audio_dir = v;
    }
    if let Some(v) = args.log_level {
        config.log_level = v;
    }
    if let Some(v) = args.log_format {
        config.log_format = v;
    }
    if let Some(v) = args.metrics_listen {
        config.metrics_listen = v;
    }
    if let Err(errors) = config.validate(&name) {
        for e in errors {
            eprintln!("{e}");
        }
        return ExitCode::from(2);
    }
    if args.check_config {
        println!("{name}: ok");
        return ExitCode::SUCCESS;
    }

    let format: LogFormat = config.log_format.parse().unwrap_or_default();
    logging::init(&config.log_level, format);
    shutdown::run_daemon("swrtp", |shutdown| swrtp::run(config, shutdown))
}
