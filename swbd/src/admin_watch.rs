//! The admin `Watch` stream: an optional snapshot of the current state, a
//! `SnapshotDone` marker, then live events from the bus. A client that falls
//! too far behind is dropped with `RESOURCE_EXHAUSTED` instead of slowing
//! the daemon.

use std::time::SystemTime;

use switchboard_proto::admin::v1 as pb;
use tokio::sync::broadcast::error::RecvError;
use tonic::Status;

use crate::events::{BindingInfo, CallChange, Event, RegistrationChange};

/// Convert a binding to its admin form.
pub fn registration_to_proto(b: &BindingInfo) -> pb::Registration {
    pb::Registration {
        aor: b.aor.clone(),
        contact: b.contact.clone(),
        source: format!("{} {}", b.transport, b.source),
        q: b.q,
        expires_at: Some(switchboard_proto::timestamp(b.expires_at)),
        registered_at: Some(switchboard_proto::timestamp(b.registered_at)),
        user_agent: b.user_agent.clone(),
        sip_call_id: b.call_id.clone(),
    }
}

/// Convert a bus event to its admin form.
pub fn event_to_proto(at: SystemTime, event: &Event) -> pb::SignalingEvent {
    use pb::signaling_event::Event as E;
    let inner = match event {
        Event::Registration { change, binding } => E::Registration(pb::RegistrationEvent {
            kind: match change {
                RegistrationChange::Added => pb::RegistrationEventKind::Added,
                RegistrationChange::Refreshed => pb::RegistrationEventKind::Refreshed,
                RegistrationChange::Removed => pb::RegistrationEventKind::Removed,
                RegistrationChange::Expired => pb::RegistrationEventKind::Expired,
            } as i32,
            registration: Some(registration_to_proto(binding)),
        }),
        Event::Call { change, call } => E::Call(pb::CallEvent {
            kind: match change {
                CallChange::Created => pb::CallEventKind::Created,
                CallChange::Ringing => pb::CallEventKind::Ringing,
                CallChange::Answered => pb::CallEventKind::Answered,
                CallChange::Bridged => pb::CallEventKind::Bridged,
                CallChange::Ended => pb::CallEventKind::Ended,
                CallChange::Updated => pb::CallEventKind::Updated,
            } as i32,
            call: Some((**call).clone()),
        }),
        Event::MediaNode(info) => E::MediaNode(pb::MediaNodeEvent {
            node: Some(info.to_proto()),
        }),
        Event::DialplanApplied { version, source } => E::Dialplan(pb::DialplanEvent {
            applied: true,
            version: version.clone(),
            source: source.clone(),
            errors: Vec::new(),
        }),
        Event::DialplanRefused {
            version,
            source,
            errors,
        } => E::Dialplan(pb::DialplanEvent {
            applied: false,
            version: version.clone(),
            source: source.clone(),
            errors: errors.iter().cloned().map(Into::into).collect(),
        }),
        Event::Security(ev) => E::Security(ev.to_proto()),
        Event::Migration(ev) => E::Migration(ev.clone()),
    };
    pb::SignalingEvent {
        at: Some(switchboard_proto::timestamp(at)),
        is_snapshot: false,
        event: Some(inner),
    }
}

/// Build the stream: `snapshot` events first (already converted), then the
/// `SnapshotDone` marker, then live events.
pub fn stream(
    snapshot: Vec<pb::signaling_event::Event>,
    mut live: tokio::sync::broadcast::Receiver<std::sync::Arc<(SystemTime, Event)>>,
    send_snapshot: bool,
) -> impl futures::Stream<Item = Result<pb::SignalingEvent, Status>> + Send + 'static {
    async_stream::stream! {
        if send_snapshot {
            let now = Some(switchboard_proto::timestamp(SystemTime::now()));
            for event in snapshot {
                yield Ok(pb::SignalingEvent { at: now, is_snapshot: true, event: Some(event) });
            }
            yield Ok(pb::SignalingEvent {
                at: now,
                is_snapshot: true,
                event: Some(pb::signaling_event::Event::SnapshotDone(pb::SnapshotDone {})),
            });
        }
        loop {
            match live.recv().await {
                Ok(ev) => yield Ok(event_to_proto(ev.0, &ev.1)),
                Err(RecvError::Lagged(n)) => {
                    yield Err(Status::resource_exhausted(format!(
                        "watch client too slow: {n} events dropped; reconnect with snapshot=true"
                    )));
                    break;
                }
                Err(RecvError::Closed) => break,
            }
        }
    }
}

/// `ListEvents`: the recent events (not older than `since`), then, with
/// `follow`, live ones; a follower too slow for the bus is dropped like a
/// `Watch` client.
pub fn recent_stream(
    bus: &crate::events::EventBus,
    since: Option<std::time::Duration>,
    follow: bool,
) -> impl futures::Stream<Item = Result<pb::SignalingEvent, Status>> + Send + 'static {
    let (recent, mut live) = bus.recent_then_live(since);
    async_stream::stream! {
        for ev in recent {
            yield Ok(event_to_proto(ev.0, &ev.1));
        }
        if follow {
            loop {
                match live.recv().await {
                    Ok(ev) => yield Ok(event_to_proto(ev.0, &ev.1)),
                    Err(RecvError::Lagged(n)) => {
                        yield Err(Status::resource_exhausted(format!(
                            "events client too slow: {n} events dropped"
                        )));
                        break;
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn a_slow_watcher_is_dropped_with_resource_exhausted() {
        let bus = crate::events::EventBus::new();
        let rx = bus.subscribe();
        // Far more events than the bus holds, before the client reads any.
        for i in 0..10_000 {
            bus.publish(Event::DialplanApplied {
                version: format!("v{i}"),
                source: "test".into(),
            });
        }
        let mut s = Box::pin(stream(Vec::new(), rx, false));
        let first = s.next().await.expect("an item");
        let status = first.expect_err("lagged client gets an error");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("too slow"));
        assert!(s.next().await.is_none(), "and the stream ends");
    }

    #[tokio::test]
    async fn recent_events_then_live_ones_none_twice() {
        let bus = crate::events::EventBus::with_recent(3);
        for i in 0..5 {
            bus.publish(Event::DialplanApplied {
                version: format!("v{i}"),
                source: "test".into(),
            });
        }
        let version = |e: &pb::SignalingEvent| match &e.event {
            Some(pb::signaling_event::Event::Dialplan(d)) => d.version.clone(),
            other => panic!("unexpected {other:?}"),
        };
        // Without follow: the ring (last 3), then the end.
        let got: Vec<String> = Box::pin(recent_stream(&bus, None, false))
            .map(|e| version(&e.expect("ok")))
            .collect()
            .await;
        assert_eq!(got, ["v2", "v3", "v4"]);
        // With follow: the ring, then what is published after.
        let mut s = Box::pin(recent_stream(&bus, None, true));
        bus.publish(Event::DialplanApplied {
            version: "v5".into(),
            source: "test".into(),
        });
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(version(&s.next().await.expect("item").expect("ok")));
        }
        assert_eq!(got, ["v2", "v3", "v4", "v5"]);
        // A `since` reaching back further than the ring: all of it.
        let hour = Some(std::time::Duration::from_secs(3600));
        let all: Vec<String> = Box::pin(recent_stream(&bus, hour, false))
            .map(|e| version(&e.expect("ok")))
            .collect()
            .await;
        assert_eq!(all, ["v3", "v4", "v5"]);
    }

    #[tokio::test]
    async fn snapshot_comes_first_then_done_then_live() {
        let bus = crate::events::EventBus::new();
        let rx = bus.subscribe();
        let snap = vec![pb::signaling_event::Event::SnapshotDone(
            pb::SnapshotDone {},
        )];
        let mut s = Box::pin(stream(snap, rx, true));
        let a = s.next().await.expect("item").expect("ok");
        assert!(a.is_snapshot);
        let done = s.next().await.expect("item").expect("ok");
        assert!(matches!(
            done.event,
            Some(pb::signaling_event::Event::SnapshotDone(_))
        ));
        bus.publish(Event::DialplanApplied {
            version: "v".into(),
            source: "s".into(),
        });
        let live = s.next().await.expect("item").expect("ok");
        assert!(!live.is_snapshot);
    }
}
