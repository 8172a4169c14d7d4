//! Our own re-INVITE on a confirmed leg (RFC 3261 §14.1): built from the
//! leg's dialog, sent, and its 2xx ACKed. Hold (`hold.rs`, passing a hold
//! on) and drain with migration (`migrate.rs`, new media node) both send
//! theirs through here; what the answer means is theirs.

use super::*;

/// Our re-INVITE as sent: its transaction and what its ACK needs.
#[derive(Debug)]
pub(super) struct SentReinvite {
    pub txn: ClientInviteTransaction,
    /// Its CSeq number (the ACK's).
    pub seq: u32,
    /// The flow it went on.
    pub flow: Target,
}

impl Ctl {
    /// Send a re-INVITE carrying `sdp` to leg A (`to_a`) or B, logged in
    /// the call's ladder. `Err` says why nothing was sent (no dialog with
    /// that leg, transport error).
    pub(super) async fn send_reinvite(
        &mut self,
        to_a: bool,
        sdp: String,
    ) -> Result<SentReinvite, String> {
        let dialog = if to_a {
            self.a_dialog.as_mut()
        } else {
            self.winner.as_mut().map(|w| &mut w.dialog)
        };
        let Some(dialog) = dialog else {
            return Err("no dialog with that leg".into());
        };
        let mut invite = dialog.request(Method::Invite, None);
        let seq = dialog.local_seq;
        let flow = dialog.target;
        invite
            .headers
            .insert(Name::USER_AGENT, self.deps.config.sip.user_agent.clone());
        invite.headers.insert(Name::CONTENT_TYPE, "application/sdp");
        invite.body = bytes::Bytes::from(sdp);
        let summary = summary_req(&invite);
        let raw = invite.to_bytes();
        self.handle
            .update(None, |r| r.log_message(to_a, false, summary, &raw));
        let txn = self
            .deps
            .layer
            .send_invite(invite, flow)
            .await
            .map_err(|e| e.to_string())?;
        Ok(SentReinvite { txn, seq, flow })
    }

    /// Log a response to our re-INVITE in the call's ladder.
    pub(super) fn log_reinvite_response(&self, to_a: bool, resp: &Response) {
        let summary = summary_resp(resp);
        let raw = resp.to_bytes();
        self.handle
            .update(None, |r| r.log_message(to_a, true, summary, &raw));
    }

    /// ACK the 2xx to our re-INVITE number `seq` (logged); the ACK is
    /// returned for the 2xx's retransmissions.
    pub(super) async fn ack_reinvite(
        &mut self,
        to_a: bool,
        seq: u32,
        flow: Target,
    ) -> Option<Request> {
        let dialog = if to_a {
            self.a_dialog.as_mut()
        } else {
            self.winner.as_mut().map(|w| &mut w.dialog)
        }?;
        let mut ack = dialog.request(Method::Ack, Some(seq));
        ack.headers
            .insert(Name::USER_AGENT, self.deps.config.sip.user_agent.clone());
        let _ = self.deps.layer.send_ack(ack.clone(), flow).await;
        let summary = summary_req(&ack);
        let raw = ack.to_bytes();
        self.handle
            .update(None, |r| r.log_message(to_a, false, summary, &raw));
        Some(ack)
    }
}
