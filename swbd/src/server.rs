//! Wires swbd's services together and runs them until shutdown.

use std::sync::Arc;

use anyhow::Context;
use switchboard_proto::admin::v1::signaling_admin_server::SignalingAdminServer;
use switchboard_proto::support::grpc::{self, BearerAuth, Endpoint};
use switchboard_proto::support::shutdown::Shutdown;
use tonic::service::interceptor::InterceptedService;

use crate::admin::AdminService;
use crate::config::Config;
use crate::events::EventBus;
use crate::media::MediaPool;

/// Run swbd until `shutdown` fires. Start-up errors (a port in use, a socket
/// directory missing) return before anything is served.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let events = EventBus::new();
    let media = MediaPool::new(&config.media, events.clone()).map_err(anyhow::Error::msg)?;
    media.start(shutdown.clone());

    if !config.auth.enabled {
        tracing::warn!("digest authentication is DISABLED by config (auth.enabled: false)");
    }

    let mut admin_endpoints = Vec::new();
    if let Some(path) = &config.admin.socket {
        // Only the default directory is created for the operator; a configured
        // path in a missing directory is an error (a typo should not create trees).
        if *path == switchboard_proto::support::paths::swbd_socket() {
            let dir = switchboard_proto::support::paths::runtime_dir();
            switchboard_proto::support::paths::ensure_runtime_dir(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        admin_endpoints.push(Endpoint::Unix(path.clone()));
    }
    if let Some(addr) = config.admin.tcp {
        admin_endpoints.push(Endpoint::Tcp(addr));
    }

    let mut tasks = tokio::task::JoinSet::new();
    for endpoint in admin_endpoints {
        let listener = grpc::bind(&endpoint).await?;
        let (reporter, router) = grpc::base_router()?;
        reporter
            .set_serving::<SignalingAdminServer<AdminService>>()
            .await;
        let service = SignalingAdminServer::new(AdminService::new(
            config.clone(),
            events.clone(),
            media.clone(),
        ));
        let token = match &endpoint {
            Endpoint::Tcp(_) => config.admin.token.as_deref().filter(|t| !t.is_empty()),
            Endpoint::Unix(_) => None,
        };
        let router = match token {
            Some(token) => {
                tracing::info!(endpoint = %listener.endpoint(), "admin gRPC listening; bearer token required");
                router.add_service(InterceptedService::new(service, BearerAuth::new(token)))
            }
            None => {
                tracing::info!(endpoint = %listener.endpoint(), "admin gRPC listening");
                router.add_service(service)
            }
        };
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            grpc::serve(router, listener, shutdown)
                .await
                .with_context(|| format!("admin gRPC server on {endpoint}"))
        });
    }

    let mut shutdown = shutdown;
    shutdown.wait().await;
    tracing::info!("shutting down");
    while let Some(res) = tasks.join_next().await {
        res.context("admin task panicked")??;
    }
    Ok(())
}
