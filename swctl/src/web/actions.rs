//! The page's POST actions: hang up a call, drain or undrain a media node.
//!
//! - `POST /action/hangup` (`backend`, `call`): HangupCall on that swbd.
//! - `POST /action/drain`, `POST /action/undrain` (`backend`, `node`,
//!   `target`): with `target=pool`, Drain/UndrainMediaNode of node `node`
//!   in that swbd's pool (new calls avoid it); with `target=swrtp`,
//!   SetDraining on that swrtp after checking it is still node `node` (the
//!   node refuses new sessions itself). These are the two flags `swctl
//!   nodes drain|undrain` sets; the page shows both and a button for each.
//!
//! `backend` is the index of the daemon in swctl's backend list (the order
//! of `--host` / the context), as rendered into the page. Every form also
//! carries `csrf` ([`super::guard::CsrfToken`]); without the right one the
//! answer is 403 and nothing is asked of any daemon.
//!
//! The result, ok or the daemon's error, is shown to the user, escaped:
//! - a plain form (no JavaScript) gets `303 See Other` to `/?result=N`
//!   (POST-redirect-GET), whose page shows result `N` from a small ring of
//!   recent results ([`Results`], the last [`KEEP`]);
//! - an htmx request (`HX-Request: true`) gets the result's HTML to put in
//!   `#result`, and `HX-Trigger: sb-refresh` so the sections reload at once.
//!
//! Each action is logged on stderr with the client's address.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::media_admin_client::MediaAdminClient;
use switchboard_proto::admin::v1::signaling_admin_client::SignalingAdminClient;

use super::{Console, escape, guard};
use crate::Error;
use crate::cmd::{Backend, Kind};
use crate::views;

/// How many results the ring keeps for `/?result=N`.
pub const KEEP: usize = 32;

/// Longest call id or node name accepted (the daemons' own ids are far
/// shorter).
const MAX_ID: usize = 256;

/// Longest result text kept (a daemon's error message, cut).
const MAX_TEXT: usize = 1000;

/// How long one action may take (connect + RPC).
const DEADLINE: Duration = Duration::from_secs(10);

/// What an action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// It worked.
    pub ok: bool,
    /// What to tell the user (plain text; escaped when rendered).
    pub text: String,
}

impl Outcome {
    fn new(ok: bool, text: &str) -> Self {
        let text = match text.char_indices().nth(MAX_TEXT) {
            Some((i, _)) => format!("{}…", text.get(..i).unwrap_or_default()),
            None => text.to_string(),
        };
        Self { ok, text }
    }

    /// The result as HTML, escaped.
    pub fn html(&self) -> String {
        let class = if self.ok { "ok" } else { "err" };
        format!("<p class=\"{class}\">{}</p>\n", escape(&self.text))
    }
}

/// Recent results, for the page a plain form is redirected to. A bounded
/// ring behind a `std::sync::Mutex`: pushed once per action, read once per
/// page load, never held across `.await`.
#[derive(Debug, Default)]
pub struct Results {
    ring: Mutex<(u64, VecDeque<(u64, Outcome)>)>,
}

impl Results {
    /// Keep `o`; returns its number.
    pub fn push(&self, o: Outcome) -> u64 {
        let mut g = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += 1;
        let id = g.0;
        if g.1.len() >= KEEP {
            g.1.pop_front();
        }
        g.1.push_back((id, o));
        id
    }

    /// Result `id`, while it is among the last [`KEEP`].
    pub fn get(&self, id: u64) -> Option<Outcome> {
        let g = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        g.1.iter().find(|(i, _)| *i == id).map(|(_, o)| o.clone())
    }
}

/// The fields of every action form; missing ones are empty, so a form
/// without `csrf` reaches the CSRF check (403) rather than a parse error.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ActionForm {
    /// The page's CSRF token.
    pub csrf: String,
    /// Index into swctl's backend list.
    pub backend: String,
    /// Call id (hang up).
    pub call: String,
    /// Node name (drain, undrain).
    pub node: String,
    /// `pool` or `swrtp` (drain, undrain).
    pub target: String,
}

/// What was asked.
#[derive(Debug, Clone, Copy)]
enum Action {
    Hangup,
    Drain(bool),
}

/// `POST /action/hangup`.
pub async fn hangup(
    State(c): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<ActionForm>,
) -> Response {
    act(&c, peer, &headers, &f, Action::Hangup).await
}

/// `POST /action/drain`.
pub async fn drain(
    State(c): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<ActionForm>,
) -> Response {
    act(&c, peer, &headers, &f, Action::Drain(true)).await
}

/// `POST /action/undrain`.
pub async fn undrain(
    State(c): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<ActionForm>,
) -> Response {
    act(&c, peer, &headers, &f, Action::Drain(false)).await
}

async fn act(
    c: &Console,
    peer: SocketAddr,
    headers: &HeaderMap,
    f: &ActionForm,
    action: Action,
) -> Response {
    if !c.csrf.matches(&f.csrf) {
        eprintln!("swctl web: {peer}: refused a POST without the right CSRF token");
        return guard::forbidden("missing or wrong CSRF token (reload the page)");
    }
    let (what, result) = match tokio::time::timeout(DEADLINE, run(c, f, action)).await {
        Ok(r) => r,
        Err(_) => (
            describe(action, f),
            Err(format!(
                "no answer within {} s; see `swctl status`",
                DEADLINE.as_secs()
            )),
        ),
    };
    let outcome = match &result {
        Ok(text) => Outcome::new(true, text),
        Err(text) => Outcome::new(false, text),
    };
    eprintln!(
        "swctl web: {peer}: {what}: {} {:?}",
        if outcome.ok { "ok," } else { "failed:" },
        outcome.text
    );
    let htmx = headers
        .get("hx-request")
        .is_some_and(|v| v.as_bytes() == b"true");
    if htmx {
        ([("hx-trigger", "sb-refresh")], Html(outcome.html())).into_response()
    } else {
        let id = c.results.push(outcome);
        Redirect::to(&format!("/?result={id}")).into_response()
    }
}

/// For the log line: what was asked (peer strings `{:?}`-quoted).
fn describe(action: Action, f: &ActionForm) -> String {
    match action {
        Action::Hangup => format!("hang up call {:?} on backend {:?}", f.call, f.backend),
        Action::Drain(d) => format!(
            "{} {} node {:?} on backend {:?}",
            if d { "drain" } else { "undrain" },
            f.target,
            f.node,
            f.backend
        ),
    }
}

/// Check the form and ask the daemon; (log description, result text).
async fn run(c: &Console, f: &ActionForm, action: Action) -> (String, Result<String, String>) {
    let what = describe(action, f);
    let b = match backend(c, f, action) {
        Ok(b) => b,
        Err(e) => return (what, Err(e)),
    };
    let r = match action {
        Action::Hangup => hangup_call(c, b, &f.call).await,
        Action::Drain(d) if f.target == "pool" => drain_pool(c, b, &f.node, d).await,
        Action::Drain(d) => drain_swrtp(c, b, &f.node, d).await,
    };
    (what, r.map_err(|e| e.to_string()))
}

/// The backend the form names, if it offers what the action needs.
fn backend<'a>(c: &'a Console, f: &ActionForm, action: Action) -> Result<&'a Backend, String> {
    let (id, service) = match action {
        Action::Hangup => (&f.call, Kind::Swbd),
        Action::Drain(_) => match f.target.as_str() {
            "pool" => (&f.node, Kind::Swbd),
            "swrtp" => (&f.node, Kind::Swrtp),
            _ => return Err("target must be pool or swrtp".into()),
        },
    };
    if id.is_empty() || id.len() > MAX_ID {
        return Err(format!(
            "the {} must be 1 to {MAX_ID} bytes",
            if matches!(action, Action::Hangup) {
                "call id"
            } else {
                "node name"
            }
        ));
    }
    let b = f
        .backend
        .parse::<usize>()
        .ok()
        .and_then(|i| c.targets.backends.get(i))
        .ok_or_else(|| {
            format!(
                "no backend {:?} (this swctl web has {}; reload the page)",
                f.backend,
                c.targets.backends.len()
            )
        })?;
    if !b.kind.may_offer(service) {
        return Err(format!(
            "backend {} is not a {}",
            b.label,
            if service == Kind::Swbd {
                "swbd"
            } else {
                "swrtp"
            }
        ));
    }
    Ok(b)
}

async fn hangup_call(c: &Console, b: &Backend, call: &str) -> Result<String, Error> {
    let ch = c.targets.channel(b, "swbd").await?;
    let r = SignalingAdminClient::new(ch)
        .hangup_call(pb::HangupCallRequest {
            call_id: call.to_string(),
            reason: "hung up by operator (swctl web)".into(),
        })
        .await
        .map_err(|st| Error::from_status("swbd", st))?
        .into_inner();
    Ok(format!(
        "hung up {call} on {} (was {})",
        b.label,
        views::call_state(r.previous_state)
    ))
}

async fn drain_pool(c: &Console, b: &Backend, node: &str, drain: bool) -> Result<String, Error> {
    let ch = c.targets.channel(b, "swbd").await?;
    let mut client = SignalingAdminClient::new(ch);
    let name = node.to_string();
    let r = if drain {
        client
            .drain_media_node(pb::DrainMediaNodeRequest {
                name,
                migrate: false,
            })
            .await
    } else {
        client
            .undrain_media_node(pb::UndrainMediaNodeRequest { name })
            .await
    };
    let n = r.map_err(|st| Error::from_status("swbd", st))?.into_inner();
    let draining = n.state == pb::MediaNodeState::Draining as i32;
    let state = match (drain, draining) {
        (true, _) if n.drained => "draining, no new calls; empty, safe to stop",
        (true, _) => "draining, no new calls; its calls go on until they end",
        (false, true) => {
            "undrained in this pool, but still draining: the node itself drains (undrain its swrtp row)"
        }
        (false, false) => "undrained, takes new calls",
    };
    Ok(format!("media node {} on {}: {state}", n.name, b.label))
}

async fn drain_swrtp(c: &Console, b: &Backend, node: &str, drain: bool) -> Result<String, Error> {
    let ch = c.targets.channel(b, "swrtp").await?;
    let mut client = MediaAdminClient::new(ch);
    let st = client
        .get_status(pb::GetMediaStatusRequest {})
        .await
        .map_err(|st| Error::from_status("swrtp", st))?
        .into_inner();
    if st.node_id != node {
        return Err(Error::Usage(format!(
            "{} is node {}, not {node} (reload the page)",
            b.label, st.node_id
        )));
    }
    let st = client
        .set_draining(pb::SetDrainingRequest { draining: drain })
        .await
        .map_err(|st| Error::from_status("swrtp", st))?
        .into_inner();
    Ok(format!(
        "swrtp {} ({}): {}",
        st.node_id,
        b.label,
        if st.draining {
            "draining (no new sessions)"
        } else {
            "accepting sessions"
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_last_few() {
        let r = Results::default();
        let first = r.push(Outcome::new(true, "one"));
        assert_eq!(r.get(first).map(|o| o.text), Some("one".into()));
        for i in 0..KEEP {
            r.push(Outcome::new(false, &i.to_string()));
        }
        assert_eq!(r.get(first), None, "the oldest is dropped");
        assert_eq!(r.get(first + KEEP as u64).map(|o| o.ok), Some(false));
        assert_eq!(r.get(0), None);
    }

    #[test]
    fn outcomes_are_escaped_and_bounded() {
        let o = Outcome::new(false, "swbd refused: no call \"<script>x</script>\"");
        assert_eq!(
            o.html(),
            "<p class=\"err\">swbd refused: no call &quot;&lt;script&gt;x&lt;/script&gt;&quot;</p>\n"
        );
        let long = Outcome::new(true, &"é".repeat(5000));
        assert_eq!(long.text.chars().count(), MAX_TEXT + 1);
    }
}
