//! The Prometheus `/metrics` endpoint both daemons serve (swbd
//! `metrics.listen`, swrtp `metrics_listen`): plain HTTP/1.1 on its own
//! listener, `GET /metrics` and nothing else.
//!
//! Metrics tell call volumes, registration counts and node names, so the
//! endpoint is loopback by default and a listener beyond loopback needs a
//! bearer token (a file, like the admin token; Prometheus sends it with
//! `authorization: { type: Bearer, credentials_file: FILE }`).
//! [`check_listen`] is the rule, used by both daemons' config validation.
//!
//! A listener that cannot be bound (the port is taken) is reported to the
//! caller, which logs it and runs on without metrics: monitoring must never
//! keep a daemon that carries calls from starting.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::secret::Token;
use super::shutdown::Shutdown;

/// The Prometheus text exposition format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders the exposition text at each scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// The rule for a metrics listener: beyond loopback it needs a token file.
/// `listen_key` and `token_key` name the config keys in the message.
pub fn check_listen(
    listen: SocketAddr,
    has_token_file: bool,
    listen_key: &str,
    token_key: &str,
) -> Result<(), String> {
    if listen.ip().is_loopback() || has_token_file {
        return Ok(());
    }
    Err(format!(
        "{listen_key}: {listen} is beyond loopback and needs {token_key}: metrics show call volumes, users and nodes to whoever can reach the port"
    ))
}

#[derive(Clone)]
struct Endpoint {
    render: Render,
    token: Option<Token>,
}

/// Bind `listen` and serve `/metrics` until `shutdown`. Returns the bound
/// address (port 0 resolved) once listening; the server runs on a task of
/// its own.
pub async fn serve(
    listen: SocketAddr,
    token: Option<Token>,
    render: Render,
    shutdown: Shutdown,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(Endpoint { render, token });
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.wait_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(local)
}

async fn metrics(State(ep): State<Endpoint>, headers: HeaderMap) -> Response {
    if let Some(token) = &ep.token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !presented.is_some_and(|p| same_secret(p, token.as_str())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"metrics\"")],
                "metrics need authorization: Bearer TOKEN (the metrics token file)\n",
            )
                .into_response();
        }
    }
    let body = (ep.render)();
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found; metrics are at /metrics\n",
    )
        .into_response()
}

/// Constant-time comparison: no early exit on the first differing byte.
fn same_secret(presented: &str, expected: &str) -> bool {
    let a = presented.as_bytes();
    let b = expected.as_bytes();
    let mut diff = a.len() ^ b.len();
    for (i, x) in b.iter().enumerate() {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ x);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_loopback_needs_a_token_file() {
        let lo: SocketAddr = "127.0.0.1:9460".parse().expect("addr");
        let lo6: SocketAddr = "[::1]:9460".parse().expect("addr");
        let any: SocketAddr = "0.0.0.0:9460".parse().expect("addr");
        assert!(check_listen(lo, false, "m.listen", "m.token_file").is_ok());
        assert!(check_listen(lo6, false, "m.listen", "m.token_file").is_ok());
        let e = check_listen(any, false, "m.listen", "m.token_file").expect_err("refused");
        assert!(e.starts_with("m.listen: 0.0.0.0:9460") && e.contains("m.token_file"));
        assert!(check_listen(any, true, "m.listen", "m.token_file").is_ok());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("ab", "abc"));
        assert!(!same_secret("abcd", "abc"));
        assert!(!same_secret("abd", "abc"));
    }
}
