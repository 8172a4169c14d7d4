//! B-legs: placing the INVITEs, their responses, early media, the answer,
//! and the helpers they need.

use super::*;

impl Ctl {
    /// Start one B-leg INVITE toward `uri` over `flow`.
    pub(super) async fn start_b_leg(
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
        // A trunk configured for delayed offer gets no SDP (late_offer.rs).
        let late = self.sends_late_offer(&target);
        // Until A's session exists, the B-leg's session is created together
        // with it: A's offer is checked before this B-leg is placed, at no
        // extra round trip (issue #13, unusable SDP found too late).
        let peer =
            (!late && self.a_session.is_none() && !self.a_offer.trim().is_empty()).then(|| {
                media::PeerOffer {
                    call_id: self.handle.id().to_string(),
                    leg: "a".into(),
                    remote_offer_sdp: self.a_offer.clone(),
                }
            });
        let asked_peer = peer.is_some();
        let offer = if late {
            self.prepare_late_b_leg().await?
        } else {
            self.create_session_with_peer(
                "b",
                media::create_session_request::Negotiation::Offer(media::OfferOptions {
                    codecs: Vec::new(),
                    telephone_event: true,
                    ptime_ms: 20,
                }),
                peer,
                self.offer_family(flow.remote),
            )
            .await?
        };
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
        if let Some(by) = self.transfer.referred_by_value(&host) {
            invite
                .headers
                .insert(super::super::transfer::referred_by(), by);
        }
        invite.headers.insert(Name::TO, cat(&["<", to, ">"]));
        invite
            .headers
            .insert(Name::CALL_ID, cat(&[&random_token(16), "@", &host]));
        invite.headers.insert(Name::CSEQ, "1 INVITE");
        invite
            .headers
            .insert(Name::CONTACT, cat(&["<", &contact, ">"]));
        invite
            .headers
            .insert(Name::USER_AGENT, self.deps.config.sip.user_agent.clone());
        invite
            .headers
            .insert(Name::ALLOW, crate::sip::capabilities::ALLOW_IN_DIALOG);
        invite
            .headers
            .insert(Name::SUPPORTED, self.supported_value());
        self.session_timer_b_invite(&mut invite);
        if !late {
            invite.headers.insert(Name::CONTENT_TYPE, "application/sdp");
            invite.body = bytes::Bytes::from(offer.local_sdp.clone());
        }

        let summary = summary_req(&invite);
        let txn = match self.deps.layer.send_invite(invite, flow).await {
            Ok(t) => t,
            Err(e) => {
                self.destroy_session(&offer.session_id).await;
                return Err(ControlError::new(e.status_code(), e.to_string()));
            }
        };
        // The call waits on a callee now, not on swbd.
        self.work = None;
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
            reliable: Default::default(),
            session_retried: false,
            late_offer: late,
            redirects: 0,
            early_dialog: None,
        });
        Ok(())
    }

    /// Resolve a dial target into (uri, to, flow, fallbacks) attempts.
    pub(super) async fn resolve(
        &self,
        target: &DialTarget,
    ) -> Result<Vec<(String, String, Target, Vec<SocketAddr>)>, u16> {
        match target {
            DialTarget::User(user) => {
                let contacts = self.deps.locator.lookup(user);
                if contacts.is_empty() {
                    // A known user who is not registered is unavailable
                    // (480), not unknown (404).
                    return Err(if self.deps.locator.is_known(user) {
                        480
                    } else {
                        404
                    });
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
    pub(super) async fn on_b_response(&mut self, i: usize, resp: Response) -> Option<DialTarget> {
        let summary = summary_resp(&resp);
        let bytes = ladder_bytes_of_response(&resp);
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
                if !self.prack_b(i, &resp).await {
                    return None;
                }
                self.route_b_early(i, &resp);
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
            488 if self.retry_in_ipv4(i).await => None,
            422 if self.retry_session_interval(i, &resp).await => None,
            300..=399 if self.on_redirect(i, &resp).await => None,
            code => {
                self.b_failed(i, code).await;
                None
            }
        }
    }

    /// A gateway challenged our INVITE: send it again with credentials
    /// (once). `false` when this leg cannot answer the challenge.
    pub(super) async fn retry_with_credentials(&mut self, i: usize, resp: &Response) -> bool {
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
        let Some(challenge) = crate::b2bua::outbound_auth::pick_challenge(resp) else {
            return false;
        };
        let mut request = leg.request.clone();
        // Strip our Via: the layer adds a fresh one with a new branch.
        request.headers.remove(&Name::VIA);
        let retry =
            crate::b2bua::outbound_auth::authorize(&request, resp.code, &challenge, &user, &pass);
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
    pub(super) async fn bridge_a_with(&mut self, b_session: &str) -> Result<String, ControlError> {
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

    pub(super) async fn early_media(
        &mut self,
        i: usize,
        resp: &Response,
    ) -> Result<(), ControlError> {
        let session_id = self
            .b_legs
            .get(i)
            .map(|b| b.session_id.clone())
            .unwrap_or_default();
        if session_id.is_empty() || self.late.a {
            // A delayed-offer leg has no session yet; a caller without an
            // offer gets ours in the 200 only (late_offer.rs).
            return Err(ControlError::new(
                488,
                "no early media with a delayed offer",
            ));
        }
        let mut client = self.media_client()?;
        client
            .update_session(media::UpdateSessionRequest {
                session_id: session_id.clone(),
                remote_sdp: String::from_utf8_lossy(&resp.body).into_owned(),
                ..Default::default()
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

    pub(super) async fn b_failed(&mut self, i: usize, code: u16) {
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
            r.cdr.leg_failed(&sip_call_id, code);
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

    pub(super) async fn on_b_answer(&mut self, i: usize, resp: Response) -> Option<DialTarget> {
        // Connecting the media and answering A is swbd's work again.
        let _work = self.deps.overload.setup_work();
        let resp = self.with_reliable_answer(i, resp);
        let leg = self.b_legs.get_mut(i)?;
        // The transaction stays with the leg until the ACK is out: a call
        // interrupted meanwhile (caller CANCEL, media lost) drops this
        // future, and cleanup then reaps the leg, ACKing a retransmitted
        // 2xx and sending BYE. Taken here, it was dropped unACKed.
        leg.txn.as_ref()?;
        // The INVITE is borrowed, not copied: the dialog takes what it
        // needs from it.
        let request = &leg.request;
        let flow = leg.flow;
        let mut session_id = leg.session_id.clone();
        let late = leg.late_offer;
        let target = leg.target.clone();
        let sip_call_id = request.call_id().unwrap_or_default().to_string();
        let invite_seq = request.cseq().map(|c| c.number).unwrap_or(1);
        let dialog = Dialog::as_uac(request, &resp, leg.contact.clone(), flow);

        let Ok(mut dialog) = dialog else {
            // A 2xx we cannot form a dialog from: nothing to ACK into.
            self.b_failed(i, 502).await;
            return None;
        };
        self.continue_b_cseq(i, &mut dialog);
        let mut ack = dialog.request(Method::Ack, Some(invite_seq));

        // Apply B's answer to its media session before the ACK: a phone
        // starts sending RTP on the ACK, and the node must know where from.
        // The common case (no playback, no early media, A has an offer)
        // also answers A and bridges in the same round trip; a node
        // without `ConnectLegs` gets the three calls one by one.
        let mut connected = false;
        let mut applied = None;
        if late {
            // B made the offer: answer it, in our ACK (late_offer.rs).
            applied = Some(match self.answer_b_offer(i, &resp, &mut ack).await {
                Ok((sid, media)) => {
                    session_id = sid;
                    Ok(media)
                }
                Err(e) => Err(e),
            });
        }
        if !late
            && !self.playing
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
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner().media)
                    .map_err(|st| status_to_control(&st, "B answer")),
                Err(e) => Err(e),
            },
        };
        // Every 2xx is ACKed, usable or not (RFC 3261 §13.2.2.4).
        let _ = self.deps.layer.send_ack(ack.clone(), flow).await;
        let txn = self.b_legs.get_mut(i).and_then(|l| l.txn.take())?;
        let ack_summary = summary_req(&ack);
        let ack_bytes = ladder_bytes_of_request(&ack);
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
        self.unroute_early_except(i);
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
        self.session_timer_b_answered(&resp);
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

pub(super) fn codec_name(c: i32) -> String {
    match media::Codec::try_from(c) {
        Ok(media::Codec::Pcmu) => "PCMU".into(),
        Ok(media::Codec::Pcma) => "PCMA".into(),
        _ => String::new(),
    }
}

pub(super) fn fmt_addr(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => v.to_string(),
        SocketAddr::V6(v) => format!("[{}]:{}", v.ip(), v.port()),
    }
}

pub(super) fn split_host_port(s: &str) -> (String, u16) {
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

pub(super) async fn resolve_host(host: &str, port: u16) -> Option<SocketAddr> {
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
pub(super) async fn reap(
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

#[cfg(test)]
mod tests {
    use super::*;

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
