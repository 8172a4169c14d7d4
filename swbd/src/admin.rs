//! `switchboard.admin.v1.SignalingAdmin`: what swctl sees of swbd.

use std::time::SystemTime;

use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::signaling_admin_server::SignalingAdmin;
use tonic::{Request, Response, Status};

use crate::config::Config;
use crate::events::EventBus;
use crate::media::MediaPool;

/// State the admin service reads.
#[derive(Debug, Clone)]
pub struct AdminService {
    config: std::sync::Arc<Config>,
    started_at: SystemTime,
    events: EventBus,
    media: MediaPool,
}

impl AdminService {
    /// A service over the daemon's shared state.
    pub fn new(config: std::sync::Arc<Config>, events: EventBus, media: MediaPool) -> Self {
        Self {
            config,
            started_at: SystemTime::now(),
            events,
            media,
        }
    }
}

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!("{what} is not available in this swbd version yet"))
}

type WatchStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::SignalingEvent, Status>> + Send>>;

#[tonic::async_trait]
impl SignalingAdmin for AdminService {
    async fn get_status(
        &self,
        _req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::Status>, Status> {
        Ok(Response::new(pb::Status {
            node_id: self.config.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_at: Some(switchboard_proto::timestamp(self.started_at)),
            sip_listeners: self
                .config
                .sip
                .listen
                .iter()
                .map(|l| l.to_string())
                .collect(),
            media_nodes_total: u32::try_from(self.config.media.nodes.len()).unwrap_or(u32::MAX),
            media_nodes_up: u32::try_from(self.media.up_count()).unwrap_or(u32::MAX),
            ..Default::default()
        }))
    }

    async fn list_calls(
        &self,
        _req: Request<pb::ListCallsRequest>,
    ) -> Result<Response<pb::ListCallsResponse>, Status> {
        Err(not_yet("ListCalls"))
    }

    async fn get_call(
        &self,
        _req: Request<pb::GetCallRequest>,
    ) -> Result<Response<pb::Call>, Status> {
        Err(not_yet("GetCall"))
    }

    async fn hangup_call(
        &self,
        _req: Request<pb::HangupCallRequest>,
    ) -> Result<Response<pb::HangupCallResponse>, Status> {
        Err(not_yet("HangupCall"))
    }

    async fn list_registrations(
        &self,
        _req: Request<pb::ListRegistrationsRequest>,
    ) -> Result<Response<pb::ListRegistrationsResponse>, Status> {
        Err(not_yet("ListRegistrations"))
    }

    async fn list_media_nodes(
        &self,
        _req: Request<pb::ListMediaNodesRequest>,
    ) -> Result<Response<pb::ListMediaNodesResponse>, Status> {
        Ok(Response::new(pb::ListMediaNodesResponse {
            nodes: self.media.list().iter().map(|n| n.to_proto()).collect(),
        }))
    }

    async fn drain_media_node(
        &self,
        req: Request<pb::DrainMediaNodeRequest>,
    ) -> Result<Response<pb::MediaNode>, Status> {
        let info = self.media.set_drained(&req.into_inner().name, true)?;
        Ok(Response::new(info.to_proto()))
    }

    async fn undrain_media_node(
        &self,
        req: Request<pb::UndrainMediaNodeRequest>,
    ) -> Result<Response<pb::MediaNode>, Status> {
        let info = self.media.set_drained(&req.into_inner().name, false)?;
        Ok(Response::new(info.to_proto()))
    }

    async fn reload_dialplan(
        &self,
        _req: Request<pb::ReloadDialplanRequest>,
    ) -> Result<Response<pb::ReloadDialplanResponse>, Status> {
        Err(not_yet("ReloadDialplan"))
    }

    async fn get_dialplan(
        &self,
        _req: Request<pb::GetDialplanRequest>,
    ) -> Result<Response<pb::Dialplan>, Status> {
        Err(not_yet("GetDialplan"))
    }

    async fn test_route(
        &self,
        _req: Request<pb::TestRouteRequest>,
    ) -> Result<Response<pb::TestRouteResponse>, Status> {
        Err(not_yet("TestRoute"))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        use pb::signaling_event::Event as E;
        // Subscribe before taking the snapshot so nothing falls in between.
        let live = self.events.subscribe();
        let mut snapshot = Vec::new();
        for node in self.media.list() {
            snapshot.push(E::MediaNode(pb::MediaNodeEvent {
                node: Some(node.to_proto()),
            }));
        }
        let stream = crate::admin_watch::stream(snapshot, live, req.into_inner().snapshot);
        Ok(Response::new(Box::pin(stream)))
    }
}
