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
use super::transfer::{Party, State as TransferState};
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

mod a_leg;
mod b_leg;
mod bridged;
mod dial;
mod dtmf;
mod early;
mod family;
mod hold;
mod late_offer;
mod migrate;
mod prack;
mod redirect;
mod refer;
mod reinvite;
mod replaces;
mod saved;
mod session_expires;
mod session_timer;
mod sessions;
mod transfer_watch;
mod transferor;
mod update;

use b_leg::{codec_name, reap};

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

    /// Whether `user` exists (is in the users file) even when it has no
    /// contact: a dial to a known user who is not registered fails with
    /// `480 Temporarily Unavailable`, to an unknown one with `404`.
    fn is_known(&self, _user: &str) -> bool {
        false
    }
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
    /// Where the call's detail record goes when it ends (swbd/src/cdr).
    pub cdr: crate::cdr::CdrSink,
    /// Overload control: the setup steps a call owes are counted there.
    pub overload: crate::overload::Overload,
    /// Bridged calls' records in the state store, so they survive a
    /// restart (issue #18; off with the memory backend).
    pub saved_calls: crate::b2bua::restart::SavedCalls,
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
    /// A never PRACKed a reliable provisional: the transaction rejected
    /// the INVITE itself (RFC 3262 §3).
    NoPrack,
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
    if let Some(refusal) = session_expires::refuse_invite(&deps.config.sip.session_timer, &a) {
        let _ = a.respond(refusal);
        return;
    }
    // Shared, not copied: the call reads it until the dialplan runs.
    let request = a.shared_request();
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
    let (route_id, transfer_policy) = plan
        .route(&info)
        .map(|r| (r.route.id.clone(), r.route.transfer.clone()))
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
    // One info line per call, at its end (below): at the default level a
    // call costs one line, not three (issue #17). The start and the bridge
    // are debug.
    tracing::debug!(%caller, %destination, route = %route_id, from = %source.remote, "new call");

    let (dlg_tx, mut dlg_rx) = mpsc::unbounded_channel();
    // The caller's digits reach `read` through this while the dialplan
    // (which holds `ctl`) runs.
    let (digit_sink, dtmf_state) = dtmf::channel();
    let (late, ack_tx) = late_offer::LateOffer::new();
    let (updates, early_inbox) = update::Updates::new();
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
        dtmf: dtmf_state,
        ipv4_only: Vec::new(),
        a_reliable: Default::default(),
        session_timers: Default::default(),
        late,
        redirect: redirect::Redirects::default(),
        updates,
        end_cause: None,
        transfer: TransferState::new(
            plan.clone(),
            transfer_policy,
            Party::local_principal(principal.as_ref()),
        ),
        hold: hold::HoldState::default(),
        work: Some(deps.overload.setup_work()),
        deferred: migrate::Deferred::default(),
        saved: None,
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
                    Some(ServerInviteEvent::PrackTimeout) => {
                        interrupt = Some(Interrupt::NoPrack);
                        token.cancel();
                    }
                    Some(ServerInviteEvent::Ack(ack)) => {
                        // A delayed offer's answer is in it (late_offer.rs).
                        let _ = ack_tx.send(ack);
                    }
                    None => a_events_open = false,
                },
                Some(msg) = dlg_rx.recv() => {
                    // UPDATEs (and BYEs in callees' early dialogs) are
                    // answered here or by the dial (update.rs).
                    let Some((dialog, input)) = early_inbox.screen(&deps, *msg) else {
                        continue;
                    };
                    let Some(input) = digit_sink.take_info(input) else {
                        continue;
                    };
                    if answer_in_dialog(&dialog, input) == InDialog::Bye && interrupt.is_none() {
                        tracing::info!("caller hung up during the dialplan");
                        interrupt = Some(Interrupt::CallerBye);
                        token.cancel();
                    }
                }
                Some(cmd) = cmd_rx.recv(), if interrupt.is_none() => {
                    let Some(cmd) = digit_sink.take_command(cmd) else {
                        continue;
                    };
                    interrupt = Some(match *cmd {
                        CallCommand::Hangup(r) => Interrupt::Hangup(r),
                        CallCommand::MediaLost(r) => Interrupt::MediaLost(r),
                        CallCommand::Dtmf(_) => continue,
                        CallCommand::Migrate(order) => {
                            // Not bridged yet: left alone (its node takes
                            // nothing new while it drains).
                            order.answer(crate::b2bua::migrate::MigrateOutcome::NotBridged);
                            continue;
                        }
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
        ctl.hold.configure(&deps.config.media, &e.variables);
        e.outcome
    };
    tracing::debug!(?outcome, "dialplan finished");

    let cause = match (&interrupt, &outcome) {
        (Some(Interrupt::Cancelled), _) => {
            ctl.final_to_a(487, "Request Terminated");
            "caller cancelled".to_string()
        }
        (Some(Interrupt::NoPrack), _) => {
            // A got its 500 from the transaction; no dialog with A exists.
            ctl.final_sent = true;
            ctl.a_dialog = None;
            ctl.handle.update(None, |r| r.end_status = 500);
            "no PRACK from caller".to_string()
        }
        (Some(Interrupt::CallerBye), _) => {
            // A BYE in the early dialog ends the INVITE too (RFC 3261 §15).
            ctl.final_to_a(487, "Request Terminated");
            "caller hung up".to_string()
        }
        (Some(Interrupt::Hangup(r)), _) | (Some(Interrupt::MediaLost(r)), _) => {
            if ctl.answered {
                Box::pin(ctl.bye_a()).await;
            } else {
                ctl.final_to_a(480, "Temporarily Unavailable");
            }
            r.clone()
        }
        (None, CallOutcome::Bridged(target)) => {
            tracing::debug!(%target, "bridged");
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
    // A failure that ended both legs mid-action says why (late_offer.rs).
    let cause = ctl.end_cause.take().unwrap_or(cause);
    Box::pin(ctl.cleanup()).await;
    ctl.forget_call();
    tracing::info!(%caller, %destination, route = %route_id, from = %source.remote, %cause, "call ended");
    ctl.handle.update(None, |r| {
        r.end_cause = cause;
        r.state = CallState::Ended;
        r.ended_at.get_or_insert_with(SystemTime::now);
        deps.cdr.submit(r);
    });
}

#[derive(Debug, PartialEq, Eq)]
enum InDialog {
    Bye,
    Other,
}

/// Answer an in-dialog request the way every call state does: BYE 200,
/// OPTIONS 200, re-INVITE 488, INFO/others 501. ACKs are absorbed.
/// (UPDATE never gets here: `update.rs` answers it.)
fn answer_in_dialog(_dialog: &DialogId, input: LegInput) -> InDialog {
    match input {
        LegInput::Request(txn) => {
            let method = txn.request().method.clone();
            let (code, reason) = match method {
                Method::Bye => (200, "OK"),
                Method::Options => (200, "OK"),
                // The INVITE's transaction answers PRACKs for reliable
                // provisionals still unacknowledged; one that reaches a
                // call matches none (RFC 3262 §3).
                Method::Prack => (481, "Call/Transaction Does Not Exist"),
                Method::Refer => (
                    403,
                    "Forbidden (nothing to transfer before the call is bridged)",
                ),
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
        LegInput::Transfer(t) => {
            t.refuse(403, "Forbidden (the call is not bridged)");
            InDialog::Other
        }
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
    /// Its reliable provisionals (RFC 3262 §4).
    reliable: prack::BLegReliable,
    /// A `422` was answered once already (RFC 4028 §7.3).
    session_retried: bool,
    /// Sent without SDP (gateway `late_offer`): its 2xx carries the offer,
    /// our ACK the answer (late_offer.rs).
    late_offer: bool,
    /// Redirects (3xx) followed to reach this leg (redirect.rs).
    redirects: u8,
    /// Its early dialog (first 18x with a To tag and a Contact), routed so
    /// an UPDATE reaches the call (early.rs).
    early_dialog: Option<DialogId>,
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
    /// The setup step swbd owes this call (overload control's count): from
    /// the start until the first B-leg INVITE is out or A has an answer.
    work: Option<crate::overload::SetupWork>,
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
    /// DTMF: the caller's digits for `read`, the conversion rate limit.
    dtmf: dtmf::Dtmf,
    /// B-leg flows that refused an IPv6 offer: offered IPv4 since
    /// ([`family`]).
    ipv4_only: Vec<SocketAddr>,
    /// What reliable provisionals to A changed (RFC 3262).
    a_reliable: prack::ALegReliable,
    /// Both legs' session timers (RFC 4028).
    session_timers: session_timer::SessionTimers,
    /// Delayed offer (RFC 3261 §13.2.1), late_offer.rs.
    late: late_offer::LateOffer,
    /// How 3xx from B-legs are handled, redirect.rs.
    redirect: redirect::Redirects,
    /// Early dialogs and UPDATE (RFC 3311), update.rs.
    updates: update::Updates,
    /// The call is over whatever the dialplan does next, and why: a
    /// failure ended both legs in the middle of an action (an ACK without
    /// the answer to a delayed offer).
    end_cause: Option<String>,
    /// Call transfer (REFER, Replaces): refer.rs, replaces.rs.
    transfer: TransferState,
    /// Hold on the bridged call (music on hold, or passed on).
    hold: hold::HoldState,
    /// In-dialog requests that waited for a move to another node
    /// (migrate.rs).
    deferred: migrate::Deferred,
    /// The call's record as last saved in the state store (saved.rs).
    saved: Option<crate::b2bua::restart::SavedCall>,
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
    cat(&[r.method.as_str(), " ", r.uri.as_str(), sdp])
}

/// What the ladder keeps of a response: nothing of a provisional one
/// without a body (its summary says it all, see `record.rs`), so it is
/// not printed for the ladder at all.
fn ladder_bytes_of_response(r: &Response) -> bytes::Bytes {
    if r.is_provisional() && r.body.is_empty() {
        bytes::Bytes::new()
    } else {
        r.to_bytes()
    }
}

/// [`ladder_bytes_of_response`] for requests: an ACK without a body is
/// not printed.
fn ladder_bytes_of_request(r: &Request) -> bytes::Bytes {
    if r.method == Method::Ack && r.body.is_empty() {
        bytes::Bytes::new()
    } else {
        r.to_bytes()
    }
}

fn summary_resp(r: &Response) -> String {
    let sdp = if r.body.is_empty() { "" } else { " (SDP)" };
    let cseq = r.cseq().ok();
    let method = cseq.as_ref().map_or("", |c| c.method.as_str());
    let mut out = String::with_capacity(8 + r.reason.len() + method.len() + 3 + sdp.len());
    crate::sip::message::push_decimal(&mut out, usize::from(r.code));
    out.push(' ');
    out.push_str(&r.reason);
    if cseq.is_some() {
        out.push_str(" (");
        out.push_str(method);
        out.push(')');
    }
    out.push_str(sdp);
    out
}

/// The pieces, concatenated into one exactly sized string (no formatting
/// machinery: headers of every B-leg INVITE are built with it).
fn cat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.push_str(p);
    }
    out
}

fn with_sdp(mut resp: Response, sdp: &str) -> Response {
    resp.headers.insert(Name::CONTENT_TYPE, "application/sdp");
    resp.body = bytes::Bytes::from(sdp.to_string());
    resp
}

fn contact_uri(local: SocketAddr, transport: Transport) -> String {
    use std::fmt::Write as _;
    // One `write!` of the address instead of three formatted strings
    // (IPv6 without its scope id, as before).
    let mut out = String::with_capacity(64);
    out.push_str("sip:swbd@");
    let _ = match local {
        SocketAddr::V4(a) => write!(out, "{a}"),
        SocketAddr::V6(a) => write!(out, "[{}]:{}", a.ip(), a.port()),
    };
    if transport == Transport::Tcp {
        out.push_str(";transport=tcp");
    }
    out
}
