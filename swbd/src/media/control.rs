//! The per-call media commands over one long-lived `Control` stream per
//! node, instead of one HTTP/2 stream per command.
//!
//! A unary RPC costs an HTTP/2 stream each way: request and response
//! headers (HPACK), trailers, a task spawned by the server per stream and
//! the client's per-request service stack. At a few thousand commands a
//! second that was about a quarter of swbd's and swrtp's CPU per call. On
//! the stream a command is one DATA frame each way, and frames queued
//! together go out in one write.
//!
//! [`MediaClient`] has the unary client's methods, so the B2BUA does not
//! know which path a command takes:
//! - the stream is opened on first use and reopened after it ends (node
//!   restart, connection loss): commands waiting on a stream that ends fail
//!   with UNAVAILABLE, as a unary RPC on a lost connection does;
//! - a node that answers `Control` with UNIMPLEMENTED (an older swrtp) gets
//!   unary RPCs from then on; the pool resets that when the node comes back
//!   after being down (it may have been upgraded);
//! - a command with no reply after [`COMMAND_TIMEOUT`] fails with
//!   DEADLINE_EXCEEDED (its late reply is dropped);
//! - a stream that ends, and a command that fails because the node could
//!   not be reached ([`node_unreachable`]), are reported to the pool's hook
//!   at once (the node is taken out of the rotation until a health check
//!   says it answers, see `pool.rs`).
//! - with an owner ([`super::lease`]), the stream (and unary creates) carry
//!   the owner headers, and each newly opened stream starts with
//!   `ReconcileOwner` before any command goes on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use switchboard_proto::media::v1 as pb;
use switchboard_proto::media::v1::media_service_client::MediaServiceClient;
use switchboard_proto::support::grpc::AuthedChannel;
use switchboard_proto::support::secret::Token;
use tokio::sync::{mpsc, oneshot};
use tonic::{Code, Status};

use super::lease::LeaseOwner;

use pb::control_reply::Result as Reply;
use pb::control_request::Command;

/// How long a command may wait for its reply.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

type Waiter = oneshot::Sender<Result<Reply, Status>>;

/// Called with the reason when the node looks unreachable.
pub(crate) type UnreachableHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Called with each session event the node pushes on the Control stream
/// (reply id 0, `ControlReply.event`: DTMF received on our sessions).
pub(crate) type EventHook = Arc<dyn Fn(pb::SessionEvent) + Send + Sync>;

/// Whether a failed command says the node could not be reached, rather
/// than that it refused the command: UNAVAILABLE (connect error, Control
/// stream lost, a node refusing because it drains or stops), or any status
/// the client's transport made up, which carries its cause as a source. A
/// request on a connection that just died fails with `transport error`
/// (UNKNOWN) or a cancelled or reset h2 stream, not UNAVAILABLE. A status
/// the node sent never has a source.
pub fn node_unreachable(st: &Status) -> bool {
    st.code() == Code::Unavailable || std::error::Error::source(st).is_some()
}

/// One open Control stream: where requests go, who waits for replies.
struct Open {
    tx: mpsc::UnboundedSender<pb::ControlRequest>,
    pending: Mutex<HashMap<u64, Waiter>>,
    /// The reply stream ended: nobody will answer what is pending.
    closed: AtomicBool,
}

/// The Control stream of one node (shared by all its calls).
pub(crate) struct ControlChannel {
    client: MediaServiceClient<AuthedChannel>,
    current: Mutex<Option<Arc<Open>>>,
    /// Serializes opening, so concurrent first commands share one stream.
    opening: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
    /// The node has no `Control` (UNIMPLEMENTED): use unary RPCs.
    unsupported: AtomicBool,
    /// Told when the stream ends or a command fails with UNAVAILABLE.
    on_unreachable: OnceLock<UnreachableHook>,
    /// Told the session events the node pushes on the stream.
    on_event: OnceLock<EventHook>,
    /// Who owns the sessions created through this channel (None: tools).
    owner: Option<Arc<LeaseOwner>>,
    /// The node answered ReconcileOwner with INVALID_ARGUMENT (an swrtp
    /// without leases): no renewals.
    no_leases: AtomicBool,
    /// The last ReconcileOwner kept sessions of another instance of our
    /// node_id that still looked connected: the next renewal reconciles
    /// again instead (a dead instance whose connection the node had not
    /// yet seen end, or a second live swbd with our node_id).
    reconcile_again: AtomicBool,
    /// The least command round trip (send to reply) since overload
    /// control last took it, nanoseconds; `u64::MAX`: none.
    least_round_trip_ns: AtomicU64,
    /// This swbd restarted keeping its instance id (issue #18): the
    /// sessions its restored calls keep, sent with the next ReconcileOwner,
    /// and who is told which of them the node no longer has. Cleared once
    /// the node answered.
    restart: Mutex<Option<RestartKeep>>,
}

/// The sessions a restarted owner keeps on one node (issue #18).
struct RestartKeep {
    keep: Vec<String>,
    missing: oneshot::Sender<Vec<String>>,
}

impl std::fmt::Debug for ControlChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlChannel")
            .field("unsupported", &self.unsupported.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ControlChannel {
    pub(crate) fn new(
        client: MediaServiceClient<AuthedChannel>,
        owner: Option<Arc<LeaseOwner>>,
    ) -> Self {
        Self {
            client,
            current: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(1),
            unsupported: AtomicBool::new(false),
            on_unreachable: OnceLock::new(),
            on_event: OnceLock::new(),
            owner,
            no_leases: AtomicBool::new(false),
            reconcile_again: AtomicBool::new(false),
            least_round_trip_ns: AtomicU64::new(u64::MAX),
            restart: Mutex::new(None),
        }
    }

    /// This swbd restarted with its instance id: the next ReconcileOwner
    /// says so and lists `keep`; the node destroys our other sessions. The
    /// receiver gets the listed sessions the node does not have (an empty
    /// list from a node without leases); it is dropped unanswered if a
    /// later call replaces this one.
    pub(crate) fn keep_after_restart(&self, keep: Vec<String>) -> oneshot::Receiver<Vec<String>> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut r) = self.restart.lock() {
            *r = Some(RestartKeep { keep, missing: tx });
        }
        rx
    }

    /// The keep list for the next ReconcileOwner, if a restart is pending.
    fn restart_keep(&self) -> Option<Vec<String>> {
        self.restart
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|k| k.keep.clone()))
    }

    /// The node answered the restart's ReconcileOwner.
    fn restart_done(&self, missing: Vec<String>) {
        let done = self.restart.lock().ok().and_then(|mut r| r.take());
        if let Some(k) = done {
            let _ = k.missing.send(missing);
        }
    }

    /// The least command round trip since the last call (`None` when no
    /// command finished meanwhile): overload control's view of the node's
    /// and swbd's queues on the media path (the least: what every command
    /// waited at least, CoDel's standing queue).
    pub(crate) fn take_least_round_trip(&self) -> Option<Duration> {
        match self.least_round_trip_ns.swap(u64::MAX, Ordering::Relaxed) {
            u64::MAX => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// Set (once) who is told that the node looks unreachable.
    pub(crate) fn set_on_unreachable(&self, hook: UnreachableHook) {
        let _ = self.on_unreachable.set(hook);
    }

    /// Set (once) who is told the session events pushed on the stream.
    pub(crate) fn set_on_event(&self, hook: EventHook) {
        let _ = self.on_event.set(hook);
    }

    /// A command failed: [`node_unreachable`] ones go to the hook.
    fn report(&self, st: &Status) {
        if node_unreachable(st)
            && let Some(hook) = self.on_unreachable.get()
        {
            hook(st.message());
        }
    }

    /// The node may have been upgraded: try `Control` and leases again.
    pub(crate) fn reset_support(&self) {
        self.unsupported.store(false, Ordering::Relaxed);
        self.no_leases.store(false, Ordering::Relaxed);
    }

    /// `message` as a request carrying the owner headers (if any).
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        if let Some(o) = &self.owner {
            o.stamp(r.metadata_mut());
        }
        r
    }

    /// Renew all this owner's leases on the node (opening the stream, and
    /// so reconciling, if needed). Nothing to do without an owner, on a
    /// node without `Control` or without leases.
    pub(crate) async fn renew_leases(&self) -> Result<(), Status> {
        let Some(owner) = self.owner.clone() else {
            return Ok(());
        };
        let Some(open) = self.stream().await? else {
            return Ok(());
        };
        if self.no_leases.load(Ordering::Relaxed) {
            return Ok(());
        }
        if self.reconcile_again.load(Ordering::Relaxed) {
            return self.reconcile(&open, &owner).await;
        }
        let command = Command::RenewLeases(pb::RenewLeasesRequest {
            owner: Some(owner.to_proto()),
            lease_secs: owner.lease_secs,
        });
        match self.call(&open, command).await? {
            Reply::RenewLeases(r) => {
                tracing::trace!(renewed = r.renewed, "media leases renewed");
                Ok(())
            }
            other => Err(unexpected(other)),
        }
    }

    /// First command on a new stream: drop our previous instances'
    /// sessions, renew ours.
    async fn reconcile(&self, open: &Open, owner: &LeaseOwner) -> Result<(), Status> {
        let keep = self.restart_keep();
        let command = Command::ReconcileOwner(pb::ReconcileOwnerRequest {
            owner: Some(owner.to_proto()),
            lease_secs: owner.lease_secs,
            restarted: keep.is_some(),
            keep_session_ids: keep.clone().unwrap_or_default(),
        });
        match self.call(open, command).await? {
            Reply::ReconcileOwner(r) => {
                self.no_leases.store(false, Ordering::Relaxed);
                if let Some(keep) = keep {
                    tracing::info!(kept = keep.len() - r.missing_session_ids.len().min(keep.len()), missing = r.missing_session_ids.len(), %owner, "media node kept the sessions of the calls this swbd restored");
                    self.restart_done(r.missing_session_ids);
                }
                let again = r.kept_connected > 0;
                if again && !self.reconcile_again.swap(true, Ordering::Relaxed) {
                    tracing::warn!(kept = r.kept_connected, %owner, "media node keeps sessions of another live instance of this node_id (still connected, or two swbd share node_id); reconciling again at each renewal");
                } else if !again {
                    self.reconcile_again.store(false, Ordering::Relaxed);
                }
                if r.dropped > 0 {
                    tracing::info!(dropped = r.dropped, renewed = r.renewed, %owner, "media node dropped the sessions of this swbd's previous run");
                }
                Ok(())
            }
            Reply::Error(e) if e.code == Code::InvalidArgument as i32 => {
                // No leases: the node never drops a session on its own.
                self.restart_done(Vec::new());
                if !self.no_leases.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        "media node has no session leases (older swrtp): its sessions will not expire if swbd dies"
                    );
                }
                Ok(())
            }
            other => Err(unexpected(other)),
        }
    }

    fn live(&self) -> Option<Arc<Open>> {
        let current = self.current.lock().ok()?;
        current
            .as_ref()
            .filter(|o| !o.closed.load(Ordering::SeqCst))
            .cloned()
    }

    /// The open stream, opening one if needed; `None` when the node has no
    /// `Control` (use unary), an error when the node cannot be reached.
    async fn stream(&self) -> Result<Option<Arc<Open>>, Status> {
        if self.unsupported.load(Ordering::Relaxed) {
            return Ok(None);
        }
        if let Some(open) = self.live() {
            return Ok(Some(open));
        }
        let _guard = self.opening.lock().await;
        if let Some(open) = self.live() {
            return Ok(Some(open));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let requests = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        let mut replies = match self.client.clone().control(self.request(requests)).await {
            Ok(r) => r.into_inner(),
            Err(st) if st.code() == Code::Unimplemented => {
                // No Control, no leases: the node keeps every session.
                self.restart_done(Vec::new());
                if !self.unsupported.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        "media node has no Control stream (older swrtp): using unary RPCs"
                    );
                }
                return Ok(None);
            }
            Err(st) => return Err(st),
        };
        let open = Arc::new(Open {
            tx,
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        });
        let reader = open.clone();
        let hook = self.on_unreachable.get().cloned();
        let events = self.on_event.get().cloned();
        tokio::spawn(async move {
            let why = loop {
                match replies.message().await {
                    // Id 0 is never a command's: an event the node pushed.
                    Ok(Some(pb::ControlReply {
                        id: 0,
                        result: Some(Reply::Event(event)),
                    })) => {
                        if let Some(events) = &events {
                            events(event);
                        }
                    }
                    Ok(Some(reply)) => {
                        let waiter = reader
                            .pending
                            .lock()
                            .ok()
                            .and_then(|mut p| p.remove(&reply.id));
                        if let Some(w) = waiter {
                            let _ = w.send(
                                reply
                                    .result
                                    .ok_or_else(|| Status::internal("empty control reply")),
                            );
                        }
                    }
                    Ok(None) => break "media node ended the control stream".to_string(),
                    Err(st) => break format!("media control stream lost: {}", st.message()),
                }
            };
            tracing::debug!(reason = %why, "media control stream closed");
            reader.closed.store(true, Ordering::SeqCst);
            if let Some(hook) = hook {
                hook(&why);
            }
            let waiters: Vec<Waiter> = reader
                .pending
                .lock()
                .map(|mut p| p.drain().map(|(_, w)| w).collect())
                .unwrap_or_default();
            for w in waiters {
                let _ = w.send(Err(Status::unavailable(why.clone())));
            }
        });
        // Reconcile before anything else goes on the stream (we still hold
        // `opening`, and the stream is not `current` yet).
        // A failed reconcile (the node slow to answer) only delays the
        // cleanup of a previous run to its leases; a lost stream is an error.
        if let Some(owner) = self.owner.clone()
            && let Err(st) = self.reconcile(&open, &owner).await
        {
            if open.closed.load(Ordering::SeqCst) {
                return Err(st);
            }
            tracing::warn!(code = ?st.code(), error = %st.message(), "media node did not reconcile this swbd's sessions; stale ones wait for their leases");
        }
        if let Ok(mut current) = self.current.lock() {
            *current = Some(open.clone());
        }
        Ok(Some(open))
    }

    /// Send `command` and wait for its reply.
    async fn call(&self, open: &Open, command: Command) -> Result<Reply, Status> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = open.pending.lock() {
            p.insert(id, tx);
        }
        let forget = || {
            if let Ok(mut p) = open.pending.lock() {
                p.remove(&id);
            }
        };
        // After the insert: a stream closing now still drains this waiter.
        if open.closed.load(Ordering::SeqCst) {
            forget();
            return Err(Status::unavailable("media control stream lost"));
        }
        let request = pb::ControlRequest {
            id,
            command: Some(command),
        };
        let sent = std::time::Instant::now();
        if open.tx.send(request).is_err() {
            forget();
            return Err(Status::unavailable("media control stream lost"));
        }
        let answer = tokio::time::timeout(COMMAND_TIMEOUT, rx).await;
        let took = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.least_round_trip_ns.fetch_min(took, Ordering::Relaxed);
        match answer {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(Status::unavailable("media control stream lost")),
            Err(_) => {
                forget();
                Err(Status::deadline_exceeded(
                    "media node did not answer in time",
                ))
            }
        }
    }
}

/// A client for one node's MediaService: the per-call commands over the
/// node's Control stream (unary RPCs on nodes without it), everything else
/// unary. Cheap to clone.
#[derive(Clone)]
pub struct MediaClient {
    unary: MediaServiceClient<AuthedChannel>,
    control: Arc<ControlChannel>,
}

impl std::fmt::Debug for MediaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaClient").finish_non_exhaustive()
    }
}

/// A reply that is an error (or not the command's own kind) as a status.
fn unexpected(reply: Reply) -> Status {
    match reply {
        Reply::Error(e) => Status::new(Code::from_i32(e.code), e.message),
        _ => Status::internal("media node answered another command's reply kind"),
    }
}

/// The per-call commands: same name, request and response as the unary
/// RPC, routed over the Control stream when the node has one.
macro_rules! commands {
    ($($(#[$doc:meta])* $method:ident($req:ty) -> $resp:ty = $variant:ident;)*) => {
        impl MediaClient {
            $(
                $(#[$doc])*
                pub async fn $method(
                    &mut self,
                    request: $req,
                ) -> Result<tonic::Response<$resp>, Status> {
                    let result = async {
                        match self.control.stream().await? {
                            Some(open) => match self.control.call(&open, Command::$variant(request)).await? {
                                Reply::$variant(r) => Ok(tonic::Response::new(r)),
                                other => Err(unexpected(other)),
                            },
                            None => self.unary.$method(self.control.request(request)).await,
                        }
                    }
                    .await;
                    if let Err(st) = &result {
                        self.control.report(st);
                    }
                    result
                }
            )*
        }
    };
}

commands! {
    /// CreateSession.
    create_session(pb::CreateSessionRequest) -> pb::CreateSessionResponse = CreateSession;
    /// UpdateSession.
    update_session(pb::UpdateSessionRequest) -> pb::UpdateSessionResponse = UpdateSession;
    /// DestroySession.
    destroy_session(pb::DestroySessionRequest) -> pb::DestroySessionResponse = DestroySession;
    /// ConnectLegs.
    connect_legs(pb::ConnectLegsRequest) -> pb::ConnectLegsResponse = ConnectLegs;
    /// DestroySessions.
    destroy_sessions(pb::DestroySessionsRequest) -> pb::DestroySessionsResponse = DestroySessions;
    /// Bridge.
    bridge(pb::BridgeRequest) -> pb::BridgeResponse = Bridge;
    /// Unbridge.
    unbridge(pb::UnbridgeRequest) -> pb::UnbridgeResponse = Unbridge;
}

impl MediaClient {
    pub(crate) fn new(
        unary: MediaServiceClient<AuthedChannel>,
        control: Arc<ControlChannel>,
    ) -> Self {
        Self { unary, control }
    }

    /// A client of its own for the node at `address` (`tcp://host:port`
    /// or `unix:///path`) sending `token`, connecting on first use (tools
    /// and tests; calls use the pool's shared per-node client).
    pub fn connect_lazy(address: &str, token: Option<&Token>) -> Result<MediaClient, String> {
        let unary = super::node::authed_client(address, token)?;
        let control = Arc::new(ControlChannel::new(unary.clone(), None));
        Ok(Self { unary, control })
    }

    /// Play (a server stream: always its own RPC).
    pub async fn play(
        &mut self,
        request: pb::PlayRequest,
    ) -> Result<tonic::Response<tonic::Streaming<pb::PlayEvent>>, Status> {
        self.unary.play(request).await
    }

    /// ReofferSession (rare: its own RPC; a node that predates it answers
    /// UNIMPLEMENTED).
    pub async fn reoffer_session(
        &mut self,
        request: pb::ReofferSessionRequest,
    ) -> Result<tonic::Response<pb::ReofferSessionResponse>, Status> {
        self.unary.reoffer_session(request).await
    }

    /// SendDtmf: digits into a session as RFC 4733 events. Control stream
    /// only: UNIMPLEMENTED on a node without it; a node that predates
    /// SendDtmf answers INVALID_ARGUMENT. The caller sends SIP INFO instead
    /// when this fails.
    pub async fn send_dtmf(
        &mut self,
        request: pb::SendDtmfRequest,
    ) -> Result<pb::SendDtmfResponse, Status> {
        let result = async {
            let Some(open) = self.control.stream().await? else {
                return Err(Status::unimplemented(
                    "media node has no Control stream (older swrtp): no SendDtmf",
                ));
            };
            match self.control.call(&open, Command::SendDtmf(request)).await? {
                Reply::SendDtmf(r) => Ok(r),
                other => Err(unexpected(other)),
            }
        }
        .await;
        if let Err(st) = &result {
            self.control.report(st);
        }
        result
    }

    /// StopPlayback (rare: its own RPC).
    pub async fn stop_playback(
        &mut self,
        request: pb::StopPlaybackRequest,
    ) -> Result<tonic::Response<pb::StopPlaybackResponse>, Status> {
        self.unary.stop_playback(request).await
    }
}
