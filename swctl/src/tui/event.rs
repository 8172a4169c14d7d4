//! Feeds: one task per backend turns its Watch stream into [`Update`]s, and
//! reconnects with backoff when the daemon goes away.
//!
//! Per backend: connect, `GetStatus` (which also tells swbd from swrtp for a
//! bare `--host`), then `Watch(snapshot = true)`. On open the store forgets
//! what that backend said before ([`Update::Reset`]) and the snapshot refills
//! it, so a restarted daemon never leaves stale calls behind. A swbd without
//! `Watch` (UNIMPLEMENTED) is polled with `GetStatus` every 2 s instead, so
//! the header still counts calls.

use std::time::Duration;

use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::media_admin_client::MediaAdminClient;
use switchboard_proto::admin::v1::media_admin_event::Event as MediaEvent;
use switchboard_proto::admin::v1::signaling_admin_client::SignalingAdminClient;
use switchboard_proto::admin::v1::signaling_event::Event as SigEvent;
use tokio::sync::mpsc;

use super::history;
use crate::cmd::{Kind, Targets};

/// Connection state of one backend.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnState {
    /// First attempt in progress.
    Connecting,
    /// Connected; `watching` false when the daemon has no Watch (polled).
    Connected {
        /// A Watch stream is open.
        watching: bool,
    },
    /// Lost or refused; retrying.
    Reconnecting {
        /// Attempts so far.
        attempt: u32,
        /// Last error.
        error: String,
    },
}

/// Something for the app to apply.
#[derive(Debug, Clone)]
pub enum Update {
    /// Connection state changed.
    Conn {
        /// Backend index.
        backend: usize,
        /// New state.
        state: ConnState,
    },
    /// A `--host` turned out to be this kind of daemon.
    Kind {
        /// Backend index.
        backend: usize,
        /// What it is.
        kind: Kind,
    },
    /// swbd status.
    SwbdStatus {
        /// Backend index.
        backend: usize,
        /// Status (boxed: it is most of the enum's size).
        status: Box<pb::Status>,
    },
    /// A Watch (re)opened: forget the backend's state, a snapshot follows.
    Reset {
        /// Backend index.
        backend: usize,
    },
    /// A swbd's media nodes as polled (their counts move without events).
    Nodes {
        /// Backend index.
        backend: usize,
        /// Every node of that swbd's pool.
        nodes: Vec<pb::MediaNode>,
    },
    /// A swbd event.
    Signaling {
        /// Backend index.
        backend: usize,
        /// Event.
        event: pb::SignalingEvent,
    },
    /// A swrtp event.
    Media {
        /// Backend index.
        backend: usize,
        /// Event.
        event: pb::MediaAdminEvent,
    },
    /// GetCall answered (with the ladder).
    CallDetail {
        /// Backend index.
        backend: usize,
        /// The call.
        call: pb::Call,
    },
    /// Call detail records of a swbd (loaded at connect, or of calls that
    /// just ended).
    History {
        /// Backend index.
        backend: usize,
        /// Records, any order.
        records: Vec<pb::CallDetailRecord>,
        /// New state of that backend's history (`None`: unchanged).
        state: Option<super::history::HistoryState>,
    },
    /// The SIP messages swbd captured of a call (the detail's full ladder).
    CallCapture {
        /// Backend index.
        backend: usize,
        /// swbd's call id, as asked.
        call_id: String,
        /// The capture.
        capture: pb::CallCapture,
    },
    /// The recent events swbd kept (`ListEvents`), read before its Watch opened.
    RecentEvents {
        /// Backend index.
        backend: usize,
        /// Oldest first.
        events: Vec<pb::SignalingEvent>,
    },
    /// A one-line message for the footer (action results, errors).
    Flash(String),
    /// Several updates applied before the next frame (a Watch snapshot).
    Batch(Vec<Update>),
}

/// Delay before reconnect attempt `attempt` (1-based): 250 ms doubling, capped at 5 s.
pub fn backoff(attempt: u32) -> Duration {
    let ms = 250u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(5));
    Duration::from_millis(ms.min(5000))
}

/// Run the feed of backend `idx` until the receiver is dropped.
pub async fn feed(targets: Targets, idx: usize, stats_interval_ms: u32, tx: mpsc::Sender<Update>) {
    let Some(backend) = targets.backends.get(idx).cloned() else {
        return;
    };
    let mut attempt = 0u32;
    loop {
        let err = session(
            &targets,
            idx,
            backend.kind,
            stats_interval_ms,
            &tx,
            &mut attempt,
        )
        .await;
        if tx.is_closed() {
            return;
        }
        attempt += 1;
        let state = ConnState::Reconnecting {
            attempt,
            error: err,
        };
        if tx
            .send(Update::Conn {
                backend: idx,
                state,
            })
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
}

/// One connection: returns why it ended. Resets `attempt` once connected.
async fn session(
    targets: &Targets,
    idx: usize,
    kind: Kind,
    stats_interval_ms: u32,
    tx: &mpsc::Sender<Update>,
    attempt: &mut u32,
) -> String {
    let Some(backend) = targets.backends.get(idx) else {
        return "no such backend".into();
    };
    let channel = match targets.channel(backend, "daemon").await {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    let send = |u: Update| async move { tx.send(u).await.is_ok() };
    // Which daemon is it?
    let mut kind = kind;
    if kind != Kind::Swrtp {
        match SignalingAdminClient::new(channel.clone())
            .get_status(pb::GetStatusRequest {})
            .await
        {
            Ok(st) => {
                kind = Kind::Swbd;
                send(Update::SwbdStatus {
                    backend: idx,
                    status: Box::new(st.into_inner()),
                })
                .await;
            }
            Err(st) if st.code() == tonic::Code::Unimplemented && kind == Kind::Any => {
                kind = Kind::Swrtp;
            }
            Err(st) => return format!("GetStatus: {}", st.message()),
        }
        send(Update::Kind { backend: idx, kind }).await;
    }
    if kind == Kind::Swrtp {
        let mut client = MediaAdminClient::new(channel);
        match client.get_status(pb::GetMediaStatusRequest {}).await {
            Ok(st) => {
                send(Update::Kind { backend: idx, kind }).await;
                send(Update::Media {
                    backend: idx,
                    event: pb::MediaAdminEvent {
                        at: None,
                        is_snapshot: true,
                        event: Some(MediaEvent::Status(st.into_inner())),
                    },
                })
                .await;
            }
            Err(st) => return format!("GetStatus: {}", st.message()),
        }
        let stream = client
            .watch(pb::WatchMediaRequest {
                snapshot: true,
                stats_interval_ms: stats_interval_ms.max(250),
            })
            .await;
        let stream = match stream {
            Ok(s) => s.into_inner(),
            Err(st) => return format!("Watch: {}", st.message()),
        };
        *attempt = 0;
        send(Update::Conn {
            backend: idx,
            state: ConnState::Connected { watching: true },
        })
        .await;
        // SnapshotDone ends the snapshot (swrtp before it had none: then
        // the first live event or a quiet 250 ms does).
        return forward(
            stream,
            idx,
            tx,
            |event| Update::Media {
                backend: idx,
                event,
            },
            |e| {
                (
                    e.is_snapshot,
                    matches!(e.event, Some(MediaEvent::SnapshotDone(_))),
                )
            },
            "swrtp",
        )
        .await;
    }
    let mut client = SignalingAdminClient::new(channel.clone());
    // What swbd kept of recent events, before the Watch (its live events
    // follow): the Events screen shows what `swctl events` shows.
    if let Some(events) = recent_events(&mut client).await {
        send(Update::RecentEvents {
            backend: idx,
            events,
        })
        .await;
    }
    match client.watch(pb::WatchRequest { snapshot: true }).await {
        Ok(s) => {
            *attempt = 0;
            send(Update::Conn {
                backend: idx,
                state: ConnState::Connected { watching: true },
            })
            .await;
            // Recent call history, then the records of calls as they end.
            send(history::load(&mut client, idx).await).await;
            let (ended_tx, ended_rx) = mpsc::channel::<String>(1024);
            let follow = history::follow(
                SignalingAdminClient::new(channel.clone()),
                idx,
                ended_rx,
                tx.clone(),
            );
            // Node events come on state changes only; calls, sessions and
            // free ports move all the time: poll them beside the stream.
            let poll = poll_nodes(
                SignalingAdminClient::new(channel),
                idx,
                stats_interval_ms,
                tx,
            );
            let watch = forward(
                s.into_inner(),
                idx,
                tx,
                |event| {
                    if let Some(id) = ended_call(&event) {
                        // Full: that call keeps swbd's end cause only.
                        let _ = ended_tx.try_send(id);
                    }
                    Update::Signaling {
                        backend: idx,
                        event,
                    }
                },
                |e| {
                    (
                        e.is_snapshot,
                        matches!(e.event, Some(SigEvent::SnapshotDone(_))),
                    )
                },
                "swbd",
            );
            tokio::select! {
                why = watch => why,
                why = poll => why,
                () = follow => "closed".into(),
            }
        }
        Err(st) if st.code() == tonic::Code::Unimplemented => {
            // This swbd has no Watch yet: keep the header alive by polling.
            *attempt = 0;
            send(Update::Conn {
                backend: idx,
                state: ConnState::Connected { watching: false },
            })
            .await;
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                match client.get_status(pb::GetStatusRequest {}).await {
                    Ok(st) => {
                        if !send(Update::SwbdStatus {
                            backend: idx,
                            status: Box::new(st.into_inner()),
                        })
                        .await
                        {
                            return "closed".into();
                        }
                    }
                    Err(st) => return st.message().to_string(),
                }
            }
        }
        Err(st) => format!("Watch: {}", st.message()),
    }
}

/// The swbd call id of a live `Ended` call event.
fn ended_call(e: &pb::SignalingEvent) -> Option<String> {
    match &e.event {
        Some(SigEvent::Call(c)) if !e.is_snapshot && c.kind == pb::CallEventKind::Ended as i32 => {
            c.call.as_ref().map(|c| c.call_id.clone())
        }
        _ => None,
    }
}

/// The recent events of a swbd (`ListEvents` without follow), the newest
/// [`EVENT_LOG`](super::store::EVENT_LOG) of them; `None` when it has none
/// (an older swbd) or the read failed.
async fn recent_events(
    client: &mut SignalingAdminClient<switchboard_proto::support::grpc::AuthedChannel>,
) -> Option<Vec<pb::SignalingEvent>> {
    let mut stream = client
        .list_events(pb::ListEventsRequest {
            since: None,
            follow: false,
        })
        .await
        .ok()?
        .into_inner();
    let mut out = std::collections::VecDeque::new();
    while let Ok(Some(ev)) = stream.message().await {
        if out.len() >= super::store::EVENT_LOG {
            out.pop_front();
        }
        out.push_back(ev);
    }
    Some(out.into())
}

/// Poll a swbd's media nodes every `interval_ms` (at least 1 s) until the
/// screen goes away; an RPC error ends it (the Watch reconnect handles
/// the rest). Returns why it stopped.
async fn poll_nodes(
    mut client: SignalingAdminClient<switchboard_proto::support::grpc::AuthedChannel>,
    idx: usize,
    interval_ms: u32,
    tx: &mpsc::Sender<Update>,
) -> String {
    let every = Duration::from_millis(u64::from(interval_ms.max(1000)));
    loop {
        tokio::time::sleep(every).await;
        match client.list_media_nodes(pb::ListMediaNodesRequest {}).await {
            Ok(r) => {
                let nodes = r.into_inner().nodes;
                if tx
                    .send(Update::Nodes {
                        backend: idx,
                        nodes,
                    })
                    .await
                    .is_err()
                {
                    return "closed".into();
                }
            }
            Err(st) if st.code() == tonic::Code::Unimplemented => {
                // Nothing to poll on this swbd: wait for the stream to end.
                std::future::pending::<()>().await;
            }
            Err(st) => return format!("ListMediaNodes: {}", st.message()),
        }
    }
}

/// Forward a Watch stream. The snapshot part (with the [`Update::Reset`] that
/// precedes it) goes out as one [`Update::Batch`], so the screen never shows a
/// half-filled table after a reconnect; it ends at SnapshotDone, the first
/// live event, or 250 ms without a message. Returns why the stream ended.
async fn forward<T>(
    mut stream: tonic::Streaming<T>,
    idx: usize,
    tx: &mpsc::Sender<Update>,
    wrap: impl Fn(T) -> Update,
    snapshot_part: impl Fn(&T) -> (bool, bool),
    who: &str,
) -> String {
    let closed = || "closed".to_string();
    let mut batch = vec![Update::Reset { backend: idx }];
    let mut in_snapshot = true;
    loop {
        let next = if in_snapshot {
            // `Streaming::message` is cancel-safe: a timeout loses nothing.
            match tokio::time::timeout(Duration::from_millis(250), stream.message()).await {
                Ok(r) => r,
                Err(_) => {
                    in_snapshot = false;
                    if tx
                        .send(Update::Batch(std::mem::take(&mut batch)))
                        .await
                        .is_err()
                    {
                        return closed();
                    }
                    continue;
                }
            }
        } else {
            stream.message().await
        };
        match next {
            Ok(Some(ev)) if in_snapshot => {
                let (snapshot, done) = snapshot_part(&ev);
                batch.push(wrap(ev));
                if done || !snapshot {
                    in_snapshot = false;
                    if tx
                        .send(Update::Batch(std::mem::take(&mut batch)))
                        .await
                        .is_err()
                    {
                        return closed();
                    }
                }
            }
            Ok(Some(ev)) => {
                if tx.send(wrap(ev)).await.is_err() {
                    return closed();
                }
            }
            Ok(None) => return format!("{who} closed the Watch stream"),
            Err(st) => return st.message().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let ms: Vec<u128> = (1..=8).map(|a| backoff(a).as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        assert_eq!(backoff(0).as_millis(), 250);
        assert_eq!(backoff(u32::MAX).as_millis(), 5000);
    }
}
