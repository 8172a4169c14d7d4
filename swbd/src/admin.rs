//! `switchboard.admin.v1.SignalingAdmin`: what swctl sees of swbd.

use std::sync::Arc;
use std::time::SystemTime;

use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::signaling_admin_server::SignalingAdmin;
use tonic::{Request, Response, Status};

use crate::b2bua::CallTable;
use crate::config::Config;
use crate::dialplan::{DialplanStore, ReloadSource};
use crate::events::EventBus;
use crate::media::MediaPool;
use crate::overload::Overload;
use crate::registrar::Registrar;
use crate::transport::SipCounters;

/// Everything the admin service reads or drives.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// Config in force.
    pub config: Arc<Config>,
    /// Event bus (Watch).
    pub events: EventBus,
    /// Media nodes.
    pub media: MediaPool,
    /// Calls.
    pub calls: CallTable,
    /// Registrar.
    pub registrar: Registrar,
    /// The state store (its health for `GetStatus`).
    pub store: crate::state::StateStore,
    /// Saved call records (their lost writes for `GetStatus`).
    pub saved_calls: crate::b2bua::restart::SavedCalls,
    /// Dialplan.
    pub dialplan: DialplanStore,
    /// SIP counters.
    pub counters: Arc<SipCounters>,
    /// SIP capture (per-call messages, HEP counters).
    pub capture: crate::capture::Capture,
    /// Call detail records (counters, history).
    pub cdr: crate::cdr::CdrSink,
    /// Overload control.
    pub overload: Overload,
}

/// The service.
#[derive(Debug, Clone)]
pub struct AdminService {
    state: AdminState,
    started_at: SystemTime,
}

impl AdminService {
    /// A service over the daemon's shared state.
    pub fn new(state: AdminState) -> Self {
        Self {
            state,
            started_at: SystemTime::now(),
        }
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

type WatchStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::SignalingEvent, Status>> + Send>>;

#[tonic::async_trait]
impl SignalingAdmin for AdminService {
    async fn get_status(
        &self,
        _req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::Status>, Status> {
        let s = &self.state;
        Ok(Response::new(pb::Status {
            node_id: s.config.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_at: Some(switchboard_proto::timestamp(self.started_at)),
            sip_listeners: s.config.sip.listen.iter().map(|l| l.to_string()).collect(),
            active_calls: count(s.calls.active()),
            total_calls: s.calls.total(),
            registrations: count(s.registrar.len()),
            media_nodes_up: count(s.media.up_count()),
            media_nodes_total: count(s.config.media.nodes.len()),
            dialplan_version: s.dialplan.current().version().hash.clone(),
            calls_per_second: s.calls.calls_per_second(),
            sip_parse_errors: s.counters.snapshot().sip_parse_errors,
            security: Some(security_counters(&s.counters.snapshot())),
            capture: Some(s.capture.counters()),
            cdr: s.cdr.counters(),
            overload: Some(overload_status(&s.overload)),
            last_dialplan_reload: s.dialplan.last_reload().map(|r| pb::DialplanReload {
                applied: r.applied,
                at: Some(switchboard_proto::timestamp(r.at)),
                version: r.version,
                source: r.source,
                errors: r.errors.into_iter().map(Into::into).collect(),
            }),
            state_store: Some(crate::state::status::to_proto(
                &s.store,
                &s.registrar,
                &s.saved_calls,
            )),
        }))
    }

    async fn list_calls(
        &self,
        req: Request<pb::ListCallsRequest>,
    ) -> Result<Response<pb::ListCallsResponse>, Status> {
        Ok(Response::new(pb::ListCallsResponse {
            calls: self.state.calls.list(req.into_inner().include_ended),
        }))
    }

    async fn get_call(
        &self,
        req: Request<pb::GetCallRequest>,
    ) -> Result<Response<pb::Call>, Status> {
        Ok(Response::new(
            self.state.calls.get(&req.into_inner().call_id)?,
        ))
    }

    async fn hangup_call(
        &self,
        req: Request<pb::HangupCallRequest>,
    ) -> Result<Response<pb::HangupCallResponse>, Status> {
        let req = req.into_inner();
        let reason = if req.reason.is_empty() {
            "hung up by operator".to_string()
        } else {
            req.reason
        };
        let state = self.state.calls.hangup(&req.call_id, &reason)?;
        Ok(Response::new(pb::HangupCallResponse {
            previous_state: state.to_proto() as i32,
        }))
    }

    async fn list_registrations(
        &self,
        req: Request<pb::ListRegistrationsRequest>,
    ) -> Result<Response<pb::ListRegistrationsResponse>, Status> {
        let aor = req.into_inner().aor;
        let mut registrations: Vec<pb::Registration> = self
            .state
            .registrar
            .list()
            .iter()
            .filter(|b| aor.is_empty() || b.aor == aor)
            .map(crate::admin_watch::registration_to_proto)
            .collect();
        registrations.sort_by(|a, b| a.aor.cmp(&b.aor).then(b.q.total_cmp(&a.q)));
        Ok(Response::new(pb::ListRegistrationsResponse {
            registrations,
        }))
    }

    async fn list_media_nodes(
        &self,
        _req: Request<pb::ListMediaNodesRequest>,
    ) -> Result<Response<pb::ListMediaNodesResponse>, Status> {
        Ok(Response::new(pb::ListMediaNodesResponse {
            nodes: self
                .state
                .media
                .list()
                .iter()
                .map(|n| n.to_proto())
                .collect(),
        }))
    }

    async fn drain_media_node(
        &self,
        req: Request<pb::DrainMediaNodeRequest>,
    ) -> Result<Response<pb::MediaNode>, Status> {
        let req = req.into_inner();
        let mut info = self.state.media.set_drained(&req.name, true)?;
        if req.migrate {
            // Drained first: nothing new lands on it while calls leave.
            crate::b2bua::migrate::start(
                &self.state.calls,
                &self.state.media,
                &self.state.events,
                &req.name,
                self.state.config.media.migrate_concurrency as usize,
            )?;
            if let Some(now) = self
                .state
                .media
                .list()
                .into_iter()
                .find(|n| n.name == req.name)
            {
                info = now;
            }
        }
        Ok(Response::new(info.to_proto()))
    }

    async fn undrain_media_node(
        &self,
        req: Request<pb::UndrainMediaNodeRequest>,
    ) -> Result<Response<pb::MediaNode>, Status> {
        let info = self
            .state
            .media
            .set_drained(&req.into_inner().name, false)?;
        Ok(Response::new(info.to_proto()))
    }

    async fn reload_dialplan(
        &self,
        req: Request<pb::ReloadDialplanRequest>,
    ) -> Result<Response<pb::ReloadDialplanResponse>, Status> {
        let path = req.into_inner().path;
        let store = self.state.dialplan.clone();
        let result = tokio::task::spawn_blocking(move || {
            if path.is_empty() {
                store.reload(ReloadSource::Configured)
            } else {
                store.reload(ReloadSource::Path(std::path::Path::new(&path)))
            }
        })
        .await
        .map_err(|e| Status::internal(format!("reload task failed: {e}")))?;
        Ok(Response::new(match result {
            Ok(version) => pb::ReloadDialplanResponse {
                applied: true,
                version: version.hash,
                errors: Vec::new(),
            },
            Err(errors) => pb::ReloadDialplanResponse {
                applied: false,
                version: self.state.dialplan.current().version().hash.clone(),
                errors: errors.into_iter().map(Into::into).collect(),
            },
        }))
    }

    async fn load_dialplan(
        &self,
        req: Request<pb::LoadDialplanRequest>,
    ) -> Result<Response<pb::ReloadDialplanResponse>, Status> {
        let pb::LoadDialplanRequest { name, yaml, apply } = req.into_inner();
        // The name ends up in errors, events and logs: printable, bounded.
        let name: String = name.chars().filter(|c| !c.is_control()).take(256).collect();
        let name = if name.trim().is_empty() {
            "admin:upload".to_string()
        } else {
            name
        };
        let store = self.state.dialplan.clone();
        let result = tokio::task::spawn_blocking(move || {
            let source = ReloadSource::Text {
                name: &name,
                yaml: &yaml,
            };
            if apply {
                store.reload(source)
            } else {
                store.check(source)
            }
        })
        .await
        .map_err(|e| Status::internal(format!("dialplan load task failed: {e}")))?;
        Ok(Response::new(match result {
            Ok(version) => pb::ReloadDialplanResponse {
                applied: apply,
                version: if apply {
                    version.hash
                } else {
                    self.state.dialplan.current().version().hash.clone()
                },
                errors: Vec::new(),
            },
            Err(errors) => pb::ReloadDialplanResponse {
                applied: false,
                version: self.state.dialplan.current().version().hash.clone(),
                errors: errors.into_iter().map(Into::into).collect(),
            },
        }))
    }

    async fn get_dialplan(
        &self,
        _req: Request<pb::GetDialplanRequest>,
    ) -> Result<Response<pb::Dialplan>, Status> {
        Ok(Response::new(self.state.dialplan.current().to_proto()))
    }

    async fn test_route(
        &self,
        req: Request<pb::TestRouteRequest>,
    ) -> Result<Response<pb::TestRouteResponse>, Status> {
        let r = req.into_inner();
        if r.destination.is_empty() {
            return Err(Status::invalid_argument("destination is required"));
        }
        Ok(Response::new(self.state.dialplan.current().test_route(
            &r.destination,
            &r.caller,
            &r.source_ip,
            &r.domain,
            &r.from_domain,
        )))
    }

    async fn list_call_history(
        &self,
        req: Request<pb::ListCallHistoryRequest>,
    ) -> Result<Response<pb::ListCallHistoryResponse>, Status> {
        Ok(Response::new(
            self.state.cdr.history(req.into_inner()).await?,
        ))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        use pb::signaling_event::Event as E;
        // Subscribe before taking the snapshot so nothing falls in between.
        let live = self.state.events.subscribe();
        let mut snapshot = Vec::new();
        let plan = self.state.dialplan.current();
        snapshot.push(E::Dialplan(pb::DialplanEvent {
            applied: true,
            version: plan.version().hash.clone(),
            source: plan.source().to_string(),
            errors: Vec::new(),
        }));
        for node in self.state.media.list() {
            snapshot.push(E::MediaNode(pb::MediaNodeEvent {
                node: Some(node.to_proto()),
            }));
        }
        for b in self.state.registrar.list() {
            snapshot.push(E::Registration(pb::RegistrationEvent {
                kind: pb::RegistrationEventKind::Added as i32,
                registration: Some(crate::admin_watch::registration_to_proto(&b)),
            }));
        }
        for call in self.state.calls.list(false) {
            snapshot.push(E::Call(pb::CallEvent {
                kind: pb::CallEventKind::Updated as i32,
                call: Some(call),
            }));
        }
        let stream = crate::admin_watch::stream(snapshot, live, req.into_inner().snapshot);
        Ok(Response::new(Box::pin(stream)))
    }

    type ListEventsStream = WatchStream;

    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<Self::ListEventsStream>, Status> {
        let req = req.into_inner();
        let since = match req.since {
            Some(d) => Some(
                std::time::Duration::try_from(d)
                    .map_err(|_| Status::invalid_argument("since: must not be negative"))?,
            ),
            None => None,
        };
        let stream = crate::admin_watch::recent_stream(&self.state.events, since, req.follow);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_call_capture(
        &self,
        req: Request<pb::GetCallCaptureRequest>,
    ) -> Result<Response<pb::CallCapture>, Status> {
        Ok(Response::new(
            self.state.capture.get_proto(&req.into_inner().call_id)?,
        ))
    }
}

/// Overload control's numbers, for `GetStatus`.
fn overload_status(o: &Overload) -> pb::OverloadStatus {
    let s = o.snapshot();
    let d = switchboard_proto::duration;
    pb::OverloadStatus {
        enabled: s.enabled,
        refused_share: s.refused_share,
        delay: Some(d(s.delay)),
        receive_backlog: Some(d(s.receive_backlog)),
        scheduling_lag: Some(d(s.scheduling_lag)),
        media_queueing: Some(d(s.media_queueing)),
        admission_limit: s.admission_limit.unwrap_or(0.0),
        calls_in_setup: count(s.calls_in_setup),
        setup_work: count(s.setup_work),
        setup_work_cap: count(s.setup_work_cap),
        invites_refused: s.invites_refused,
    }
}

/// The trust boundary's counters, for `GetStatus`.
fn security_counters(c: &crate::transport::counters::CountersSnapshot) -> pb::SecurityCounters {
    pb::SecurityCounters {
        auth_failures: c.auth_failures,
        blocked_requests: c.blocked_requests,
        stateless_replies: c.stateless_replies,
        acl_dropped: c.acl_dropped,
        rate_limited: c.rate_limited,
        identity_refused: c.identity_refused,
        tcp_refused: c.tcp_refused,
        tcp_refused_per_source: c.tcp_refused_per_source,
        tcp_message_timeouts: c.tcp_message_timeouts,
        sources_blocked: c.sources_blocked,
        overload_shed: c.overload_shed,
        security_events: c.security_events,
        security_events_suppressed: c.security_events_suppressed,
    }
}
