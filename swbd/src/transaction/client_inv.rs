//! INVITE client transaction (RFC 3261 §17.1.1, Figure 5, as updated by
//! RFC 6026 §7.2: the Accepted state and Timer M), plus CANCEL (§9.1).
//! Completed (Timer D, after a non-2xx) is a key and the ACK in the
//! transaction table, not a task.

use std::sync::Arc;

use crate::sip::Name;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::client;
use super::key::TransactionKey;
use super::layer::LayerInner;
use super::{Error, Result};
use crate::sip::message::HeaderAccess;
use crate::sip::{Method, Request, Response};
use crate::transport::{Target, Transport};

/// Handle to an INVITE client transaction. Responses (provisionals, the
/// final, and 2xx retransmissions / forked 2xx during Timer M) come out in
/// arrival order. The ACK for a non-2xx is sent by the transaction; the ACK
/// for a 2xx is the TU's ([`super::TransactionLayer::send_ack`]).
///
/// Dropping the handle before a final response CANCELs the INVITE.
#[derive(Debug)]
pub struct ClientInviteTransaction {
    request: Request,
    key: TransactionKey,
    events: mpsc::UnboundedReceiver<Result<Box<Response>>>,
    commands: mpsc::UnboundedSender<Command>,
}

#[derive(Debug)]
enum Command {
    Cancel,
}

impl ClientInviteTransaction {
    /// The INVITE as sent (with our Via).
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Its key.
    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// Next response; `Err(Timeout)` after Timer B (or 64*T1 after a CANCEL
    /// without a final response), `Err(Terminated)` when it has ended.
    pub async fn next_response(&mut self) -> Result<Response> {
        self.events
            .recv()
            .await
            .unwrap_or(Err(Error::Terminated))
            .map(|r| *r)
    }

    /// Send CANCEL with the INVITE's branch (RFC 3261 §9.1): right away if a
    /// provisional response has arrived, else as soon as one does. The
    /// INVITE's final response (normally 487) still comes out of
    /// [`Self::next_response`].
    pub fn cancel(&self) {
        let _ = self.commands.send(Command::Cancel);
    }
}

/// What a TU keeps of an answered INVITE client transaction (RFC 6026
/// §7.2, Accepted): the 2xx retransmissions and forked 2xx until Timer M,
/// without a copy of the INVITE (a live call holds this for 32 s).
#[derive(Debug)]
pub struct AcceptedInvite {
    events: mpsc::UnboundedReceiver<Result<Box<Response>>>,
}

impl AcceptedInvite {
    /// Next 2xx; `Err(Terminated)` once Timer M has fired.
    pub async fn next_response(&mut self) -> Result<Response> {
        self.events
            .recv()
            .await
            .unwrap_or(Err(Error::Terminated))
            .map(|r| *r)
    }
}

impl ClientInviteTransaction {
    /// Keep only the response stream, once a 2xx has arrived (a CANCEL
    /// makes no sense any more, and the INVITE is not needed).
    pub fn into_accepted(self) -> AcceptedInvite {
        AcceptedInvite {
            events: self.events,
        }
    }
}

/// The CANCEL for `invite` (RFC 3261 §9.1): same Request-URI, Call-ID,
/// From, To, CSeq number, Route, and the INVITE's top Via only.
pub fn build_cancel(invite: &Request) -> Request {
    build_same_branch(invite, Method::Cancel, None)
}

/// The ACK for a non-2xx final response (RFC 3261 §17.1.1.3).
pub fn build_ack(invite: &Request, response: &Response) -> Request {
    build_same_branch(invite, Method::Ack, response.raw(&Name::TO))
}

fn build_same_branch(invite: &Request, method: Method, to: Option<&str>) -> Request {
    let mut r = Request::new(method.clone(), invite.uri.clone());
    if let Some(via) = invite.raw(&Name::VIA) {
        let top = crate::sip::header::split_list(via)
            .first()
            .copied()
            .unwrap_or(via)
            .to_string();
        r.headers.insert(Name::VIA, top);
    }
    r.headers.insert(Name::MAX_FORWARDS, "70");
    for name in [Name::FROM, Name::CALL_ID] {
        for v in invite.headers.get_raw(&name) {
            r.headers.insert(name.clone(), v.clone());
        }
    }
    match to {
        Some(to) => r.headers.insert(Name::TO, to.to_string()),
        None => {
            for v in invite.headers.get_raw(&Name::TO) {
                r.headers.insert(Name::TO, v.clone());
            }
        }
    }
    let number = invite.cseq().map(|c| c.number).unwrap_or(1);
    r.headers.insert(Name::CSEQ, format!("{number} {method}"));
    for v in invite.headers.get_raw(&Name::ROUTE) {
        r.headers.insert(Name::ROUTE, v.clone());
    }
    r
}

pub(crate) fn start(
    layer: Arc<LayerInner>,
    request: Request,
    target: Target,
) -> ClientInviteTransaction {
    let branch = request
        .top_via()
        .ok()
        .and_then(|v| v.branch().map(str::to_string))
        .unwrap_or_default();
    let key = TransactionKey::for_client(&branch, &Method::Invite);
    let (resp_tx, resp_rx) = mpsc::unbounded_channel();
    layer.register_client(key.clone(), resp_tx);
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    tokio::spawn(run(
        layer,
        key.clone(),
        request.clone(),
        target,
        resp_rx,
        ev_tx,
        cmd_rx,
    ));
    ClientInviteTransaction {
        request,
        key,
        events: ev_rx,
        commands: cmd_tx,
    }
}

async fn run(
    layer: Arc<LayerInner>,
    key: TransactionKey,
    invite: Request,
    target: Target,
    mut responses: mpsc::UnboundedReceiver<Box<Response>>,
    events: mpsc::UnboundedSender<Result<Box<Response>>>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let reliable = target.transport == Transport::Tcp;
    let t = layer.timers;
    let bytes = invite.to_bytes();
    if let Err(e) = layer.send(&target, bytes.clone()).await {
        let _ = events.send(Err(e));
        layer.remove_client(&key);
        return;
    }
    // Calling / Proceeding.
    let mut deadline = Instant::now() + t.t1x64(); // Timer B
    let mut interval = t.t1;
    let mut timer_a = (!reliable).then(|| Instant::now() + interval);
    let mut provisional_seen = false;
    let mut cancel_wanted = false;
    let mut cancel_sent: Option<client::ClientTransaction> = None;
    let mut commands_open = true;
    let final_response = loop {
        let a = async {
            match timer_a {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let timeout_armed = !provisional_seen || cancel_sent.is_some();
        tokio::select! {
            _ = tokio::time::sleep_until(deadline), if timeout_armed => {
                let _ = events.send(Err(Error::Timeout));
                layer.remove_client(&key);
                return;
            }
            _ = a => {
                let _ = layer.send(&target, bytes.clone()).await;
                // Timer A doubles without a cap (RFC 3261 §17.1.1.2).
                interval *= 2;
                timer_a = Some(Instant::now() + interval);
            }
            c = commands.recv(), if commands_open => {
                match c {
                    Some(Command::Cancel) => cancel_wanted = true,
                    // Handle dropped before a final response: CANCEL.
                    None => { commands_open = false; cancel_wanted = true; }
                }
            }
            r = responses.recv() => {
                let Some(resp) = r else { return };
                if resp.is_provisional() {
                    provisional_seen = true;
                    timer_a = None;
                    let _ = events.send(Ok(resp));
                } else {
                    break resp;
                }
            }
        }
        if cancel_wanted && provisional_seen && cancel_sent.is_none() {
            let cancel = build_cancel(&invite);
            cancel_sent = Some(client::start(layer.clone(), cancel, target));
            // RFC 3261 §9.1: give up 64*T1 after the CANCEL.
            deadline = Instant::now() + t.t1x64();
        }
    };
    drop(cancel_sent);

    if final_response.is_success() {
        // Accepted (RFC 6026 §7.2): pass 2xx (retransmissions, forks) up
        // until Timer M, or until the TU stops listening. Nothing here resends the INVITE: free it now, not
        // 32 s later (it is the bulk of what a live call's B-leg retains).
        drop(invite);
        drop(bytes);
        let _ = events.send(Ok(final_response));
        let timer_m = tokio::time::sleep(t.t1x64());
        tokio::pin!(timer_m);
        loop {
            tokio::select! {
                _ = &mut timer_m => break,
                // The TU dropped its `AcceptedInvite` (the call ended, its
                // BYE sent): nobody would ACK another 2xx, so the rest of
                // Timer M keeps nothing (issue #14, memory per call).
                _ = events.closed() => break,
                r = responses.recv() => match r {
                    Some(resp) if resp.is_success() => { let _ = events.send(Ok(resp)); }
                    Some(_) => {}
                    None => break,
                },
            }
        }
    } else {
        // Completed: ACK it; until Timer D the table's entry ACKs
        // retransmissions of the final response, without this task.
        let ack = build_ack(&invite, &final_response).to_bytes();
        drop(invite);
        drop(bytes);
        let _ = layer.send(&target, ack.clone()).await;
        let _ = events.send(Ok(final_response));
        layer.client_completed(&key, Some((target, ack)), t.timer_d(reliable));
        return;
    }
    layer.remove_client(&key);
}
