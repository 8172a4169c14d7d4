//! Wires swbd's services together and runs them until shutdown:
//! SIP endpoint (transports, transactions, registrar, auth) -> B2BUA call
//! tasks -> media-node pool; dialplan store (SIGHUP reloads); admin gRPC.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use switchboard_proto::admin::v1::signaling_admin_server::SignalingAdminServer;
use switchboard_proto::support::grpc::{self, BearerAuth, Endpoint};
use switchboard_proto::support::paths;
use switchboard_proto::support::secret::{self, Token};
use switchboard_proto::support::shutdown::Shutdown;
use tonic::service::interceptor::InterceptedService;

use crate::admin::{AdminService, AdminState};
use crate::b2bua::restart::{CallRecordBackend, SavedCalls, recovery};
use crate::b2bua::{CallDeps, CallTable, dispatch};
use crate::config::{AdminConfig, Config};
use crate::dialplan::{DialplanStore, ReloadSource};
use crate::endpoint::SipEndpoint;
use crate::events::EventBus;
use crate::media::{LeaseOwner, MediaEvent, MediaPool, MediaTokens};

/// Run swbd until `shutdown` fires. Start-up errors (a port in use, a socket
/// directory missing or open to other users, a token file that is not
/// private, an invalid dialplan) return before anything is served.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let events = EventBus::with_recent(config.events.recent);

    if !config.auth.enabled {
        tracing::warn!("digest authentication is DISABLED by config (auth.enabled: false)");
    }
    let st = config.sip.session_timer;
    if st.enabled && st.min_se < 90 {
        tracing::warn!(
            min_se = st.min_se,
            "sip.session_timer.min_se is below RFC 4028's 90 s floor (for tests only)"
        );
    }

    let dialplan = DialplanStore::from_config(&config, events.clone()).map_err(|errors| {
        anyhow::anyhow!(
            "invalid dialplan:\n{}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    // Secrets and directories are checked before anything listens.
    if config.admin.socket.as_deref() == Some(paths::swbd_socket().as_path()) {
        // Only the default directory is created for the operator; a configured
        // path in a missing directory is an error (a typo should not create trees).
        paths::ensure_runtime_dir(&paths::runtime_dir()).context("runtime directory")?;
    }
    let admin_token = match config.admin.tcp {
        Some(_) => Some(admin_token(&config.admin)?),
        None => None,
    };
    let metrics_token = crate::metrics::token(&config.metrics)?;
    tracing::info!(
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        udp_workers = config.sip.udp_workers,
        "runtime"
    );
    let store = crate::state::StateStore::from_config(&config.state, &config.node_id)
        .map_err(|e| anyhow::anyhow!("state: {e}"))?;
    tracing::info!(backend = %store.backend(), instance = store.instance_id(), "state store");
    store.start(shutdown.clone());
    let media_tokens = MediaTokens::load(&config.media).map_err(anyhow::Error::msg)?;
    // Calls that outlive this process (issue #18): with a shared store only.
    let call_store: Option<(Arc<dyn CallRecordBackend>, String)> = store.is_shared().then(|| {
        let backend: Arc<dyn CallRecordBackend> =
            Arc::new(crate::b2bua::restart::StoreBackend(store.clone()));
        (backend, store.instance_id().to_string())
    });
    let owner = match &call_store {
        // A stable owner: the next run keeps this one's sessions.
        Some((_, instance)) => LeaseOwner::with_instance(
            &config.node_id,
            instance,
            config.media.lease_secs,
            config.media.lease_renew_secs,
        ),
        None => LeaseOwner::new(
            &config.node_id,
            config.media.lease_secs,
            config.media.lease_renew_secs,
        ),
    }
    .map_err(anyhow::Error::msg)?;
    tracing::info!(%owner, lease_secs = owner.lease_secs, "media session owner");
    let media = MediaPool::with_owner(&config.media, &media_tokens, events.clone(), owner)
        .map_err(anyhow::Error::msg)?;
    let endpoint = SipEndpoint::start(config.clone(), events.clone(), shutdown.clone()).await?;
    // The previous run's calls, and their sessions kept on the nodes
    // (before the pool opens its Control streams: the first
    // ReconcileOwner carries the list).
    let (restored, kept_media) = match &call_store {
        Some((backend, instance)) => {
            let calls = recovery::load(backend.as_ref(), instance).await;
            let kept = recovery::keep_media(&media, &calls);
            (calls, kept)
        }
        None => (Vec::new(), Vec::new()),
    };
    media.start(shutdown.clone());
    endpoint
        .registrar()
        .attach_store(store.clone(), shutdown.clone())
        .await;
    crate::state::drain_sync::start(store.clone(), media.clone(), shutdown.clone()).await;
    {
        let media = media.clone();
        endpoint
            .overload()
            .watch_media(move || media.take_command_round_trip());
    }

    let (cdr, cdr_writer) = crate::cdr::start(&config.cdr, &config.node_id)?;
    let calls = CallTable::with_retention(
        events.clone(),
        crate::b2bua::table::Retention {
            keep: config.calls.keep_ended,
            ttl: config.calls.keep_ended_for(),
        },
    );
    endpoint.set_dialog_router(Arc::new(dispatch::Router {
        calls: calls.clone(),
    }));
    let deps = CallDeps {
        overload: endpoint.overload().clone(),
        layer: endpoint.transactions().clone(),
        config: config.clone(),
        media: media.clone(),
        dialplan: dialplan.clone(),
        calls: calls.clone(),
        locator: Arc::new(crate::b2bua::directory::Directory::new(
            endpoint.registrar().clone(),
            endpoint.authenticator().clone(),
        )),
        cdr: cdr.clone(),
        saved_calls: match &call_store {
            Some((backend, instance)) => SavedCalls::start(backend.clone(), instance),
            None => SavedCalls::off(),
        },
    };
    if let Some((backend, instance)) = &call_store {
        recovery::restore(&deps, restored, kept_media);
        recovery::watch_instances(
            backend.clone(),
            deps.clone(),
            instance.clone(),
            shutdown.clone(),
        );
    }
    let mut invites = endpoint
        .take_invites()
        .context("the INVITE stream was already taken")?;
    {
        let deps = deps.clone();
        tokio::spawn(async move {
            while let Some(incoming) = invites.recv().await {
                dispatch::invite(&deps, incoming.transaction);
            }
        });
    }
    spawn_media_watch(&media, &calls, shutdown.clone());
    spawn_sighup_reload(&dialplan, shutdown.clone());

    let mut admin_endpoints = Vec::new();
    if let Some(path) = &config.admin.socket {
        admin_endpoints.push(Endpoint::Unix(path.clone()));
    }
    if let Some(addr) = config.admin.tcp {
        admin_endpoints.push(Endpoint::Tcp(addr));
    }
    let state = AdminState {
        config: config.clone(),
        events: events.clone(),
        media: media.clone(),
        calls: calls.clone(),
        registrar: endpoint.registrar().clone(),
        store: store.clone(),
        saved_calls: deps.saved_calls.clone(),
        dialplan: dialplan.clone(),
        counters: endpoint.counters_handle(),
        capture: endpoint.capture().clone(),
        cdr: cdr.clone(),
        overload: endpoint.overload().clone(),
    };

    let sources = crate::metrics::Sources {
        counters: endpoint.counters_handle(),
        transactions: endpoint.transactions().clone(),
        registrar: endpoint.registrar().clone(),
        dialplan: dialplan.clone(),
        media: media.clone(),
        calls: calls.clone(),
        store: store.clone(),
        saved_calls: deps.saved_calls.clone(),
    };
    crate::metrics::start(&config.metrics, metrics_token, sources, shutdown.clone()).await;

    let mut tasks = tokio::task::JoinSet::new();
    for endpoint in admin_endpoints {
        let listener = grpc::bind(&endpoint).await?;
        let (reporter, router) = grpc::base_router()?;
        reporter
            .set_serving::<SignalingAdminServer<AdminService>>()
            .await;
        let service = SignalingAdminServer::new(AdminService::new(state.clone()));
        // The unix socket is protected by its file mode; TCP always by the token.
        let token = match &endpoint {
            Endpoint::Tcp(_) => admin_token.as_ref(),
            Endpoint::Unix(_) => None,
        };
        let router = match token {
            Some(token) => {
                tracing::info!(endpoint = %listener.endpoint(), "admin gRPC listening; bearer token required");
                router.add_service(InterceptedService::new(
                    service,
                    BearerAuth::new(token.as_str()),
                ))
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
    tracing::info!(active_calls = calls.active(), "shutting down");
    // With a shared store, calls stay up: the next start (or a surviving
    // instance) takes them back (docs/features/restart.md). Otherwise hang
    // up calls in progress, and give the BYEs a moment to leave.
    let ended = if call_store.is_some() {
        tracing::info!(
            active_calls = calls.active(),
            "calls stay up: their records are in the state store for the next start"
        );
        0
    } else {
        calls.hangup_all("swbd shutting down")
    };
    if ended > 0 {
        for _ in 0..20 {
            if calls.active() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The records of the calls just ended, and any still queued.
    cdr_writer.stop().await;
    // Graceful gRPC shutdown waits for clients to hang up; do not let an
    // idle admin client (a `swctl top` left open) keep the daemon alive.
    let drained = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(res) = tasks.join_next().await {
            res.context("admin task panicked")??;
        }
        Ok::<(), anyhow::Error>(())
    })
    .await;
    match drained {
        Ok(result) => result,
        Err(_) => {
            tracing::info!("admin clients still connected; closing them");
            tasks.abort_all();
            Ok(())
        }
    }
}

/// The bearer token of the TCP admin listener: `admin.token_file` (read,
/// or created 0600 when missing), else the inline `admin.token`.
fn admin_token(cfg: &AdminConfig) -> anyhow::Result<Token> {
    if let Some(file) = &cfg.token_file {
        return secret::load_or_create_token(file).context("admin.token_file");
    }
    match cfg.token.as_deref().filter(|t| !t.is_empty()) {
        Some(inline) => {
            tracing::warn!(
                "admin.token is written in the config file; prefer admin.token_file (a file of mode 0600)"
            );
            Token::new(inline).map_err(|e| anyhow::anyhow!("admin.token: {e}"))
        }
        None => anyhow::bail!("admin.tcp needs admin.token_file (or admin.token)"),
    }
}

/// Media-plane trouble ends the calls it concerns.
fn spawn_media_watch(media: &MediaPool, calls: &CallTable, mut shutdown: Shutdown) {
    let mut rx = media.subscribe_media_events();
    let calls = calls.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                ev = rx.recv() => match ev {
                    Ok(MediaEvent::NodeDown { node }) => {
                        tracing::warn!(%node, "media node lost: ending its calls");
                        calls.node_lost(&node);
                    }
                    Ok(MediaEvent::SessionTimedOut { node, session_id }) => {
                        calls.media_lost(&node, &session_id, "RTP timeout");
                    }
                    Ok(MediaEvent::Dtmf { node, dtmf }) => calls.dtmf(&node, dtmf),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "media events lagged");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
}

/// SIGHUP reloads the configured dialplan; the result is logged and
/// published on the event bus by the store.
fn spawn_sighup_reload(dialplan: &DialplanStore, mut shutdown: Shutdown) {
    let store = dialplan.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; dialplan reload only through admin");
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                s = hup.recv() => {
                    if s.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP: reloading the dialplan");
                    let store = store.clone();
                    let _ = tokio::task::spawn_blocking(move || store.reload(ReloadSource::Configured)).await;
                }
            }
        }
    });
}
