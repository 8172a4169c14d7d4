//! Wires swbd's services together and runs them until shutdown.

use std::sync::Arc;

use anyhow::Context;
use switchboard_proto::admin::v1::signaling_admin_server::SignalingAdminServer;
use switchboard_proto::support::grpc::{self, Endpoint};
use switchboard_proto::support::shutdown::Shutdown;

use crate::admin::AdminService;
use crate::config::Config;
use crate::events::EventBus;

/// Run swbd until `shutdown` fires. Start-up errors (a port in use, a socket
/// directory missing) return before anything is served.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let events = EventBus::new();

    if !config.auth.enabled {
        tracing::warn!("digest authentication is DISABLED by config (auth.enabled: false)");
    }

    let mut admin_endpoints = Vec::new();
    if let Some(path) = &config.admin.socket {
        admin_endpoints.push(Endpoint::Unix(path.clone()));
    }
    if let Some(addr) = config.admin.tcp {
        admin_endpoints.push(Endpoint::Tcp(addr));
    }

    // --- SIP core: added on the `sip` branch (small marked edit; the lead
    // owns this file and may move it). Binds every sip.listen address or
    // fails start-up with "cannot listen on udp:IP:PORT: reason".
    let sip = crate::endpoint::SipEndpoint::start(config.clone(), events.clone(), shutdown.clone())
        .await?;
    // --- end SIP core

    let mut tasks = tokio::task::JoinSet::new();
    for endpoint in admin_endpoints {
        let listener = grpc::bind(&endpoint).await?;
        let (reporter, router) = grpc::base_router()?;
        reporter
            .set_serving::<SignalingAdminServer<AdminService>>()
            .await;
        let router = router.add_service(SignalingAdminServer::new(AdminService::new(
            config.clone(),
            events.clone(),
        )));
        tracing::info!(endpoint = %listener.endpoint(), "admin gRPC listening");
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            grpc::serve(router, listener, shutdown)
                .await
                .with_context(|| format!("admin gRPC server on {endpoint}"))
        });
    }

    let mut shutdown = shutdown;
    shutdown.wait().await;
    drop(sip); // SIP core: its tasks stop on the same shutdown signal.
    tracing::info!("shutting down");
    while let Some(res) = tasks.join_next().await {
        res.context("admin task panicked")??;
    }
    Ok(())
}
