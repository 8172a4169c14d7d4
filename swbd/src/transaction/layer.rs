//! The transaction layer: message intake, routing to transactions, and
//! creation of client transactions.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use crate::sip::Name;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::client::{self, ClientTransaction};
use super::client_inv::{self, ClientInviteTransaction};
use super::key::TransactionKey;
use super::server::{self, ServerTransaction};
use super::server_inv::{self, ServerInviteTransaction};
use super::table::{ClientEntry, Entered, Resend, ServerEntry, TransactionTable};
use super::timers::Timers;
use super::{Error, Result};
use crate::auth::Principal;
use crate::metrics::sip::Direction::Received;
use crate::sip::message::HeaderAccess;
use crate::sip::response::make_response;
use crate::sip::{Method, Request, Response, SipMessage, ViaHeader};
use crate::transport::{self, SipCounters, Source, Target, Transport, Transports};

/// A request that starts something new, for the TU.
#[derive(Debug)]
pub enum IncomingRequest {
    /// A non-INVITE request (REGISTER, OPTIONS, BYE, ...) with its server
    /// transaction.
    Request(ServerTransaction),
    /// An INVITE with its server transaction (100 Trying already sent).
    Invite(ServerInviteTransaction),
    /// An ACK no transaction claimed (e.g. for a 2xx the TU sent outside a
    /// transaction); for the dialog layer.
    Ack {
        /// The ACK.
        request: Request,
        /// Where it came from.
        source: Source,
    },
}

/// What the front door decided about a request that would start a new
/// server transaction.
#[derive(Debug)]
pub enum Screening {
    /// Let it in: create the transaction, carrying `principal`.
    Pass(Option<Principal>),
    /// Answer once, statelessly: no table entry, no task, no `100 Trying`,
    /// no retransmission (a retransmitted request is screened again).
    Answer(Response),
    /// Drop it unanswered (a source outside `acl.allow`, a flood).
    Drop,
}

/// The stateless front door (RFC 3261 §8.2 checks, ACLs, rate limits,
/// digest auth): asked about every request that matches no transaction
/// before anything is kept for it, the way Kamailio's `sl` module answers.
pub trait FrontDoor: Send + Sync {
    /// Whether `source` may send anything at all (every message, requests
    /// and responses, is asked; answer fast).
    fn admits(&self, source: &Source) -> bool;
    /// Decide about a new request (never an ACK).
    fn screen(&self, request: &Request, source: &Source) -> Screening;
}

/// What the network feeds a server transaction.
#[derive(Debug)]
pub(crate) enum NetInput {
    /// A retransmission of the request.
    Retransmission,
    /// An ACK (for the INVITE transaction; non-2xx or 2xx).
    Ack(Box<Request>),
    /// A CANCEL matched this INVITE (already answered 200).
    Cancel(Box<Request>),
    /// A PRACK whose `RAck` names this INVITE (RFC 3262), with its own
    /// server transaction for the INVITE's task to answer.
    Prack(Box<ServerTransaction>),
}

/// Cheap-clone handle to the transaction layer.
#[derive(Clone)]
pub struct TransactionLayer {
    pub(crate) inner: Arc<LayerInner>,
}

impl std::fmt::Debug for TransactionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionLayer").finish_non_exhaustive()
    }
}

/// Tables are std Mutexes: each access is a short insert / lookup /
/// remove, never held across an await.
pub(crate) struct LayerInner {
    pub(crate) transports: Transports,
    pub(crate) timers: Timers,
    pub(crate) counters: Arc<SipCounters>,
    pub(crate) user_agent: String,
    /// Every transaction table and timer (the one owner of that state).
    pub(crate) table: Arc<TransactionTable>,
    incoming: mpsc::UnboundedSender<IncomingRequest>,
    /// When set, new requests go to this function on the receiving task
    /// instead of the `incoming` channel (no hand-off, no wake-up).
    handler: std::sync::OnceLock<RequestHandler>,
    /// When set, screens every message before anything is kept for it.
    front_door: std::sync::OnceLock<Arc<dyn FrontDoor>>,
    /// INVITE server transactions in Proceeding (no final response yet):
    /// the calls in setup, for overload control.
    pub(crate) invites_proceeding: Arc<AtomicUsize>,
}

/// A TU entry point that never blocks (see [`TransactionLayer::set_handler`]).
pub type RequestHandler = Arc<dyn Fn(IncomingRequest) + Send + Sync>;

impl TransactionLayer {
    /// A layer over `transports`; new requests come out of the returned
    /// receiver. Call [`Transports::start`] with [`TransactionLayer::receiver`]
    /// afterwards.
    pub fn new(
        transports: Transports,
        timers: Timers,
        user_agent: String,
    ) -> (Self, mpsc::UnboundedReceiver<IncomingRequest>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = transports.counters().clone();
        let inner = Arc::new(LayerInner {
            transports,
            timers,
            counters,
            user_agent,
            table: TransactionTable::start(),
            incoming: tx,
            handler: std::sync::OnceLock::new(),
            front_door: std::sync::OnceLock::new(),
            invites_proceeding: Arc::default(),
        });
        (Self { inner }, rx)
    }

    /// Hand new requests to `handler`, called on the task that received
    /// them, instead of the channel returned by [`TransactionLayer::new`].
    /// `handler` must never block or wait: it runs in the receive path.
    /// Only the first call takes effect.
    pub fn set_handler(&self, handler: RequestHandler) {
        let _ = self.inner.handler.set(handler);
    }

    /// Screen new requests with `door` before any transaction exists for
    /// them. Only the first call takes effect.
    pub fn set_front_door(&self, door: Arc<dyn FrontDoor>) {
        let _ = self.inner.front_door.set(door);
    }

    /// The receiver to start the transports with.
    pub fn receiver(&self) -> Arc<dyn transport::Receiver> {
        Arc::new(self.clone())
    }

    /// Timer settings.
    pub fn timers(&self) -> Timers {
        self.inner.timers
    }

    /// Transports.
    pub fn transports(&self) -> &Transports {
        &self.inner.transports
    }

    /// What the transaction tables hold, with an estimate of the bytes
    /// finished transactions keep for their RFC 3261 windows.
    pub fn retained(&self) -> super::table::Retained {
        self.inner.table.retained()
    }

    /// Number of live transactions (server, client).
    pub fn live_transactions(&self) -> (usize, usize) {
        self.inner.table.live()
    }

    /// The live count of INVITE server transactions that have sent no
    /// final response yet (calls in setup, ringing included).
    pub fn invites_proceeding(&self) -> Arc<AtomicUsize> {
        self.inner.invites_proceeding.clone()
    }

    /// Start a non-INVITE client transaction: adds our Via (new branch,
    /// `rport`) and Max-Forwards when missing, then sends.
    pub async fn send_request(
        &self,
        request: Request,
        target: Target,
    ) -> Result<ClientTransaction> {
        if matches!(request.method, Method::Invite | Method::Ack) {
            return Err(Error::InvalidRequest(
                "use send_invite / send_ack for INVITE and ACK".into(),
            ));
        }
        let (request, target) = self.prepare(request, target)?;
        Ok(client::start(self.inner.clone(), request, target))
    }

    /// Start an INVITE client transaction.
    pub async fn send_invite(
        &self,
        request: Request,
        target: Target,
    ) -> Result<ClientInviteTransaction> {
        if request.method != Method::Invite {
            return Err(Error::InvalidRequest("not an INVITE".into()));
        }
        let (request, target) = self.prepare(request, target)?;
        Ok(client_inv::start(self.inner.clone(), request, target))
    }

    /// Send an ACK for a 2xx (RFC 3261 §13.2.2.4): outside any transaction,
    /// with a new branch.
    pub async fn send_ack(&self, request: Request, target: Target) -> Result<()> {
        if request.method != Method::Ack {
            return Err(Error::InvalidRequest("not an ACK".into()));
        }
        let (request, target) = self.prepare(request, target)?;
        self.inner.send(&target, request.to_bytes()).await
    }

    /// Add our Via and Max-Forwards; switch oversize UDP requests to TCP
    /// (RFC 3261 §18.1.1: above 1300 bytes, when a TCP listener exists).
    fn prepare(&self, mut request: Request, mut target: Target) -> Result<(Request, Target)> {
        if !request.headers.contains(&Name::MAX_FORWARDS) {
            request.headers.insert(Name::MAX_FORWARDS, "70");
        }
        let estimate = request.printed_len() + 120;
        if target.transport == Transport::Udp
            && estimate > 1300
            && self
                .inner
                .transports
                .local_for(Transport::Tcp, target.remote)
                .is_some()
        {
            target.transport = Transport::Tcp;
            target.local = None;
        }
        let local = self
            .inner
            .transports
            .local_for(target.transport, target.remote)
            .ok_or_else(|| Error::Transport(format!("no {} listener", target.transport)))?;
        push_via(&mut request, via_value(target.transport, local));
        Ok((request, target))
    }
}

/// `SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK...;rport`: our Via on a
/// request we send, printed without the formatting machinery but for the
/// address (one per request a call sends).
fn via_value(transport: Transport, local: std::net::SocketAddr) -> String {
    use std::fmt::Write as _;
    let mut via = String::with_capacity(96);
    via.push_str(match transport {
        Transport::Udp => "SIP/2.0/UDP ",
        Transport::Tcp => "SIP/2.0/TCP ",
    });
    let _ = write!(via, "{local}");
    via.push_str(";branch=");
    via.push_str(crate::sip::BRANCH_MAGIC_COOKIE);
    crate::sip::push_random_token(&mut via, 20);
    via.push_str(";rport");
    via
}

/// Put `via` on top of the request's Via list.
pub(crate) fn push_via(request: &mut Request, via: String) {
    let old = request.headers.remove(&Name::VIA).unwrap_or_default();
    request.headers.insert_front(Name::VIA, via);
    for v in old {
        request.headers.insert(Name::VIA, v);
    }
}

impl LayerInner {
    pub(crate) async fn send(&self, target: &Target, data: Bytes) -> Result<()> {
        self.transports.send(target, data).await.map_err(|e| {
            SipCounters::inc(&self.counters.send_errors);
            tracing::debug!(error = %e, "send failed");
            Error::Transport(e.to_string())
        })
    }

    pub(crate) fn register_client(
        &self,
        key: TransactionKey,
        tx: mpsc::UnboundedSender<Box<Response>>,
    ) {
        self.table.register_client(key, tx);
    }

    pub(crate) fn remove_client(&self, key: &TransactionKey) {
        self.table.remove_client(key);
    }

    /// A client transaction's task ends at its final response: until
    /// `wait` (Timer K or D) its key absorbs retransmitted finals, and a
    /// non-2xx INVITE's `ack` answers each of them.
    pub(crate) fn client_completed(
        &self,
        key: &TransactionKey,
        ack: Option<(Target, Bytes)>,
        wait: std::time::Duration,
    ) {
        let ack = ack.map(|(target, bytes)| Resend { target, bytes });
        self.table.client_completed(key, ack, wait);
    }

    pub(crate) fn remove_server(&self, key: &TransactionKey) {
        self.table.remove_server(key);
    }

    pub(crate) fn set_accepted(
        &self,
        id: (String, u32),
        tx: Option<mpsc::UnboundedSender<NetInput>>,
    ) {
        self.table.set_accepted(id, tx);
    }

    /// A non-INVITE transaction answered statelessly: its entry goes now.
    pub(crate) fn server_forget(&self, state: &Arc<server::State>) {
        self.table.remove_server_state(state);
    }

    /// A non-INVITE transaction was created: arm its 64*T1 safety net.
    pub(crate) fn server_started(&self, state: &Arc<server::State>) {
        self.table
            .server_started(state, Instant::now() + self.timers.t1x64());
    }

    /// A non-INVITE transaction sent its final response: Completed until
    /// Timer J (zero over TCP).
    pub(crate) fn server_completed(&self, state: &Arc<server::State>) {
        let reliable = state.target.transport == Transport::Tcp;
        self.table
            .server_completed(state, self.timers.timer_j(reliable));
    }

    /// Send now when the transport can take it without waiting, else on a
    /// task; errors are counted and logged, as for [`LayerInner::send`].
    pub(crate) fn send_soon(self: &Arc<Self>, target: &Target, data: Bytes) {
        match self.transports.send_now(target, data) {
            Ok(None) => {}
            Ok(Some(data)) => {
                let inner = self.clone();
                let target = *target;
                tokio::spawn(async move {
                    let _ = inner.send(&target, data).await;
                });
            }
            Err(e) => {
                SipCounters::inc(&self.counters.send_errors);
                tracing::debug!(error = %e, "send failed");
            }
        }
    }

    fn deliver(&self, request: IncomingRequest) {
        match self.handler.get() {
            Some(handler) => handler(request),
            None => {
                let _ = self.incoming.send(request);
            }
        }
    }

    fn answer_stateless(self: &Arc<Self>, response: Response, target: Target) {
        self.send_soon(&target, response.to_bytes());
    }

    fn on_request(self: &Arc<Self>, mut request: Request, source: Source) {
        let Ok(mut via) = request.top_via() else {
            return;
        };
        // RFC 3261 §18.2.1 / RFC 3581: note where it really came from.
        if via.stamp_source(source.remote) {
            replace_top_via(&mut request, &via);
        }
        let target = response_target(&via, &source);
        let Some(key) = TransactionKey::for_server(&request, &via) else {
            return;
        };

        if request.method == Method::Ack {
            if let Some(tx) = self.table.invite_server(&key) {
                let _ = tx.send(NetInput::Ack(Box::new(request)));
                return;
            }
            let accepted = match (request.call_id(), request.cseq()) {
                (Ok(cid), Ok(cseq)) => self.table.accepted(cid, cseq.number),
                _ => None,
            };
            match accepted {
                Some(tx) if tx.send(NetInput::Ack(Box::new(request.clone()))).is_ok() => {}
                _ => {
                    self.deliver(IncomingRequest::Ack { request, source });
                }
            }
            return;
        }

        // A retransmission goes to its transaction; a new request is
        // screened first, before the table keeps anything for it.
        if let Some(entry) = self.table.server(&key) {
            self.retransmission(entry);
            return;
        }
        // A PRACK for an INVITE that sent a reliable provisional goes to
        // that INVITE's transaction (like a CANCEL, it needs no screening:
        // it names a transaction in progress); any other PRACK is screened
        // like every in-dialog request (481 for an unknown dialog).
        if request.method == Method::Prack
            && let Some(invite) = self.prack_route(&request)
        {
            self.prack(invite, key, target, request, source);
            return;
        }
        let principal = match self.front_door.get() {
            None => None,
            Some(door) => match door.screen(&request, &source) {
                Screening::Pass(p) => p,
                Screening::Answer(mut resp) => {
                    resp.headers.insert(Name::SERVER, self.user_agent.clone());
                    SipCounters::inc(&self.counters.stateless_replies);
                    self.answer_stateless(resp, target);
                    return;
                }
                Screening::Drop => return,
            },
        };

        let invite = request.method == Method::Invite;
        let Some(found) = self
            .table
            .enter_server(&key, invite, || server::new_state(key.clone(), target))
        else {
            return;
        };

        match found {
            Entered::Existing(entry) => self.retransmission(entry),
            Entered::NewInvite(net_rx) => {
                let handle = server_inv::start(
                    self.clone(),
                    key,
                    request,
                    source,
                    target,
                    net_rx,
                    principal,
                );
                // Without a TU the dropped handle answers 500.
                self.deliver(IncomingRequest::Invite(handle));
            }
            Entered::New(state) if request.method == Method::Cancel => {
                let invite = self.table.invite_server(&key.with_method(Method::Invite));
                let st = server::start(self.clone(), state, request.clone(), source, principal);
                let resp = match invite {
                    Some(inv) if inv.send(NetInput::Cancel(Box::new(request))).is_ok() => {
                        st.response(200, "OK")
                    }
                    _ => st.response(481, "Call/Transaction Does Not Exist"),
                };
                let _ = st.respond(resp);
            }
            Entered::New(state) => {
                let handle = server::start(self.clone(), state, request, source, principal);
                self.deliver(IncomingRequest::Request(handle));
            }
        }
    }

    /// The INVITE transaction a PRACK's `RAck` names, if it is waiting
    /// for PRACKs.
    fn prack_route(&self, request: &Request) -> Option<mpsc::UnboundedSender<NetInput>> {
        let rack = super::reliable::RAck::of(request)?;
        self.table.reliable(request.call_id().ok()?, rack.cseq)
    }

    /// Give a new PRACK its transaction and hand it to `invite`'s task,
    /// which answers it (`481` here when that task is gone).
    fn prack(
        self: &Arc<Self>,
        invite: mpsc::UnboundedSender<NetInput>,
        key: TransactionKey,
        target: Target,
        request: Request,
        source: Source,
    ) {
        let Some(found) = self
            .table
            .enter_server(&key, false, || server::new_state(key.clone(), target))
        else {
            return;
        };
        match found {
            Entered::New(state) => {
                let st = server::start(self.clone(), state, request, source, None);
                if let Err(mpsc::error::SendError(NetInput::Prack(st))) =
                    invite.send(NetInput::Prack(Box::new(st)))
                {
                    let _ = st.respond(st.response(481, "Call/Transaction Does Not Exist"));
                }
            }
            Entered::Existing(entry) => self.retransmission(entry),
            Entered::NewInvite(_) => {}
        }
    }

    fn retransmission(self: &Arc<Self>, entry: ServerEntry) {
        match entry {
            ServerEntry::Invite(tx) => {
                let _ = tx.send(NetInput::Retransmission);
            }
            ServerEntry::NonInvite(state) => {
                if let Some(b) = state.last_response() {
                    self.send_soon(&state.target, b);
                }
            }
            // An INVITE retransmitted after its 2xx was ACKed: absorbed.
            ServerEntry::Absorbed => {}
        }
    }

    fn on_response(self: &Arc<Self>, response: Response) {
        let entry = TransactionKey::for_response(&response).and_then(|k| self.table.client(&k));
        match entry {
            Some(ClientEntry::Live(tx)) => {
                let _ = tx.send(Box::new(response));
            }
            // RFC 3261 §17.1.1.2: a retransmitted non-2xx final gets the
            // ACK again; everything else in Completed is absorbed.
            Some(ClientEntry::Completed(Some(ack))) if response.code >= 300 => {
                self.send_soon(&ack.target, ack.bytes.clone());
            }
            Some(ClientEntry::Completed(_)) => {}
            None => {
                SipCounters::inc(&self.counters.stray_responses);
                tracing::debug!(code = response.code, "response matches no transaction");
            }
        }
    }
}

/// Where responses of a server transaction go (RFC 3261 §18.2.2): over the
/// same connection for TCP; for UDP to the source IP and the `rport` /
/// sent-by port.
pub(crate) fn response_target(via: &ViaHeader, source: &Source) -> Target {
    match source.transport {
        Transport::Udp => Target::reply_to(source, via.response_address(source.remote)),
        Transport::Tcp => Target::reply_to(source, source.remote),
    }
}

fn replace_top_via(request: &mut Request, via: &ViaHeader) {
    let Some(first) = request.headers.first_mut(&Name::VIA) else {
        return;
    };
    // The first Via value may be a comma list: replace its first item.
    let item = crate::sip::header::first_item(first);
    // `item` is a subslice of `first`: where it ends there.
    let end = (item.as_ptr() as usize).saturating_sub(first.as_ptr() as usize) + item.len();
    let rest = first.get(end..).map(str::trim_start).unwrap_or_default();
    let mut rebuilt = via.to_value();
    if !rest.is_empty() {
        // `rest` starts at the comma (leading spaces of the value are trimmed).
        rebuilt.push_str(rest);
    }
    *first = rebuilt.into();
}

impl transport::Receiver for TransactionLayer {
    fn receive(&self, data: Bytes, source: Source) {
        let inner = &self.inner;
        if let Some(door) = inner.front_door.get()
            && !door.admits(&source)
        {
            SipCounters::inc(&inner.counters.acl_dropped);
            return;
        }
        match SipMessage::parse(&data, source.transport == Transport::Udp) {
            Ok(SipMessage::Request(r)) => {
                inner.counters.messages.request(Received, &r.method);
                inner.on_request(r, source)
            }
            Ok(SipMessage::Response(r)) => {
                if let Ok(cseq) = r.cseq() {
                    inner
                        .counters
                        .messages
                        .response(Received, &cseq.method, r.code);
                }
                inner.on_response(r)
            }
            Err(e) => {
                SipCounters::inc(&inner.counters.sip_parse_errors);
                // Never answer an ACK. A Via we cannot read (RFC 4475
                // badvers, badinv01) is answered to the packet's source.
                let answer = if data.starts_with(b"ACK ") {
                    None
                } else {
                    e.to_response()
                };
                match answer {
                    Some(mut resp) => {
                        tracing::debug!(remote = %source.remote, reason = %e, "bad request answered");
                        resp.headers.insert(Name::SERVER, inner.user_agent.clone());
                        let target = match resp.top_via() {
                            Ok(via) => response_target(&via, &source),
                            Err(_) => Target::reply_to(&source, source.remote),
                        };
                        inner.answer_stateless(resp, target);
                    }
                    None => {
                        SipCounters::inc(&inner.counters.sip_dropped_unanswerable);
                        tracing::debug!(remote = %source.remote, reason = %e, "unparseable message dropped");
                    }
                }
            }
        }
    }
}

/// Build a response to `request` with `to_tag` (used by server handles).
pub(crate) fn build_response(
    request: &Request,
    code: u16,
    reason: &str,
    to_tag: &str,
    user_agent: &str,
) -> Response {
    let mut r = make_response(request, code, reason, Some(to_tag));
    r.headers.insert(Name::SERVER, user_agent.to_string());
    r
}
