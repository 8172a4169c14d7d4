//! `SendDtmf`: queue RFC 4733 digits on a session's media task (the
//! sending itself is [`crate::relay::dtmf`]).

use tokio::sync::oneshot;

use super::Node;
use crate::error::{Error, Result};
use crate::relay::Cmd;
use crate::relay::dtmf::{self, DtmfError};

impl Node {
    /// Queue `digits` (`0`-`9`, `*`, `#`, `A`-`D`) of `duration_ms` each
    /// (0: the default) on session `id`; returns the digits waiting.
    pub async fn send_dtmf(&self, id: &str, digits: &str, duration_ms: u32) -> Result<u32> {
        let events = dtmf::parse_digits(digits)?;
        let ticks = dtmf::duration_ticks(duration_ms)?;
        let worker = {
            let table = self.table();
            let e = table
                .sessions
                .get(id)
                .ok_or_else(|| Error::NotFound(id.into()))?;
            if e.shared
                .timed_out
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                return Err(Error::TimedOut(id.into()));
            }
            if e.sdp.negotiated.is_some_and(|n| n.te_pt.is_none()) {
                return Err(DtmfError::NoTelephoneEvent(id.into()).into());
            }
            e.worker.clone()
        };
        let (reply, done) = oneshot::channel();
        worker
            .send(Cmd::SendDtmf {
                id: id.into(),
                events,
                ticks,
                reply,
            })
            .await
            .map_err(|_| Error::TimedOut(id.into()))?;
        match done.await {
            Ok(Some(queued)) => Ok(u32::try_from(queued?).unwrap_or(u32::MAX)),
            // The leg left its task in between (timed out, destroyed).
            Ok(None) | Err(_) => Err(Error::TimedOut(id.into())),
        }
    }
}
