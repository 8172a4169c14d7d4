//! One call: the A-leg, the dialplan run, the B-legs, the bridge, teardown.
//!
//! The call task owns everything about the call. While the dialplan runs,
//! the task also watches the A-leg (CANCEL, BYE), operator commands and
//! media loss; any of them cancels the executor's token, and the task then
//! cleans up what the interrupted action left (ringing B-legs are
//! CANCELled, media sessions destroyed). Every log line carries the call id.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::sip::Name;
use futures::FutureExt;
use switchboard_proto::media::v1 as media;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::identity::{self, CallerIdentity};
use super::record::{CallRecord, CallState, LegRecord, LegState};
use super::table::{CallCommand, CallHandle, CallTable, DialogInput, DialogSender, LegInput};
use crate::config::Config;
use crate::dialog::{Dialog, DialogId};
use crate::dialplan::{
    CallControl, CallInfo, CallOutcome, ControlError, DialOutcome, DialplanStore,
    Target as DialTarget, execute,
};
use crate::events::CallChange;
use crate::media::{MediaPool, NodeLease};
use crate::sip::message::HeaderAccess;
use crate::sip::{Method, Request, Response, Uri, random_token};
use crate::transaction::{
    AcceptedInvite, ClientInviteTransaction, InviteResponder, ServerInviteEvent,
    ServerInviteTransaction, TransactionLayer,
};
use crate::transport::{Target, Transport};

/// A place to reach a user: the registered contact and the flow to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Contact URI (Request-URI of the INVITE).
    pub uri: String,
    /// Where to send (the registration's real source, NAT-aware).
    pub target: Target,
}

/// Finds where registered users are (the registrar implements it).
pub trait Locator: Send + Sync + fmt::Debug {
    /// Current contacts of `user`, best q-value first.
    fn lookup(&self, user: &str) -> Vec<Contact>;
}

impl Locator for crate::registrar::Registrar {
    fn lookup(&self, user: &str) -> Vec<Contact> {
        let mut bindings = crate::registrar::Registrar::lookup(self, user);
        bindings.sort_by(|a, b| b.q.total_cmp(&a.q));
        bindings
            .into_iter()
            .map(|b| Contact {
                uri: b.contact.to_string(),
                target: b.target(),
            })
            .collect()
    }
}

/// What every call task needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct CallDeps {
    /// SIP transactions.
    pub layer: TransactionLayer,
    /// Config (gateways, user agent, domains).
    pub config: Arc<Config>,
    /// Media nodes.
    pub media: MediaPool,
    /// Dialplan in force.
    pub dialplan: DialplanStore,
    /// Call table.
    pub calls: CallTable,
    /// Registered users.
    pub locator: Arc<dyn Locator>,
}

/// Why a call task stopped its dialplan early.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Interrupt {
    /// A CANCELled its INVITE.
    Cancelled,
    /// A sent BYE (after the dialplan answered).
    CallerBye,
    /// Operator hangup.
    Hangup(String),
    /// Media died.
    MediaLost(String),
}

/// Run one call to its end. `invite` has had `100 Trying` sent.
pub async fn run(deps: CallDeps, invite: ServerInviteTransaction) {
    let id = random_token(10).to_ascii_lowercase();
    let span = tracing::info_span!("call", id = %id);
    run_inner(deps, invite, id).instrument(span).await;
}

async fn run_inner(deps: CallDeps, mut invite: ServerInviteTransaction, id: String) {
    let principal = invite.take_principal();
    let (a, mut a_events) = invite.split();
    let request = a.request().clone();
    let source = *a.source();
    let from = request.header_from().ok();
    // The caller is who authenticated, not what the From says (issue #13).
    let identity = CallerIdentity::of(&request, principal.as_ref());
    let caller = identity.user.clone();
    let destination = request.uri.user().unwrap_or_default();
    let domain = request.uri.host().unwrap_or_default();
    let a_call_id = request.call_id().unwrap_or_default().to_string();

    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel();
    let handle = deps.calls.insert(
        CallRecord::new(id.clone(), caller.clone(), destination.clone()),
        cmd_tx,
    );
    let plan = deps.dialplan.current();
    let info = CallInfo {
        destination: destination.clone(),
        caller: caller.clone(),
        domain,
        from_domain: from.as_ref().and_then(|f| f.uri.host()).unwrap_or_default(),
        source_ip: Some(source.remote.ip()),
    };
    let route_id = plan
        .route(&info)
        .map(|r| r.route.id.clone())
        .unwrap_or_default();
    handle.update(None, |r| {
        r.dialplan_version = plan.version().hash.clone();
        r.route_id = route_id.clone();
        // A and (usually) one B-leg: no room for four.
        r.legs.reserve_exact(2);
        r.legs.push(LegRecord {
            is_a: true,
            sip_call_id: a_call_id.clone(),
            remote_uri: from.as_ref().map(|f| f.uri.to_string()).unwrap_or_default(),
            remote_address: format!("{} {}", source.transport, source.remote),
            state: LegState::Trying,
            media_session_id: String::new(),
            codec: String::new(),
            target: String::new(),
        });
        r.log_message(true, true, summary_req(&request), &request.to_bytes());
    });
    tracing::info!(%caller, %destination, route = %route_id, from = %source.remote, "new call");

    let (dlg_tx, mut dlg_rx) = mpsc::unbounded_channel();
    let mut ctl = Ctl {
        deps: deps.clone(),
        a,
        a_offer: String::from_utf8_lossy(&request.body).into_owned(),
        a_max_forwards: request.max_forwards().ok().flatten().unwrap_or(70),
        identity,
        a_warning: None,
        handle,
        dlg_tx,
        lease: None,
        unreachable_nodes: Vec::new(),
        no_media_node: None,
        a_session: None,
        a_dialog: None,
        answered: false,
        final_sent: false,
        sessions: Vec::new(),
        b_legs: Vec::new(),
        winner: None,
        early_bridge: None,
        playing: false,
        ringing_sent: false,
    };
    // The INVITE and its From are in `ctl.a` now; this task lives as long
    // as the call, so keep no second copy.
    drop(request);
    drop(from);
    let token = CancellationToken::new();
    let mut interrupt: Option<Interrupt> = None;
    let execution = {
        // Boxed: the dialplan's future (dial, media RPCs, transactions) is
        // by far the largest state of this task, and it is over once the
        // call is bridged. Inline it would stay reserved for the whole call.
        let mut exec = Box::pin(execute(&plan, &info, &mut ctl, &token));
        // The A transaction ends (its events close) once its 2xx is ACKed:
        // stop polling it then, or the loop would spin on `None`.
        let mut a_events_open = true;
        loop {
            tokio::select! {
                res = &mut exec => break res,
                ev = a_events.recv(), if interrupt.is_none() && a_events_open => match ev {
                    Some(ServerInviteEvent::Cancelled(_)) => {
                        tracing::info!("caller cancelled");
                        interrupt = Some(Interrupt::Cancelled);
                        token.cancel();
                    }
                    Some(ServerInviteEvent::NoAck) => {
                        interrupt = Some(Interrupt::Hangup("no ACK from caller".into()));
                        token.cancel();
                    }
                    Some(ServerInviteEvent::Ack(_)) => {}
                    None => a_events_open = false,
                },
                Some(msg) = dlg_rx.recv() => {
                    let (dialog, input) = *msg;
                    if answer_in_dialog(&dialog, input) == InDialog::Bye && interrupt.is_none() {
                        tracing::info!("caller hung up during the dialplan");
                        interrupt = Some(Interrupt::CallerBye);
                        token.cancel();
                    }
                }
                Some(cmd) = cmd_rx.recv(), if interrupt.is_none() => {
                    interrupt = Some(match *cmd {
                        CallCommand::Hangup(r) => Interrupt::Hangup(r),
                        CallCommand::MediaLost(r) => Interrupt::MediaLost(r),
                    });
                    token.cancel();
                }
            }
        }
    };
    // Keep only the outcome: the variables and the rest would otherwise
    // stay allocated for as long as the call is up.
    let outcome = {
        let e = execution;
        e.outcome
    };
    tracing::debug!(?outcome, "dialplan finished");

    let cause = match (&interrupt, &outcome) {
        (Some(Interrupt::Cancelled), _) => {
            ctl.final_to_a(487, "Request Terminated");
            "caller cancelled".to_string()
        }
        (Some(Interrupt::CallerBye), _) => "caller hung up".to_string(),
        (Some(Interrupt::Hangup(r)), _) | (Some(Interrupt::MediaLost(r)), _) => {
            if ctl.answered {
                Box::pin(ctl.bye_a()).await;
            } else {
                ctl.final_to_a(480, "Temporarily Unavailable");
            }
            r.clone()
        }
        (None, CallOutcome::Bridged(target)) => {
            tracing::info!(%target, "bridged");
            // Boxed like the dialplan: only the state the call is in is allocated.
            Box::pin(ctl.bridged(&mut a_events, &mut dlg_rx, &mut cmd_rx)).await
        }
        (None, CallOutcome::NoRoute { code, reason }) => format!("no route: {code} {reason}"),
        (None, CallOutcome::HungUp { code, reason }) => format!("dialplan hangup: {code} {reason}"),
        (None, CallOutcome::DialFailed(o)) => format!("dial failed: {o:?}"),
        (None, CallOutcome::Failed(e)) => format!("failed: {e}"),
        (None, other) => {
            // Exhausted / Cancelled without an interrupt: make sure A is answered for.
            if !ctl.final_sent {
                ctl.final_to_a(480, "Temporarily Unavailable");
            } else if ctl.answered {
                Box::pin(ctl.bye_a()).await;
            }
            format!("{other:?}")
        }
    };
    Box::pin(ctl.cleanup()).await;
    tracing::info!(%cause, "call ended");
    ctl.handle.update(None, |r| {
        r.end_cause = cause;
        r.state = CallState::Ended;
    });
}

#[derive(Debug, PartialEq, Eq)]
enum InDialog {
    Bye,
    Other,
}

/// Answer an in-dialog request the way every call state does: BYE 200,
/// OPTIONS 200, re-INVITE 488, UPDATE/INFO/others 501. ACKs are absorbed.
fn answer_in_dialog(_dialog: &DialogId, input: LegInput) -> InDialog {
    match input {
        LegInput::Request(txn) => {
            let method = txn.request().method.clone();
            let (code, reason) = match method {
                Method::Bye => (200, "OK"),
                Method::Options => (200, "OK"),
                _ => (501, "Not Implemented"),
            };
            let _ = txn.respond(txn.response(code, reason));
            if method == Method::Bye {
                InDialog::Bye
            } else {
                InDialog::Other
            }
        }
        LegInput::Invite(txn) => {
            let _ = txn.respond(txn.response(488, "Not Acceptable Here (re-INVITE not supported)"));
            InDialog::Other
        }
        LegInput::Ack(_) => InDialog::Other,
    }
}

/// One B-leg attempt.
#[derive(Debug)]
struct BLeg {
    /// Dialplan target it came from.
    target: DialTarget,
    /// INVITE transaction (None once final).
    txn: Option<ClientInviteTransaction>,
    /// The INVITE as sent.
    request: Request,
    /// Where it went.
    flow: Target,
    /// Our Contact URI on that flow.
    contact: String,
    /// Media session on the node.
    session_id: String,
    /// Other addresses to try on 5xx / timeout (gateway failover).
    fallbacks: Vec<SocketAddr>,
    /// Final status when it failed.
    failed: Option<u16>,
    /// Credentials were already sent once (a second challenge fails).
    auth_tried: bool,
    /// Early media bridged from this leg.
    early: bool,
}

/// The answered B-leg.
#[derive(Debug)]
struct Winner {
    dialog: Dialog,
    /// 2xx retransmissions until Timer M (to re-ACK them).
    txn: Option<AcceptedInvite>,
    ack: Request,
    session_id: String,
}

/// The call's [`CallControl`] implementation and everything it set up.
struct Ctl {
    deps: CallDeps,
    a: InviteResponder,
    a_offer: String,
    a_max_forwards: u32,
    /// Who the caller is (from the principal), rendered into B-legs.
    identity: CallerIdentity,
    /// A `Warning` for A's final response (why its SDP was refused).
    a_warning: Option<String>,
    handle: CallHandle,
    dlg_tx: DialogSender,
    lease: Option<NodeLease>,
    /// Nodes this call's first media command could not reach: not picked
    /// again for it (each node is tried once).
    unreachable_nodes: Vec<String>,
    /// No media node could take the call (the last pick failed): A gets
    /// 503 with this `Retry-After`, whatever code the dialplan hangs up
    /// with (README: "no media node 503").
    no_media_node: Option<u32>,
    /// (session id, our SDP answer to A).
    a_session: Option<(String, String)>,
    a_dialog: Option<Dialog>,
    answered: bool,
    final_sent: bool,
    /// Every media session created (for cleanup).
    sessions: Vec<String>,
    b_legs: Vec<BLeg>,
    winner: Option<Winner>,
    early_bridge: Option<String>,
    playing: bool,
    ringing_sent: bool,
}

fn status_to_control(st: &tonic::Status, what: &str) -> ControlError {
    let msg = st.message().replace(['\r', '\n'], " ");
    match st.code() {
        tonic::Code::InvalidArgument => {
            ControlError::new(488, format!("Not Acceptable Here: {msg}"))
        }
        tonic::Code::Unavailable | tonic::Code::ResourceExhausted => {
            ControlError::new(503, format!("Service Unavailable: {what}: {msg}"))
        }
        _ => ControlError::new(500, format!("Server Internal Error: {what}: {msg}")),
    }
}

/// A `Warning` header value (RFC 3261 §20.43, code 399 "miscellaneous")
/// carrying `text` as a quoted string.
fn warning_value(text: &str) -> String {
    let text = text.trim_start_matches("Not Acceptable Here: ");
    let text = text.trim_start_matches("peer offer: ");
    format!("399 swbd {}", crate::sip::header::quoted_display(text))
}

fn summary_req(r: &Request) -> String {
    let sdp = if r.body.is_empty() { "" } else { " (SDP)" };
    format!("{} {}{sdp}", r.method, r.uri)
}

fn summary_resp(r: &Response) -> String {
    let sdp = if r.body.is_empty() { "" } else { " (SDP)" };
    let method = r
        .cseq()
        .map(|c| format!(" ({})", c.method))
        .unwrap_or_default();
    format!("{} {}{method}{sdp}", r.code, r.reason)
}

fn with_sdp(mut resp: Response, sdp: &str) -> Response {
    resp.headers.insert(Name::CONTENT_TYPE, "application/sdp");
    resp.body = bytes::Bytes::from(sdp.to_string());
    resp
}

fn contact_uri(local: SocketAddr, transport: Transport) -> String {
    let host = match local {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    match transport {
        Transport::Udp => format!("sip:swbd@{host}:{}", local.port()),
        Transport::Tcp => format!("sip:swbd@{host}:{};transport=tcp", local.port()),
    }
}

impl Ctl {
    fn media_client(&mut self) -> Result<crate::media::MediaClient, ControlError> {
        if self.lease.is_none() {
            let lease = match self.deps.media.pick_excluding(&self.unreachable_nodes) {
                Ok(lease) => lease,
                Err(e) => {
                    self.no_media_node = e.retry_after_secs();
                    return Err(ControlError::new(
                        e.status_code(),
                        format!("Service Unavailable: {e}"),
                    ));
                }
            };
            self.no_media_node = None;
            let node = lease.name().to_string();
            tracing::debug!(%node, "media node picked");
            self.handle
                .update(Some(CallChange::Updated), |r| r.media_node = node);
            self.lease = Some(lease);
        }
        self.lease
            .as_ref()
            .and_then(NodeLease::client)
            .ok_or_else(|| ControlError::new(503, "Service Unavailable: media node gone"))
    }

    fn node_name(&self) -> String {
        self.lease
            .as_ref()
            .map(|l| l.name().to_string())
            .unwrap_or_default()
    }

    async fn create_session(
        &mut self,
        leg: &str,
        negotiation: media::create_session_request::Negotiation,
    ) -> Result<media::CreateSessionResponse, ControlError> {
        self.create_session_with_peer(leg, negotiation, None).await
    }

    /// Create a session; with `peer`, the node first creates the session
    /// answering the peer's offer (A's), in the same round trip, and
    /// refuses both when that offer is unusable.
    ///
    /// The call's first session on a node that cannot be reached
    /// ([`crate::media::node_unreachable`]: connect error, connection or
    /// stream lost, node refusing with UNAVAILABLE) is created
    /// on another node instead, before the caller sees anything; each node
    /// is tried once (issue #14). A call that already has sessions stays
    /// where they are, and a refused offer (INVALID_ARGUMENT, 488) is not
    /// retried.
    async fn create_session_with_peer(
        &mut self,
        leg: &str,
        negotiation: media::create_session_request::Negotiation,
        peer: Option<media::PeerOffer>,
    ) -> Result<media::CreateSessionResponse, ControlError> {
        let request = media::CreateSessionRequest {
            call_id: self.handle.id().to_string(),
            leg: leg.to_string(),
            negotiation: Some(negotiation),
            peer,
        };
        let resp = loop {
            let mut client = self.media_client()?;
            let st = match client.create_session(request.clone()).await {
                Ok(resp) => break resp.into_inner(),
                Err(st) => st,
            };
            if !crate::media::node_unreachable(&st) || !self.sessions.is_empty() {
                return Err(status_to_control(&st, "media session"));
            }
            let Some(lease) = self.lease.take() else {
                return Err(status_to_control(&st, "media session"));
            };
            let node = lease.name().to_string();
            tracing::warn!(%node, error = %st.message(), "media node unreachable: the call tries another");
            lease.report_unreachable(st.message());
            self.unreachable_nodes.push(node);
            self.handle
                .update(Some(CallChange::Updated), |r| r.media_node.clear());
        };
        self.sessions.push(resp.session_id.clone());
        let node = self.node_name();
        self.handle.add_session(&node, &resp.session_id);
        Ok(resp)
    }

    async fn destroy_session(&mut self, session_id: &str) {
        self.sessions.retain(|s| s != session_id);
        let node = self.node_name();
        self.handle.remove_session(&node, session_id);
        if let Ok(mut client) = self.media_client() {
            let _ = client
                .destroy_session(media::DestroySessionRequest {
                    session_id: session_id.to_string(),
                })
                .await;
        }
    }

    /// Destroy several sessions in one round trip (a call's teardown); a
    /// node without `DestroySessions` gets them one by one.
    async fn destroy_sessions(&mut self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        self.sessions.retain(|s| !ids.contains(s));
        let node = self.node_name();
        for id in &ids {
            self.handle.remove_session(&node, id);
        }
        let Ok(mut client) = self.media_client() else {
            return;
        };
        let sequential = if self.lease.as_ref().is_some_and(NodeLease::batched) {
            let batch = client
                .destroy_sessions(media::DestroySessionsRequest {
                    session_ids: ids.clone(),
                })
                .await;
            match batch {
                Err(st) if st.code() == tonic::Code::Unimplemented => {
                    if let Some(lease) = &self.lease {
                        lease.mark_unbatched();
                    }
                    true
                }
                _ => false,
            }
        } else {
            true
        };
        if sequential {
            for session_id in ids {
                let _ = client
                    .destroy_session(media::DestroySessionRequest { session_id })
                    .await;
            }
        }
    }

    /// B-leg `b_session` answered with `answer`: apply it, answer A's offer
    /// (or reuse A's session) and bridge the two, in one round trip
    /// (`ConnectLegs`). Returns B's negotiated media.
    async fn connect_legs(
        &mut self,
        b_session: &str,
        answer: &[u8],
    ) -> Result<Option<media::NegotiatedMedia>, tonic::Status> {
        let mut client = self
            .media_client()
            .map_err(|e| tonic::Status::unavailable(e.reason))?;
        let peer = match &self.a_session {
            Some((sid, _)) => media::connect_legs_request::Peer::PeerSessionId(sid.clone()),
            None => media::connect_legs_request::Peer::PeerOffer(media::PeerOffer {
                call_id: self.handle.id().to_string(),
                leg: "a".into(),
                remote_offer_sdp: self.a_offer.clone(),
            }),
        };
        let resp = client
            .connect_legs(media::ConnectLegsRequest {
                session_id: b_session.to_string(),
                remote_answer_sdp: String::from_utf8_lossy(answer).into_owned(),
                peer: Some(peer),
            })
            .await?
            .into_inner();
        if self.a_session.is_none() {
            let sid = resp.peer_session_id;
            self.sessions.push(sid.clone());
            let node = self.node_name();
            self.handle.add_session(&node, &sid);
            let codec = resp
                .peer_media
                .as_ref()
                .map(|m| codec_name(m.codec))
                .unwrap_or_default();
            self.a_session = Some((sid.clone(), resp.peer_local_sdp));
            // Answered: the offer is not needed again for this call.
            self.a_offer = String::new();
            self.handle.update(None, |r| {
                if let Some(l) = r.legs.first_mut() {
                    l.media_session_id = sid;
                    l.codec = codec;
                }
            });
        }
        Ok(resp.media)
    }

    /// A's media session (answering A's offer), created on first need.
    async fn ensure_a_session(&mut self) -> Result<(String, String), ControlError> {
        if let Some(s) = &self.a_session {
            return Ok(s.clone());
        }
        if self.a_offer.trim().is_empty() {
            return Err(ControlError::new(
                488,
                "Not Acceptable Here: INVITE without an SDP offer is not supported",
            ));
        }
        let offer = self.a_offer.clone();
        let resp = self
            .create_session(
                "a",
                media::create_session_request::Negotiation::RemoteOfferSdp(offer),
            )
            .await?;
        Ok(self.adopt_a_session(resp.session_id, resp.local_sdp, resp.media))
    }

    /// A's session exists (created alone or with a B-leg's): remember it.
    fn adopt_a_session(
        &mut self,
        sid: String,
        local_sdp: String,
        negotiated: Option<media::NegotiatedMedia>,
    ) -> (String, String) {
        if !self.sessions.contains(&sid) {
            self.sessions.push(sid.clone());
            let node = self.node_name();
            self.handle.add_session(&node, &sid);
        }
        let codec = negotiated
            .as_ref()
            .map(|m| codec_name(m.codec))
            .unwrap_or_default();
        let session = (sid.clone(), local_sdp);
        self.handle.update(None, |r| {
            if let Some(l) = r.legs.first_mut() {
                l.media_session_id = sid;
                l.codec = codec;
            }
        });
        self.a_session = Some(session.clone());
        self.a_offer = String::new();
        session
    }

    fn send_a(&mut self, resp: Response) {
        let summary = summary_resp(&resp);
        let bytes = resp.to_bytes();
        self.handle
            .update(None, |r| r.log_message(true, false, summary, &bytes));
        if resp.code >= 200 {
            self.final_sent = true;
        }
        let _ = self.a.respond(resp);
    }

    /// A final error response to A (once; nothing after a 2xx).
    fn final_to_a(&mut self, code: u16, reason: &str) {
        if self.final_sent {
            return;
        }
        let reason = reason.replace(['\r', '\n'], " ");
        let mut resp = self.a.response(code, &reason);
        if let Some(warning) = self.a_warning.take() {
            resp.headers.insert(Name::WARNING, warning);
        }
        if code == 503
            && let Some(secs) = self.no_media_node
        {
            resp.headers.insert(Name::RETRY_AFTER, secs.to_string());
        }
        self.send_a(resp);
        self.handle.update(None, |r| {
            r.end_status = code;
            if let Some(l) = r.legs.first_mut() {
                l.state = LegState::Terminated;
            }
        });
    }

    fn local_contact(&self, flow: &Target) -> String {
        let local = flow.local.or_else(|| {
            self.deps
                .layer
                .transports()
                .local_for(flow.transport, flow.remote)
        });
        local
            .map(|l| contact_uri(l, flow.transport))
            .unwrap_or_else(|| "sip:swbd@127.0.0.1".into())
    }

    /// Send 200 OK with our SDP to A and set up A's dialog.
    async fn answer_a(&mut self) -> Result<(), ControlError> {
        if self.answered {
            return Ok(());
        }
        let (_, sdp) = self.ensure_a_session().await?;
        let source = *self.a.source();
        let flow = Target::reply_to(&source, source.remote);
        let contact = self.local_contact(&flow);
        let dialog = Dialog::as_uas(self.a.request(), self.a.to_tag(), contact.clone(), flow)
            .map_err(|e| ControlError::new(e.status_code(), e.to_string()))?;
        self.handle
            .route_dialog(dialog.id.clone(), self.dlg_tx.clone());
        let mut resp = with_sdp(self.a.response(200, "OK"), &sdp);
        resp.headers.insert(Name::CONTACT, format!("<{contact}>"));
        self.send_a(resp);
        self.a_dialog = Some(dialog);
        self.answered = true;
        // Our SDP answer went out with the 200; nothing sends it again
        // (re-INVITEs are answered by the node), so do not keep it.
        if let Some((_, sdp)) = self.a_session.as_mut() {
            *sdp = String::new();
        }
        self.handle.update(Some(CallChange::Answered), |r| {
            r.answered_at = Some(SystemTime::now());
            if r.state == CallState::Routing || r.state == CallState::Ringing {
                r.state = CallState::Answered;
            }
            if let Some(l) = r.legs.first_mut() {
                l.state = LegState::Confirmed;
            }
        });
        Ok(())
    }

    async fn bye(&mut self, to_a: bool) {
        let dialog = if to_a {
            self.a_dialog.as_mut()
        } else {
            self.winner.as_mut().map(|w| &mut w.dialog)
        };
        let Some(dialog) = dialog else { return };
        let mut bye = dialog.request(Method::Bye, None);
        bye.headers
            .insert(Name::USER_AGENT, self.deps.config.sip.user_agent.clone());
        let flow = dialog.target;
        let summary = summary_req(&bye);
        let bytes = bye.to_bytes();
        self.handle
            .update(None, |r| r.log_message(to_a, false, summary, &bytes));
        match self.deps.layer.send_request(bye, flow).await {
            Ok(mut txn) => {
                tokio::spawn(
                    async move {
                        match txn.final_response().await {
                            Ok(r) => tracing::debug!(code = r.code, "BYE answered"),
                            Err(e) => tracing::debug!(error = %e, "BYE unanswered"),
                        }
                    }
                    .in_current_span(),
                );
            }
            Err(e) => tracing::warn!(error = %e, "cannot send BYE"),
        }
        if to_a {
            self.a_dialog = None;
        } else if let Some(w) = self.winner.as_mut() {
            w.txn = None;
        }
    }

    async fn bye_a(&mut self) {
        self.bye(true).await;
    }

    /// After the dialplan bridged the call: relay teardown between legs.
    async fn bridged(
        &mut self,
        a_events: &mut mpsc::UnboundedReceiver<ServerInviteEvent>,
        dlg_rx: &mut mpsc::UnboundedReceiver<DialogInput>,
        cmd_rx: &mut mpsc::UnboundedReceiver<Box<CallCommand>>,
    ) -> String {
        // The call spends its life here: everything awaited below is rare
        // (teardown, re-INVITE) and boxed, so this state stays small.
        let mut a_events_open = true;
        loop {
            let winner_response = async {
                match self.winner.as_mut().and_then(|w| w.txn.as_mut()) {
                    Some(txn) => Some(txn.next_response().await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = a_events.recv(), if a_events_open => match ev {
                    Some(ServerInviteEvent::NoAck) => {
                        Box::pin(self.bye(true)).await;
                        Box::pin(self.bye(false)).await;
                        return "no ACK from caller".into();
                    }
                    Some(_) => {}
                    None => a_events_open = false,
                },
                r = winner_response => match r {
                    Some(Ok(resp)) if resp.is_success() => {
                        // A retransmitted 2xx: the ACK was lost, send it again.
                        if let Some(w) = &self.winner {
                            let _ = Box::pin(self.deps.layer.send_ack(w.ack.clone(), w.dialog.target)).await;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        if let Some(w) = self.winner.as_mut() {
                            w.txn = None;
                        }
                    }
                },
                Some(msg) = dlg_rx.recv() => {
                    let (dialog, input) = *msg;
                    let from_a = self.a_dialog.as_ref().is_some_and(|d| d.id == dialog);
                    let in_dialog = match (&input, from_a) {
                        (LegInput::Request(t), true) => self.a_dialog.as_mut().map(|d| d.accept_incoming(t.request())),
                        (LegInput::Request(t), false) => self.winner.as_mut().map(|w| w.dialog.accept_incoming(t.request())),
                        _ => None,
                    };
                    if let (Some(Err(e)), LegInput::Request(t)) = (&in_dialog, &input) {
                        let _ = t.respond(t.response(e.status_code(), &e.to_string()));
                        continue;
                    }
                    if let LegInput::Request(t) = &input {
                        let summary = summary_req(t.request());
                        let bytes = t.request().to_bytes();
                        self.handle.update(None, |r| r.log_message(from_a, true, summary, &bytes));
                    }
                    if let LegInput::Invite(txn) = input {
                        Box::pin(self.reinvite(from_a, txn)).await;
                        continue;
                    }
                    if answer_in_dialog(&dialog, input) == InDialog::Bye {
                        self.handle.unroute_dialog(&dialog);
                        if from_a {
                            self.a_dialog = None;
                            Box::pin(self.bye(false)).await;
                            return "caller hung up".into();
                        }
                        if let Some(w) = self.winner.as_mut() {
                            w.txn = None;
                        }
                        self.winner_gone();
                        Box::pin(self.bye(true)).await;
                        return "callee hung up".into();
                    }
                }
                Some(cmd) = cmd_rx.recv() => {
                    Box::pin(self.bye(true)).await;
                    Box::pin(self.bye(false)).await;
                    return match *cmd {
                        CallCommand::Hangup(r) => r,
                        CallCommand::MediaLost(r) => r,
                    };
                }
            }
        }
    }

    /// A re-INVITE on a confirmed leg (hold, resume, codec change): the
    /// media node answers the new offer for that leg's session; the other
    /// leg is not involved. No offer, or one the node refuses: `488`, and
    /// the session stays as it was (RFC 3261 §14.2).
    async fn reinvite(&mut self, from_a: bool, txn: ServerInviteTransaction) {
        let request = txn.request().clone();
        let summary = summary_req(&request);
        let bytes = request.to_bytes();
        self.handle
            .update(None, |r| r.log_message(from_a, true, summary, &bytes));
        let checked = if from_a {
            self.a_dialog.as_mut().map(|d| d.accept_incoming(&request))
        } else {
            self.winner
                .as_mut()
                .map(|w| w.dialog.accept_incoming(&request))
        };
        if let Some(Err(e)) = checked {
            let _ = txn.respond(txn.response(e.status_code(), &e.to_string()));
            return;
        }
        let session = if from_a {
            self.a_session.as_ref().map(|s| s.0.clone())
        } else {
            self.winner.as_ref().map(|w| w.session_id.clone())
        };
        let (Some(session), false) = (session, request.body.is_empty()) else {
            let _ =
                txn.respond(txn.response(488, "Not Acceptable Here (re-INVITE without an offer)"));
            return;
        };
        let answer = match self.media_client() {
            Ok(mut client) => client
                .update_session(media::UpdateSessionRequest {
                    session_id: session,
                    remote_sdp: String::from_utf8_lossy(&request.body).into_owned(),
                })
                .await
                .map(|r| r.into_inner().local_sdp)
                .map_err(|st| status_to_control(&st, "re-INVITE")),
            Err(e) => Err(e),
        };
        match answer {
            Ok(sdp) if !sdp.is_empty() => {
                let dialog = if from_a {
                    self.a_dialog.as_mut()
                } else {
                    self.winner.as_mut().map(|w| &mut w.dialog)
                };
                let contact = dialog.map(|d| {
                    d.refresh_target(&request);
                    d.local_contact.clone()
                });
                let mut resp = with_sdp(txn.response(200, "OK"), &sdp);
                if let Some(c) = contact {
                    resp.headers.insert(Name::CONTACT, format!("<{c}>"));
                }
                let summary = summary_resp(&resp);
                let bytes = resp.to_bytes();
                self.handle
                    .update(None, |r| r.log_message(from_a, false, summary, &bytes));
                let _ = txn.respond(resp);
            }
            Ok(_) => {
                let _ = txn.respond(txn.response(488, "Not Acceptable Here (not an offer)"));
            }
            Err(e) => {
                let _ = txn.respond(txn.response(488, &e.reason));
            }
        }
    }

    fn winner_gone(&mut self) {
        if let Some(w) = self.winner.take() {
            // Keep the session id for cleanup; the dialog is over.
            drop(w.dialog);
        }
    }

    /// Tear down whatever is left: CANCEL ringing B-legs (late 2xx get
    /// ACK + BYE), destroy every media session.
    async fn cleanup(&mut self) {
        let layer = self.deps.layer.clone();
        for leg in self.b_legs.drain(..) {
            if let Some(txn) = leg.txn {
                txn.cancel();
                tokio::spawn(reap(layer.clone(), txn, leg.contact, leg.flow).in_current_span());
            }
        }
        if self.a_dialog.is_some() && self.winner.is_some() {
            // Both still up (interrupted elsewhere): end both.
            self.bye(true).await;
            self.bye(false).await;
        }
        let sessions = std::mem::take(&mut self.sessions);
        self.destroy_sessions(sessions).await;
        if let Some(d) = &self.a_dialog {
            self.handle.unroute_dialog(&d.id);
        }
        if let Some(w) = &self.winner {
            self.handle.unroute_dialog(&w.dialog.id);
        }
        self.lease = None;
    }

    /// Start one B-leg INVITE toward `uri` over `flow`.
    async fn start_b_leg(
        &mut self,
        target: DialTarget,
        uri: &str,
        to: &str,
        flow: Target,
        fallbacks: Vec<SocketAddr>,
    ) -> Result<(), ControlError> {
        let Some(ruri) = Uri::parse(uri) else {
            return Err(ControlError::new(
                404,
                format!("Not Found: bad target URI {uri}"),
            ));
        };
        // Until A's session exists, the B-leg's session is created together
        // with it: A's offer is checked before this B-leg is placed, at no
        // extra round trip (issue #13, unusable SDP found too late).
        let peer = (self.a_session.is_none() && !self.a_offer.trim().is_empty()).then(|| {
            media::PeerOffer {
                call_id: self.handle.id().to_string(),
                leg: "a".into(),
                remote_offer_sdp: self.a_offer.clone(),
            }
        });
        let asked_peer = peer.is_some();
        let offer = self
            .create_session_with_peer(
                "b",
                media::create_session_request::Negotiation::Offer(media::OfferOptions {
                    codecs: Vec::new(),
                    telephone_event: true,
                    ptime_ms: 20,
                }),
                peer,
            )
            .await?;
        if asked_peer {
            if offer.peer_session_id.is_empty() {
                // A node that predates CreateSessionRequest.peer: check A's
                // offer with a call of its own.
                if let Err(e) = self.ensure_a_session().await {
                    self.destroy_session(&offer.session_id).await;
                    return Err(e);
                }
            } else {
                self.adopt_a_session(
                    offer.peer_session_id.clone(),
                    offer.peer_local_sdp.clone(),
                    offer.peer_media,
                );
            }
        }
        let contact = self.local_contact(&flow);
        let host = contact
            .trim_start_matches("sip:swbd@")
            .split(';')
            .next()
            .unwrap_or("127.0.0.1")
            .to_string();
        let mut invite = Request::new(Method::Invite, ruri);
        invite.headers.insert(
            Name::MAX_FORWARDS,
            self.a_max_forwards.saturating_sub(1).to_string(),
        );
        invite.headers.insert(
            Name::FROM,
            self.identity.from_value(&host, &random_token(10)),
        );
        if let Some(pai) = self.identity.asserted_value(&host) {
            invite.headers.insert(identity::p_asserted_identity(), pai);
        }
        invite.headers.insert(Name::TO, format!("<{to}>"));
        invite
            .headers
            .insert(Name::CALL_ID, format!("{}@{host}", random_token(16)));
        invite.headers.insert(Name::CSEQ, "1 INVITE");
        invite.headers.insert(Name::CONTACT, format!("<{contact}>"));
        invite
            .headers
            .insert(Name::USER_AGENT, self.deps.config.sip.user_agent.clone());
        invite
            .headers
            .insert(Name::ALLOW, "INVITE, ACK, CANCEL, BYE, OPTIONS");
        invite.headers.insert(Name::CONTENT_TYPE, "application/sdp");
        invite.body = bytes::Bytes::from(offer.local_sdp.clone());

        let summary = summary_req(&invite);
        let txn = match self.deps.layer.send_invite(invite, flow).await {
            Ok(t) => t,
            Err(e) => {
                self.destroy_session(&offer.session_id).await;
                return Err(ControlError::new(e.status_code(), e.to_string()));
            }
        };
        let sent = txn.request().clone();
        let sip_call_id = sent.call_id().unwrap_or_default().to_string();
        let bytes = sent.to_bytes();
        let target_text = target.to_string();
        let sid = offer.session_id.clone();
        self.handle.update(Some(CallChange::Updated), |r| {
            r.legs.push(LegRecord {
                is_a: false,
                sip_call_id,
                remote_uri: uri.to_string(),
                remote_address: format!("{} {}", flow.transport, flow.remote),
                state: LegState::Trying,
                media_session_id: sid,
                codec: String::new(),
                target: target_text,
            });
            r.log_message(false, false, summary, &bytes);
        });
        self.b_legs.push(BLeg {
            target,
            txn: Some(txn),
            request: sent,
            flow,
            contact,
            session_id: offer.session_id,
            fallbacks,
            failed: None,
            auth_tried: false,
            early: false,
        });
        Ok(())
    }

    /// Resolve a dial target into (uri, to, flow, fallbacks) attempts.
    async fn resolve(
        &self,
        target: &DialTarget,
    ) -> Result<Vec<(String, String, Target, Vec<SocketAddr>)>, u16> {
        match target {
            DialTarget::User(user) => {
                let contacts = self.deps.locator.lookup(user);
                if contacts.is_empty() {
                    return Err(404);
                }
                let domain = self
                    .deps
                    .config
                    .sip
                    .domains
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "localhost".into());
                Ok(contacts
                    .into_iter()
                    .map(|c| (c.uri, format!("sip:{user}@{domain}"), c.target, Vec::new()))
                    .collect())
            }
            DialTarget::Uri(uri) => {
                let parsed = Uri::parse(uri).ok_or(404u16)?;
                let sip = parsed.as_sip().ok_or(416u16)?;
                let host = sip.host_text();
                let port = sip.port().unwrap_or(5060);
                let transport = if uri.to_ascii_lowercase().contains("transport=tcp") {
                    Transport::Tcp
                } else {
                    Transport::Udp
                };
                let addr = resolve_host(&host, port).await.ok_or(404u16)?;
                Ok(vec![(
                    uri.clone(),
                    uri.clone(),
                    Target {
                        transport,
                        remote: addr,
                        local: None,
                    },
                    Vec::new(),
                )])
            }
            DialTarget::Gateway { name, user } => {
                let gw = self
                    .deps
                    .config
                    .gateways
                    .iter()
                    .find(|g| g.name == *name)
                    .ok_or(503u16)?;
                let mut addrs = Vec::new();
                for a in &gw.addresses {
                    let (host, port) = split_host_port(a);
                    if let Some(addr) = resolve_host(&host, port).await {
                        addrs.push(addr);
                    }
                }
                let Some(first) = addrs.first().copied() else {
                    return Err(503);
                };
                let uri = format!("sip:{user}@{}", fmt_addr(first));
                Ok(vec![(
                    uri.clone(),
                    uri,
                    Target {
                        transport: gw.transport,
                        remote: first,
                        local: None,
                    },
                    addrs.into_iter().skip(1).collect(),
                )])
            }
        }
    }

    /// Handle one response on B-leg `i`; `Some(target)` when it answered.
    async fn on_b_response(&mut self, i: usize, resp: Response) -> Option<DialTarget> {
        let summary = summary_resp(&resp);
        let bytes = resp.to_bytes();
        let sip_call_id = self
            .b_legs
            .get(i)?
            .request
            .call_id()
            .unwrap_or_default()
            .to_string();
        self.handle
            .update(None, |r| r.log_message(false, true, summary, &bytes));
        match resp.code {
            100 => None,
            101..=199 => {
                self.handle.update(Some(CallChange::Ringing), |r| {
                    if let Some(l) = r.leg_mut(&sip_call_id) {
                        l.state = LegState::Early;
                    }
                    if r.state == CallState::Routing {
                        r.state = CallState::Ringing;
                    }
                });
                if !resp.body.is_empty()
                    && self.early_bridge.is_none()
                    && !self.answered
                    && self.early_media(i, &resp).await.is_ok()
                {
                    return None;
                }
                if !self.ringing_sent && !self.answered && self.early_bridge.is_none() {
                    self.ringing_sent = true;
                    let ringing = self.a.response(180, "Ringing");
                    self.send_a(ringing);
                }
                None
            }
            200..=299 => self.on_b_answer(i, resp).await,
            401 | 407 if self.retry_with_credentials(i, &resp).await => None,
            code => {
                self.b_failed(i, code).await;
                None
            }
        }
    }

    /// A gateway challenged our INVITE: send it again with credentials
    /// (once). `false` when this leg cannot answer the challenge.
    async fn retry_with_credentials(&mut self, i: usize, resp: &Response) -> bool {
        let Some(leg) = self.b_legs.get(i) else {
            return false;
        };
        let DialTarget::Gateway { name, .. } = &leg.target else {
            return false;
        };
        let name = name.clone();
        let Some(gw) = self.deps.config.gateways.iter().find(|g| g.name == name) else {
            return false;
        };
        let (Some(user), Some(pass)) = (gw.username.clone(), gw.password.clone()) else {
            return false;
        };
        if leg.auth_tried {
            return false;
        }
        let Some(challenge) = super::outbound_auth::pick_challenge(resp) else {
            return false;
        };
        let mut request = leg.request.clone();
        // Strip our Via: the layer adds a fresh one with a new branch.
        request.headers.remove(&Name::VIA);
        let retry = super::outbound_auth::authorize(&request, resp.code, &challenge, &user, &pass);
        let flow = leg.flow;
        match self.deps.layer.send_invite(retry, flow).await {
            Ok(txn) => {
                let summary = summary_req(txn.request());
                let bytes = txn.request().to_bytes();
                self.handle
                    .update(None, |r| r.log_message(false, false, summary, &bytes));
                if let Some(leg) = self.b_legs.get_mut(i) {
                    leg.request = txn.request().clone();
                    leg.txn = Some(txn);
                    leg.auth_tried = true;
                }
                tracing::info!(gateway = %name, "answering the gateway's digest challenge");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot resend INVITE with credentials");
                false
            }
        }
    }

    /// Bridge A's session (created on demand) with `b_session` on the
    /// node; returns A's SDP answer.
    async fn bridge_a_with(&mut self, b_session: &str) -> Result<String, ControlError> {
        let (a_sid, a_sdp) = self.ensure_a_session().await?;
        self.media_client()?
            .bridge(media::BridgeRequest {
                session_a: a_sid,
                session_b: b_session.to_string(),
            })
            .await
            .map_err(|st| status_to_control(&st, "bridge"))?;
        Ok(a_sdp)
    }

    async fn early_media(&mut self, i: usize, resp: &Response) -> Result<(), ControlError> {
        let session_id = self
            .b_legs
            .get(i)
            .map(|b| b.session_id.clone())
            .unwrap_or_default();
        let mut client = self.media_client()?;
        client
            .update_session(media::UpdateSessionRequest {
                session_id: session_id.clone(),
                remote_sdp: String::from_utf8_lossy(&resp.body).into_owned(),
            })
            .await
            .map_err(|st| status_to_control(&st, "early media"))?;
        let a_sdp = self.bridge_a_with(&session_id).await?;
        if let Some(b) = self.b_legs.get_mut(i) {
            b.early = true;
        }
        self.early_bridge = Some(session_id);
        let progress = with_sdp(self.a.response(183, "Session Progress"), &a_sdp);
        self.send_a(progress);
        self.handle.update(Some(CallChange::Updated), |r| {
            r.state = CallState::EarlyMedia;
        });
        Ok(())
    }

    async fn b_failed(&mut self, i: usize, code: u16) {
        let Some(leg) = self.b_legs.get_mut(i) else {
            return;
        };
        leg.txn = None;
        let session = leg.session_id.clone();
        let sip_call_id = leg.request.call_id().unwrap_or_default().to_string();
        let retry = if (code >= 500 || code == 408) && !leg.fallbacks.is_empty() {
            let next = leg.fallbacks.remove(0);
            Some((
                leg.target.clone(),
                next,
                leg.flow,
                std::mem::take(&mut leg.fallbacks),
            ))
        } else {
            None
        };
        leg.failed = Some(code);
        let was_early = leg.early;
        tracing::info!(code, "B-leg failed");
        self.handle.update(None, |r| {
            if let Some(l) = r.leg_mut(&sip_call_id) {
                l.state = LegState::Terminated;
            }
        });
        if was_early {
            self.early_bridge = None;
        }
        self.destroy_session(&session).await;
        if let Some((target, next, flow, rest)) = retry {
            tracing::info!(%next, "gateway failover");
            let user = match &target {
                DialTarget::Gateway { user, .. } => user.clone(),
                _ => String::new(),
            };
            let uri = format!("sip:{user}@{}", fmt_addr(next));
            let flow = Target {
                transport: flow.transport,
                remote: next,
                local: None,
            };
            if let Err(e) = self.start_b_leg(target, &uri, &uri, flow, rest).await {
                tracing::warn!(error = %e, "gateway failover failed");
            }
        }
    }

    async fn on_b_answer(&mut self, i: usize, resp: Response) -> Option<DialTarget> {
        let leg = self.b_legs.get_mut(i)?;
        let txn = leg.txn.take()?;
        let request = leg.request.clone();
        let flow = leg.flow;
        let contact = leg.contact.clone();
        let session_id = leg.session_id.clone();
        let target = leg.target.clone();
        let sip_call_id = request.call_id().unwrap_or_default().to_string();
        let invite_seq = request.cseq().map(|c| c.number).unwrap_or(1);

        let Ok(mut dialog) = Dialog::as_uac(&request, &resp, contact.clone(), flow) else {
            // A 2xx we cannot form a dialog from: nothing to ACK into.
            self.b_failed(i, 502).await;
            return None;
        };
        let ack = dialog.request(Method::Ack, Some(invite_seq));

        // Apply B's answer to its media session before the ACK: a phone
        // starts sending RTP on the ACK, and the node must know where from.
        // The common case (no playback, no early media, A has an offer)
        // also answers A and bridges in the same round trip; a node
        // without `ConnectLegs` gets the three calls one by one.
        let mut connected = false;
        let mut applied = None;
        if !self.playing
            && self.early_bridge.is_none()
            && (self.a_session.is_some() || !self.a_offer.trim().is_empty())
            && self.lease.as_ref().is_some_and(NodeLease::batched)
        {
            match self.connect_legs(&session_id, &resp.body).await {
                Ok(media) => {
                    connected = true;
                    applied = Some(Ok(media));
                }
                Err(st) if st.code() == tonic::Code::Unimplemented => {
                    if let Some(lease) = &self.lease {
                        lease.mark_unbatched();
                    }
                }
                Err(st) => applied = Some(Err(status_to_control(&st, "B answer"))),
            }
        }
        let applied = match applied {
            Some(a) => a,
            None => match self.media_client() {
                Ok(mut client) => client
                    .update_session(media::UpdateSessionRequest {
                        session_id: session_id.clone(),
                        remote_sdp: String::from_utf8_lossy(&resp.body).into_owned(),
                    })
                    .await
                    .map(|r| r.into_inner().media)
                    .map_err(|st| status_to_control(&st, "B answer")),
                Err(e) => Err(e),
            },
        };
        // Every 2xx is ACKed, usable or not (RFC 3261 §13.2.2.4).
        let _ = self.deps.layer.send_ack(ack.clone(), flow).await;
        let ack_summary = summary_req(&ack);
        let ack_bytes = ack.to_bytes();
        self.handle.update(None, |r| {
            r.log_message(false, false, ack_summary, &ack_bytes)
        });
        let codec = match applied {
            Ok(m) => m.map(|m| codec_name(m.codec)).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "B-leg answered with unusable SDP; ending it");
                self.winner = Some(Winner {
                    dialog,
                    txn: Some(txn.into_accepted()),
                    ack,
                    session_id: session_id.clone(),
                });
                self.bye(false).await;
                self.winner = None;
                if let Some(leg) = self.b_legs.get_mut(i) {
                    leg.txn = None;
                }
                self.b_failed(i, 502).await;
                return None;
            }
        };

        // First 2xx wins: CANCEL the others (a late 2xx gets ACK + BYE).
        let layer = self.deps.layer.clone();
        for (j, other) in self.b_legs.iter_mut().enumerate() {
            if j == i {
                continue;
            }
            if let Some(t) = other.txn.take() {
                t.cancel();
                tokio::spawn(
                    reap(layer.clone(), t, other.contact.clone(), other.flow).in_current_span(),
                );
                other.failed = Some(487);
            }
        }
        let others: Vec<String> = self
            .b_legs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, b)| b.session_id.clone())
            .collect();
        let others: Vec<String> = others
            .into_iter()
            .filter(|s| self.sessions.contains(s))
            .collect();
        self.destroy_sessions(others).await;

        // Bridge A and B on the node (done already when connected).
        let bridged = async {
            if connected {
                return Ok(());
            }
            let (a_sid, _) = self.ensure_a_session().await?;
            let mut client = self.media_client()?;
            if self.playing {
                let _ = client
                    .stop_playback(media::StopPlaybackRequest {
                        session_id: a_sid.clone(),
                    })
                    .await;
            }
            if self
                .early_bridge
                .as_deref()
                .is_some_and(|e| e != session_id)
            {
                let _ = client
                    .unbridge(media::UnbridgeRequest {
                        session_id: a_sid.clone(),
                    })
                    .await;
            }
            if self.early_bridge.as_deref() != Some(session_id.as_str()) {
                self.bridge_a_with(&session_id).await?;
            }
            Ok::<(), ControlError>(())
        }
        .await;

        dialog.remote_seq = None;
        self.handle
            .route_dialog(dialog.id.clone(), self.dlg_tx.clone());
        // The transaction stays with the winner to re-ACK retransmitted 2xx.
        self.winner = Some(Winner {
            dialog,
            txn: Some(txn.into_accepted()),
            ack,
            session_id,
        });
        if let Some(leg) = self.b_legs.get_mut(i) {
            leg.txn = None;
        }
        // Not `clear()`: the vector's capacity (a few KiB of `BLeg`s) would
        // stay allocated for the whole call.
        self.b_legs = Vec::new();
        if let Err(e) = bridged {
            tracing::warn!(error = %e, "bridge failed");
            self.bye(false).await;
            self.winner = None;
            return None;
        }
        if let Err(e) = self.answer_a().await {
            tracing::warn!(error = %e, "answering the caller failed");
            self.bye(false).await;
            self.winner = None;
            return None;
        }
        self.handle.update(Some(CallChange::Bridged), |r| {
            r.state = CallState::Bridged;
            if let Some(l) = r.leg_mut(&sip_call_id) {
                l.state = LegState::Confirmed;
                l.codec = codec;
            }
        });
        Some(target)
    }
}

fn codec_name(c: i32) -> String {
    match media::Codec::try_from(c) {
        Ok(media::Codec::Pcmu) => "PCMU".into(),
        Ok(media::Codec::Pcma) => "PCMA".into(),
        _ => String::new(),
    }
}

fn fmt_addr(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => v.to_string(),
        SocketAddr::V6(v) => format!("[{}]:{}", v.ip(), v.port()),
    }
}

fn split_host_port(s: &str) -> (String, u16) {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return (a.ip().to_string(), a.port());
    }
    match s.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (
            h.trim_matches(['[', ']']).to_string(),
            p.parse().unwrap_or(5060),
        ),
        _ => (s.to_string(), 5060),
    }
}

async fn resolve_host(host: &str, port: u16) -> Option<SocketAddr> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::lookup_host((host.to_string(), port)),
    )
    .await
    .ok()?
    .ok()?
    .next()
}

/// Wait for a CANCELled B-leg's final response; a 2xx that crossed the
/// CANCEL gets ACK + BYE (RFC 3261 §15).
async fn reap(
    layer: TransactionLayer,
    mut txn: ClientInviteTransaction,
    contact: String,
    flow: Target,
) {
    loop {
        match txn.next_response().await {
            Ok(resp) if resp.is_success() => {
                let request = txn.request().clone();
                if let Ok(mut dialog) = Dialog::as_uac(&request, &resp, contact.clone(), flow) {
                    let seq = request.cseq().map(|c| c.number).unwrap_or(1);
                    let ack = dialog.request(Method::Ack, Some(seq));
                    let _ = layer.send_ack(ack, flow).await;
                    let bye = dialog.request(Method::Bye, None);
                    tracing::info!("late 2xx on a cancelled fork: ACK + BYE");
                    if let Ok(mut t) = layer.send_request(bye, flow).await {
                        let _ = t.final_response().await;
                    }
                }
                return;
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

impl CallControl for Ctl {
    async fn answer(&mut self) -> Result<(), ControlError> {
        self.answer_a().await
    }

    async fn play(&mut self, file: &str, looped: bool) -> Result<(), ControlError> {
        self.answer_a().await?;
        let (sid, _) = self.ensure_a_session().await?;
        let mut client = self.media_client()?;
        let mut stream = client
            .play(media::PlayRequest {
                session_id: sid,
                file: file.to_string(),
                r#loop: looped,
            })
            .await
            .map_err(|st| status_to_control(&st, "playback"))?
            .into_inner();
        self.playing = true;
        self.handle.update(Some(CallChange::Updated), |_| {});
        let result = loop {
            match stream.message().await {
                Ok(Some(ev)) => match ev.event {
                    Some(media::play_event::Event::Completed(_))
                    | Some(media::play_event::Event::Stopped(_)) => break Ok(()),
                    Some(media::play_event::Event::Error(e)) => {
                        break Err(ControlError::new(
                            500,
                            format!("playback failed: {}", e.message),
                        ));
                    }
                    _ => {}
                },
                Ok(None) => break Ok(()),
                Err(st) => break Err(status_to_control(&st, "playback")),
            }
        };
        self.playing = false;
        result
    }

    async fn dial(&mut self, targets: &[DialTarget], timeout: Duration) -> DialOutcome {
        // The caller's SDP is checked by the media node before anything
        // rings (with the first B-leg's session, see `start_b_leg`): an
        // unusable offer gets 488 with a Warning saying why, instead of a
        // callee who answers and is hung up on (issue #13).
        if self.a_warning.is_some() {
            return DialOutcome::Failed(488);
        }
        if self.a_session.is_none()
            && self.a_offer.trim().is_empty()
            && let Err(e) = self.ensure_a_session().await
        {
            return DialOutcome::Failed(e.code);
        }
        let max_branches = self.deps.config.b2bua.max_branches;
        let mut first_error: Option<u16> = None;
        for target in targets {
            match self.resolve(target).await {
                Ok(attempts) => {
                    for (uri, to, flow, fallbacks) in attempts {
                        let ringing = self.b_legs.iter().filter(|b| b.txn.is_some()).count();
                        if ringing >= max_branches {
                            tracing::warn!(
                                %target,
                                max_branches,
                                "b2bua.max_branches reached: target not called"
                            );
                            break;
                        }
                        if let Err(e) = self
                            .start_b_leg(target.clone(), &uri, &to, flow, fallbacks)
                            .await
                        {
                            tracing::info!(%target, error = %e, "B-leg not started");
                            if e.code == 488 && self.a_session.is_none() {
                                // A's offer, not this target, is the problem.
                                tracing::info!(error = %e, "caller SDP refused");
                                self.a_warning = Some(warning_value(&e.reason));
                                return DialOutcome::Failed(488);
                            }
                            first_error.get_or_insert(e.code);
                            if e.code == 503 && self.lease.is_none() {
                                return DialOutcome::Failed(503);
                            }
                        }
                    }
                }
                Err(code) => {
                    tracing::info!(%target, code, "dial target unavailable");
                    first_error.get_or_insert(code);
                }
            }
        }
        if self.b_legs.is_empty() {
            return DialOutcome::Failed(first_error.unwrap_or(404));
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            let active: Vec<usize> = self
                .b_legs
                .iter()
                .enumerate()
                .filter(|(_, b)| b.txn.is_some())
                .map(|(i, _)| i)
                .collect();
            if active.is_empty() {
                let codes: Vec<u16> = self.b_legs.iter().filter_map(|b| b.failed).collect();
                return aggregate(&codes);
            }
            let step = {
                let futs = self.b_legs.iter_mut().enumerate().filter_map(|(i, b)| {
                    b.txn
                        .as_mut()
                        .map(|t| async move { (i, t.next_response().await) }.boxed())
                });
                let next = futures::future::select_all(futs);
                tokio::select! {
                    _ = &mut deadline => None,
                    ((i, result), _, _) = next => Some((i, result)),
                }
            };
            match step {
                None => {
                    tracing::info!("dial timeout");
                    let layer = self.deps.layer.clone();
                    let mut sessions = Vec::new();
                    for leg in self.b_legs.iter_mut() {
                        if let Some(t) = leg.txn.take() {
                            t.cancel();
                            tokio::spawn(
                                reap(layer.clone(), t, leg.contact.clone(), leg.flow)
                                    .in_current_span(),
                            );
                            leg.failed = Some(408);
                            sessions.push(leg.session_id.clone());
                        }
                    }
                    for s in sessions {
                        self.destroy_session(&s).await;
                    }
                    self.early_bridge = None;
                    return DialOutcome::NoAnswer;
                }
                Some((i, Ok(resp))) => {
                    if let Some(t) = self.on_b_response(i, resp).await {
                        return DialOutcome::Answered(t);
                    }
                }
                Some((i, Err(e))) => self.b_failed(i, e.status_code()).await,
            }
        }
    }

    async fn hangup(&mut self, code: u16, reason: &str) {
        if self.answered {
            self.bye_a().await;
        } else if self.a_warning.is_some() {
            // The caller's SDP was refused: that, not what the dialplan
            // tried next, is why the call cannot go on.
            self.final_to_a(488, "Not Acceptable Here");
        } else if self.no_media_node.is_some() {
            // No media node could take the call: the dialplan's catch-all
            // after a failed dial (480) would hide that; try again later.
            self.final_to_a(503, "Service Unavailable");
        } else {
            self.final_to_a(code, reason);
        }
    }
}

/// The dial outcome for a set of failed B-legs (RFC 3261 §16.7 spirit:
/// busy wins, then a timeout, then the lowest 4xx, then anything).
fn aggregate(codes: &[u16]) -> DialOutcome {
    if codes.iter().any(|c| matches!(c, 486 | 600 | 603)) {
        return DialOutcome::Busy;
    }
    if !codes.is_empty() && codes.iter().all(|c| matches!(c, 408 | 480 | 487)) {
        return DialOutcome::NoAnswer;
    }
    let best = codes
        .iter()
        .copied()
        .filter(|c| (400..500).contains(c))
        .min()
        .or_else(|| codes.first().copied())
        .unwrap_or(480);
    DialOutcome::Failed(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_aggregate_busy_first() {
        assert_eq!(aggregate(&[404, 486]), DialOutcome::Busy);
        assert_eq!(aggregate(&[408, 487]), DialOutcome::NoAnswer);
        assert_eq!(aggregate(&[503, 404]), DialOutcome::Failed(404));
        assert_eq!(aggregate(&[503]), DialOutcome::Failed(503));
    }

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("10.0.0.1:5070"), ("10.0.0.1".into(), 5070));
        assert_eq!(split_host_port("[::1]:5070"), ("::1".into(), 5070));
        assert_eq!(
            split_host_port("gw.example.com"),
            ("gw.example.com".into(), 5060)
        );
    }
}
