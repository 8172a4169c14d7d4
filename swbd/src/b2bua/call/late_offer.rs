//! Delayed offer (RFC 3261 §13.2.1, RFC 3264): INVITEs without SDP.
//!
//! **A-leg.** A's INVITE carries no offer. A's media session is created as
//! the offerer (`CreateSession` with `offer`) before any B-leg is placed,
//! so B-legs are offered by the media node as always and see no
//! difference. When a B-leg answers, its answer is applied and the two
//! sessions are bridged as usual; A's 200 carries the node's offer, and
//! A's answer comes in its ACK, which the call task hands over here and
//! which is applied with `UpdateSession`. No SDP goes to A in a
//! provisional (an offer in an unreliable 18x is not allowed; A hears 180).
//! An ACK without an answer, or with one the node refuses, ends the call:
//! BYE to A and to the B-leg, the reason logged and kept as the end cause
//! ("delayed offer: ...").
//!
//! **B-leg.** A gateway with `late_offer: true` gets its INVITEs without
//! SDP (trunks and SBCs that want to make the offer). Its 2xx carries the
//! offer; the B-leg's session is created then, answering it, and our ACK
//! carries the answer. A 2xx without a usable offer is ACKed without SDP
//! and ended with BYE, like any unusable answer. SDP in such a leg's
//! unreliable 18x (a preview of the offer its 2xx repeats) is not bridged
//! as early media: A hears 180.

use super::*;

/// A call's delayed-offer state.
#[derive(Debug)]
pub(super) struct LateOffer {
    /// A's session made the offer (A's INVITE had none): its answer comes
    /// in A's ACK.
    pub(super) a: bool,
    /// ACKs for A's 2xx, handed over by the call task's watch on A's
    /// transaction (one per call).
    acks: mpsc::UnboundedReceiver<Box<Request>>,
}

impl LateOffer {
    /// The state, and the sending end the call task gives A's ACKs to.
    pub(super) fn new() -> (Self, mpsc::UnboundedSender<Box<Request>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { a: false, acks: rx }, tx)
    }
}

/// What a node offers on a leg: its codecs, RFC 4733 events, 20 ms.
pub(super) fn node_offer() -> media::OfferOptions {
    media::OfferOptions {
        codecs: Vec::new(),
        telephone_event: true,
        ptime_ms: 20,
    }
}

fn blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

impl Ctl {
    /// A's session for an INVITE without an offer: the node makes one,
    /// which our 200 carries.
    pub(super) async fn offer_to_a(&mut self) -> Result<(String, String), ControlError> {
        let resp = self
            .create_session(
                "a",
                media::create_session_request::Negotiation::Offer(node_offer()),
            )
            .await?;
        self.late.a = true;
        tracing::info!("INVITE without SDP: our 200 will carry the offer, the ACK the answer");
        Ok(self.adopt_a_session(resp.session_id, resp.local_sdp, resp.media))
    }

    /// Our 200 with the offer went to A: wait for A's ACK and apply the
    /// answer in it. The wait ends with the call when no ACK comes (the
    /// transaction reports it, the call task hangs up).
    pub(super) async fn answer_from_ack(&mut self) -> Result<(), ControlError> {
        let Some(ack) = self.late.acks.recv().await else {
            return self.late_failed("no ACK from the caller").await;
        };
        let summary = summary_req(&ack);
        let bytes = ack.to_bytes();
        self.handle
            .update(None, |r| r.log_message(true, true, summary, &bytes));
        if blank(&ack.body) {
            return self
                .late_failed("the ACK carries no SDP answer to the offer in our 200")
                .await;
        }
        let Some(session_id) = self.a_session.as_ref().map(|s| s.0.clone()) else {
            return self.late_failed("the caller's media session is gone").await;
        };
        let applied = match self.media_client() {
            Ok(mut client) => client
                .update_session(media::UpdateSessionRequest {
                    session_id,
                    remote_sdp: String::from_utf8_lossy(&ack.body).into_owned(),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().media)
                .map_err(|st| status_to_control(&st, "answer in the ACK")),
            Err(e) => Err(e),
        };
        match applied {
            Ok(negotiated) => {
                let codec = negotiated.map(|m| codec_name(m.codec)).unwrap_or_default();
                self.handle.update(None, |r| {
                    if let Some(l) = r.legs.first_mut() {
                        l.codec = codec;
                    }
                });
                Ok(())
            }
            Err(e) => {
                let why = format!("the answer in the ACK was refused: {}", e.reason);
                self.late_failed(&why).await
            }
        }
    }

    /// The delayed offer cannot complete: A (answered) gets BYE, and the
    /// call is over whatever the dialplan does next (the B-leg, if any,
    /// gets BYE from whoever called `answer_a`, then at cleanup).
    async fn late_failed(&mut self, why: &str) -> Result<(), ControlError> {
        tracing::warn!(reason = %why, "delayed offer failed: ending the call");
        self.end_cause = Some(format!("delayed offer: {why}"));
        self.bye_a().await;
        Err(ControlError::new(
            488,
            format!("Not Acceptable Here: {why}"),
        ))
    }

    /// Whether B-legs toward `target` go without SDP (gateway `late_offer`).
    pub(super) fn sends_late_offer(&self, target: &DialTarget) -> bool {
        match target {
            DialTarget::Gateway { name, .. } => self
                .deps
                .config
                .gateways
                .iter()
                .any(|g| g.name == *name && g.late_offer),
            _ => false,
        }
    }

    /// Before a B-leg without SDP: A's session must exist (A's offer is
    /// checked before anything rings, and the session is bridged when B
    /// answers); the B-leg's own session waits for B's offer. Returns the
    /// empty "offer" the leg is placed with.
    pub(super) async fn prepare_late_b_leg(
        &mut self,
    ) -> Result<media::CreateSessionResponse, ControlError> {
        self.ensure_a_session().await?;
        Ok(media::CreateSessionResponse::default())
    }

    /// B-leg `i`, placed without SDP, answered with its offer in `resp`:
    /// create its session answering it and put the answer in `ack`.
    /// Returns the session and its negotiated media.
    pub(super) async fn answer_b_offer(
        &mut self,
        i: usize,
        resp: &Response,
        ack: &mut Request,
    ) -> Result<(String, Option<media::NegotiatedMedia>), ControlError> {
        if blank(&resp.body) {
            return Err(ControlError::new(
                502,
                "Bad Gateway: the 2xx to an INVITE without SDP carries no offer",
            ));
        }
        let created = self
            .create_session(
                "b",
                media::create_session_request::Negotiation::RemoteOfferSdp(
                    String::from_utf8_lossy(&resp.body).into_owned(),
                ),
            )
            .await?;
        let sid = created.session_id.clone();
        let mut sip_call_id = String::new();
        if let Some(leg) = self.b_legs.get_mut(i) {
            leg.session_id = sid.clone();
            sip_call_id = leg.request.call_id().unwrap_or_default().to_string();
        }
        self.handle.update(None, |r| {
            if let Some(l) = r.leg_mut(&sip_call_id) {
                l.media_session_id = sid.clone();
            }
        });
        ack.headers.insert(Name::CONTENT_TYPE, "application/sdp");
        ack.body = bytes::Bytes::from(created.local_sdp);
        Ok((sid, created.media))
    }
}
