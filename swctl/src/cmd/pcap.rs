//! `swctl calls pcap ID [-w FILE]`: the SIP messages swbd kept of a call
//! (both legs), as a pcap file ([`crate::pcap`]).

use std::io::{IsTerminal, Write};
use std::path::Path;

use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::signaling_admin_client::SignalingAdminClient;

use super::{Kind, Targets, gather};
use crate::Error;

/// Run it: the first swbd that kept the call answers.
pub async fn run(t: &Targets, id: &str, write: Option<&Path>) -> Result<(), Error> {
    if write.is_none() && std::io::stdout().is_terminal() {
        return Err(Error::Usage(
            "refusing to write a pcap file to a terminal: redirect stdout (> call.pcap) or give --write FILE"
                .into(),
        ));
    }
    let got = gather(t, Kind::Swbd, |ch| async move {
        match SignalingAdminClient::new(ch)
            .get_call_capture(pb::GetCallCaptureRequest {
                call_id: id.to_string(),
            })
            .await
        {
            Ok(r) => Ok(Some(r.into_inner())),
            Err(st) if st.code() == tonic::Code::NotFound => Ok(None),
            Err(st) => Err(st),
        }
    })
    .await?;
    let Some((_, capture)) = got.into_iter().find_map(|(b, c)| c.map(|c| (b, c))) else {
        return Err(Error::Daemon {
            daemon: "swbd".into(),
            message: format!(
                "no SIP messages kept of call {id:?} (swbd keeps the last capture.max_calls calls; see `swctl calls list -a`)"
            ),
        });
    };
    let file = crate::pcap::write(&capture);
    match write {
        Some(path) => std::fs::write(path, &file)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&file)
                .and_then(|()| out.flush())
                .map_err(|e| anyhow::anyhow!("writing the pcap to stdout: {e}"))?;
        }
    }
    eprintln!(
        "swctl: call {}: {} SIP messages ({} legs){}",
        capture.call_id,
        capture.messages.len(),
        capture.sip_call_ids.len(),
        if capture.messages_not_kept > 0 {
            format!(
                "; {} more were not kept (capture.max_messages_per_call)",
                capture.messages_not_kept
            )
        } else {
            String::new()
        }
    );
    Ok(())
}
