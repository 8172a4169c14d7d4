//! The call's media sessions: create on a node (with failover), connect,
//! destroy.

use super::*;

impl Ctl {
    pub(super) fn media_client(&mut self) -> Result<crate::media::MediaClient, ControlError> {
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

    pub(super) fn node_name(&self) -> String {
        self.lease
            .as_ref()
            .map(|l| l.name().to_string())
            .unwrap_or_default()
    }

    pub(super) async fn create_session(
        &mut self,
        leg: &str,
        negotiation: media::create_session_request::Negotiation,
    ) -> Result<media::CreateSessionResponse, ControlError> {
        self.create_session_with_peer(leg, negotiation, None, media::AddressFamily::Unspecified)
            .await
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
    ///
    /// An offer is made in `family` (see [`super::family`]); an answer
    /// follows the offer's `c=` line.
    pub(super) async fn create_session_with_peer(
        &mut self,
        leg: &str,
        negotiation: media::create_session_request::Negotiation,
        peer: Option<media::PeerOffer>,
        family: media::AddressFamily,
    ) -> Result<media::CreateSessionResponse, ControlError> {
        let request = media::CreateSessionRequest {
            call_id: self.handle.id().to_string(),
            leg: leg.to_string(),
            negotiation: Some(negotiation),
            peer,
            address_family: family as i32,
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

    pub(super) async fn destroy_session(&mut self, session_id: &str) {
        if session_id.is_empty() {
            // A delayed-offer B-leg that never got its session.
            return;
        }
        self.sessions.retain(|s| s != session_id);
        let node = self.node_name();
        self.handle.remove_session(&node, session_id);
        if let Ok(mut client) = self.media_client() {
            let destroyed = client
                .destroy_session(media::DestroySessionRequest {
                    session_id: session_id.to_string(),
                })
                .await;
            // Final RTP stats, for the CDR.
            if let Ok(resp) = destroyed {
                let stats = resp.into_inner().stats;
                self.handle
                    .update(None, |r| r.cdr.session_stats(session_id, stats));
            }
        }
    }

    /// Destroy several sessions in one round trip (a call's teardown); a
    /// node without `DestroySessions` gets them one by one.
    pub(super) async fn destroy_sessions(&mut self, ids: Vec<String>) {
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
                Ok(resp) => {
                    // Final RTP stats, for the CDR.
                    let resp = resp.into_inner();
                    self.handle.update(None, |r| {
                        r.cdr.batch_stats(&ids, &resp.not_found, resp.stats)
                    });
                    false
                }
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
                if let Ok(resp) = client
                    .destroy_session(media::DestroySessionRequest {
                        session_id: session_id.clone(),
                    })
                    .await
                {
                    let stats = resp.into_inner().stats;
                    self.handle
                        .update(None, |r| r.cdr.session_stats(&session_id, stats));
                }
            }
        }
    }

    /// B-leg `b_session` answered with `answer`: apply it, answer A's offer
    /// (or reuse A's session) and bridge the two, in one round trip
    /// (`ConnectLegs`). Returns B's negotiated media.
    pub(super) async fn connect_legs(
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
    /// An INVITE without an offer gets a session that makes one, sent in
    /// our 200 (late_offer.rs).
    pub(super) async fn ensure_a_session(&mut self) -> Result<(String, String), ControlError> {
        if let Some(s) = &self.a_session {
            return Ok(s.clone());
        }
        if self.a_offer.trim().is_empty() {
            return self.offer_to_a().await;
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
    pub(super) fn adopt_a_session(
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
}
