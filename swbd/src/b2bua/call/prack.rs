//! Reliable provisional responses (RFC 3262) on both legs of a call.
//!
//! **Toward the caller (A-leg, swbd is UAS).** The transaction numbers,
//! retransmits and PRACK-matches what the call marks reliable
//! ([`crate::transaction::reliable`]); this file decides what to mark:
//! - A `Require: 100rel`: every 18x is reliable (RFC 3262 §3 "MUST").
//! - A `Supported: 100rel`: the 18x that carry SDP (early media, our
//!   answer to A's offer) are reliable, so the answer cannot be lost and
//!   A's PRACK confirms it; a bare 180 is not (nothing in it needs it, and
//!   a lost 180 costs nothing). Our choice, following RFC 3262's reason
//!   for existing: provisionals with session descriptions.
//! - Neither: nothing is reliable (§3 "MUST NOT").
//!
//! A reliable 18x carries our Contact (its early dialog is where the
//! PRACK goes). Once our answer went out in a reliable 18x, the 2xx
//! carries no SDP: the offer/answer exchange is over (RFC 3261 §13.2.1,
//! RFC 6337 §3.1), and the transaction holds that 2xx until the 18x is
//! PRACKed. No PRACK within 64*T1: the transaction rejects the INVITE with
//! `500` and the call ends ("no PRACK from caller"), CANCELling B-legs.
//! An offer in a PRACK is not supported (the PRACK is answered `200`, its
//! body ignored): swbd never sends an offer in a reliable 18x, so a PRACK
//! has no answer to carry.
//!
//! **Toward callees (B-legs, swbd is UAC).** B-leg INVITEs say
//! `Supported: 100rel`. A reliable 18x from B (`Require: 100rel` and
//! `RSeq`) is PRACKed in its early dialog (`RAck: RSeq CSeq INVITE`, the
//! next CSeq of that dialog; the confirmed dialog's CSeq continues from
//! there), then handled as any 18x (relayed 180, early media from SDP).
//! A retransmission of it, or one whose RSeq is not the next, is neither
//! PRACKed again nor processed (RFC 3262 §4); the PRACK's own transaction
//! retransmits it if it was lost.

use super::*;
use crate::transaction::reliable::{self, Reliability};

/// What the A-leg's reliable provisionals changed for later responses.
#[derive(Debug, Default)]
pub(super) struct ALegReliable {
    /// Our SDP answer went to A in a reliable 18x: the 2xx carries none.
    answer_sent: bool,
}

/// One B-leg's reliable provisionals (RFC 3262 §4).
#[derive(Debug, Default)]
pub(super) struct BLegReliable {
    /// The early dialog (To tag) of the last reliable 18x.
    to_tag: Option<String>,
    /// Its RSeq.
    last_rseq: Option<u32>,
    /// The highest CSeq sent in that early dialog (PRACKs); the confirmed
    /// dialog continues above it.
    cseq: u32,
    /// The SDP of the first reliable 18x: B's answer to our offer, which
    /// its 2xx then need not repeat (RFC 3262 §5, RFC 6337 §3.1).
    answer: Option<bytes::Bytes>,
}

impl BLegReliable {
    /// The last CSeq number used by PRACKs (0 when none was sent).
    pub(super) fn cseq(&self) -> u32 {
        self.cseq
    }
}

impl Ctl {
    /// Mark a response to A for reliability (see the module docs): called
    /// on every response to A before it is sent.
    pub(super) fn reliable_to_a(&mut self, mut resp: Response) -> Response {
        if resp.is_success() {
            if self.a_reliable.answer_sent && !resp.body.is_empty() {
                resp.body = bytes::Bytes::new();
                resp.headers.remove(&Name::CONTENT_TYPE);
            }
            return resp;
        }
        if !(101..=199).contains(&resp.code) {
            return resp;
        }
        let reliable = match Reliability::of(self.a.request()) {
            Reliability::Required => true,
            Reliability::Supported => !resp.body.is_empty(),
            Reliability::Unsupported => false,
        };
        if !reliable {
            return resp;
        }
        if !crate::sip::capabilities::lists_option_tag(&resp, &Name::REQUIRE, reliable::TAG) {
            resp.headers.insert(Name::REQUIRE, reliable::TAG);
        }
        if !resp.headers.contains(&Name::CONTACT) {
            let source = *self.a.source();
            let contact = self.local_contact(&Target::reply_to(&source, source.remote));
            resp.headers.insert(Name::CONTACT, format!("<{contact}>"));
        }
        if !resp.body.is_empty() {
            self.a_reliable.answer_sent = true;
        }
        resp
    }

    /// A provisional from B-leg `i`: PRACK it when it is reliable. `false`
    /// when it must not be processed further (a retransmitted or
    /// out-of-order reliable provisional, RFC 3262 §4).
    pub(super) async fn prack_b(&mut self, i: usize, resp: &Response) -> bool {
        let Some(rseq) = reliable::rseq(resp).filter(|_| reliable::is_reliable(resp)) else {
            return true;
        };
        let Some(to_tag) = resp
            .header_to()
            .ok()
            .and_then(|t| t.tag().map(str::to_string))
        else {
            // No early dialog to PRACK in: handled as unreliable.
            return true;
        };
        let Some(leg) = self.b_legs.get_mut(i) else {
            return false;
        };
        let same_dialog = leg.reliable.to_tag.as_deref() == Some(to_tag.as_str());
        if same_dialog
            && let Some(last) = leg.reliable.last_rseq
            && rseq != last.wrapping_add(1)
        {
            tracing::debug!(rseq, last, "reliable provisional not the next one: ignored");
            return false;
        }
        leg.reliable.to_tag = Some(to_tag);
        leg.reliable.last_rseq = Some(rseq);
        if leg.reliable.answer.is_none() && !resp.body.is_empty() {
            leg.reliable.answer = Some(resp.body.clone());
        }
        let invite_cseq = leg.request.cseq().map(|c| c.number).unwrap_or(1);
        let dialog = match Dialog::as_uac(&leg.request, resp, leg.contact.clone(), leg.flow) {
            Ok(d) => Ok(d),
            Err(_) => {
                // No Contact in the 18x: PRACK the Request-URI.
                let mut with_contact = resp.clone();
                with_contact
                    .headers
                    .insert(Name::CONTACT, format!("<{}>", leg.request.uri));
                Dialog::as_uac(&leg.request, &with_contact, leg.contact.clone(), leg.flow)
            }
        };
        let Ok(mut dialog) = dialog else {
            tracing::warn!("reliable provisional without a usable early dialog: not PRACKed");
            return true;
        };
        dialog.local_seq = dialog.local_seq.max(leg.reliable.cseq);
        let mut prack = dialog.request(Method::Prack, None);
        leg.reliable.cseq = dialog.local_seq;
        prack
            .headers
            .insert(Name::RACK, format!("{rseq} {invite_cseq} INVITE"));
        prack
            .headers
            .insert(Name::USER_AGENT, self.deps.config.sip.user_agent.clone());
        let flow = dialog.target;
        let summary = summary_req(&prack);
        let bytes = prack.to_bytes();
        self.handle
            .update(None, |r| r.log_message(false, false, summary, &bytes));
        match self.deps.layer.send_request(prack, flow).await {
            Ok(mut txn) => {
                tokio::spawn(
                    async move {
                        match txn.final_response().await {
                            Ok(r) => tracing::debug!(code = r.code, "PRACK answered"),
                            Err(e) => tracing::debug!(error = %e, "PRACK unanswered"),
                        }
                    }
                    .in_current_span(),
                );
            }
            Err(e) => tracing::warn!(error = %e, "cannot send PRACK"),
        }
        true
    }

    /// B-leg `i`'s 2xx, with the SDP answer of its reliable 18x when the
    /// 2xx carries none (the offer/answer was complete before it).
    pub(super) fn with_reliable_answer(&self, i: usize, mut resp: Response) -> Response {
        if resp.body.is_empty()
            && let Some(answer) = self.b_legs.get(i).and_then(|l| l.reliable.answer.clone())
        {
            resp.headers.remove(&Name::CONTENT_TYPE);
            resp.headers.insert(Name::CONTENT_TYPE, "application/sdp");
            resp.body = answer;
        }
        resp
    }

    /// B-leg `i` answered and `dialog` was formed from its 2xx: continue
    /// above the CSeq its PRACKs used.
    pub(super) fn continue_b_cseq(&self, i: usize, dialog: &mut Dialog) {
        if let Some(leg) = self.b_legs.get(i) {
            dialog.local_seq = dialog.local_seq.max(leg.reliable.cseq());
        }
    }
}
