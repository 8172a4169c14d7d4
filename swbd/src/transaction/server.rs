//! Non-INVITE server transaction (RFC 3261 §17.2.2, Figure 8).
//!
//! No task of its own: the state is a table entry (last response sent, and
//! whether it was final). [`ServerTransaction::respond`] sends at once, a
//! retransmitted request is answered from the entry by the receive path,
//! and the layer's sweeper removes the entry when Timer J fires. At several
//! thousand REGISTERs a second that is one table insert and one queue push
//! per transaction instead of a spawned task, two channels and two timers.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::key::TransactionKey;
use super::layer::{LayerInner, build_response};
use super::{Error, Result};
use crate::auth::Principal;
use crate::sip::{Request, Response, random_token};
use crate::transport::{Source, Target};

/// Handle to a non-INVITE server transaction, given to the TU.
///
/// Dropping it before a final response was sent answers
/// `500 Server Internal Error`, so a peer never waits for nothing. A handle
/// held for 64*T1 without a final response ends the transaction (the
/// client has given up by then: Timer F).
pub struct ServerTransaction {
    request: Request,
    source: Source,
    principal: Option<Principal>,
    to_tag: String,
    state: Arc<State>,
    layer: Arc<LayerInner>,
}

/// What the transaction table keeps of a non-INVITE server transaction.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) key: TransactionKey,
    pub(crate) target: Target,
    progress: Mutex<Progress>,
}

#[derive(Debug, Default)]
struct Progress {
    /// The last response sent, replayed for retransmissions.
    last: Option<Bytes>,
    /// A final response went out (Completed).
    completed: bool,
    /// Timer J fired or the TU gave up: nothing more is sent.
    terminated: bool,
}

impl State {
    /// The response to replay for a retransmitted request, if any.
    pub(crate) fn last_response(&self) -> Option<Bytes> {
        self.progress.lock().ok()?.last.clone()
    }

    /// Ends the transaction unless a final response was sent (the 64*T1
    /// safety net); true when it did.
    pub(crate) fn give_up(&self) -> bool {
        match self.progress.lock() {
            Ok(mut p) if !p.completed && !p.terminated => {
                p.terminated = true;
                true
            }
            _ => false,
        }
    }
}

impl std::fmt::Debug for ServerTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTransaction")
            .field("method", &self.request.method)
            .field("source", &self.source)
            .field("key", &self.state.key)
            .finish_non_exhaustive()
    }
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

    /// Who it speaks for, as the front door decided (`None` on a layer
    /// without a front door).
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// A response to the request carrying this transaction's To tag and
    /// our Server header.
    pub fn response(&self, code: u16, reason: &str) -> Response {
        build_response(
            &self.request,
            code,
            reason,
            &self.to_tag,
            &self.layer.user_agent,
        )
    }

    /// Send a response (provisional or final). Sending after the final
    /// response is an error.
    pub fn respond(&self, response: Response) -> Result<()> {
        let is_final = response.code >= 200;
        let bytes = response.to_bytes();
        {
            let mut p = self.state.progress.lock().map_err(|_| Error::Terminated)?;
            if p.completed || p.terminated {
                return Err(Error::Terminated);
            }
            p.last = Some(bytes.clone());
            p.completed = is_final;
        }
        self.layer.send_soon(&self.state.target, bytes);
        if is_final {
            self.layer.server_completed(&self.state);
        }
        Ok(())
    }
}

impl ServerTransaction {
    /// Send a final response and end the transaction at once, keeping
    /// nothing for retransmissions: for answers a retransmitted request may
    /// just as well get afresh. A digest challenge is one: a retransmission
    /// gets a new challenge with a new nonce, which is as good, and the
    /// client's transaction discards a second final response (RFC 3261
    /// §17.1.2.2, Completed state). Registrars commonly send challenges
    /// statelessly; here it halves what a REGISTER flood keeps for Timer J.
    pub fn respond_statelessly(&self, response: Response) -> Result<()> {
        if response.code < 200 {
            return self.respond(response);
        }
        let bytes = response.to_bytes();
        {
            let mut p = self.state.progress.lock().map_err(|_| Error::Terminated)?;
            if p.completed || p.terminated {
                return Err(Error::Terminated);
            }
            p.completed = true;
            p.terminated = true;
        }
        self.layer.send_soon(&self.state.target, bytes);
        self.layer.server_forget(&self.state);
        Ok(())
    }
}

impl Drop for ServerTransaction {
    fn drop(&mut self) {
        let open = self
            .state
            .progress
            .lock()
            .map(|p| !p.completed && !p.terminated)
            .unwrap_or(false);
        if open {
            let _ = self.respond(self.response(500, "Server Internal Error (no response)"));
        }
    }
}

/// Create the transaction for `request` (already entered in the table by
/// the caller under `state.key`).
pub(crate) fn new_state(key: TransactionKey, target: Target) -> Arc<State> {
    Arc::new(State {
        key,
        target,
        progress: Mutex::new(Progress::default()),
    })
}

pub(crate) fn start(
    layer: Arc<LayerInner>,
    state: Arc<State>,
    request: Request,
    source: Source,
    principal: Option<Principal>,
) -> ServerTransaction {
    layer.server_started(&state);
    ServerTransaction {
        request,
        source,
        principal,
        to_tag: random_token(10),
        state,
        layer,
    }
}
