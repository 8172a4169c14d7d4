//! Reaching a daemon: `unix://`, `tcp://`, `ssh://`.

use std::fmt;
use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint as TonicEndpoint, Uri};

/// A parsed `--host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// Local unix socket.
    Unix(PathBuf),
    /// TCP `host:port`.
    Tcp(String),
    /// Remote host over ssh: `[user@]host[:port][/remote/socket/path]`.
    Ssh {
        /// `user@host` or `host`.
        destination: String,
        /// ssh port.
        port: Option<u16>,
        /// Admin socket on the remote host; `None`: remote swctl's default (swbd).
        socket: Option<PathBuf>,
    },
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Unix(p) => write!(f, "unix://{}", p.display()),
            Host::Tcp(a) => write!(f, "tcp://{a}"),
            Host::Ssh {
                destination,
                port,
                socket,
            } => {
                write!(f, "ssh://{destination}")?;
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                if let Some(s) = socket {
                    write!(f, "{}", s.display())?;
                }
                Ok(())
            }
        }
    }
}

/// A `--host` that cannot be understood.
#[derive(Debug, thiserror::Error)]
#[error("invalid --host {input:?}: {reason}")]
pub struct HostError {
    input: String,
    reason: String,
}

impl std::str::FromStr for Host {
    type Err = HostError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| HostError {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(err(
                    "unix:// needs a socket path, e.g. unix:///run/switchboard/swbd.sock",
                ));
            }
            return Ok(Host::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = s.strip_prefix("tcp://") {
            let (host, port) = addr
                .rsplit_once(':')
                .ok_or_else(|| err("tcp:// needs host:port, e.g. tcp://127.0.0.1:7070"))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(err("tcp:// needs host:port, e.g. tcp://127.0.0.1:7070"));
            }
            return Ok(Host::Tcp(addr.to_string()));
        }
        if let Some(rest) = s.strip_prefix("ssh://") {
            let (rest, socket) = match rest.find('/') {
                Some(i) => {
                    let path = rest.get(i..).unwrap_or_default();
                    let socket = (path != "/").then(|| PathBuf::from(path));
                    (rest.get(..i).unwrap_or_default(), socket)
                }
                None => (rest, None),
            };
            if rest.is_empty() || rest.ends_with('@') || rest.starts_with(':') {
                return Err(err("ssh:// needs a host, e.g. ssh://ops@pbx1"));
            }
            if rest.starts_with('-') || rest.chars().any(char::is_whitespace) {
                return Err(err("ssh:// host must not start with '-' or contain spaces"));
            }
            let (destination, port) = match rest.rsplit_once(':') {
                Some((d, p)) if !d.contains('[') => {
                    let port = p.parse::<u16>().map_err(|_| {
                        err("the ssh port must be a number, e.g. ssh://ops@pbx1:2222")
                    })?;
                    (d.to_string(), Some(port))
                }
                _ => (rest.to_string(), None),
            };
            return Ok(Host::Ssh {
                destination,
                port,
                socket,
            });
        }
        Err(err(
            "expected unix:///path, tcp://host:port or ssh://[user@]host[:port]",
        ))
    }
}

/// Could not reach a daemon; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Connection failed.
    #[error("cannot reach {what} at {host}: {reason} ({hint})")]
    Unreachable {
        /// "swbd", "swrtp" or "daemon".
        what: String,
        /// Where.
        host: Host,
        /// Why.
        reason: String,
        /// What to try.
        hint: String,
    },
}

/// How `ssh://` hosts are reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshOptions {
    /// The ssh program and its options (`ssh`, or `$SWCTL_SSH` / `--ssh-command` split on spaces).
    pub command: Vec<String>,
    /// swctl on the remote host (`swctl` on its PATH by default).
    pub remote_swctl: String,
}

impl Default for SshOptions {
    fn default() -> Self {
        let command = std::env::var("SWCTL_SSH")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "ssh".to_string());
        Self {
            command: split_command(&command),
            remote_swctl: std::env::var("SWCTL_REMOTE")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| "swctl".to_string()),
        }
    }
}

/// Split an ssh command line on whitespace (no quoting: paths with spaces are not supported).
pub fn split_command(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

impl SshOptions {
    /// The argv that runs `dial-stdio` on the remote end of `host`.
    pub fn argv(
        &self,
        destination: &str,
        port: Option<u16>,
        socket: Option<&std::path::Path>,
    ) -> Vec<String> {
        let mut argv = self.command.clone();
        if argv.is_empty() {
            argv.push("ssh".into());
        }
        if let Some(p) = port {
            argv.push("-p".into());
            argv.push(p.to_string());
        }
        // `--` ends ssh's options: the destination can never be read as one.
        argv.push("--".into());
        argv.push(destination.to_string());
        argv.push(self.remote_swctl.clone());
        argv.push("dial-stdio".into());
        if let Some(s) = socket {
            argv.push("--socket".into());
            argv.push(s.display().to_string());
        }
        argv
    }
}

/// Open a gRPC channel to `host` (ssh options from the environment).
pub async fn connect(host: &Host, what: &str) -> Result<Channel, ConnectError> {
    connect_with(host, what, &SshOptions::default()).await
}

/// Open a gRPC channel to `host`.
pub async fn connect_with(
    host: &Host,
    what: &str,
    ssh: &SshOptions,
) -> Result<Channel, ConnectError> {
    let unreachable = |reason: String| ConnectError::Unreachable {
        what: what.to_string(),
        host: host.clone(),
        reason,
        hint: format!("is {what} running? see --host"),
    };
    match host {
        Host::Unix(path) => {
            let path = path.clone();
            // The URI is ignored by the connector; tonic needs one anyway.
            let endpoint = TonicEndpoint::from_static("http://localhost");
            endpoint
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        tokio::net::UnixStream::connect(path)
                            .await
                            .map(TokioIo::new)
                    }
                }))
                .await
                .map_err(|e| unreachable(reason_of(&e)))
        }
        Host::Tcp(addr) => {
            let endpoint = TonicEndpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| unreachable(e.to_string()))?;
            endpoint
                .connect()
                .await
                .map_err(|e| unreachable(reason_of(&e)))
        }
        Host::Ssh {
            destination,
            port,
            socket,
        } => {
            let argv = ssh.argv(destination, *port, socket.as_deref());
            let endpoint = TonicEndpoint::from_static("http://localhost");
            let last_stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
            let captured = last_stderr.clone();
            let result = endpoint
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let argv = argv.clone();
                    let captured = captured.clone();
                    async move { ssh_pipe(&argv, captured).await.map(TokioIo::new) }
                }))
                .await;
            result.map_err(|e| {
                let stderr = last_stderr
                    .lock()
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default();
                let reason = if stderr.is_empty() {
                    reason_of(&e)
                } else {
                    format!("ssh said: {stderr}")
                };
                ConnectError::Unreachable {
                    what: what.to_string(),
                    host: host.clone(),
                    reason,
                    hint: format!(
                        "check `ssh {destination}` works and that swctl is on the remote PATH (see --remote-swctl, --ssh-command)"
                    ),
                }
            })
        }
    }
}

/// The IO of one ssh child: its stdout (after the bytes already peeked) and stdin.
type SshIo = tokio::io::Join<
    tokio::io::Chain<std::io::Cursor<Vec<u8>>, tokio::process::ChildStdout>,
    tokio::process::ChildStdin,
>;

/// Start `argv` (ssh ... swctl dial-stdio) and return its stdin/stdout as one
/// stream. We wait for the first bytes from the far end (the HTTP/2 server
/// sends its SETTINGS frame first), so a failed ssh (auth, host key, no
/// swctl) is reported with ssh's own stderr instead of a bare "broken pipe".
async fn ssh_pipe(
    argv: &[String],
    stderr_out: std::sync::Arc<std::sync::Mutex<String>>,
) -> std::io::Result<SshIo> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty ssh command"))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot run {program}: {e}")))?;
    let (Some(stdin), Some(mut stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(std::io::Error::other("ssh pipes missing"));
    };
    // Collect ssh's stderr (host key, auth, remote errors) for error messages;
    // once connected, it is forwarded to ours so nothing is lost.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let sink = stderr_out.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut s) = sink.lock()
                && s.len() < 16 * 1024
            {
                s.push_str(&line);
                s.push('\n');
            }
        }
        let _ = done_tx.send(());
    });
    // Reap the child whenever it exits.
    let mut buf = vec![0u8; 4096];
    let first =
        tokio::time::timeout(std::time::Duration::from_secs(30), stdout.read(&mut buf)).await;
    match first {
        Ok(Ok(n)) if n > 0 => {
            buf.truncate(n);
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
            Ok(tokio::io::join(
                std::io::Cursor::new(buf).chain(stdout),
                stdin,
            ))
        }
        other => {
            let _ = child.start_kill();
            let status = child.wait().await.ok();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), done_rx).await;
            let said = stderr_out
                .lock()
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            let why = match other {
                Err(_) => "no answer from the remote swctl within 30 s".to_string(),
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(_)) => match status.and_then(|s| s.code()) {
                    Some(c) => format!("ssh exited with status {c}"),
                    None => "ssh ended".to_string(),
                },
            };
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                if said.is_empty() { why } else { said },
            ))
        }
    }
}

/// The innermost cause, lowercased the way operators read it.
fn reason_of(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    if let Some(io) = cur.downcast_ref::<std::io::Error>() {
        return switchboard_proto::support::yaml::io_reason(io);
    }
    cur.to_string()
}

impl Host {
    /// A short name for table columns: the socket file, `host:port`, or the ssh host.
    pub fn label(&self) -> String {
        match self {
            Host::Unix(p) => p
                .file_name()
                .map(|f| f.to_string_lossy().trim_end_matches(".sock").to_string())
                .unwrap_or_else(|| p.display().to_string()),
            Host::Tcp(a) => a.clone(),
            Host::Ssh { destination, .. } => destination
                .rsplit_once('@')
                .map(|(_, h)| h.to_string())
                .unwrap_or_else(|| destination.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_argv_puts_port_before_destination_and_socket_last() {
        let o = SshOptions {
            command: split_command("ssh -o BatchMode=yes"),
            remote_swctl: "/opt/swctl".into(),
        };
        assert_eq!(
            o.argv(
                "ops@pbx1",
                Some(2222),
                Some(std::path::Path::new("/run/x.sock"))
            ),
            [
                "ssh",
                "-o",
                "BatchMode=yes",
                "-p",
                "2222",
                "--",
                "ops@pbx1",
                "/opt/swctl",
                "dial-stdio",
                "--socket",
                "/run/x.sock"
            ]
        );
    }

    #[test]
    fn hosts_parse() {
        assert_eq!(
            "unix:///run/s.sock".parse::<Host>().unwrap(),
            Host::Unix("/run/s.sock".into())
        );
        assert_eq!(
            "tcp://127.0.0.1:7070".parse::<Host>().unwrap(),
            Host::Tcp("127.0.0.1:7070".into())
        );
        assert_eq!(
            "ssh://ops@pbx1:2222".parse::<Host>().unwrap(),
            Host::Ssh {
                destination: "ops@pbx1".into(),
                port: Some(2222),
                socket: None,
            }
        );
        assert_eq!(
            "ssh://pbx1".parse::<Host>().unwrap(),
            Host::Ssh {
                destination: "pbx1".into(),
                port: None,
                socket: None,
            }
        );
        assert_eq!(
            "ssh://ops@pbx1:22/run/switchboard/swrtp.sock"
                .parse::<Host>()
                .unwrap(),
            Host::Ssh {
                destination: "ops@pbx1".into(),
                port: Some(22),
                socket: Some("/run/switchboard/swrtp.sock".into()),
            }
        );
    }

    #[test]
    fn malformed_hosts_are_refused_with_a_hint() {
        for bad in [
            "pbx1",
            "unix://",
            "tcp://nohost",
            "tcp://h:notaport",
            "ssh://",
            "ssh://ops@",
            "ssh://-oProxyCommand=x",
            "ssh://pbx1:abc",
            "http://x",
            "",
        ] {
            let e = bad.parse::<Host>().unwrap_err().to_string();
            assert!(e.contains("invalid --host"), "{bad}: {e}");
        }
    }
}
