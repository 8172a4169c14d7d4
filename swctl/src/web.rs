//! `swctl web`: one HTML page with status, calls, registrations and nodes of
//! every backend swctl knows, kept live by htmx polling fragment endpoints.
//!
//! - `GET /`: the page, with every section rendered in place (readable
//!   without JavaScript; reload to refresh).
//! - `GET /fragment/{status,calls,registrations,nodes}`: one section's HTML;
//!   htmx swaps it in every 2 s (`hx-trigger="every 2s"`).
//! - `GET /assets/htmx.min.js`: htmx 2, vendored in `swctl/assets/` (0BSD,
//!   `htmx.LICENSE`) and served from the binary: no CDN, no build step.
//!
//! Every string from a daemon goes through [`escape`]. Fragments carry
//! `data-gen="fragment"` (the page's inline copies `data-gen="page"`), so a
//! test can tell that htmx really replaced them.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::media_admin_client::MediaAdminClient;
use switchboard_proto::admin::v1::signaling_admin_client::SignalingAdminClient;

use crate::Error;
use crate::cmd::{Kind, Targets, gather};
use crate::views::{self, CallView, NodeView, RegistrationView};

/// htmx, served from the binary.
pub const HTMX_JS: &str = include_str!("../assets/htmx.min.js");

/// The sections of the page, in order.
pub const SECTIONS: [&str; 4] = ["status", "calls", "registrations", "nodes"];

/// Escape text for HTML element content and quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Serve until Ctrl-C.
pub async fn serve(targets: Targets, listen: &str) -> Result<(), Error> {
    let addr: SocketAddr = listen.parse().map_err(|_| {
        Error::Usage(format!(
            "invalid --listen {listen:?}: expected IP:PORT, e.g. 127.0.0.1:8080"
        ))
    })?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Error::Usage(format!(
            "cannot listen on {addr}: {} (is another swctl web running? see --listen)",
            switchboard_proto::support::yaml::io_reason(&e)
        ))
    })?;
    let local = listener.local_addr().map_err(anyhow::Error::from)?;
    if !local.ip().is_loopback() {
        eprintln!(
            "swctl web: warning: listening on {local}, reachable beyond this host; the page has no authentication"
        );
    }
    eprintln!("swctl web: serving http://{local}/");
    axum::serve(listener, router(targets))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(anyhow::Error::from)?;
    Ok(())
}

/// The routes.
pub fn router(targets: Targets) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/fragment/{name}", get(fragment))
        .route("/assets/htmx.min.js", get(htmx))
        .with_state(Arc::new(targets))
}

async fn htmx() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        HTMX_JS,
    )
        .into_response()
}

async fn page(State(t): State<Arc<Targets>>) -> Html<String> {
    let mut body = String::new();
    for name in SECTIONS {
        let inner = section(&t, name, "page").await;
        let _ = writeln!(
            body,
            "<section id=\"{name}\" hx-get=\"/fragment/{name}\" hx-trigger=\"every 2s\" hx-swap=\"innerHTML\">{inner}</section>"
        );
    }
    Html(page_html(&body))
}

/// The page around the sections.
pub fn page_html(sections: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Switchboard</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1rem 2rem; color: #222; }}
h1 {{ font-size: 1.3rem; }} h2 {{ font-size: 1.1rem; margin: 1.2rem 0 .4rem; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .15rem .6rem .15rem 0; border-bottom: 1px solid #eee; font-variant-numeric: tabular-nums; }}
th {{ font-weight: 600; }} .meta {{ color: #888; font-size: 12px; }} .err {{ color: #b00; }}
</style>
<script src="/assets/htmx.min.js"></script>
</head>
<body>
<h1>Switchboard</h1>
{sections}</body>
</html>
"#
    )
}

async fn fragment(State(t): State<Arc<Targets>>, Path(name): Path<String>) -> Response {
    if !SECTIONS.contains(&name.as_str()) {
        return (StatusCode::NOT_FOUND, "no such fragment").into_response();
    }
    Html(section(&t, &name, "fragment").await).into_response()
}

/// One section's inner HTML; `generation` is `page` or `fragment`.
async fn section(t: &Targets, name: &str, generation: &str) -> String {
    let now = prost_types::Timestamp::from(std::time::SystemTime::now());
    let body = match name {
        "status" => status_html(t).await,
        "calls" => match gather(t, Kind::Swbd, |ch| async move {
            SignalingAdminClient::new(ch)
                .list_calls(pb::ListCallsRequest {
                    include_ended: false,
                })
                .await
                .map(|r| r.into_inner().calls)
        })
        .await
        {
            Ok(got) => calls_html(
                &got.iter()
                    .flat_map(|(b, cs)| cs.iter().map(|c| CallView::new(&b.label, c)))
                    .collect::<Vec<_>>(),
            ),
            Err(e) => error_html(&e),
        },
        "registrations" => match gather(t, Kind::Swbd, |ch| async move {
            SignalingAdminClient::new(ch)
                .list_registrations(pb::ListRegistrationsRequest::default())
                .await
                .map(|r| r.into_inner().registrations)
        })
        .await
        {
            Ok(got) => registrations_html(
                &got.iter()
                    .flat_map(|(b, rs)| rs.iter().map(|r| RegistrationView::new(&b.label, r, &now)))
                    .collect::<Vec<_>>(),
            ),
            Err(e) => error_html(&e),
        },
        _ => nodes_html(t).await,
    };
    format!(
        "<h2>{}</h2>\n{body}<p class=\"meta\" data-gen=\"{generation}\">updated {}</p>\n",
        title(name),
        views::clock(Some(&now))
    )
}

fn title(name: &str) -> &'static str {
    match name {
        "status" => "Daemons",
        "calls" => "Calls",
        "registrations" => "Registrations",
        _ => "Media nodes",
    }
}

fn error_html(e: &Error) -> String {
    format!("<p class=\"err\">{}</p>\n", escape(&e.to_string()))
}

/// An HTML table; every cell is escaped.
pub fn table_html(header: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"empty\">{}</p>\n", escape(empty));
    }
    let mut s = String::from("<table>\n<thead><tr>");
    for h in header {
        let _ = write!(s, "<th>{}</th>", escape(h));
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{}</td>", escape(c));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody>\n</table>\n");
    s
}

/// Calls table.
pub fn calls_html(calls: &[CallView]) -> String {
    let rows: Vec<Vec<String>> = calls
        .iter()
        .map(|c| {
            vec![
                c.backend.clone(),
                c.call_id.clone(),
                c.caller.clone(),
                c.destination.clone(),
                c.state.clone(),
                views::mmss(c.duration_secs as i64),
                c.media_node.clone(),
                c.codec().to_string(),
            ]
        })
        .collect();
    table_html(
        &[
            "Backend", "Call", "From", "To", "State", "Duration", "Node", "Codec",
        ],
        &rows,
        "No active calls.",
    )
}

/// Registrations table.
pub fn registrations_html(regs: &[RegistrationView]) -> String {
    let rows: Vec<Vec<String>> = regs
        .iter()
        .map(|r| {
            vec![
                r.backend.clone(),
                r.aor.clone(),
                r.contact.clone(),
                r.source.clone(),
                format!("{}s", r.expires_in_secs),
                r.user_agent.clone(),
            ]
        })
        .collect();
    table_html(
        &[
            "Backend",
            "AOR",
            "Contact",
            "Source",
            "Expires",
            "User-Agent",
        ],
        &rows,
        "No registrations.",
    )
}

/// Pool nodes table.
pub fn nodes_table_html(nodes: &[NodeView]) -> String {
    let rows: Vec<Vec<String>> = nodes
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
                if n.drained {
                    "drained".into()
                } else {
                    "-".into()
                },
            ]
        })
        .collect();
    table_html(
        &[
            "Backend",
            "Node",
            "Address",
            "State",
            "Calls",
            "Sessions",
            "Free ports",
            "Drain",
        ],
        &rows,
        "No media nodes in the pool.",
    )
}

async fn nodes_html(t: &Targets) -> String {
    let mut out = String::new();
    match gather(t, Kind::Swbd, |ch| async move {
        SignalingAdminClient::new(ch)
            .list_media_nodes(pb::ListMediaNodesRequest {})
            .await
            .map(|r| r.into_inner().nodes)
    })
    .await
    {
        Ok(got) => out.push_str(&nodes_table_html(
            &got.iter()
                .flat_map(|(b, ns)| ns.iter().map(|n| NodeView::new(&b.label, n)))
                .collect::<Vec<_>>(),
        )),
        Err(e) => out.push_str(&error_html(&e)),
    }
    if !t.of(Kind::Swrtp).is_empty()
        && let Ok(got) = gather(t, Kind::Swrtp, |ch| async move {
            MediaAdminClient::new(ch)
                .get_status(pb::GetMediaStatusRequest {})
                .await
                .map(|r| r.into_inner())
        })
        .await
    {
        {
            let rows: Vec<Vec<String>> = got
                .iter()
                .map(|(b, s)| {
                    vec![
                        b.label.clone(),
                        s.node_id.clone(),
                        s.active_sessions.to_string(),
                        format!("{}/{}", s.free_port_pairs, s.total_port_pairs),
                        if s.draining {
                            "draining".into()
                        } else {
                            "-".into()
                        },
                    ]
                })
                .collect();
            out.push_str(&table_html(
                &["swrtp", "Node", "Sessions", "Free ports", "Drain"],
                &rows,
                "",
            ));
        }
    }
    out
}

async fn status_html(t: &Targets) -> String {
    let got = crate::cmd::status_views(t).await;
    let mut rows = Vec::new();
    let mut errors = String::new();
    for r in got {
        match r {
            Ok(v) => rows.push(vec![
                v.host,
                v.daemon,
                v.node_id,
                v.version,
                format!("{}s", v.uptime_secs),
                v.active.to_string(),
                v.detail,
            ]),
            Err(e) => errors.push_str(&error_html(&e)),
        }
    }
    let mut s = table_html(
        &[
            "Backend", "Daemon", "Node", "Version", "Uptime", "Active", "Detail",
        ],
        &rows,
        "No daemon answered.",
    );
    s.push_str(&errors);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_from_peers_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x") & 'y'</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
        let html = table_html(&["A"], &[vec!["<b>1001</b>".into()]], "none");
        assert!(html.contains("<td>&lt;b&gt;1001&lt;/b&gt;</td>"), "{html}");
        assert!(!html.contains("<b>"));
    }

    #[test]
    fn htmx_is_vendored() {
        assert!(HTMX_JS.len() > 10_000);
        assert!(HTMX_JS.contains("htmx"));
        let page = page_html("");
        assert!(page.contains("<script src=\"/assets/htmx.min.js\"></script>"));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no CDN"
        );
    }
}
