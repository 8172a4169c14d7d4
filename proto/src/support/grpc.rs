//! gRPC server plumbing shared by the daemons: every server carries
//! `grpc.health.v1` and server reflection, and listens on TCP or a unix socket.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic_health::server::HealthReporter;

use super::shutdown::Shutdown;
use super::yaml::io_reason;

/// Where a gRPC server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `tcp://host:port` or a bare `host:port`.
    Tcp(SocketAddr),
    /// `unix:///path/to.sock`.
    Unix(PathBuf),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(format!("{s:?}: unix:// needs a socket path"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        let addr = s.strip_prefix("tcp://").unwrap_or(s);
        addr.parse::<SocketAddr>().map(Endpoint::Tcp).map_err(|_| {
            format!("{s:?} is not an endpoint (expected unix:///path/to.sock or tcp://IP:PORT)")
        })
    }
}

/// Error while setting up a listener or the standard services.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// bind() failed.
    #[error("cannot listen on {endpoint}: {reason}")]
    Bind {
        /// Where.
        endpoint: Endpoint,
        /// Why.
        reason: String,
    },
    /// Another live process already serves this socket path.
    #[error(
        "cannot listen on {0}: another process is serving this socket (stop it or choose another path)"
    )]
    SocketInUse(Endpoint),
    /// Reflection descriptors are broken (a build problem).
    #[error("gRPC reflection setup failed: {0}")]
    Reflection(String),
}

/// A bound listener, ready to serve.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix socket; the file is removed when serving ends.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// The endpoint actually bound (port 0 resolved).
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => Endpoint::Tcp(a),
                Err(_) => Endpoint::Tcp(SocketAddr::from(([0, 0, 0, 0], 0))),
            },
            Listener::Unix(_, p) => Endpoint::Unix(p.clone()),
        }
    }
}

/// Bind an endpoint. Unix sockets are created with mode 0660; a stale socket
/// file left by a crashed run is replaced, a live one is refused.
pub async fn bind(endpoint: &Endpoint) -> Result<Listener, ListenError> {
    match endpoint {
        Endpoint::Tcp(addr) => TcpListener::bind(addr)
            .await
            .map(Listener::Tcp)
            .map_err(|e| ListenError::Bind {
                endpoint: endpoint.clone(),
                reason: io_reason(&e),
            }),
        Endpoint::Unix(path) => bind_unix(endpoint, path).await,
    }
}

async fn bind_unix(endpoint: &Endpoint, path: &Path) -> Result<Listener, ListenError> {
    let bind_err = |e: std::io::Error| ListenError::Bind {
        endpoint: endpoint.clone(),
        reason: io_reason(&e),
    };
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.is_dir()
    {
        return Err(ListenError::Bind {
            endpoint: endpoint.clone(),
            reason: format!("directory {} does not exist", parent.display()),
        });
    }
    // Another user able to rename files in the directory could swap our
    // socket for theirs after we bind it.
    super::paths::check_parent_dir(path).map_err(|e| ListenError::Bind {
        endpoint: endpoint.clone(),
        reason: e.to_string(),
    })?;
    if path.exists() {
        // Someone answering means a live daemon; refusing means a stale file.
        match tokio::net::UnixStream::connect(path).await {
            Ok(_) => return Err(ListenError::SocketInUse(endpoint.clone())),
            Err(_) => {
                use std::os::unix::fs::FileTypeExt;
                let is_socket = std::fs::symlink_metadata(path)
                    .map(|m| m.file_type().is_socket())
                    .unwrap_or(false);
                if !is_socket {
                    return Err(ListenError::Bind {
                        endpoint: endpoint.clone(),
                        reason: "path exists and is not a socket".into(),
                    });
                }
                std::fs::remove_file(path).map_err(bind_err)?;
            }
        }
    }
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(bind_err)?;
    }
    Ok(Listener::Unix(listener, path.to_path_buf()))
}

/// A server builder with `grpc.health.v1` and reflection (v1 and v1alpha)
/// already added. Add the daemon's own services to the returned router and
/// mark them serving through the reporter.
pub fn base_router() -> Result<(HealthReporter, Router), ListenError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ListenError::Reflection(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ListenError::Reflection(e.to_string()))?;
    let router = Server::builder()
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    Ok((reporter, router))
}

/// Serve `router` on `listener` until `shutdown` fires.
pub async fn serve(
    router: Router,
    listener: Listener,
    shutdown: Shutdown,
) -> Result<(), tonic::transport::Error> {
    match listener {
        Listener::Tcp(l) => {
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(l), shutdown.wait_owned())
                .await
        }
        Listener::Unix(l, path) => {
            // The socket file goes as soon as shutdown starts: no new client
            // can connect while existing ones finish.
            let unlink = path.clone();
            let stop = async move {
                shutdown.wait_owned().await;
                let _ = std::fs::remove_file(&unlink);
            };
            let result = router
                .serve_with_incoming_shutdown(UnixListenerStream::new(l), stop)
                .await;
            let _ = std::fs::remove_file(&path);
            result
        }
    }
}

/// Interceptor that requires `authorization: Bearer TOKEN` on every call.
/// Used on admin listeners reachable over TCP and on swrtp's MediaService.
#[derive(Clone)]
pub struct BearerAuth {
    expected: std::sync::Arc<str>,
    what: &'static str,
}

impl fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerAuth(..)")
    }
}

impl BearerAuth {
    /// Require `token` (on an admin listener).
    pub fn new(token: &str) -> Self {
        Self::for_service(token, "this admin listener")
    }

    /// Require `token`; `what` names the service in the refusal
    /// ("MediaService").
    pub fn for_service(token: &str, what: &'static str) -> Self {
        Self {
            expected: token.into(),
            what,
        }
    }

    fn matches(&self, presented: &str) -> bool {
        // Constant-time comparison: no early exit on the first differing byte.
        let a = presented.as_bytes();
        let b = self.expected.as_bytes();
        let mut diff = a.len() ^ b.len();
        for (i, x) in b.iter().enumerate() {
            diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ x);
        }
        diff == 0
    }
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let presented = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(token) if self.matches(token) => Ok(req),
            Some(_) => Err(tonic::Status::unauthenticated(format!(
                "wrong bearer token for {}",
                self.what
            ))),
            None => Err(tonic::Status::unauthenticated(format!(
                "{} requires a bearer token (authorization: Bearer ...)",
                self.what
            ))),
        }
    }
}

/// Client-side interceptor: puts `authorization: Bearer TOKEN` on every
/// call when it has a token, and passes calls through unchanged otherwise.
#[derive(Clone, Default)]
pub struct BearerToken {
    header: Option<tonic::metadata::AsciiMetadataValue>,
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.header {
            Some(_) => "BearerToken(..)",
            None => "BearerToken(none)",
        })
    }
}

impl BearerToken {
    /// Send `token`.
    pub fn new(token: &super::secret::Token) -> Self {
        Self {
            header: Some(token.bearer()),
        }
    }

    /// Send `token` when there is one.
    pub fn optional(token: Option<&super::secret::Token>) -> Self {
        Self {
            header: token.map(super::secret::Token::bearer),
        }
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    }
}

/// A channel whose calls carry a bearer token ([`BearerToken`]).
pub type AuthedChannel =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, BearerToken>;

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn bearer_auth_checks_the_token() {
        let mut auth = BearerAuth::new("s3cret");
        let with = |v: Option<&str>| {
            let mut r = tonic::Request::new(());
            if let Some(v) = v {
                r.metadata_mut()
                    .insert("authorization", v.parse().expect("ascii"));
            }
            r
        };
        assert!(auth.call(with(Some("Bearer s3cret"))).is_ok());
        assert!(auth.call(with(Some("Bearer s3cre"))).is_err());
        assert!(auth.call(with(Some("Bearer s3cret2"))).is_err());
        assert!(auth.call(with(Some("s3cret"))).is_err());
        assert!(auth.call(with(None)).is_err());
    }

    #[test]
    fn bearer_token_sends_what_bearer_auth_wants() {
        let token = crate::support::secret::Token::new("s3cret").expect("token");
        let mut send = BearerToken::new(&token);
        let mut auth = BearerAuth::for_service("s3cret", "MediaService");
        let req = send.call(tonic::Request::new(())).expect("adds the header");
        assert!(auth.call(req).is_ok());
        let mut none = BearerToken::default();
        let req = none.call(tonic::Request::new(())).expect("passes through");
        let e = auth.call(req).expect_err("no token");
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().starts_with("MediaService requires"), "{e:?}");
        assert_eq!(format!("{send:?}"), "BearerToken(..)");
    }

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            "unix:///a/b.sock".parse::<Endpoint>(),
            Ok(Endpoint::Unix("/a/b.sock".into()))
        );
        assert_eq!(
            "tcp://127.0.0.1:9".parse::<Endpoint>(),
            Ok(Endpoint::Tcp(([127, 0, 0, 1], 9).into()))
        );
        assert!("tcp://nope".parse::<Endpoint>().is_err());
        assert!("unix://".parse::<Endpoint>().is_err());
    }
}
