//! `swctl web`: one HTML page with status, calls, registrations and nodes of
//! every backend swctl knows, kept live by htmx polling fragment endpoints,
//! with buttons to hang up calls and drain or undrain media nodes.
//!
//! - `GET /`: the page, with every section rendered in place (readable
//!   without JavaScript; reload to refresh). `GET /?result=N` also shows the
//!   result of action `N` (see [`actions`]).
//! - `GET /fragment/{status,calls,registrations,nodes}`: one section's HTML;
//!   htmx swaps it in every 2 s (`hx-trigger="every 2s"`), and at once after
//!   an action (`sb-refresh`).
//! - `POST /action/{hangup,drain,undrain}`: see [`actions`]. Plain HTML
//!   forms (work without JavaScript, POST-redirect-GET) that htmx submits
//!   in place when it is loaded. GET never changes anything.
//! - `GET /assets/htmx.min.js`: htmx 2, vendored in `swctl/assets/` (0BSD,
//!   `htmx.LICENSE`) and served from the binary: no CDN, no build step.
//!
//! Every request passes [`guard`] first: `Host` and `Origin` checks against
//! DNS rebinding and cross-site requests, HTTP Basic auth with `--token
//! FILE`, and the CSRF token every form carries. swctl web listens on
//! loopback by default and refuses a non-loopback `--listen` without
//! `--token` (exit 2).
//!
//! Every string from a daemon goes through [`escape`]. Fragments carry
//! `data-gen="fragment"` (the page's inline copies `data-gen="page"`), so a
//! test can tell that htmx really replaced them.

mod actions;
mod guard;

pub use actions::{ActionForm, Outcome, Results};
pub use guard::{AllowedHosts, CsrfToken, Guard, constant_time_eq};

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::media_admin_client::MediaAdminClient;
use switchboard_proto::admin::v1::signaling_admin_client::SignalingAdminClient;
use switchboard_proto::support::secret;

use crate::Error;
use crate::cmd::{Backend, Kind, Targets, gather};
use crate::views::{self, CallView, NodeView, RegistrationView};

/// Largest action form accepted (a few short fields).
const MAX_FORM_BYTES: usize = 16 * 1024;

/// How `swctl web` was asked to serve.
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// `--listen IP:PORT`.
    pub listen: String,
    /// `--token FILE`: the Basic-auth secret's file.
    pub token_file: Option<PathBuf>,
    /// `--allow-host NAME`: extra names the page may be opened by.
    pub allow_hosts: Vec<String>,
}

/// What the page's handlers share.
#[derive(Debug)]
pub struct Console {
    /// The daemons.
    pub targets: Targets,
    /// The token every form carries.
    pub csrf: CsrfToken,
    /// Recent action results, for POST-redirect-GET.
    pub results: Results,
}

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
pub async fn serve(targets: Targets, opts: &WebOptions) -> Result<(), Error> {
    let listen = &opts.listen;
    let addr: SocketAddr = listen.parse().map_err(|_| {
        Error::Usage(format!(
            "invalid --listen {listen:?}: expected IP:PORT, e.g. 127.0.0.1:8080"
        ))
    })?;
    if !addr.ip().is_loopback() && opts.token_file.is_none() {
        return Err(Error::Usage(format!(
            "refusing to listen on {addr} without --token FILE: the page hangs up calls and drains nodes, so beyond loopback it needs a password (a file with a secret, mode 0600; see `swctl web --help`)"
        )));
    }
    for name in &opts.allow_hosts {
        if !AllowedHosts::valid_name(name) {
            return Err(Error::Usage(format!(
                "invalid --allow-host {name:?}: expected a host name or IP address without port"
            )));
        }
    }
    let password = match &opts.token_file {
        Some(path) => Some(
            secret::load_token(path).map_err(|e| Error::InvalidFile(format!("--token: {e}")))?,
        ),
        None => None,
    };
    let csrf = CsrfToken::generate()
        .map_err(|e| anyhow::anyhow!("cannot read the operating system's random generator: {e}"))?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Error::Usage(format!(
            "cannot listen on {addr}: {} (is another swctl web running? see --listen)",
            switchboard_proto::support::yaml::io_reason(&e)
        ))
    })?;
    let local = listener.local_addr().map_err(anyhow::Error::from)?;
    if !local.ip().is_loopback() {
        eprintln!(
            "swctl web: warning: listening on {local}, reachable beyond this host over plain HTTP: the password travels in clear; keep it on a trusted network or behind TLS (a reverse proxy or an ssh tunnel)"
        );
    }
    if password.is_some() {
        eprintln!(
            "swctl web: HTTP Basic auth required: any user name, the secret of the --token file as password"
        );
    }
    eprintln!("swctl web: serving http://{local}/");
    let console = Console {
        targets,
        csrf,
        results: Results::default(),
    };
    let guard = Guard {
        hosts: AllowedHosts::new(local, &opts.allow_hosts),
        password,
    };
    axum::serve(
        listener,
        router(console, guard).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(anyhow::Error::from)?;
    Ok(())
}

/// The routes, behind the [`guard`].
pub fn router(console: Console, guard: Guard) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/fragment/{name}", get(fragment))
        .route("/action/hangup", post(actions::hangup))
        .route("/action/drain", post(actions::drain))
        .route("/action/undrain", post(actions::undrain))
        .route("/assets/htmx.min.js", get(htmx))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .with_state(Arc::new(console))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(guard),
            guard::check,
        ))
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

async fn page(State(c): State<Arc<Console>>, RawQuery(query): RawQuery) -> Html<String> {
    // `?result=N` after a plain form's POST-redirect-GET.
    let result = query
        .as_deref()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("result=")))
        .and_then(|n| n.parse::<u64>().ok())
        .and_then(|n| c.results.get(n))
        .map(|o| o.html())
        .unwrap_or_default();
    let mut body = format!("<div id=\"result\" role=\"status\">{result}</div>\n");
    for name in SECTIONS {
        let inner = section(&c, name, "page").await;
        let _ = writeln!(
            body,
            "<section id=\"{name}\" hx-get=\"/fragment/{name}\" hx-trigger=\"every 2s, sb-refresh from:body\" hx-swap=\"innerHTML\">{inner}</section>"
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
th {{ font-weight: 600; }} .meta {{ color: #888; font-size: 12px; }} .err {{ color: #b00; }} .ok {{ color: #070; }}
form {{ display: inline; margin: 0; }} button {{ font: inherit; font-size: 12px; padding: 0 .4rem; }}
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

async fn fragment(State(c): State<Arc<Console>>, Path(name): Path<String>) -> Response {
    if !SECTIONS.contains(&name.as_str()) {
        return (StatusCode::NOT_FOUND, "no such fragment").into_response();
    }
    Html(section(&c, &name, "fragment").await).into_response()
}

/// One section's inner HTML; `generation` is `page` or `fragment`.
async fn section(c: &Console, name: &str, generation: &str) -> String {
    let t = &c.targets;
    let forms = Forms::new(c.csrf.as_str(), &t.backends);
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
                &forms,
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
        _ => nodes_html(t, &forms).await,
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
    table_with_actions_html(header, rows, &[], empty)
}

/// An HTML table whose rows end with a cell of buttons: `actions[i]` is
/// row `i`'s, HTML built by [`Forms`] (which escapes what it embeds);
/// every other cell is escaped. No `actions`: no such column.
pub fn table_with_actions_html(
    header: &[&str],
    rows: &[Vec<String>],
    actions: &[String],
    empty: &str,
) -> String {
    if rows.is_empty() {
        return format!("<p class=\"empty\">{}</p>\n", escape(empty));
    }
    let mut s = String::from("<table>\n<thead><tr>");
    for h in header {
        let _ = write!(s, "<th>{}</th>", escape(h));
    }
    if !actions.is_empty() {
        s.push_str("<th></th>");
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for (i, r) in rows.iter().enumerate() {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{}</td>", escape(c));
        }
        if !actions.is_empty() {
            let _ = write!(
                s,
                "<td class=\"actions\">{}</td>",
                actions.get(i).map(String::as_str).unwrap_or_default()
            );
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody>\n</table>\n");
    s
}

/// Builds the action forms of the rows: plain HTML forms with the CSRF
/// token, which htmx posts in place (`hx-post`, result into `#result`).
#[derive(Debug, Clone, Copy)]
pub struct Forms<'a> {
    csrf: &'a str,
    backends: &'a [Backend],
}

impl<'a> Forms<'a> {
    /// Forms carrying `csrf`, addressing `backends` by index.
    pub fn new(csrf: &'a str, backends: &'a [Backend]) -> Self {
        Self { csrf, backends }
    }

    /// The index of the backend labelled `label` (labels are unique).
    fn index(&self, label: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.label == label)
    }

    /// One form: `action` is `/action/...`, `fields` (name, value) are
    /// escaped into hidden inputs.
    fn form(&self, action: &str, fields: &[(&str, &str)], button: &str) -> String {
        let mut s = format!(
            "<form method=\"post\" action=\"{action}\" hx-post=\"{action}\" hx-target=\"#result\" hx-swap=\"innerHTML\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
            escape(self.csrf)
        );
        for (name, value) in fields {
            let _ = write!(
                s,
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                escape(value)
            );
        }
        let _ = write!(
            s,
            "<button type=\"submit\">{}</button></form>",
            escape(button)
        );
        s
    }

    /// "Hang up" for call `call` on the swbd labelled `backend`.
    pub fn hangup(&self, backend: &str, call: &str) -> String {
        match self.index(backend) {
            Some(i) if !call.is_empty() => self.form(
                "/action/hangup",
                &[("backend", &i.to_string()), ("call", call)],
                "Hang up",
            ),
            _ => String::new(),
        }
    }

    /// "Drain" or "Undrain" (when `draining`) for node `node`, or both
    /// when its drain state is not known (`None`: a pool node that is down
    /// keeps its flag but does not show it); `target` is `pool` (the swbd's
    /// pool entry) or `swrtp` (the node itself).
    pub fn drain(&self, backend: &str, target: &str, node: &str, draining: Option<bool>) -> String {
        let Some(i) = self.index(backend).filter(|_| !node.is_empty()) else {
            return String::new();
        };
        let i = i.to_string();
        let fields = [("backend", i.as_str()), ("target", target), ("node", node)];
        let drain = || self.form("/action/drain", &fields, "Drain");
        let undrain = || self.form("/action/undrain", &fields, "Undrain");
        match draining {
            Some(true) => undrain(),
            Some(false) => drain(),
            None => format!("{}{}", drain(), undrain()),
        }
    }
}

/// Calls table, a "Hang up" button per call.
pub fn calls_html(calls: &[CallView], forms: &Forms) -> String {
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
    let actions: Vec<String> = calls
        .iter()
        .map(|c| forms.hangup(&c.backend, &c.call_id))
        .collect();
    table_with_actions_html(
        &[
            "Backend", "Call", "From", "To", "State", "Duration", "Node", "Codec",
        ],
        &rows,
        &actions,
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

/// Pool nodes table, a "Drain"/"Undrain" button per node (the pool flag).
pub fn nodes_table_html(nodes: &[NodeView], forms: &Forms) -> String {
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
    let actions: Vec<String> = nodes
        .iter()
        .map(|n| {
            // The pool reports its drain flag (or the node's own) as the
            // `draining` state of an up node only.
            let draining = match n.state.as_str() {
                "draining" => Some(true),
                "up" => Some(false),
                _ => None,
            };
            forms.drain(&n.backend, "pool", &n.name, draining)
        })
        .collect();
    table_with_actions_html(
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
        &actions,
        "No media nodes in the pool.",
    )
}

async fn nodes_html(t: &Targets, forms: &Forms<'_>) -> String {
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
            forms,
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
            // The node's own drain flag (SetDraining), beside the pool's.
            let actions: Vec<String> = got
                .iter()
                .map(|(b, s)| forms.drain(&b.label, "swrtp", &s.node_id, Some(s.draining)))
                .collect();
            out.push_str(&table_with_actions_html(
                &["swrtp", "Node", "Sessions", "Free ports", "Drain"],
                &rows,
                &actions,
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
    fn action_forms_escape_ids_and_carry_the_csrf_token() {
        let backends = [Backend {
            label: "pbx<1>".into(),
            host: crate::connect::Host::Unix("/x.sock".into()),
            kind: Kind::Swbd,
            optional: false,
        }];
        let forms = Forms::new("t0ken", &backends);
        let f = forms.hangup("pbx<1>", "c\"><script>x</script>");
        assert!(f.contains("action=\"/action/hangup\""), "{f}");
        assert!(f.contains("hx-post=\"/action/hangup\""), "{f}");
        assert!(f.contains("name=\"csrf\" value=\"t0ken\""), "{f}");
        assert!(f.contains("name=\"backend\" value=\"0\""), "{f}");
        assert!(
            f.contains("value=\"c&quot;&gt;&lt;script&gt;x&lt;/script&gt;\""),
            "{f}"
        );
        assert!(!f.contains("<script"), "{f}");
        assert_eq!(forms.hangup("nope", "c1"), "", "unknown backend: no form");
        let d = forms.drain("pbx<1>", "pool", "rtp-a", Some(true));
        assert!(d.contains("action=\"/action/undrain\""), "{d}");
        assert!(d.contains(">Undrain</button>"), "{d}");
        assert!(!d.contains(">Drain</button>"), "{d}");
        assert!(d.contains("name=\"target\" value=\"pool\""), "{d}");
        let both = forms.drain("pbx<1>", "pool", "rtp-a", None);
        assert!(both.contains(">Drain</button>") && both.contains(">Undrain</button>"));
        let d = forms.drain("pbx<1>", "swrtp", "rtp-a", Some(false));
        assert!(d.contains("action=\"/action/drain\""), "{d}");
        assert!(!d.contains(">Undrain</button>"), "{d}");
        let table =
            table_with_actions_html(&["A"], &[vec!["<i>".into()]], std::slice::from_ref(&d), "");
        assert!(
            table.contains(&format!("<td class=\"actions\">{d}</td>")),
            "{table}"
        );
        assert!(table.contains("<td>&lt;i&gt;</td>"), "{table}");
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
