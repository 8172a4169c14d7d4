//! Re-offers: a negotiated session makes a new offer when the other leg's
//! media changed (swbd relays an UPDATE, RFC 3311), and withdraws it when
//! the peer refuses. The media in use changes only when the answer is
//! applied ([`Node::update`] takes it as the answer to the pending offer).

use std::net::SocketAddr;

use switchboard_proto::media::v1 as pb;

use super::{Node, media_proto};
use crate::error::{Error, Result};
use crate::sdp::{self, Offer};

impl Node {
    /// A new local offer for a negotiated session (the other leg's media
    /// changed): its negotiated codec first, `o=` version + 1 (RFC 3264
    /// §8). Pending until [`Node::update`] applies the answer; the media in
    /// use does not change before. A session still waiting for the answer
    /// to its first offer has nothing to re-offer (`NotNegotiated`).
    pub async fn reoffer(
        &self,
        id: &str,
        mut offer: Offer,
    ) -> Result<(String, pb::NegotiatedMedia)> {
        let _ops = self.inner.ops.lock().await;
        let mut table = self.table();
        let entry = table
            .sessions
            .get_mut(id)
            .ok_or_else(|| Error::NotFound(id.into()))?;
        let state = &mut entry.sdp;
        let Some(negotiated) = state.negotiated else {
            return Err(Error::NotNegotiated(id.into()));
        };
        offer.codecs.retain(|c| *c != negotiated.codec);
        offer.codecs.insert(0, negotiated.codec);
        let mut origin = state.origin.clone();
        origin.version += 1;
        let text = sdp::offer(&origin, &offer);
        state.origin = origin;
        state.pending_offer = Some(offer);
        let local = SocketAddr::new(state.origin.address, state.origin.port);
        Ok((text, media_proto(Some(&negotiated), local)))
    }

    /// Withdraw a pending re-offer (the peer refused it): the session keeps
    /// the media it had. A first offer still waiting for its answer stays.
    pub async fn withdraw_offer(&self, id: &str) -> Result<pb::NegotiatedMedia> {
        let _ops = self.inner.ops.lock().await;
        let mut table = self.table();
        let entry = table
            .sessions
            .get_mut(id)
            .ok_or_else(|| Error::NotFound(id.into()))?;
        let state = &mut entry.sdp;
        if state.negotiated.is_some() {
            state.pending_offer = None;
            // A hold re-offer (Node::reoffer_direction) is withdrawn too.
            if state.reoffer_sdp.take().is_some() {
                state.offered_direction = sdp_types::Direction::SendRecv;
            }
        }
        let local = SocketAddr::new(state.origin.address, state.origin.port);
        Ok(media_proto(state.negotiated.as_ref(), local))
    }
}
