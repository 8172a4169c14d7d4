//! Bridging: moving two sessions into one media task so it relays between
//! them ([`Node::bridge`]), and giving each its own task again
//! ([`Node::unbridge`]).

use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::{Node, detach};
use crate::error::{Error, Result};
use crate::relay::{self, Cmd};

impl Node {
    /// Relay media between two sessions.
    pub async fn bridge(&self, a: &str, b: &str) -> Result<()> {
        if a == b {
            return Err(Error::SelfBridge(a.into()));
        }
        let _ops = self.inner.ops.lock().await;
        let (wa, wb) = {
            let table = self.table();
            let ea = table
                .sessions
                .get(a)
                .ok_or_else(|| Error::NotFound(a.into()))?;
            let eb = table
                .sessions
                .get(b)
                .ok_or_else(|| Error::NotFound(b.into()))?;
            if ea.peer.as_deref() == Some(b) {
                return Ok(());
            }
            for e in [ea, eb] {
                if let Some(p) = &e.peer {
                    return Err(Error::AlreadyBridged {
                        session: e.shared.id.clone(),
                        peer: p.clone(),
                    });
                }
                if e.shared.timed_out.load(Ordering::Relaxed) {
                    return Err(Error::TimedOut(e.shared.id.clone()));
                }
            }
            (ea.worker.clone(), eb.worker.clone())
        };
        let leg_b = detach(&wb, b, "bridged")
            .await
            .ok_or_else(|| Error::TimedOut(b.into()))?;
        if let Err(mpsc::error::SendError(Cmd::Attach(leg))) = wa.send(Cmd::Attach(leg_b)).await {
            // A's task is gone (timed out): give B a task of its own again.
            let w = relay::spawn(vec![*leg], self.inner.ctx.clone());
            if let Some(e) = self.table().sessions.get_mut(b) {
                e.worker = w;
            }
            return Err(Error::TimedOut(a.into()));
        }
        let mut table = self.table();
        if let Some(e) = table.sessions.get_mut(b) {
            e.worker = wa;
            e.peer = Some(a.into());
            e.shared.edit(|v| v.bridged_with = a.into());
        }
        if let Some(e) = table.sessions.get_mut(a) {
            e.peer = Some(b.into());
            e.shared.edit(|v| v.bridged_with = b.into());
        }
        Ok(())
    }

    /// Stop relaying between `id` and its peer.
    pub async fn unbridge(&self, id: &str) -> Result<()> {
        let _ops = self.inner.ops.lock().await;
        let (worker, peer) = {
            let table = self.table();
            let e = table
                .sessions
                .get(id)
                .ok_or_else(|| Error::NotFound(id.into()))?;
            match &e.peer {
                Some(p) => (e.worker.clone(), p.clone()),
                None => return Err(Error::NotBridged(id.into())),
            }
        };
        // The peer moves to a task of its own; `id` stays where it is.
        let leg = detach(&worker, &peer, "unbridged").await;
        let new_worker = leg.map(|l| relay::spawn(vec![*l], self.inner.ctx.clone()));
        let mut table = self.table();
        if let Some(e) = table.sessions.get_mut(&peer) {
            if let Some(w) = new_worker {
                e.worker = w;
            }
            e.peer = None;
            e.shared.edit(|v| v.bridged_with.clear());
        }
        if let Some(e) = table.sessions.get_mut(id) {
            e.peer = None;
            e.shared.edit(|v| v.bridged_with.clear());
        }
        Ok(())
    }
}
