//! `switchboard.media.v1.MediaService`: the media control contract swbd uses.
//! Thin: every handler validates the request, calls [`Node`], and maps the
//! error through the one `From<Error> for Status`.

use std::pin::Pin;
use std::time::SystemTime;

use futures::Stream;
use switchboard_proto::media::v1 as pb;
use switchboard_proto::media::v1::media_service_server::MediaService;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::lease::{self, Owner};
use crate::sdp::{self, AudioCodec, Offer};
use crate::session::{Family, Negotiation, Node, NodeEvent};

/// The MediaService implementation.
#[derive(Debug, Clone)]
pub struct MediaControl {
    node: Node,
}

impl MediaControl {
    /// A service over `node`.
    pub fn new(node: Node) -> Self {
        Self { node }
    }
}

/// What a session offers, from the request's options (codecs in
/// preference order, node defaults when none; RFC 4733 events; ptime).
fn offer_options(o: &pb::OfferOptions) -> Result<Offer, Status> {
    let mut codecs: Vec<AudioCodec> = o
        .codecs
        .iter()
        .filter_map(|c| pb::Codec::try_from(*c).ok())
        .filter_map(AudioCodec::from_proto)
        .collect();
    codecs.dedup();
    if codecs.is_empty() {
        codecs = vec![AudioCodec::Pcmu, AudioCodec::Pcma];
    }
    let ptime = match o.ptime_ms {
        0 => sdp::DEFAULT_PTIME_MS,
        p if (10..=120).contains(&p) && p % 10 == 0 => p,
        p => {
            return Err(Status::invalid_argument(format!(
                "ptime_ms {p} is not supported (10..120, a multiple of 10)"
            )));
        }
    };
    Ok(Offer {
        codecs,
        te_pt: o.telephone_event.then_some(sdp::DEFAULT_TELEPHONE_EVENT_PT),
        ptime,
    })
}

fn required<'a>(v: &'a str, name: &'static str) -> Result<&'a str, Status> {
    if v.is_empty() {
        Err(Error::Missing(name).into())
    } else {
        Ok(v)
    }
}

/// The peer of a ConnectLegs request.
enum Peer<'a> {
    /// An existing session.
    Existing(&'a str),
    /// A new session answering this offer.
    New(&'a pb::PeerOffer, &'a str),
}

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A `SessionEvent` for WatchSessions, if the event is one.
pub fn session_event(e: &NodeEvent) -> Option<pb::SessionEvent> {
    let (shared, kind, dtmf) = match e {
        NodeEvent::Created(s) => (s, pb::SessionEventKind::Created, None),
        NodeEvent::Destroyed(s) => (s, pb::SessionEventKind::Destroyed, None),
        NodeEvent::TimedOut(s) => (s, pb::SessionEventKind::RtpTimeout, None),
        NodeEvent::Status => return None,
        NodeEvent::Dtmf {
            session,
            digit,
            duration_ms,
            relayed,
        } => (
            session,
            pb::SessionEventKind::Dtmf,
            Some(pb::DtmfReceived {
                digit: digit.to_string(),
                duration_ms: *duration_ms,
                relayed: *relayed,
            }),
        ),
    };
    Some(pb::SessionEvent {
        at: Some(switchboard_proto::timestamp(SystemTime::now())),
        session_id: shared.id.clone(),
        call_id: shared.call_id.clone(),
        kind: kind as i32,
        dtmf,
    })
}

/// The unsolicited Control reply (id 0) carrying `e`, when `e` is an event
/// for the Control streams of `owner` (see the proto's `ControlReply.event`).
pub fn owner_event(owner: &Owner, e: &NodeEvent) -> Option<pb::ControlReply> {
    let NodeEvent::Dtmf { session, .. } = e else {
        return None;
    };
    if session.owner.as_ref() != Some(owner) {
        return None;
    }
    Some(pb::ControlReply {
        id: 0,
        result: Some(pb::control_reply::Result::Event(session_event(e)?)),
    })
}

impl MediaControl {
    /// One command of a Control stream, answered as its unary RPC would be;
    /// sessions it creates belong to the stream's `owner`.
    async fn run_command(&self, owner: Option<Owner>, req: pb::ControlRequest) -> pb::ControlReply {
        use pb::control_reply::Result as R;
        use pb::control_request::Command as C;
        fn reply<T>(r: Result<Response<T>, Status>, wrap: fn(T) -> R) -> R {
            match r {
                Ok(resp) => wrap(resp.into_inner()),
                Err(st) => R::Error(pb::ControlError {
                    code: st.code() as i32,
                    message: st.message().to_string(),
                }),
            }
        }
        let result = match req.command {
            Some(C::CreateSession(r)) => {
                reply(self.create(owner.as_ref(), r).await, R::CreateSession)
            }
            Some(C::UpdateSession(r)) => {
                reply(self.update_session(Request::new(r)).await, R::UpdateSession)
            }
            Some(C::DestroySession(r)) => reply(
                self.destroy_session(Request::new(r)).await,
                R::DestroySession,
            ),
            Some(C::ConnectLegs(r)) => reply(self.connect(owner.as_ref(), r).await, R::ConnectLegs),
            Some(C::DestroySessions(r)) => reply(
                self.destroy_sessions(Request::new(r)).await,
                R::DestroySessions,
            ),
            Some(C::Bridge(r)) => reply(self.bridge(Request::new(r)).await, R::Bridge),
            Some(C::Unbridge(r)) => reply(self.unbridge(Request::new(r)).await, R::Unbridge),
            Some(C::RenewLeases(r)) => reply(self.renew_leases(r), R::RenewLeases),
            Some(C::ReconcileOwner(r)) => reply(self.reconcile_owner(r).await, R::ReconcileOwner),
            Some(C::SendDtmf(r)) => reply(self.send_dtmf(r).await, R::SendDtmf),
            None => R::Error(pb::ControlError {
                code: tonic::Code::InvalidArgument as i32,
                message: "control request without a command".into(),
            }),
        };
        pb::ControlReply {
            id: req.id,
            result: Some(result),
        }
    }
}

impl MediaControl {
    /// RenewLeases (Control stream only).
    fn renew_leases(
        &self,
        r: pb::RenewLeasesRequest,
    ) -> Result<Response<pb::RenewLeasesResponse>, Status> {
        let owner = Owner::from_proto(r.owner.as_ref())?;
        let length = lease::lease_length(r.lease_secs)?;
        let renewed = self.node.renew_leases(&owner, length);
        Ok(Response::new(pb::RenewLeasesResponse { renewed }))
    }

    /// ReconcileOwner (Control stream only).
    async fn reconcile_owner(
        &self,
        r: pb::ReconcileOwnerRequest,
    ) -> Result<Response<pb::ReconcileOwnerResponse>, Status> {
        let owner = Owner::from_proto(r.owner.as_ref())?;
        let length = lease::lease_length(r.lease_secs)?;
        if r.keep_session_ids.len() > crate::session::MAX_KEEP {
            return Err(Status::invalid_argument(format!(
                "keep_session_ids lists more than {} sessions",
                crate::session::MAX_KEEP
            )));
        }
        // A restarted owner first loses what it no longer knows (issue #18).
        let (restart_dropped, missing_session_ids) = if r.restarted {
            self.node
                .keep_after_restart(&owner, &r.keep_session_ids)
                .await
        } else {
            (0, Vec::new())
        };
        let (dropped, renewed, kept_connected) = self.node.reconcile_owner(&owner, length).await;
        let dropped = dropped.saturating_add(restart_dropped);
        tracing::debug!(%owner, dropped, renewed, kept_connected, restarted = r.restarted, missing = missing_session_ids.len(), "owner reconciled");
        Ok(Response::new(pb::ReconcileOwnerResponse {
            dropped,
            renewed,
            kept_connected,
            missing_session_ids,
        }))
    }

    /// SendDtmf (Control stream only).
    async fn send_dtmf(
        &self,
        r: pb::SendDtmfRequest,
    ) -> Result<Response<pb::SendDtmfResponse>, Status> {
        let id = required(&r.session_id, "session_id")?;
        let queued = self.node.send_dtmf(id, &r.digits, r.duration_ms).await?;
        Ok(Response::new(pb::SendDtmfResponse { queued }))
    }

    /// CreateSession for `owner`.
    async fn create(
        &self,
        owner: Option<&Owner>,
        r: pb::CreateSessionRequest,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let negotiation = match r.negotiation {
            Some(pb::create_session_request::Negotiation::RemoteOfferSdp(sdp)) => {
                Negotiation::Answer(sdp)
            }
            Some(pb::create_session_request::Negotiation::Offer(o)) => {
                Negotiation::Offer(offer_options(&o)?)
            }
            None => return Err(Error::Missing("remote_offer_sdp or offer").into()),
        };
        let family = Family::from_proto(r.address_family)?;
        // The peer (A-leg) first: an unusable caller offer must fail the
        // request before anything is created for the B-leg.
        let peer = match (&r.peer, &negotiation) {
            (Some(o), Negotiation::Offer(_)) => {
                let sdp = required(&o.remote_offer_sdp, "peer.remote_offer_sdp")?;
                let created = self
                    .node
                    .create_owned(
                        owner,
                        &o.call_id,
                        &o.leg,
                        Negotiation::Answer(sdp.to_string()),
                    )
                    .map_err(|e| {
                        let st = Status::from(e);
                        Status::new(st.code(), format!("peer offer: {}", st.message()))
                    })?;
                Some(created)
            }
            (Some(_), Negotiation::Answer(_)) => {
                return Err(Status::invalid_argument(
                    "peer is only allowed with an offer negotiation",
                ));
            }
            (None, _) => None,
        };
        let (session_id, local_sdp, media) =
            match self
                .node
                .create_in(owner, &r.call_id, &r.leg, negotiation, family)
            {
                Ok(created) => created,
                Err(e) => {
                    if let Some((peer_id, _, _)) = &peer {
                        // Leave nothing behind: the caller never learns this id.
                        let _ = self.node.destroy(peer_id).await;
                    }
                    return Err(e.into());
                }
            };
        let (peer_session_id, peer_local_sdp, peer_media) = match peer {
            Some((id, sdp, m)) => (id, sdp, Some(m)),
            None => (String::new(), String::new(), None),
        };
        Ok(Response::new(pb::CreateSessionResponse {
            session_id,
            local_sdp,
            media: Some(media),
            peer_session_id,
            peer_local_sdp,
            peer_media,
        }))
    }

    /// ConnectLegs for `owner` (the owner of a session it creates).
    async fn connect(
        &self,
        owner: Option<&Owner>,
        r: pb::ConnectLegsRequest,
    ) -> Result<Response<pb::ConnectLegsResponse>, Status> {
        let id = required(&r.session_id, "session_id")?;
        // Check the peer before touching anything: a bad request changes nothing.
        let peer = match &r.peer {
            Some(pb::connect_legs_request::Peer::PeerSessionId(p)) => {
                Peer::Existing(required(p, "peer_session_id")?)
            }
            Some(pb::connect_legs_request::Peer::PeerOffer(o)) => Peer::New(
                o,
                required(&o.remote_offer_sdp, "peer_offer.remote_offer_sdp")?,
            ),
            None => return Err(Error::Missing("peer_session_id or peer_offer").into()),
        };
        let (_, media) = self.node.update(id, &r.remote_answer_sdp).await?;
        let (peer_id, peer_local_sdp, peer_media, created) = match peer {
            Peer::Existing(p) => (p.to_string(), String::new(), None, false),
            Peer::New(o, sdp) => {
                let (sid, local, m) = self.node.create_owned(
                    owner,
                    &o.call_id,
                    &o.leg,
                    Negotiation::Answer(sdp.to_string()),
                )?;
                (sid, local, Some(m), true)
            }
        };
        if let Err(e) = self.node.bridge(&peer_id, id).await {
            if created {
                // Leave nothing behind: the caller never learns this id.
                let _ = self.node.destroy(&peer_id).await;
            }
            return Err(e.into());
        }
        Ok(Response::new(pb::ConnectLegsResponse {
            media: Some(media),
            peer_session_id: peer_id,
            peer_local_sdp,
            peer_media,
        }))
    }
}

#[tonic::async_trait]
impl MediaService for MediaControl {
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let owner = Owner::from_metadata(request.metadata())?;
        self.create(owner.as_ref(), request.into_inner()).await
    }

    async fn connect_legs(
        &self,
        request: Request<pb::ConnectLegsRequest>,
    ) -> Result<Response<pb::ConnectLegsResponse>, Status> {
        let owner = Owner::from_metadata(request.metadata())?;
        self.connect(owner.as_ref(), request.into_inner()).await
    }

    async fn update_session(
        &self,
        request: Request<pb::UpdateSessionRequest>,
    ) -> Result<Response<pb::UpdateSessionResponse>, Status> {
        let r = request.into_inner();
        let id = required(&r.session_id, "session_id")?;
        if r.remote_sdp.is_empty() {
            if let Some(o) = &r.reoffer {
                let (local_sdp, media) = self.node.reoffer(id, offer_options(o)?).await?;
                return Ok(Response::new(pb::UpdateSessionResponse {
                    local_sdp,
                    media: Some(media),
                }));
            }
            if r.withdraw_offer {
                let media = self.node.withdraw_offer(id).await?;
                return Ok(Response::new(pb::UpdateSessionResponse {
                    local_sdp: String::new(),
                    media: Some(media),
                }));
            }
        }
        let (local_sdp, media) = self.node.update(id, &r.remote_sdp).await?;
        Ok(Response::new(pb::UpdateSessionResponse {
            local_sdp,
            media: Some(media),
        }))
    }

    async fn reoffer_session(
        &self,
        request: Request<pb::ReofferSessionRequest>,
    ) -> Result<Response<pb::ReofferSessionResponse>, Status> {
        let r = request.into_inner();
        let id = required(&r.session_id, "session_id")?;
        let direction = sdp::direction_from_proto(r.direction());
        let (local_sdp, media) = self
            .node
            .reoffer_direction(id, direction, r.withdraw)
            .await?;
        Ok(Response::new(pb::ReofferSessionResponse {
            local_sdp,
            media: Some(media),
        }))
    }

    async fn destroy_session(
        &self,
        request: Request<pb::DestroySessionRequest>,
    ) -> Result<Response<pb::DestroySessionResponse>, Status> {
        let r = request.into_inner();
        let id = required(&r.session_id, "session_id")?;
        let stats = self.node.destroy(id).await?;
        Ok(Response::new(pb::DestroySessionResponse {
            stats: Some(stats),
        }))
    }

    async fn destroy_sessions(
        &self,
        request: Request<pb::DestroySessionsRequest>,
    ) -> Result<Response<pb::DestroySessionsResponse>, Status> {
        let r = request.into_inner();
        let mut out = pb::DestroySessionsResponse::default();
        for id in r.session_ids {
            if id.is_empty() {
                return Err(Error::Missing("session_ids[]").into());
            }
            match self.node.destroy(&id).await {
                Ok(stats) => out.stats.push(stats),
                Err(Error::NotFound(_)) => out.not_found.push(id),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Response::new(out))
    }

    async fn bridge(
        &self,
        request: Request<pb::BridgeRequest>,
    ) -> Result<Response<pb::BridgeResponse>, Status> {
        let r = request.into_inner();
        let a = required(&r.session_a, "session_a")?;
        let b = required(&r.session_b, "session_b")?;
        self.node.bridge(a, b).await?;
        Ok(Response::new(pb::BridgeResponse {}))
    }

    async fn unbridge(
        &self,
        request: Request<pb::UnbridgeRequest>,
    ) -> Result<Response<pb::UnbridgeResponse>, Status> {
        let r = request.into_inner();
        let id = required(&r.session_id, "session_id")?;
        self.node.unbridge(id).await?;
        Ok(Response::new(pb::UnbridgeResponse {}))
    }

    type PlayStream = EventStream<pb::PlayEvent>;

    async fn play(
        &self,
        request: Request<pb::PlayRequest>,
    ) -> Result<Response<Self::PlayStream>, Status> {
        let r = request.into_inner();
        let id = required(&r.session_id, "session_id")?;
        let file = required(&r.file, "file")?;
        let rx = self.node.play(id, file, r.r#loop).await?;
        let stream = futures::StreamExt::map(ReceiverStream::new(rx), Ok);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn stop_playback(
        &self,
        request: Request<pb::StopPlaybackRequest>,
    ) -> Result<Response<pb::StopPlaybackResponse>, Status> {
        let r = request.into_inner();
        let id = required(&r.session_id, "session_id")?;
        let was_playing = self.node.stop_playback(id).await?;
        Ok(Response::new(pb::StopPlaybackResponse { was_playing }))
    }

    async fn health(
        &self,
        _request: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        Ok(Response::new(self.node.health()))
    }

    type ControlStream = EventStream<pb::ControlReply>;

    async fn control(
        &self,
        request: Request<tonic::Streaming<pb::ControlRequest>>,
    ) -> Result<Response<Self::ControlStream>, Status> {
        // Sessions created on this stream belong to the owner it names.
        let owner = Owner::from_metadata(request.metadata())?;
        let live = owner.as_ref().map(|o| self.node.owner_connected(o));
        // The owner's session events (DTMF) go out on its stream, id 0.
        let mut events = owner.as_ref().map(|_| self.node.subscribe());
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(1024);
        let this = self.clone();
        let closed = self.node.closed();
        tokio::spawn(async move {
            use futures::StreamExt as _;
            tokio::pin!(closed);
            // Commands run concurrently on this one task; replies go out in
            // completion order.
            let mut running = futures::stream::FuturesUnordered::new();
            let mut shutting_down = false;
            loop {
                tokio::select! {
                    // Shutting down: take no more commands, finish the running
                    // ones, then end the stream (the server waits for it).
                    () = &mut closed => {
                        shutting_down = true;
                        break;
                    }
                    msg = inbound.message() => match msg {
                        Ok(Some(req)) => running.push(this.run_command(owner.clone(), req)),
                        // Client done or gone: finish what runs, then end.
                        Ok(None) | Err(_) => break,
                    },
                    Some(reply) = running.next(), if !running.is_empty() => {
                        if tx.send(Ok(reply)).await.is_err() {
                            break;
                        }
                    }
                    ev = async {
                        match events.as_mut() {
                            Some(rx) => rx.recv().await,
                            None => std::future::pending().await,
                        }
                    } => match ev {
                        Ok(e) => {
                            if let Some(o) = &owner
                                && let Some(reply) = owner_event(o, &e)
                                // A client not reading its replies loses
                                // events, never blocks command replies.
                                && tx.try_send(Ok(reply)).is_err()
                            {
                                tracing::debug!(owner = %o, "control stream full: session event dropped");
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "control stream fell behind the node's events");
                        }
                        Err(broadcast::error::RecvError::Closed) => events = None,
                    },
                }
            }
            while let Some(reply) = running.next().await {
                let _ = tx.send(Ok(reply)).await;
            }
            if shutting_down {
                let _ = tx.try_send(Err(Status::unavailable("swrtp is shutting down")));
            }
            // The owner counts as connected until its stream is done.
            drop(live);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type WatchSessionsStream = EventStream<pb::SessionEvent>;

    async fn watch_sessions(
        &self,
        _request: Request<pb::WatchSessionsRequest>,
    ) -> Result<Response<Self::WatchSessionsStream>, Status> {
        let mut events = self.node.subscribe();
        let (tx, rx) = mpsc::channel(64);
        let closed = self.node.closed();
        tokio::spawn(async move {
            tokio::pin!(closed);
            loop {
                let received = tokio::select! {
                    e = events.recv() => e,
                    () = &mut closed => {
                        let _ = tx.try_send(Err(Status::unavailable("swrtp is shutting down")));
                        return;
                    }
                };
                let item = match received {
                    Ok(e) => match session_event(&e) {
                        Some(ev) => Ok(ev),
                        None => continue,
                    },
                    Err(broadcast::error::RecvError::Lagged(n)) => Err(Status::resource_exhausted(
                        format!("watcher too slow: {n} events dropped; reconnect and poll Health"),
                    )),
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let end = item.is_err();
                if tx.send(item).await.is_err() || end {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
