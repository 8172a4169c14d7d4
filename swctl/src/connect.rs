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
    /// Remote host over ssh: `[user@]host[:port]`.
    Ssh {
        /// `user@host` or `host`.
        destination: String,
        /// ssh port.
        port: Option<u16>,
    },
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Unix(p) => write!(f, "unix://{}", p.display()),
            Host::Tcp(a) => write!(f, "tcp://{a}"),
            Host::Ssh {
                destination,
                port: Some(p),
            } => write!(f, "ssh://{destination}:{p}"),
            Host::Ssh {
                destination,
                port: None,
            } => write!(f, "ssh://{destination}"),
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
            let rest = rest.trim_end_matches('/');
            if rest.is_empty() {
                return Err(err("ssh:// needs a host, e.g. ssh://ops@pbx1"));
            }
            let (destination, port) = match rest.rsplit_once(':') {
                Some((d, p)) if !d.contains('[') => {
                    let port = p
                        .parse::<u16>()
                        .map_err(|_| err("the ssh port must be a number"))?;
                    (d.to_string(), Some(port))
                }
                _ => (rest.to_string(), None),
            };
            return Ok(Host::Ssh { destination, port });
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
    /// Transport not built yet.
    #[error("{0}: this transport is not supported by this swctl build yet")]
    Unsupported(Host),
}

/// Open a gRPC channel to `host`.
pub async fn connect(host: &Host, what: &str) -> Result<Channel, ConnectError> {
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
        Host::Ssh { .. } => Err(ConnectError::Unsupported(host.clone())),
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

#[cfg(test)]
mod tests {
    use super::*;

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
                port: Some(2222)
            }
        );
        assert_eq!(
            "ssh://pbx1".parse::<Host>().unwrap(),
            Host::Ssh {
                destination: "pbx1".into(),
                port: None
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
            "http://x",
        ] {
            let e = bad.parse::<Host>().unwrap_err().to_string();
            assert!(e.contains("invalid --host"), "{bad}: {e}");
        }
    }
}
