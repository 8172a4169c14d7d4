//! Drain with migration (issue #18): move the bridged calls of a draining
//! media node to other nodes, a few at a time.
//!
//! The coordinator here only orders and counts; each call moves itself
//! (`call/migrate.rs`), since its task owns its dialogs and sessions: new
//! sessions on a node the pool picks (up, not draining, not this one), a
//! re-INVITE to both legs at once with each leg's own new offer, the old
//! sessions relaying until both answered, then the new ones bridged and
//! the old ones destroyed. A call that cannot move stays whole on its old
//! node until it ends (see the call side for the rules).
//!
//! `media.migrate_concurrency` calls move at once, so a drain of 1,000
//! calls sends a few re-INVITE pairs at a time, not 2,000. Progress is in
//! the node's [`MigrationProgress`](crate::media::MigrationProgress)
//! (`swctl nodes`, `swctl top`) and in [`Event::Migration`] events (the
//! Watch stream): begun, per call started / moved / failed, done.
//! Ringing calls are not touched: they are not bridged yet, and the pool
//! gives nothing new to a draining node.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use switchboard_proto::admin::v1 as pb;
use tokio::sync::oneshot;

use super::table::{CallCommand, CallTable};
use crate::events::{Event, EventBus};
use crate::media::{MediaPool, PoolError};

/// The longest one call's move may take before the coordinator counts it
/// failed: two re-INVITEs that may each wait Timer B (32 s), a `491`
/// back-off, and a leg put back.
pub const CALL_DEADLINE: Duration = Duration::from_secs(100);

/// How one call's move ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrateOutcome {
    /// Its media is on `target` now.
    Moved {
        /// The node it went to.
        target: String,
    },
    /// Not moved: the call stays whole on its node (why).
    Stayed(String),
    /// Not bridged (ringing, in its dialplan): left alone.
    NotBridged,
    /// The call ended during its move (why): a leg's dialog was gone, or
    /// a leg that had moved would not come back after the other refused.
    Ended(String),
}

/// An order to one call to move off `from`, with the way back for its
/// outcome. Cloning shares the reply (the first answer wins).
#[derive(Debug, Clone)]
pub struct MigrateOrder {
    /// The draining node (a call no longer on it has nothing to do).
    pub from: String,
    reply: Arc<Mutex<Option<oneshot::Sender<MigrateOutcome>>>>,
}

impl PartialEq for MigrateOrder {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.reply, &other.reply)
    }
}

impl Eq for MigrateOrder {}

impl MigrateOrder {
    /// An order to move off `from`, and where its outcome arrives.
    pub fn new(from: &str) -> (Self, oneshot::Receiver<MigrateOutcome>) {
        let (tx, rx) = oneshot::channel();
        (
            Self {
                from: from.to_string(),
                reply: Arc::new(Mutex::new(Some(tx))),
            },
            rx,
        )
    }

    /// Report the outcome (once; later answers are dropped).
    pub fn answer(&self, outcome: MigrateOutcome) {
        let tx = self.reply.lock().ok().and_then(|mut r| r.take());
        if let Some(tx) = tx {
            let _ = tx.send(outcome);
        }
    }
}

/// Migration errors (admin).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The node is unknown, or no other node takes calls.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// This node's migration is already running.
    #[error("a migration of media node {0:?} is already running")]
    Running(String),
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Pool(p) => p.into(),
            Error::Running(_) => tonic::Status::failed_precondition(e.to_string()),
        }
    }
}

/// Start moving `node`'s bridged calls (the node is drained already);
/// returns how many calls will be tried. Runs in the background; refused
/// while a migration of the node runs, and when no other node takes calls.
pub fn start(
    calls: &CallTable,
    pool: &MediaPool,
    events: &EventBus,
    node: &str,
    concurrency: usize,
) -> Result<usize, Error> {
    // Fails early (no re-INVITE sent) when nowhere can take the calls.
    drop(pool.pick_excluding(&[node.to_string()])?);
    let todo = calls.bridged_on_node(node);
    let n = todo.len();
    if !pool.begin_migration(node, n as u32) {
        return Err(Error::Running(node.to_string()));
    }
    let (pool, events, node) = (pool.clone(), events.clone(), node.to_string());
    tracing::info!(%node, calls = n, "migration begun");
    let begun = event(pb::MigrationEventKind::Begun, &node, "", n as u32, 0, 0);
    events.publish(Event::Migration(begun));
    tokio::spawn(async move {
        let (mut moved, mut failed) = (0u32, 0u32);
        let mut outcomes = futures::stream::iter(todo)
            .map(|(id, tx)| {
                let (node, events) = (node.clone(), events.clone());
                async move {
                    let mut ev = event(pb::MigrationEventKind::Started, &node, "", 0, 0, 0);
                    ev.call_id = id.clone();
                    events.publish(Event::Migration(ev));
                    let (order, rx) = MigrateOrder::new(&node);
                    if tx.send(Box::new(CallCommand::Migrate(order))).is_err() {
                        return (id, MigrateOutcome::Ended("the call ended".into()));
                    }
                    let outcome = match tokio::time::timeout(CALL_DEADLINE, rx).await {
                        Ok(Ok(o)) => o,
                        Ok(Err(_)) => MigrateOutcome::Ended("the call ended".into()),
                        Err(_) => MigrateOutcome::Stayed("no outcome in time".into()),
                    };
                    (id, outcome)
                }
            })
            .buffer_unordered(concurrency.max(1));
        while let Some((id, outcome)) = outcomes.next().await {
            let (kind, target, detail) = match outcome {
                MigrateOutcome::Moved { target } => {
                    moved += 1;
                    (pb::MigrationEventKind::Moved, target, String::new())
                }
                MigrateOutcome::Stayed(why) => {
                    failed += 1;
                    (pb::MigrationEventKind::Failed, String::new(), why)
                }
                MigrateOutcome::NotBridged => {
                    failed += 1;
                    let why = "not bridged (left alone)".to_string();
                    (pb::MigrationEventKind::Failed, String::new(), why)
                }
                MigrateOutcome::Ended(why) => {
                    // Gone from the node all the same: not a failure to move.
                    (
                        pb::MigrationEventKind::Failed,
                        String::new(),
                        format!("call ended: {why}"),
                    )
                }
            };
            tracing::info!(%node, call = %id, kind = kind.as_str_name(), %target, %detail, "migration");
            pool.update_migration(&node, |p| {
                p.pending = p.pending.saturating_sub(1);
                p.moved = moved;
                p.failed = failed;
            });
            let mut ev = event(kind, &node, &detail, 0, moved, failed);
            ev.call_id = id;
            ev.target = target;
            events.publish(Event::Migration(ev));
        }
        tracing::info!(%node, moved, failed, "migration done");
        let detail = format!("{moved} moved, {failed} not moved");
        let done = event(
            pb::MigrationEventKind::Done,
            &node,
            &detail,
            n as u32,
            moved,
            failed,
        );
        events.publish(Event::Migration(done));
    });
    Ok(n)
}

fn event(
    kind: pb::MigrationEventKind,
    node: &str,
    detail: &str,
    calls: u32,
    moved: u32,
    failed: u32,
) -> pb::MigrationEvent {
    pb::MigrationEvent {
        kind: kind as i32,
        node: node.to_string(),
        call_id: String::new(),
        target: String::new(),
        detail: detail.to_string(),
        calls,
        moved,
        failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_is_answered_once_and_clones_share_it() {
        let (order, mut rx) = MigrateOrder::new("rtp-a");
        let copy = order.clone();
        assert_eq!(copy, order, "a clone is the same order");
        copy.answer(MigrateOutcome::Moved {
            target: "rtp-b".into(),
        });
        order.answer(MigrateOutcome::NotBridged);
        assert_eq!(
            rx.try_recv().expect("answered"),
            MigrateOutcome::Moved {
                target: "rtp-b".into()
            }
        );
        let (other, _rx) = MigrateOrder::new("rtp-a");
        assert_ne!(other, order, "another order");
    }

    #[test]
    fn a_running_migration_is_refused_as_a_precondition() {
        let st = tonic::Status::from(Error::Running("rtp-a".into()));
        assert_eq!(st.code(), tonic::Code::FailedPrecondition);
        assert!(st.message().contains("rtp-a"));
    }
}
