//! Non-INVITE server transaction (RFC 3261 §17.2.2, Figure 8).

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::key::TransactionKey;
use super::layer::{LayerInner, NetInput, build_response};
use super::{Error, Result};
use crate::sip::{Request, Response, random_token};
use crate::transport::{Source, Target, Transport};

/// Handle to a non-INVITE server transaction, given to the TU.
///
/// Dropping it before a final response was sent answers
/// `500 Server Internal Error`, so a peer never waits for nothing; so does
/// holding it for 64*T1 without a final response.
#[derive(Debug)]
pub struct ServerTransaction {
    request: Request,
    source: Source,
    to_tag: String,
    user_agent: String,
    tu: mpsc::UnboundedSender<Box<Response>>,
}

impl ServerTransaction {
    /// The request (top Via stamped with `received`/`rport`).
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Where it came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// A response to the request carrying this transaction's To tag and
    /// our Server header.
    pub fn response(&self, code: u16, reason: &str) -> Response {
        build_response(&self.request, code, reason, &self.to_tag, &self.user_agent)
    }

    /// Send a response (provisional or final). Sending after the final
    /// response is an error.
    pub fn respond(&self, response: Response) -> Result<()> {
        self.tu
            .send(Box::new(response))
            .map_err(|_| Error::Terminated)
    }
}

pub(crate) fn start(
    layer: Arc<LayerInner>,
    key: TransactionKey,
    request: Request,
    source: Source,
    target: Target,
    net: mpsc::UnboundedReceiver<NetInput>,
) -> ServerTransaction {
    let (tu_tx, tu_rx) = mpsc::unbounded_channel();
    let handle = ServerTransaction {
        request: request.clone(),
        source,
        to_tag: random_token(10),
        user_agent: layer.user_agent.clone(),
        tu: tu_tx,
    };
    let fallback = handle.response(500, "Server Internal Error (no response)");
    tokio::spawn(run(layer, key, fallback, target, net, tu_rx));
    handle
}

async fn run(
    layer: Arc<LayerInner>,
    key: TransactionKey,
    fallback: Response,
    target: Target,
    mut net: mpsc::UnboundedReceiver<NetInput>,
    mut tu: mpsc::UnboundedReceiver<Box<Response>>,
) {
    let reliable = target.transport == Transport::Tcp;
    let mut last: Option<Bytes> = None;
    // Safety net: the client gives up after 64*T1 (Timer F), so a TU that
    // never answers must not keep this transaction alive forever.
    let give_up = tokio::time::sleep(layer.timers.t1x64());
    tokio::pin!(give_up);
    // Trying / Proceeding.
    loop {
        tokio::select! {
            biased;
            _ = &mut give_up => {
                let bytes = fallback.to_bytes();
                let _ = layer.send(&target, bytes.clone()).await;
                last = Some(bytes);
                break;
            }
            r = tu.recv() => {
                let resp = r.unwrap_or_else(|| Box::new(fallback.clone()));
                let bytes = resp.to_bytes();
                let _ = layer.send(&target, bytes.clone()).await;
                last = Some(bytes);
                if resp.code >= 200 {
                    break;
                }
            }
            n = net.recv() => match n {
                Some(NetInput::Retransmission) => {
                    if let Some(b) = &last {
                        let _ = layer.send(&target, b.clone()).await;
                    }
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    // Completed: absorb retransmissions until Timer J.
    let timer_j = tokio::time::sleep(layer.timers.timer_j(reliable));
    tokio::pin!(timer_j);
    loop {
        tokio::select! {
            _ = &mut timer_j => break,
            n = net.recv() => match n {
                Some(NetInput::Retransmission) => {
                    if let Some(b) = &last {
                        let _ = layer.send(&target, b.clone()).await;
                    }
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    layer.remove_server(&key);
}
