//! Non-INVITE client transaction (RFC 3261 §17.1.2, Figure 6). The task
//! runs Trying and Proceeding; Completed (Timer K) is a key in the
//! transaction table, not a task.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::key::TransactionKey;
use super::layer::LayerInner;
use super::{Error, Result};
use crate::sip::message::HeaderAccess;
use crate::sip::{Request, Response};
use crate::transport::{Target, Transport};

/// Handle to a non-INVITE client transaction. Responses come out in the
/// order they arrived. Dropping it is safe: the transaction runs its
/// timers out on its own.
#[derive(Debug)]
pub struct ClientTransaction {
    request: Request,
    key: TransactionKey,
    events: mpsc::UnboundedReceiver<Result<Box<Response>>>,
}

impl ClientTransaction {
    /// The request as sent (with our Via).
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Its key.
    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// The next response; `Err(Timeout)` after Timer F, `Err(Terminated)`
    /// once everything has been delivered.
    pub async fn next_response(&mut self) -> Result<Response> {
        self.events
            .recv()
            .await
            .unwrap_or(Err(Error::Terminated))
            .map(|r| *r)
    }

    /// Skip provisionals; the final response.
    pub async fn final_response(&mut self) -> Result<Response> {
        loop {
            let r = self.next_response().await?;
            if r.code >= 200 {
                return Ok(r);
            }
        }
    }
}

pub(crate) fn start(layer: Arc<LayerInner>, request: Request, target: Target) -> ClientTransaction {
    let branch = request
        .top_via()
        .ok()
        .and_then(|v| v.branch().map(str::to_string))
        .unwrap_or_default();
    let key = TransactionKey::for_client(&branch, &request.method);
    let (resp_tx, resp_rx) = mpsc::unbounded_channel();
    layer.register_client(key.clone(), resp_tx);
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    tokio::spawn(run(
        layer,
        key.clone(),
        request.clone(),
        target,
        resp_rx,
        ev_tx,
    ));
    ClientTransaction {
        request,
        key,
        events: ev_rx,
    }
}

async fn run(
    layer: Arc<LayerInner>,
    key: TransactionKey,
    request: Request,
    target: Target,
    mut responses: mpsc::UnboundedReceiver<Box<Response>>,
    events: mpsc::UnboundedSender<Result<Box<Response>>>,
) {
    let reliable = target.transport == Transport::Tcp;
    let t = layer.timers;
    let bytes = request.to_bytes();
    if let Err(e) = layer.send(&target, bytes.clone()).await {
        let _ = events.send(Err(e));
        layer.remove_client(&key);
        return;
    }
    // Trying / Proceeding: Timer E (unreliable only), Timer F.
    let timer_f = tokio::time::sleep(t.t1x64());
    tokio::pin!(timer_f);
    let mut interval = t.t1;
    let mut timer_e = (!reliable).then(|| Instant::now() + interval);
    let mut proceeding = false;
    loop {
        let e = async {
            match timer_e {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut timer_f => {
                let _ = events.send(Err(Error::Timeout));
                layer.remove_client(&key);
                return;
            }
            _ = e => {
                let _ = layer.send(&target, bytes.clone()).await;
                // RFC 3261 §17.1.2.2: double up to T2 in Trying; T2 in Proceeding.
                interval = if proceeding { t.t2 } else { (interval * 2).min(t.t2) };
                timer_e = Some(Instant::now() + interval);
            }
            r = responses.recv() => {
                let Some(resp) = r else {
                    layer.remove_client(&key);
                    return;
                };
                let is_final = resp.code >= 200;
                if !is_final {
                    proceeding = true;
                }
                let _ = events.send(Ok(resp));
                if is_final {
                    break;
                }
            }
        }
    }
    // Completed: retransmitted finals are absorbed until Timer K. The key
    // in the table does that; this task, its request and its channels end
    // now instead of 5 s later (issue #14, memory per finished call).
    layer.client_completed(&key, None, t.t4_unless_reliable(reliable));
}
