//! One module per subcommand, dispatched from here, plus the backend list
//! every command works on (`--host`, `--context`, or the local defaults).

mod calls;
mod completions;
mod dial_stdio;
mod dialplan;
pub mod events;
mod history;
mod media;
mod nodes;
mod pcap;
mod registrations;
mod status;
mod top;
mod web;

#[cfg(test)]
mod json_doc_tests;
#[cfg(test)]
mod render_tests;

use std::future::Future;
use std::path::PathBuf;

pub use history::{HistoryView, parse_when};
pub use status::{StatusView, status_views};

use switchboard_proto::support::grpc::{AuthedChannel, BearerToken};
use switchboard_proto::support::secret::{self, Token};
use tonic::service::interceptor::InterceptedService;

use crate::Error;
use crate::cli::{Cli, Command};
use crate::config::{self, Config};
use crate::connect::{self, Host, SshOptions};

/// Which admin service a backend offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SignalingAdmin.
    Swbd,
    /// MediaAdmin.
    Swrtp,
    /// Not known (a `--host`): asked, and skipped when it answers UNIMPLEMENTED.
    Any,
}

impl Kind {
    /// Whether a backend of this kind may offer `service`.
    pub fn may_offer(self, service: Kind) -> bool {
        self == Kind::Any || self == service
    }
}

/// One daemon swctl talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Short unique name shown in tables (`pbx1`, `swbd`, `10.0.0.8:7071`).
    pub label: String,
    /// Where.
    pub host: Host,
    /// What it is, when known.
    pub kind: Kind,
    /// A default we guessed (local socket): silently skipped when absent.
    pub optional: bool,
}

/// Everything a command needs to reach daemons.
#[derive(Debug, Clone)]
pub struct Targets {
    /// Backends in command-line / config order.
    pub backends: Vec<Backend>,
    /// How to run ssh.
    pub ssh: SshOptions,
    /// Bearer token sent on every call (TCP admin listeners require it;
    /// unix sockets and ssh ignore it).
    pub token: Option<Token>,
}

impl Targets {
    /// Backends that may offer `service`.
    pub fn of(&self, service: Kind) -> Vec<Backend> {
        self.backends
            .iter()
            .filter(|b| b.kind.may_offer(service))
            .cloned()
            .collect()
    }

    /// More than one backend may answer `service`: tables get a BACKEND column.
    pub fn several(&self, service: Kind) -> bool {
        self.of(service).len() > 1
    }

    /// Connect to one backend. Calls to a `tcp://` backend carry the token
    /// when there is one; unix sockets (and ssh, which ends at one) are
    /// protected by their file mode, so the token is not given to them.
    pub async fn channel(&self, b: &Backend, what: &str) -> Result<AuthedChannel, Error> {
        let channel = connect::connect_with(&b.host, what, &self.ssh).await?;
        let token = match b.host {
            Host::Tcp(_) => self.token.as_ref(),
            Host::Unix(_) | Host::Ssh { .. } => None,
        };
        Ok(InterceptedService::new(
            channel,
            BearerToken::optional(token),
        ))
    }
}

/// Before talking to the default local sockets: their directory must be
/// ours and private, or another user may have put a socket of theirs there.
pub(crate) fn check_default_dir(socket: &std::path::Path) -> Result<(), Error> {
    let dir = switchboard_proto::support::paths::runtime_dir();
    if !dir.exists() {
        return Ok(());
    }
    switchboard_proto::support::paths::check_private_dir(&dir).map_err(|e| {
        Error::from(connect::ConnectError::Unreachable {
            what: "the local daemon".into(),
            host: Host::Unix(socket.to_path_buf()),
            reason: e.to_string(),
            hint: "refusing a runtime directory that is not ours and private".into(),
        })
    })
}

/// The token from `--token-file` / `$SWCTL_TOKEN_FILE`, else
/// `$SWCTL_TOKEN`, else the context's `token_file`.
fn token(cli: &Cli, context_file: Option<PathBuf>) -> Result<Option<Token>, Error> {
    let from_file = |path: &std::path::Path| {
        secret::read_client_token(path)
            .map(Some)
            .map_err(|e| Error::InvalidFile(e.to_string()))
    };
    if let Some(path) = &cli.token_file {
        return from_file(path);
    }
    if let Some(text) = std::env::var_os("SWCTL_TOKEN").filter(|t| !t.is_empty()) {
        let text = text
            .into_string()
            .map_err(|_| Error::Usage("$SWCTL_TOKEN is not valid text".into()))?;
        return Token::new(&text)
            .map(Some)
            .map_err(|e| Error::Usage(format!("$SWCTL_TOKEN: {e}")));
    }
    match context_file {
        Some(path) => from_file(&path),
        None => Ok(None),
    }
}

/// Resolve the backends: `--host` values; else the context (`--context` or the
/// config's current one); else the local swbd socket (+ swrtp socket, optional).
pub fn targets(cli: &Cli) -> Result<Targets, Error> {
    let mut ssh = SshOptions::default();
    if let Some(cmd) = &cli.ssh_command {
        ssh.command = connect::split_command(cmd);
        if ssh.command.is_empty() {
            return Err(Error::Usage("--ssh-command is empty".into()));
        }
    }
    ssh.remote_swctl = cli.remote_swctl.clone();
    let parse = |h: &str| h.parse::<Host>().map_err(|e| Error::Usage(e.to_string()));
    let mut list: Vec<(Host, Kind, bool)> = Vec::new();
    let mut context_token = None;
    if !cli.hosts.is_empty() {
        for h in &cli.hosts {
            list.push((parse(h)?, Kind::Any, false));
        }
    } else {
        let (path, required) = match &cli.config {
            Some(p) => (Some(p.clone()), true),
            None => (config::default_path(), false),
        };
        let ctx_hosts = match path {
            Some(path) => {
                let file = path.display().to_string();
                let cfg =
                    Config::load(&path, required).map_err(|e| Error::InvalidFile(e.to_string()))?;
                let ctx = cfg
                    .context(&file, cli.context.as_deref())
                    .map_err(|e| Error::Usage(e.to_string()))?;
                context_token =
                    ctx.and_then(|c| c.token_file.as_ref())
                        .map(|f| match path.parent() {
                            Some(dir) if f.is_relative() => dir.join(f),
                            _ => f.clone(),
                        });
                ctx.map(|c| (c.swbd.clone(), c.swrtp.clone()))
            }
            None if cli.context.is_some() => {
                return Err(Error::Usage(
                    "--context needs a config file: set --config, $XDG_CONFIG_HOME or $HOME".into(),
                ));
            }
            None => None,
        };
        match ctx_hosts {
            Some((swbd, swrtp)) => {
                for h in &swbd {
                    list.push((parse(h)?, Kind::Swbd, false));
                }
                for h in &swrtp {
                    list.push((parse(h)?, Kind::Swrtp, false));
                }
            }
            None => {
                check_default_dir(&switchboard_proto::support::paths::swbd_socket())?;
                list.push((
                    Host::Unix(switchboard_proto::support::paths::swbd_socket()),
                    Kind::Swbd,
                    false,
                ));
                list.push((
                    Host::Unix(switchboard_proto::support::paths::swrtp_socket()),
                    Kind::Swrtp,
                    true,
                ));
            }
        }
    }
    Ok(Targets {
        backends: label(list),
        ssh,
        token: token(cli, context_token)?,
    })
}

/// Give every backend a unique short label.
fn label(list: Vec<(Host, Kind, bool)>) -> Vec<Backend> {
    let mut out: Vec<Backend> = Vec::new();
    for (host, kind, optional) in list {
        let base = host.label();
        let mut label = base.clone();
        let mut n = 2;
        while out.iter().any(|b| b.label == label) {
            label = format!("{base}#{n}");
            n += 1;
        }
        out.push(Backend {
            label,
            host,
            kind,
            optional,
        });
    }
    out
}

/// Ask every backend offering `service` with `f`, concurrently. Backends of
/// unknown kind answering UNIMPLEMENTED are skipped (they are the other
/// daemon); unreachable ones are reported on stderr and skipped while at
/// least one answers. With no answer at all, the first error is returned.
pub async fn gather<T, F, Fut>(
    targets: &Targets,
    service: Kind,
    f: F,
) -> Result<Vec<(Backend, T)>, Error>
where
    F: Fn(AuthedChannel) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let what = match service {
        Kind::Swrtp => "swrtp",
        _ => "swbd",
    };
    let backends = targets.of(service);
    if backends.is_empty() {
        return Err(Error::Usage(format!(
            "no {what} to ask: give --host or a context with {what} hosts"
        )));
    }
    /// Why a backend gave nothing.
    enum Fail {
        /// A `--host` of the other daemon kind (or one without this RPC).
        OtherKind(tonic::Status),
        /// A real error.
        Error(Error),
    }
    let f = &f;
    let results = futures::future::join_all(backends.iter().map(|b| async move {
        let named = if b.kind == Kind::Any { "daemon" } else { what };
        let channel = targets.channel(b, named).await.map_err(Fail::Error)?;
        f(channel).await.map_err(|st| {
            if b.kind == Kind::Any && st.code() == tonic::Code::Unimplemented {
                Fail::OtherKind(st)
            } else {
                Fail::Error(Error::from_status(what, st))
            }
        })
    }))
    .await;
    let mut ok = Vec::new();
    let mut first_err: Option<Error> = None;
    let mut unimplemented: Option<tonic::Status> = None;
    let mut unreachable_default: Option<Error> = None;
    for (b, r) in backends.into_iter().zip(results) {
        match r {
            Ok(v) => ok.push((b, v)),
            Err(Fail::OtherKind(st)) => unimplemented = Some(st),
            Err(Fail::Error(e @ Error::Connect(_))) if b.optional => {
                // A guessed local default that is not there: only worth
                // reporting when nothing else answered (exit 3, naming it).
                if unreachable_default.is_none() {
                    unreachable_default = Some(e);
                }
            }
            Err(Fail::Error(e)) => {
                if first_err.is_none() {
                    first_err = Some(e);
                } else {
                    eprintln!("swctl: warning: {} skipped: {e}", b.label);
                }
            }
        }
    }
    if ok.is_empty() {
        return Err(
            first_err.unwrap_or_else(|| match (unimplemented, unreachable_default) {
                (Some(st), _) => Error::from_status(what, st),
                (None, Some(e)) => e,
                (None, None) => Error::Usage(format!("no {what} answered")),
            }),
        );
    }
    if let Some(e) = first_err {
        eprintln!("swctl: warning: {e}");
    }
    Ok(ok)
}

/// Run the command.
pub async fn dispatch(cli: Cli) -> Result<(), Error> {
    use crate::cli::RegistrationsCommand;
    use crate::cli::{CallsCommand, DialplanCommand, MediaCommand, NodesCommand};
    let out = cli.output;
    let history = matches!(
        cli.command,
        Command::Cdr(_) | Command::Calls(CallsCommand::History(_))
    );
    if out == crate::cli::Output::Csv && !history {
        return Err(Error::Usage(
            "-o csv is for `calls history` (`cdr`); other commands print table, wide, json or yaml"
                .into(),
        ));
    }
    match &cli.command {
        Command::Completions { shell } => completions::completions(*shell),
        Command::Man { dir } => completions::man(dir.as_deref()),
        Command::DialStdio { socket } => dial_stdio::run(socket.clone()).await,
        Command::Dialplan(DialplanCommand::Check { file }) => {
            let explicit = !cli.hosts.is_empty() || cli.context.is_some();
            dialplan::check(targets(&cli), explicit, file).await
        }
        Command::Status => status::run(&targets(&cli)?, out).await,
        Command::Calls(CallsCommand::List { all }) => calls::list(&targets(&cli)?, out, *all).await,
        Command::Calls(CallsCommand::Show { id }) => calls::show(&targets(&cli)?, out, id).await,
        Command::Calls(CallsCommand::Hangup { id }) => calls::hangup(&targets(&cli)?, id).await,
        Command::Calls(CallsCommand::Pcap { id, write }) => {
            pcap::run(&targets(&cli)?, id, write.as_deref()).await
        }
        Command::Events {
            follow,
            since,
            kind,
        } => events::run(&targets(&cli)?, out, *follow, *since, kind).await,
        Command::Calls(CallsCommand::History(args)) | Command::Cdr(args) => {
            history::run(&targets(&cli)?, out, args).await
        }
        Command::Registrations(RegistrationsCommand::List) => {
            registrations::list(&targets(&cli)?, out).await
        }
        Command::Media(MediaCommand::Sessions) => media::sessions(&targets(&cli)?, out).await,
        Command::Nodes(NodesCommand::List) => nodes::list(&targets(&cli)?, out).await,
        Command::Nodes(NodesCommand::Drain { node, migrate }) => {
            nodes::drain(&targets(&cli)?, out, node, true, *migrate).await
        }
        Command::Nodes(NodesCommand::Undrain { node }) => {
            nodes::drain(&targets(&cli)?, out, node, false, false).await
        }
        Command::Dialplan(DialplanCommand::Reload { path }) => {
            dialplan::reload(&targets(&cli)?, out, path.as_deref()).await
        }
        Command::Dialplan(DialplanCommand::Show) => dialplan::show(&targets(&cli)?, out).await,
        Command::Dialplan(DialplanCommand::Test {
            dest,
            from,
            source_ip,
            domain,
            from_domain,
        }) => {
            let req = switchboard_proto::admin::v1::TestRouteRequest {
                destination: dest.clone(),
                caller: from.clone().unwrap_or_default(),
                source_ip: source_ip.clone().unwrap_or_default(),
                domain: domain.clone().unwrap_or_default(),
                from_domain: from_domain.clone().unwrap_or_default(),
            };
            dialplan::test(&targets(&cli)?, out, req).await
        }
        Command::Top { stats_interval_ms } => top::run(targets(&cli)?, *stats_interval_ms).await,
        Command::Web {
            listen,
            token,
            allow_hosts,
        } => {
            let opts = crate::web::WebOptions {
                listen: listen.clone(),
                token_file: token.clone(),
                allow_hosts: allow_hosts.clone(),
            };
            web::run(targets(&cli)?, &opts).await
        }
    }
}

/// Terminal width for tables: `$COLUMNS` when set, else 80.
pub fn table_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|w| *w >= 40)
        .unwrap_or(80)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("swctl").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn hosts_get_unique_labels() {
        let t = targets(&cli(&[
            "--host",
            "unix:///a/swbd.sock",
            "--host",
            "unix:///b/swbd.sock",
            "-H",
            "ssh://ops@pbx1:2222",
            "status",
        ]))
        .unwrap();
        let labels: Vec<_> = t.backends.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["swbd", "swbd#2", "pbx1"]);
        assert!(t.backends.iter().all(|b| b.kind == Kind::Any));
    }

    #[test]
    fn hosts_split_on_commas() {
        let t = targets(&cli(&[
            "--host",
            "unix:///a.sock,tcp://127.0.0.1:7070",
            "status",
        ]))
        .unwrap();
        assert_eq!(t.backends.len(), 2);
        assert_eq!(t.backends[1].host, Host::Tcp("127.0.0.1:7070".into()));
    }

    #[test]
    fn malformed_host_is_a_usage_error() {
        let e = targets(&cli(&["--host", "pbx1:5060", "status"])).unwrap_err();
        assert!(matches!(e, Error::Usage(_)));
        assert!(
            e.to_string().contains("invalid --host \"pbx1:5060\""),
            "{e}"
        );
    }

    #[test]
    fn context_from_config_file() {
        let dir = std::env::temp_dir().join(format!("swctl-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.yaml");
        std::fs::write(
            &file,
            "contexts:\n  pbx1:\n    swbd: [\"ssh://ops@pbx1\"]\n    swrtp: [\"tcp://10.0.0.8:7071\", \"tcp://10.0.0.9:7071\"]\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let t = targets(&cli(&["--config", f, "--context", "pbx1", "status"])).unwrap();
        let got: Vec<_> = t
            .backends
            .iter()
            .map(|b| (b.label.as_str(), b.kind))
            .collect();
        assert_eq!(
            got,
            [
                ("pbx1", Kind::Swbd),
                ("10.0.0.8:7071", Kind::Swrtp),
                ("10.0.0.9:7071", Kind::Swrtp)
            ]
        );
        assert_eq!(t.of(Kind::Swrtp).len(), 2);
        assert!(!t.several(Kind::Swbd));
        let e = targets(&cli(&["--config", f, "--context", "nope", "status"])).unwrap_err();
        assert!(e.to_string().contains("no context \"nope\""), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
