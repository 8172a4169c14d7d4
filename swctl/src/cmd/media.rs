//! `swctl media sessions`: sessions with live RTP stats, from every swrtp.

use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::media_admin_client::MediaAdminClient;

use super::{Kind, Targets, gather, table_width};
use crate::Error;
use crate::cli::Output;
use crate::output;
use crate::views::SessionView;

/// `swctl media sessions`.
pub async fn sessions(t: &Targets, format: Output) -> Result<(), Error> {
    let got = gather(t, Kind::Swrtp, |ch| async move {
        MediaAdminClient::new(ch)
            .list_sessions(pb::ListMediaSessionsRequest::default())
            .await
            .map(|r| r.into_inner().sessions)
    })
    .await?;
    let sessions: Vec<SessionView> = got
        .iter()
        .flat_map(|(b, ss)| ss.iter().map(|s| SessionView::new(&b.label, s)))
        .collect();
    print!(
        "{}",
        render(&sessions, format, got.len() > 1, table_width())?
    );
    Ok(())
}

/// Render sessions. `several`: add the BACKEND column.
pub fn render(
    sessions: &[SessionView],
    format: Output,
    several: bool,
    width: usize,
) -> anyhow::Result<String> {
    let state = |s: &SessionView| {
        if s.timed_out {
            "timeout".to_string()
        } else if !s.playing.is_empty() {
            "playing".to_string()
        } else if !s.bridged_with.is_empty() {
            "bridged".to_string()
        } else {
            "idle".to_string()
        }
    };
    Ok(match format {
        Output::Table => {
            let mut header = vec![
                "SESSION", "CALL", "LEG", "PORT", "CODEC", "STATE", "RX", "TX", "LOSS", "JITTER",
            ];
            if several {
                header.insert(0, "BACKEND");
            }
            let rows = sessions
                .iter()
                .map(|s| {
                    let mut r = vec![
                        s.session_id.clone(),
                        s.call_id.clone(),
                        s.leg.clone(),
                        s.rtp_port.to_string(),
                        if s.codec.is_empty() {
                            "-".into()
                        } else {
                            s.codec.clone()
                        },
                        state(s),
                        s.rx.packets.to_string(),
                        s.tx.packets.to_string(),
                        format!("{:.1}%", s.rx.loss_percent),
                        format!("{:.1}ms", s.rx.jitter_ms),
                    ];
                    if several {
                        r.insert(0, s.backend.clone());
                    }
                    r
                })
                .collect::<Vec<_>>();
            output::fit(&header, &rows, Some(width))
        }
        Output::Wide => {
            let header = [
                "BACKEND", "SESSION", "CALL", "LEG", "PORT", "CODEC", "DIR", "STATE", "REMOTE",
                "LATCHED", "BRIDGED", "PLAYING", "RX", "TX", "LOST", "LOSS", "JITTER", "DROPPED",
                "OWNER", "LEASE",
            ];
            let rows = sessions
                .iter()
                .map(|s| {
                    vec![
                        s.backend.clone(),
                        s.session_id.clone(),
                        s.call_id.clone(),
                        s.leg.clone(),
                        s.rtp_port.to_string(),
                        s.codec.clone(),
                        s.direction.clone(),
                        state(s),
                        s.remote_rtp_address.clone(),
                        s.latched_address.clone(),
                        s.bridged_with.clone(),
                        s.playing.clone(),
                        s.rx.packets.to_string(),
                        s.tx.packets.to_string(),
                        s.rx.packets_lost.to_string(),
                        format!("{:.1}%", s.rx.loss_percent),
                        format!("{:.1}ms", s.rx.jitter_ms),
                        s.dropped.to_string(),
                        if s.owner.is_empty() {
                            "-".into()
                        } else {
                            s.owner.clone()
                        },
                        match s.lease_remaining_ms {
                            Some(ms) => format!("{}s", ms / 1000),
                            None => "-".into(),
                        },
                    ]
                })
                .collect::<Vec<_>>();
            output::fit(&header, &rows, None)
        }
        _ => output::structured(format, &sessions)?,
    })
}
