//! `swctl calls list|show ID|hangup ID`.

use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::signaling_admin_client::SignalingAdminClient;

use super::{Kind, Targets, gather, table_width};
use crate::Error;
use crate::cli::Output;
use crate::output;
use crate::views::{self, CallView};

/// `swctl calls list`.
pub async fn list(t: &Targets, format: Output, all: bool) -> Result<(), Error> {
    let got = gather(t, Kind::Swbd, |ch| async move {
        SignalingAdminClient::new(ch)
            .list_calls(pb::ListCallsRequest { include_ended: all })
            .await
            .map(|r| r.into_inner().calls)
    })
    .await?;
    let calls: Vec<CallView> = got
        .iter()
        .flat_map(|(b, calls)| calls.iter().map(|c| CallView::new(&b.label, c)))
        .collect();
    print!(
        "{}",
        render_list(&calls, format, got.len() > 1, table_width())?
    );
    Ok(())
}

/// Render a call list. `several`: add the BACKEND column.
pub fn render_list(
    calls: &[CallView],
    format: Output,
    several: bool,
    width: usize,
) -> anyhow::Result<String> {
    let dur = |c: &CallView| views::mmss(c.duration_secs as i64);
    Ok(match format {
        Output::Table => {
            let mut header = vec!["ID", "FROM", "TO", "STATE", "DUR", "NODE", "CODEC"];
            if several {
                header.insert(0, "BACKEND");
            }
            let rows = calls
                .iter()
                .map(|c| {
                    let mut r = vec![
                        c.call_id.clone(),
                        c.caller.clone(),
                        c.destination.clone(),
                        c.state.clone(),
                        dur(c),
                        dash(&c.media_node),
                        dash(c.codec()),
                    ];
                    if several {
                        r.insert(0, c.backend.clone());
                    }
                    r
                })
                .collect::<Vec<_>>();
            output::fit(&header, &rows, Some(width))
        }
        Output::Wide => {
            let header = [
                "BACKEND", "ID", "FROM", "TO", "STATE", "DUR", "NODE", "CODEC", "ROUTE", "CREATED",
                "LEGS", "END",
            ];
            let rows = calls
                .iter()
                .map(|c| {
                    vec![
                        c.backend.clone(),
                        c.call_id.clone(),
                        c.caller.clone(),
                        c.destination.clone(),
                        c.state.clone(),
                        dur(c),
                        dash(&c.media_node),
                        dash(c.codec()),
                        dash(&c.route_id),
                        c.created_at.clone().unwrap_or_else(|| "-".into()),
                        c.legs.len().to_string(),
                        end(c),
                    ]
                })
                .collect::<Vec<_>>();
            output::fit(&header, &rows, None)
        }
        _ => output::structured(format, &calls)?,
    })
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

fn end(c: &CallView) -> String {
    match (c.end_status, c.end_cause.is_empty()) {
        (0, true) => "-".into(),
        (0, false) => c.end_cause.clone(),
        (s, true) => s.to_string(),
        (s, false) => format!("{s} {}", c.end_cause),
    }
}

/// `swctl calls show ID`: the first backend that knows the call answers.
pub async fn show(t: &Targets, format: Output, id: &str) -> Result<(), Error> {
    let got = gather(t, Kind::Swbd, |ch| async move {
        match SignalingAdminClient::new(ch)
            .get_call(pb::GetCallRequest {
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
    let Some((b, call)) = got.into_iter().find_map(|(b, c)| c.map(|c| (b, c))) else {
        return Err(Error::Daemon {
            daemon: "swbd".into(),
            message: format!("no call {id:?} (see `swctl calls list -a`)"),
        });
    };
    print!(
        "{}",
        render_show(&CallView::new(&b.label, &call), format, table_width())?
    );
    Ok(())
}

/// Render one call: a summary, its legs and its ladder.
pub fn render_show(c: &CallView, format: Output, width: usize) -> anyhow::Result<String> {
    if matches!(format, Output::Json | Output::Yaml) {
        // As JSON.md says of every listing: an array (here of one call),
        // and `ladder` always present in `show` (empty when swbd kept none).
        let mut call = c.clone();
        let ladder = std::mem::take(&mut call.ladder);
        return output::structured(format, &[Shown { call, ladder }]);
    }
    let wide = format == Output::Wide;
    let mut out = String::new();
    let line = |s: String| -> String {
        let s = s.replace(['\r', '\n'], " ");
        if wide { s } else { output::cut(&s, width) }
    };
    out.push_str(&line(format!(
        "Call {}  {} -> {}  {} {}  route {}  node {}  ({})",
        c.call_id,
        dash(&c.caller),
        dash(&c.destination),
        c.state,
        views::mmss(c.duration_secs as i64),
        dash(&c.route_id),
        dash(&c.media_node),
        c.backend
    )));
    out.push('\n');
    if c.end_status != 0 || !c.end_cause.is_empty() {
        out.push_str(&line(format!("Ended: {}", end(c))));
        out.push('\n');
    }
    out.push('\n');
    let legs = c
        .legs
        .iter()
        .map(|l| {
            vec![
                l.role.to_uppercase(),
                l.remote_uri.clone(),
                l.remote_address.clone(),
                l.state.clone(),
                dash(&l.codec),
                dash(&l.media_session_id),
            ]
        })
        .collect::<Vec<_>>();
    out.push_str(&output::fit(
        &["LEG", "REMOTE", "ADDRESS", "STATE", "CODEC", "SESSION"],
        &legs,
        (!wide).then_some(width),
    ));
    out.push('\n');
    let ladder = c
        .ladder
        .iter()
        .map(|m| {
            let leg = m.leg.to_uppercase();
            let arrow = if m.direction == "in" {
                format!("{leg} -> sb")
            } else {
                format!("sb -> {leg}")
            };
            vec![
                m.at.as_deref()
                    .and_then(|a| a.get(11..23))
                    .unwrap_or("-")
                    .to_string(),
                arrow,
                m.summary.clone(),
            ]
        })
        .collect::<Vec<_>>();
    out.push_str(&output::fit(
        &["TIME", "FLOW", "MESSAGE"],
        &ladder,
        (!wide).then_some(width),
    ));
    if wide {
        for m in &c.ladder {
            out.push_str(&format!(
                "\n--- {} {} {}\n{}\n",
                m.at.as_deref().unwrap_or("-"),
                m.direction,
                m.summary,
                m.raw.trim_end()
            ));
        }
    }
    Ok(out)
}

/// A call as `calls show -o json|yaml` prints it: the list's fields, then
/// its ladder (always).
#[derive(serde::Serialize)]
struct Shown {
    #[serde(flatten)]
    call: CallView,
    ladder: Vec<views::LadderView>,
}

/// `swctl calls hangup ID`: asks every swbd; the one that has the call hangs up.
pub async fn hangup(t: &Targets, id: &str) -> Result<(), Error> {
    let got = gather(t, Kind::Swbd, |ch| async move {
        match SignalingAdminClient::new(ch)
            .hangup_call(pb::HangupCallRequest {
                call_id: id.to_string(),
                reason: "hung up by operator (swctl)".into(),
            })
            .await
        {
            Ok(r) => Ok(Some(r.into_inner())),
            Err(st) if st.code() == tonic::Code::NotFound => Ok(None),
            Err(st) => Err(st),
        }
    })
    .await?;
    match got.into_iter().find_map(|(b, r)| r.map(|r| (b, r))) {
        Some((b, r)) => {
            println!(
                "hung up {id} on {} (was {})",
                b.label,
                views::call_state(r.previous_state)
            );
            Ok(())
        }
        None => Err(Error::Daemon {
            daemon: "swbd".into(),
            message: format!("no call {id:?} (see `swctl calls list`)"),
        }),
    }
}
