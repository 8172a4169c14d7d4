//! `swctl status`: a summary of every daemon named by `--host`.
//! Each host is asked as swbd first, then as swrtp.

use serde::Serialize;
use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::media_admin_client::MediaAdminClient;
use switchboard_proto::admin::v1::signaling_admin_client::SignalingAdminClient;

use crate::Error;
use crate::cli::Output;
use crate::connect::{self, Host};
use crate::output;

/// One daemon's summary, as printed (JSON field names are stable).
#[derive(Debug, Serialize)]
pub struct StatusView {
    /// `--host` it came from.
    pub host: String,
    /// "swbd" or "swrtp".
    pub daemon: String,
    /// Node name.
    pub node_id: String,
    /// Version.
    pub version: String,
    /// Seconds since start.
    pub uptime_secs: i64,
    /// swbd: active calls; swrtp: active sessions.
    pub active: u32,
    /// One line of daemon-specific detail.
    pub detail: String,
}

/// Run `swctl status`.
pub async fn run(hosts: &[Host], format: Output) -> Result<(), Error> {
    let mut views = Vec::new();
    for host in hosts {
        views.push(status_of(host).await?);
    }
    let text = match format {
        Output::Table | Output::Wide => output::table(
            &[
                "HOST", "DAEMON", "NODE", "VERSION", "UPTIME", "ACTIVE", "DETAIL",
            ],
            &views
                .iter()
                .map(|v| {
                    vec![
                        v.host.clone(),
                        v.daemon.clone(),
                        v.node_id.clone(),
                        v.version.clone(),
                        format!("{}s", v.uptime_secs),
                        v.active.to_string(),
                        v.detail.clone(),
                    ]
                })
                .collect::<Vec<_>>(),
            if format == Output::Wide { 200 } else { 24 },
        ),
        _ => output::structured(format, &views)?,
    };
    print!("{text}");
    Ok(())
}

async fn status_of(host: &Host) -> Result<StatusView, Error> {
    let channel = connect::connect(host, "daemon").await?;
    let now = std::time::SystemTime::now();
    let uptime = |t: Option<prost_types::Timestamp>| -> i64 {
        let now = prost_types::Timestamp::from(now);
        t.map(|t| now.seconds - t.seconds).unwrap_or(0)
    };
    match SignalingAdminClient::new(channel.clone())
        .get_status(pb::GetStatusRequest {})
        .await
    {
        Ok(resp) => {
            let s = resp.into_inner();
            Ok(StatusView {
                host: host.to_string(),
                daemon: "swbd".into(),
                node_id: s.node_id,
                version: s.version,
                uptime_secs: uptime(s.started_at),
                active: s.active_calls,
                detail: format!(
                    "regs {} nodes {}/{} sip {}",
                    s.registrations,
                    s.media_nodes_up,
                    s.media_nodes_total,
                    s.sip_listeners.join(",")
                ),
            })
        }
        Err(st) if st.code() == tonic::Code::Unimplemented => {
            let s = MediaAdminClient::new(channel)
                .get_status(pb::GetMediaStatusRequest {})
                .await
                .map_err(|e| Error::from_status("swrtp", e))?
                .into_inner();
            Ok(StatusView {
                host: host.to_string(),
                daemon: "swrtp".into(),
                node_id: s.node_id,
                version: s.version,
                uptime_secs: uptime(s.started_at),
                active: s.active_sessions,
                detail: format!(
                    "ports {}/{} free{}",
                    s.free_port_pairs,
                    s.total_port_pairs,
                    if s.draining { " draining" } else { "" }
                ),
            })
        }
        Err(st) => Err(Error::from_status("swbd", st)),
    }
}
