//! Which IP family the media of a B-leg offer is in.
//!
//! An offer swbd sends (a B-leg INVITE) is made in the family of the leg's
//! signalling flow: a phone registered over IPv6 gets `c=IN IP6`, one over
//! IPv4 `c=IN IP4` (answers always follow the offer's `c=` line, on the
//! node). Some phones signal over IPv6 but have IPv4-only media; they
//! refuse an IPv6 offer with `488`. Such a B-leg is placed again, once,
//! with an IPv4 offer (a new INVITE, a new media session), and the flow is
//! remembered for the rest of the call (bounded by `b2bua.max_branches`
//! attempts per call).

use super::*;

impl Ctl {
    /// The family to offer media in toward `remote`.
    pub(super) fn offer_family(&self, remote: SocketAddr) -> media::AddressFamily {
        match remote {
            SocketAddr::V6(a)
                if a.ip().to_ipv4_mapped().is_none() && !self.ipv4_only.contains(&remote) =>
            {
                media::AddressFamily::Ipv6
            }
            _ => media::AddressFamily::Ipv4,
        }
    }

    /// B-leg `i` answered our offer with `488`: when that offer was IPv6,
    /// end the leg and place it again with an IPv4 offer; `false` when
    /// there is nothing to retry (the caller fails the leg).
    pub(super) async fn retry_in_ipv4(&mut self, i: usize) -> bool {
        let Some(leg) = self.b_legs.get(i) else {
            return false;
        };
        let remote = leg.flow.remote;
        if self.offer_family(remote) != media::AddressFamily::Ipv6
            || self.ipv4_only.len() >= self.deps.config.b2bua.max_branches
        {
            return false;
        }
        let target = leg.target.clone();
        let uri = leg.request.uri.to_string();
        let Ok(to) = leg.request.header_to().map(|t| t.uri.to_string()) else {
            return false;
        };
        let (flow, fallbacks) = (leg.flow, leg.fallbacks.clone());
        self.ipv4_only.push(remote);
        tracing::info!(%remote, "B-leg refused an IPv6 offer: placing it again with IPv4 media");
        self.b_failed(i, 488).await;
        if let Err(e) = self.start_b_leg(target, &uri, &to, flow, fallbacks).await {
            tracing::info!(error = %e, "B-leg not placed again with IPv4 media");
        }
        true
    }
}
