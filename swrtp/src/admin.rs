//! `switchboard.admin.v1.MediaAdmin`: the operator view of the node.
//!
//! A slow `Watch` client never slows the daemon: events go through a bounded
//! broadcast channel, and a watcher that falls behind gets its stream ended
//! with `RESOURCE_EXHAUSTED` instead of holding anything back.

use std::pin::Pin;
use std::time::{Duration, SystemTime};

use futures::Stream;
use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::media_admin_server::MediaAdmin;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::session::{Node, NodeEvent};

/// The MediaAdmin implementation.
#[derive(Debug, Clone)]
pub struct Admin {
    node: Node,
}

impl Admin {
    /// A service over `node`.
    pub fn new(node: Node) -> Self {
        Self { node }
    }
}

fn event(is_snapshot: bool, e: pb::media_admin_event::Event) -> pb::MediaAdminEvent {
    pb::MediaAdminEvent {
        at: Some(switchboard_proto::timestamp(SystemTime::now())),
        is_snapshot,
        event: Some(e),
    }
}

/// Admin event of a node event (`None`: not one admin watchers see).
pub fn admin_event(node: &Node, e: &NodeEvent) -> Option<pb::MediaAdminEvent> {
    use pb::media_admin_event::Event;
    let inner = match e {
        NodeEvent::Created(s) => Event::SessionCreated(s.info()),
        NodeEvent::Destroyed(s) => Event::SessionDestroyed(s.info()),
        NodeEvent::TimedOut(s) => Event::SessionTimedOut(s.info()),
        NodeEvent::Status => Event::Status(node.status()),
        NodeEvent::Dtmf { .. } => return None,
    };
    Some(event(false, inner))
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::MediaAdminEvent, Status>> + Send>>;

#[tonic::async_trait]
impl MediaAdmin for Admin {
    async fn get_status(
        &self,
        _request: Request<pb::GetMediaStatusRequest>,
    ) -> Result<Response<pb::MediaStatus>, Status> {
        Ok(Response::new(self.node.status()))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListMediaSessionsRequest>,
    ) -> Result<Response<pb::ListMediaSessionsResponse>, Status> {
        let call_id = request.into_inner().call_id;
        let sessions = self
            .node
            .sessions()
            .iter()
            .filter(|s| call_id.is_empty() || s.call_id == call_id)
            .map(|s| s.info())
            .collect();
        Ok(Response::new(pb::ListMediaSessionsResponse { sessions }))
    }

    async fn set_draining(
        &self,
        request: Request<pb::SetDrainingRequest>,
    ) -> Result<Response<pb::MediaStatus>, Status> {
        let draining = request.into_inner().draining;
        self.node.set_draining(draining);
        tracing::info!(draining, "draining changed by admin");
        Ok(Response::new(self.node.status()))
    }

    type WatchStream = EventStream;

    async fn watch(
        &self,
        request: Request<pb::WatchMediaRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let r = request.into_inner();
        let stats_every = match r.stats_interval_ms {
            0 => None,
            ms => Some(Duration::from_millis(u64::from(ms.max(250)))),
        };
        // Subscribe before the snapshot so nothing falls in between.
        let mut events = self.node.subscribe();
        let (tx, rx) = mpsc::channel(256);
        let snapshot = r.snapshot.then(|| self.node.sessions());
        let node = self.node.clone();
        let closed = self.node.closed();
        tokio::spawn(async move {
            tokio::pin!(closed);
            // The snapshot may be larger than the queue: wait for the client
            // to take it (a client that stops reading ends with the stream).
            if let Some(sessions) = snapshot {
                for s in sessions {
                    let e = event(true, pb::media_admin_event::Event::SessionCreated(s.info()));
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
                let done = event(
                    true,
                    pb::media_admin_event::Event::SnapshotDone(pb::MediaSnapshotDone {}),
                );
                if tx.send(Ok(done)).await.is_err() {
                    return;
                }
            }
            let mut ticker = stats_every.map(|d| {
                let mut t = tokio::time::interval(d);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                t
            });
            loop {
                let tick = async {
                    match ticker.as_mut() {
                        Some(t) => {
                            t.tick().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                let items: Vec<Result<pb::MediaAdminEvent, Status>> = tokio::select! {
                    e = events.recv() => match e {
                        Ok(e) => admin_event(&node, &e).map(Ok).into_iter().collect(),
                        Err(broadcast::error::RecvError::Lagged(n)) => vec![Err(Status::resource_exhausted(format!(
                            "watcher too slow: {n} events dropped; reconnect with snapshot=true"
                        )))],
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = tick => node
                        .sessions()
                        .iter()
                        .map(|s| Ok(event(false, pb::media_admin_event::Event::SessionStats(s.info()))))
                        .collect(),
                    () = tx.closed() => return,
                    () = &mut closed => {
                        let _ = tx.try_send(Err(Status::unavailable("swrtp is shutting down")));
                        return;
                    }
                };
                for item in items {
                    let end = item.is_err();
                    // A full client queue is a slow client: end its stream.
                    match tx.try_send(item) {
                        Ok(()) if !end => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            let _ = tx
                                .send(Err(Status::resource_exhausted(
                                    "watcher too slow: stream ended; reconnect with snapshot=true",
                                )))
                                .await;
                            return;
                        }
                        _ => return,
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
