//! `swctl nodes list|drain NODE|undrain NODE` (swbd's media-node pool).
//!
//! One drain model for the CLI and `swctl top`: `drain`/`undrain NODE`
//! sets the flag in every swbd pool that has NODE *and* on every swrtp
//! among the targets whose node id is NODE (what `swctl top` sets when
//! you drain a swrtp row). A drain set on the node itself is therefore
//! undone by `swctl --host <swrtp> nodes undrain NODE`.

use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::media_admin_client::MediaAdminClient;
use switchboard_proto::admin::v1::signaling_admin_client::SignalingAdminClient;

use super::{Kind, Targets, gather, table_width};
use crate::Error;
use crate::cli::Output;
use crate::output;
use crate::views::NodeView;

/// `swctl nodes list`.
pub async fn list(t: &Targets, format: Output) -> Result<(), Error> {
    let got = gather(t, Kind::Swbd, |ch| async move {
        SignalingAdminClient::new(ch)
            .list_media_nodes(pb::ListMediaNodesRequest {})
            .await
            .map(|r| r.into_inner().nodes)
    })
    .await?;
    let nodes: Vec<NodeView> = got
        .iter()
        .flat_map(|(b, ns)| ns.iter().map(|n| NodeView::new(&b.label, n)))
        .collect();
    print!("{}", render(&nodes, format, got.len() > 1, table_width())?);
    Ok(())
}

/// `swctl nodes drain|undrain NODE` on every swbd that has the node;
/// `migrate` also moves the node's calls off it (swbd's pool only: the
/// swrtp's own flag stops new sessions, and migration needs swbd).
pub async fn drain(
    t: &Targets,
    format: Output,
    name: &str,
    drain: bool,
    migrate: bool,
) -> Result<(), Error> {
    let on_nodes = drain_swrtp(t, format, name, drain).await;
    let pools = drain_pools(t, format, name, drain, migrate).await;
    if migrate && pools.is_err() {
        return pools;
    }
    match (pools, on_nodes) {
        (Ok(()), _) => Ok(()),
        // No swbd pool has it, but the swrtp itself was set: done.
        (Err(_), n) if n > 0 => Ok(()),
        (Err(e), _) => Err(e),
    }
}

/// SetDraining on every swrtp target whose node id is `name`; returns how
/// many were set (and says so on stdout).
async fn drain_swrtp(t: &Targets, format: Output, name: &str, drain: bool) -> usize {
    if !t.backends.iter().any(|b| b.kind != Kind::Swbd) {
        return 0;
    }
    let got = gather(t, Kind::Swrtp, |ch| async move {
        let mut c = MediaAdminClient::new(ch);
        let st = c
            .get_status(pb::GetMediaStatusRequest {})
            .await?
            .into_inner();
        if st.node_id != name {
            return Ok(None);
        }
        c.set_draining(pb::SetDrainingRequest { draining: drain })
            .await
            .map(|r| Some(r.into_inner()))
    })
    .await;
    let Ok(got) = got else { return 0 };
    let mut n = 0;
    for (b, st) in got {
        if let Some(st) = st {
            n += 1;
            let state = if st.draining {
                "draining"
            } else {
                "accepting sessions"
            };
            let line = format!("swrtp {} ({}): {state}", st.node_id, b.label);
            // JSON/YAML on stdout stay one document: the note goes to stderr.
            if matches!(format, Output::Json | Output::Yaml) {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
    }
    n
}

/// DrainMediaNode / UndrainMediaNode on every swbd that has the node.
async fn drain_pools(
    t: &Targets,
    format: Output,
    name: &str,
    drain: bool,
    migrate: bool,
) -> Result<(), Error> {
    let got = gather(t, Kind::Swbd, |ch| async move {
        let mut c = SignalingAdminClient::new(ch);
        let r = if drain {
            c.drain_media_node(pb::DrainMediaNodeRequest {
                name: name.to_string(),
                migrate,
            })
            .await
        } else {
            c.undrain_media_node(pb::UndrainMediaNodeRequest {
                name: name.to_string(),
            })
            .await
        };
        match r {
            Ok(n) => Ok(Some(n.into_inner())),
            Err(st) if st.code() == tonic::Code::NotFound => Ok(None),
            Err(st) => Err(st),
        }
    })
    .await?;
    let nodes: Vec<NodeView> = got
        .iter()
        .filter_map(|(b, n)| n.as_ref().map(|n| NodeView::new(&b.label, n)))
        .collect();
    if nodes.is_empty() {
        return Err(Error::Daemon {
            daemon: "swbd".into(),
            message: format!("no media node {name:?} (see `swctl nodes list`)"),
        });
    }
    print!("{}", render(&nodes, format, got.len() > 1, table_width())?);
    Ok(())
}

/// Render nodes. `several`: add the BACKEND column.
pub fn render(
    nodes: &[NodeView],
    format: Output,
    several: bool,
    width: usize,
) -> anyhow::Result<String> {
    let drain = |n: &NodeView| {
        let flag = if n.drained {
            "drained"
        } else if n.state == "draining" {
            "draining"
        } else {
            "-"
        };
        match &n.migration {
            Some(m) => format!("{flag} ({m})"),
            None => flag.to_string(),
        }
    };
    Ok(match format {
        Output::Table => {
            let mut header = vec![
                "NAME", "ADDRESS", "STATE", "CALLS", "SESSIONS", "FREE", "DRAIN",
            ];
            if several {
                header.insert(0, "BACKEND");
            }
            let rows = nodes
                .iter()
                .map(|n| {
                    let mut r = vec![
                        n.name.clone(),
                        n.address.clone(),
                        n.state.clone(),
                        n.active_calls.to_string(),
                        n.sessions.to_string(),
                        n.free_port_pairs.to_string(),
                        drain(n),
                    ];
                    if several {
                        r.insert(0, n.backend.clone());
                    }
                    r
                })
                .collect::<Vec<_>>();
            output::fit(&header, &rows, Some(width))
        }
        Output::Wide => {
            let header = [
                "BACKEND",
                "NAME",
                "ADDRESS",
                "STATE",
                "CALLS",
                "SESSIONS",
                "FREE",
                "DRAIN",
                "LAST-SEEN",
                "ERROR",
            ];
            let rows = nodes
                .iter()
                .map(|n| {
                    vec![
                        n.backend.clone(),
                        n.name.clone(),
                        n.address.clone(),
                        n.state.clone(),
                        n.active_calls.to_string(),
                        n.sessions.to_string(),
                        n.free_port_pairs.to_string(),
                        drain(n),
                        n.last_seen.clone().unwrap_or_else(|| "-".into()),
                        if n.last_error.is_empty() {
                            "-".into()
                        } else {
                            n.last_error.clone()
                        },
                    ]
                })
                .collect::<Vec<_>>();
            output::fit(&header, &rows, None)
        }
        _ => output::structured(format, &nodes)?,
    })
}
