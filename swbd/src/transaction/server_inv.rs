//! INVITE server transaction (RFC 3261 §17.2.1, Figure 7, as updated by
//! RFC 6026 §7.1: the Accepted state and Timer L), with reliable
//! provisional responses and their PRACKs while Proceeding (RFC 3262 §3,
//! [`super::reliable`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::key::TransactionKey;
use super::layer::{LayerInner, NetInput, build_response};
use super::reliable::{self, PrackOutcome, RAck, ReliableProvisionals, TimerAction};
use super::server::ServerTransaction;
use super::{Error, Result};
use crate::auth::Principal;
use crate::sip::message::HeaderAccess;
use crate::sip::{Name, Request, Response, random_token};
use crate::transport::{Source, Target, Transport};

/// What the INVITE server transaction tells its TU.
#[derive(Debug, Clone)]
pub enum ServerInviteEvent {
    /// A CANCEL for this INVITE arrived (it was answered `200 OK`). The TU
    /// should send `487 Request Terminated` (and cancel its B-leg).
    Cancelled(Box<Request>),
    /// The ACK for our 2xx arrived (2xx retransmission stops).
    Ack(Box<Request>),
    /// No ACK came for our final response within 64*T1 (Timer H for
    /// non-2xx, Timer L for 2xx): for a 2xx the TU should send BYE.
    NoAck,
    /// A reliable provisional went unacknowledged for 64*T1 (RFC 3262
    /// §3): the transaction answered the INVITE `500` itself (a 2xx the TU
    /// sent meanwhile was held for that PRACK and is not sent). The TU
    /// should give up the call.
    PrackTimeout,
}

/// Handle to an INVITE server transaction, given to the TU.
///
/// `100 Trying` has already been sent. Dropping the handle before a final
/// response answers `500`; after a CANCEL with the handle gone, `487`.
#[derive(Debug)]
pub struct ServerInviteTransaction {
    responder: InviteResponder,
    principal: Option<Principal>,
    events: mpsc::UnboundedReceiver<ServerInviteEvent>,
}

impl ServerInviteTransaction {
    /// The INVITE (top Via stamped with `received`/`rport`).
    pub fn request(&self) -> &Request {
        self.responder.request()
    }

    /// Where it came from.
    pub fn source(&self) -> &Source {
        self.responder.source()
    }

    /// Our To tag (the dialog's local tag).
    pub fn to_tag(&self) -> &str {
        self.responder.to_tag()
    }

    /// Who it speaks for, as the front door decided (`None` on a layer
    /// without a front door).
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// Take the principal out (the B2BUA keeps it with the call).
    pub fn take_principal(&mut self) -> Option<Principal> {
        self.principal.take()
    }

    /// A response carrying this transaction's To tag and our Server header.
    pub fn response(&self, code: u16, reason: &str) -> Response {
        self.responder.response(code, reason)
    }

    /// Send a response: provisionals (the latest is resent on INVITE
    /// retransmissions), then one final; after a 2xx, more 2xx may follow
    /// (RFC 6026). A provisional marked `Require: 100rel` is sent reliably
    /// (see [`InviteResponder::respond_reliably`]).
    pub fn respond(&self, response: Response) -> Result<()> {
        self.responder.respond(response)
    }

    /// See [`InviteResponder::respond_reliably`].
    pub fn respond_reliably(&self, response: Response) -> Result<()> {
        self.responder.respond_reliably(response)
    }

    /// The next event (CANCEL, ACK, missing ACK); `None` once the
    /// transaction has ended.
    pub async fn next_event(&mut self) -> Option<ServerInviteEvent> {
        self.events.recv().await
    }

    /// Split into a responder and the event receiver, so one task can
    /// watch for CANCEL while another answers. The transaction sees the TU
    /// as gone (and answers `500`) only when every responder clone is dropped.
    pub fn split(self) -> (InviteResponder, mpsc::UnboundedReceiver<ServerInviteEvent>) {
        (self.responder, self.events)
    }
}

/// The answering half of a [`ServerInviteTransaction`] (see
/// [`ServerInviteTransaction::split`]).
#[derive(Debug, Clone)]
pub struct InviteResponder {
    /// Shared with the transaction's task (which builds its own 100, 487
    /// and 500 from it), so a live call holds one copy of the INVITE.
    request: Arc<Request>,
    source: Source,
    to_tag: String,
    user_agent: String,
    tu: mpsc::UnboundedSender<Box<Response>>,
}

impl InviteResponder {
    /// The INVITE.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The INVITE, shared (a reference count, not a copy).
    pub fn shared_request(&self) -> Arc<Request> {
        self.request.clone()
    }

    /// Where it came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Our To tag.
    pub fn to_tag(&self) -> &str {
        &self.to_tag
    }

    /// A response carrying our To tag and Server header.
    pub fn response(&self, code: u16, reason: &str) -> Response {
        build_response(&self.request, code, reason, &self.to_tag, &self.user_agent)
    }

    /// Send a response (see [`ServerInviteTransaction::respond`]).
    pub fn respond(&self, response: Response) -> Result<()> {
        self.tu
            .send(Box::new(response))
            .map_err(|_| Error::Terminated)
    }

    /// Send a 101-199 provisional reliably (RFC 3262 §3): marked
    /// `Require: 100rel`, numbered with `RSeq` and retransmitted by the
    /// transaction until its PRACK (see [`super::reliable`]). Only for an
    /// INVITE that supports or requires `100rel`
    /// ([`reliable::Reliability::of`]); anything else is sent as given.
    pub fn respond_reliably(&self, mut response: Response) -> Result<()> {
        if (101..=199).contains(&response.code)
            && !crate::sip::capabilities::lists_option_tag(&response, &Name::REQUIRE, reliable::TAG)
        {
            response.headers.insert(Name::REQUIRE, reliable::TAG);
        }
        self.respond(response)
    }
}

pub(crate) fn start(
    layer: Arc<LayerInner>,
    key: TransactionKey,
    request: Request,
    source: Source,
    target: Target,
    net: mpsc::UnboundedReceiver<NetInput>,
    principal: Option<Principal>,
) -> ServerInviteTransaction {
    let (tu_tx, tu_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let id = match (request.call_id(), request.cseq()) {
        (Ok(c), Ok(s)) => Some((c.to_string(), s.number)),
        _ => None,
    };
    let request = Arc::new(request);
    let to_tag = random_token(10);
    let handle = ServerInviteTransaction {
        responder: InviteResponder {
            request: request.clone(),
            source,
            to_tag: to_tag.clone(),
            user_agent: layer.user_agent.clone(),
            tu: tu_tx,
        },
        principal,
        events: ev_rx,
    };
    let proceeding = Proceeding::enter(&layer.invites_proceeding);
    let task = Task {
        request,
        to_tag,
        id,
        layer,
        key,
        target,
        events: ev_tx,
    };
    tokio::spawn(task.run(net, tu_rx, proceeding));
    handle
}

/// Counts one INVITE server transaction in Proceeding for as long as it
/// lives (entered when the transaction is created, so a count read right
/// after includes it).
struct Proceeding(Arc<AtomicUsize>);

impl Proceeding {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Proceeding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Task {
    layer: Arc<LayerInner>,
    key: TransactionKey,
    target: Target,
    events: mpsc::UnboundedSender<ServerInviteEvent>,
    /// The INVITE (shared with the TU's responder); our 100, 487 and 500
    /// are built from it when needed, not kept prebuilt for Timer L.
    request: Arc<Request>,
    to_tag: String,
    id: Option<(String, u32)>,
}

enum Next {
    Accepted(Bytes, mpsc::UnboundedReceiver<NetInput>),
    Completed(Bytes),
    Done,
}

impl Task {
    fn response(&self, code: u16, reason: &str, to_tag: &str) -> Bytes {
        build_response(&self.request, code, reason, to_tag, &self.layer.user_agent).to_bytes()
    }

    async fn send(&self, b: &Bytes) {
        let _ = self.layer.send(&self.target, b.clone()).await;
    }

    fn reliable(&self) -> bool {
        self.target.transport == Transport::Tcp
    }

    async fn run(
        self,
        mut net: mpsc::UnboundedReceiver<NetInput>,
        mut tu: mpsc::UnboundedReceiver<Box<Response>>,
        proceeding: Proceeding,
    ) {
        let mut rel = ReliableProvisionals::new(self.layer.timers);
        let next = self.proceeding(&mut net, &mut tu, &mut rel).await;
        if rel.used()
            && let Some(id) = &self.id
        {
            self.layer.table.set_reliable(id.clone(), None);
        }
        drop(rel);
        drop(proceeding);
        let acked = match next {
            Next::Accepted(b, acks) => self.accepted(b, acks, &mut net, &mut tu).await,
            Next::Completed(b) => {
                self.completed(b, &mut net).await;
                false
            }
            Next::Done => false,
        };
        if acked {
            // What is left of Timer L needs only the key (RFC 6026 §7.1:
            // absorb retransmitted INVITEs): the task, its INVITE and
            // channels go now.
            self.layer
                .table
                .absorb(&self.key, self.layer.timers.t1x64());
        } else {
            self.layer.remove_server(&self.key);
        }
    }

    /// Proceeding: 100 Trying out, latest provisional resent on
    /// retransmissions, until the TU's final response. Reliable
    /// provisionals are numbered, retransmitted and PRACKed here (`rel`).
    async fn proceeding(
        &self,
        net: &mut mpsc::UnboundedReceiver<NetInput>,
        tu: &mut mpsc::UnboundedReceiver<Box<Response>>,
        rel: &mut ReliableProvisionals,
    ) -> Next {
        let mut provisional = self.response(100, "Trying", "");
        self.send(&provisional).await;
        let mut tu_gone = false;
        loop {
            let rel_timer = async {
                match rel.deadline() {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                r = tu.recv(), if !tu_gone => match r {
                    None => tu_gone = true,
                    Some(resp) if resp.is_provisional() => {
                        if reliable::is_marked(&resp) {
                            self.route_pracks(rel);
                            if let Some(bytes) = rel.provisional(*resp, Instant::now()) {
                                self.send(&bytes).await;
                                provisional = bytes;
                            }
                        } else {
                            let bytes = resp.to_bytes();
                            self.send(&bytes).await;
                            provisional = bytes;
                        }
                    }
                    Some(resp) => {
                        if let Some(resp) = rel.final_response(*resp) {
                            return self.send_final(resp).await;
                        }
                    }
                },
                _ = rel_timer => match rel.on_timer(Instant::now()) {
                    TimerAction::Retransmit(bytes) => self.send(&bytes).await,
                    TimerAction::GiveUp => {
                        tracing::info!("no PRACK for a reliable provisional: INVITE rejected");
                        let _ = self.events.send(ServerInviteEvent::PrackTimeout);
                        let b = self.response(
                            500,
                            "Server Internal Error (no PRACK for a reliable provisional)",
                            &self.to_tag,
                        );
                        self.send(&b).await;
                        return Next::Completed(b);
                    }
                    TimerAction::Idle => {}
                },
                n = net.recv() => match n {
                    Some(NetInput::Retransmission) => self.send(&provisional).await,
                    Some(NetInput::Cancel(c)) => {
                        if self.events.send(ServerInviteEvent::Cancelled(c)).is_err() || tu_gone {
                            let b = self.response(487, "Request Terminated", &self.to_tag);
                            self.send(&b).await;
                            return Next::Completed(b);
                        }
                    }
                    Some(NetInput::Prack(prack)) => {
                        if let Some(released) = self.prack(rel, *prack, &mut provisional).await {
                            return self.send_final(released).await;
                        }
                    }
                    Some(NetInput::Ack(_)) => {}
                    None => return Next::Done,
                },
            }
            if tu_gone && !rel.holds_final() {
                // The TU dropped its handle without a final response.
                let b = self.response(500, "Server Internal Error (no response)", &self.to_tag);
                self.send(&b).await;
                return Next::Completed(b);
            }
        }
    }

    /// The first reliable provisional: PRACKs naming this INVITE are
    /// routed here from now until Proceeding ends.
    fn route_pracks(&self, rel: &ReliableProvisionals) {
        if rel.used() {
            return;
        }
        // The table holds this task's input; PRACKs use the same channel.
        if let (Some(id), Some(net)) = (&self.id, self.layer.table.invite_server(&self.key)) {
            self.layer.table.set_reliable(id.clone(), Some(net));
        }
    }

    /// Answer a PRACK (RFC 3262 §3): `200` when it acknowledges the
    /// outstanding reliable provisional (its To tag is ours and its `RAck`
    /// names it), `481` otherwise. Sends the next held provisional, and
    /// returns a 2xx that was waiting for this PRACK.
    async fn prack(
        &self,
        rel: &mut ReliableProvisionals,
        prack: ServerTransaction,
        provisional: &mut Bytes,
    ) -> Option<Response> {
        let ours = prack
            .request()
            .header_to()
            .ok()
            .is_some_and(|to| to.tag() == Some(self.to_tag.as_str()));
        let invite_cseq = self.id.as_ref().map(|(_, n)| *n).unwrap_or_default();
        let outcome = match RAck::of(prack.request()) {
            Some(rack) if ours => rel.prack(&rack, invite_cseq, Instant::now()),
            _ => PrackOutcome::NoMatch,
        };
        match outcome {
            PrackOutcome::NoMatch => {
                let _ = prack.respond(prack.response(481, "Call/Transaction Does Not Exist"));
                None
            }
            PrackOutcome::Matched { next, released } => {
                let _ = prack.respond(prack.response(200, "OK"));
                if let Some(bytes) = next {
                    self.send(&bytes).await;
                    *provisional = bytes;
                }
                released.map(|r| *r)
            }
        }
    }

    /// Send the final response and move on: Accepted for a 2xx (the ACK's
    /// route registered before the 2xx leaves: an ACK arriving right after
    /// it must find the transaction, or the 2xx is retransmitted after it
    /// was ACKed), Completed otherwise.
    async fn send_final(&self, resp: Response) -> Next {
        let bytes = resp.to_bytes();
        if resp.is_success() {
            let acks = self.register_accepted();
            self.send(&bytes).await;
            return Next::Accepted(bytes, acks);
        }
        self.send(&bytes).await;
        Next::Completed(bytes)
    }

    /// Accepted (RFC 6026 §7.1): INVITE retransmissions absorbed, further
    /// 2xx from the TU sent, the 2xx retransmitted (T1 doubling up to T2,
    /// RFC 3261 §13.3.1.4) until the ACK; Timer L ends it. Returns whether
    /// the ACK came: the rest of Timer L is then a bare key in the table
    /// ([`super::table::ServerEntry::Absorbed`]), not this task.
    /// Enter the Accepted state's ACK route (by Call-ID and CSeq: the ACK
    /// for a 2xx has a branch of its own) and return its receiver.
    fn register_accepted(&self) -> mpsc::UnboundedReceiver<NetInput> {
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        if let Some(id) = &self.id {
            self.layer.set_accepted(id.clone(), Some(ack_tx));
        }
        ack_rx
    }

    async fn accepted(
        &self,
        mut last_2xx: Bytes,
        mut ack_rx: mpsc::UnboundedReceiver<NetInput>,
        net: &mut mpsc::UnboundedReceiver<NetInput>,
        tu: &mut mpsc::UnboundedReceiver<Box<Response>>,
    ) -> bool {
        let t = self.layer.timers;
        let timer_l = tokio::time::sleep(t.t1x64());
        tokio::pin!(timer_l);
        let mut interval = t.t1;
        let mut retransmit_at = Some(Instant::now() + interval);
        let mut acked = false;
        let mut tu_open = true;
        loop {
            let retransmit = async {
                match retransmit_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut timer_l => {
                    if !acked {
                        let _ = self.events.send(ServerInviteEvent::NoAck);
                    }
                    break;
                }
                _ = retransmit => {
                    self.send(&last_2xx).await;
                    interval = (interval * 2).min(t.t2);
                    retransmit_at = Some(Instant::now() + interval);
                }
                r = tu.recv(), if tu_open => match r {
                    Some(resp) if resp.is_success() => {
                        last_2xx = resp.to_bytes();
                        self.send(&last_2xx).await;
                    }
                    Some(_) => {}
                    None => tu_open = false,
                },
                a = ack_rx.recv() => {
                    if let Some(NetInput::Ack(req)) = a {
                        acked = true;
                        let _ = self.events.send(ServerInviteEvent::Ack(req));
                        break;
                    }
                }
                n = net.recv() => match n {
                    Some(NetInput::Ack(req)) => {
                        acked = true;
                        let _ = self.events.send(ServerInviteEvent::Ack(req));
                        break;
                    }
                    Some(NetInput::Prack(p)) => late_prack(*p),
                    Some(_) => {}
                    None => break,
                },
            }
        }
        drop(last_2xx);
        if let Some(id) = &self.id {
            self.layer.set_accepted(id.clone(), None);
        }
        acked
    }

    /// Completed: final resent on retransmissions and on Timer G (UDP),
    /// Timer H gives up waiting for the ACK; the ACK moves to Confirmed,
    /// which absorbs ACKs until Timer I.
    async fn completed(&self, last: Bytes, net: &mut mpsc::UnboundedReceiver<NetInput>) {
        let t = self.layer.timers;
        let timer_h = tokio::time::sleep(t.t1x64());
        tokio::pin!(timer_h);
        let mut interval = t.t1;
        let mut timer_g = if self.reliable() {
            None
        } else {
            Some(Instant::now() + interval)
        };
        loop {
            let g = async {
                match timer_g {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut timer_h => {
                    let _ = self.events.send(ServerInviteEvent::NoAck);
                    return;
                }
                _ = g => {
                    self.send(&last).await;
                    interval = (interval * 2).min(t.t2);
                    timer_g = Some(Instant::now() + interval);
                }
                n = net.recv() => match n {
                    Some(NetInput::Retransmission) => self.send(&last).await,
                    Some(NetInput::Ack(_)) => break,
                    Some(NetInput::Cancel(_)) => {}
                    Some(NetInput::Prack(p)) => late_prack(*p),
                    None => return,
                },
            }
        }
        // Confirmed: absorb ACK retransmissions until Timer I.
        let timer_i = tokio::time::sleep(t.t4_unless_reliable(self.reliable()));
        tokio::pin!(timer_i);
        loop {
            tokio::select! {
                _ = &mut timer_i => return,
                n = net.recv() => match n {
                    Some(NetInput::Prack(p)) => late_prack(*p),
                    Some(_) => {}
                    None => return,
                },
            }
        }
    }
}

/// A PRACK that reached the transaction after its final response: nothing
/// is unacknowledged any more (RFC 3262 §3: `481`).
fn late_prack(prack: ServerTransaction) {
    let _ = prack.respond(prack.response(481, "Call/Transaction Does Not Exist"));
}
