//! `swctl top`: a live terminal view fed by the Watch streams.
//!
//! # Layout
//! - [`event`]: per-backend feed tasks (Watch + reconnect with backoff) -> [`event::Update`].
//! - [`store`]: what we know (calls in a `HashMap`, sessions, bindings, nodes, rate history).
//! - [`history`]: call detail records (loaded at connect, then as calls end), failure causes.
//! - [`health`]: loss, jitter and the one-way / silent flags of a call.
//! - [`app`]: screen switching and key handling; keys return [`app::Command`]s, never do I/O.
//! - [`screens`]: one state struct per screen (calls, call detail, registrations, nodes, events, help).
//! - [`widgets`]: header with the sparkline, confirmation popup, theme (`NO_COLOR`).
//!
//! Drawing: on a key at once; on data at most every 250 ms (ratatui diffs the
//! frames, so unchanged cells are not rewritten and nothing flickers); the
//! clock ticks once a second. `ratatui::init` installs a panic hook that
//! restores the terminal; Ctrl-C arrives as a key in raw mode and quits.

pub mod app;
pub mod event;
pub mod health;
pub mod history;
pub mod screens;
pub mod store;
pub mod widgets;

#[cfg(test)]
mod console_tests;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant, SystemTime};

use crossterm::event::{Event, EventStream, KeyEventKind};
use futures::StreamExt;
use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::media_admin_client::MediaAdminClient;
use switchboard_proto::admin::v1::signaling_admin_client::SignalingAdminClient;
use tokio::sync::mpsc;

use crate::cmd::Targets;
use app::{App, Command};
use event::Update;
use store::Store;

/// Data-driven redraws are coalesced to at most one per this interval.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(250);

/// Build the app for `targets`.
pub fn app_for(targets: &Targets) -> App {
    let store = Store::new(
        targets
            .backends
            .iter()
            .map(|b| (b.label.clone(), b.kind))
            .collect(),
        SystemTime::now(),
    );
    App::new(store, widgets::Theme::from_env())
}

/// Run `swctl top` until `q`.
pub async fn run(targets: Targets, stats_interval_ms: u32) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Update>(4096);
    let mut feeds = Vec::new();
    for i in 0..targets.backends.len() {
        feeds.push(tokio::spawn(event::feed(
            targets.clone(),
            i,
            stats_interval_ms,
            tx.clone(),
        )));
    }
    let mut app = app_for(&targets);
    let mut terminal = ratatui::try_init()?;
    let result = event_loop(&mut terminal, &mut app, &mut rx, &targets, &tx).await;
    ratatui::restore();
    for f in feeds {
        f.abort();
    }
    result
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    rx: &mut mpsc::Receiver<Update>,
    targets: &Targets,
    tx: &mpsc::Sender<Update>,
) -> anyhow::Result<()> {
    let mut keys = EventStream::new();
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    let mut dirty = true;
    let mut force = true;
    let mut last_draw = Instant::now();
    loop {
        if force || (dirty && last_draw.elapsed() >= FRAME_INTERVAL) {
            terminal.draw(|f| app.render(f))?;
            last_draw = Instant::now();
            dirty = false;
            force = false;
        }
        if app.quit {
            return Ok(());
        }
        let wake = last_draw + FRAME_INTERVAL;
        tokio::select! {
            ev = keys.next() => match ev {
                Some(Ok(Event::Key(k))) if k.kind != KeyEventKind::Release => {
                    if let Some(cmd) = app.handle_key(k) {
                        spawn_command(cmd, targets.clone(), tx.clone());
                    }
                    force = true;
                }
                Some(Ok(Event::Resize(_, _))) => {
                    terminal.autoresize()?;
                    force = true;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
            Some(u) = rx.recv() => {
                app.apply(u);
                // Take whatever else is queued before drawing.
                while let Ok(u) = rx.try_recv() {
                    app.apply(u);
                }
                dirty = true;
            }
            _ = clock.tick() => {
                app.store.set_now(SystemTime::now());
                dirty = true;
            }
            _ = tokio::time::sleep_until(wake.into()), if dirty => {}
        }
    }
}

/// Run a command from the UI in the background; results come back as updates.
pub fn spawn_command(cmd: Command, targets: Targets, tx: mpsc::Sender<Update>) {
    tokio::spawn(async move {
        let u = match execute(&cmd, &targets).await {
            Ok(u) => u,
            Err(e) => Update::Flash(e),
        };
        let _ = tx.send(u).await;
    });
}

async fn execute(cmd: &Command, targets: &Targets) -> Result<Update, String> {
    let backend_of = |i: usize| {
        targets
            .backends
            .get(i)
            .cloned()
            .ok_or("no such backend".to_string())
    };
    let channel = |i: usize| async move {
        let b = backend_of(i)?;
        targets
            .channel(&b, "daemon")
            .await
            .map_err(|e| e.to_string())
    };
    match cmd {
        Command::FetchCall((b, id)) => {
            // The call (swbd keeps ended ones a while), then its capture:
            // the complete ladder. A call only the history still has may
            // have a capture left; either alone is worth showing.
            let mut client = SignalingAdminClient::new(channel(*b).await?);
            let call = client
                .get_call(pb::GetCallRequest {
                    call_id: id.clone(),
                })
                .await;
            let capture = client
                .get_call_capture(pb::GetCallCaptureRequest {
                    call_id: id.clone(),
                })
                .await;
            let mut out = Vec::new();
            let call_err = match call {
                Ok(c) => {
                    out.push(Update::CallDetail {
                        backend: *b,
                        call: c.into_inner(),
                    });
                    None
                }
                Err(e) => Some(e),
            };
            if let Ok(c) = capture {
                out.push(Update::CallCapture {
                    backend: *b,
                    call_id: id.clone(),
                    capture: c.into_inner(),
                });
            }
            match call_err {
                Some(e) if out.is_empty() && e.code() != tonic::Code::NotFound => {
                    Err(format!("GetCall {}: {}", store::short_id(id), e.message()))
                }
                _ => Ok(Update::Batch(out)),
            }
        }
        Command::Hangup((b, id)) => {
            let r = SignalingAdminClient::new(channel(*b).await?)
                .hangup_call(pb::HangupCallRequest {
                    call_id: id.clone(),
                    reason: "hung up by operator (swctl top)".into(),
                })
                .await
                .map_err(|e| format!("hangup {}: {}", store::short_id(id), e.message()))?
                .into_inner();
            Ok(Update::Flash(format!(
                "hung up {} (was {})",
                store::short_id(id),
                crate::views::call_state(r.previous_state)
            )))
        }
        Command::DrainPool {
            backend,
            node,
            drain,
        } => {
            let mut c = SignalingAdminClient::new(channel(*backend).await?);
            let r = if *drain {
                c.drain_media_node(pb::DrainMediaNodeRequest {
                    name: node.clone(),
                    migrate: false,
                })
                .await
            } else {
                c.undrain_media_node(pb::UndrainMediaNodeRequest { name: node.clone() })
                    .await
            };
            let n = r
                .map_err(|e| format!("drain {node}: {}", e.message()))?
                .into_inner();
            Ok(Update::Flash(format!(
                "{} is {}",
                n.name,
                crate::views::node_state(n.state)
            )))
        }
        Command::DrainRtp { backend, drain } => {
            let st = MediaAdminClient::new(channel(*backend).await?)
                .set_draining(pb::SetDrainingRequest { draining: *drain })
                .await
                .map_err(|e| format!("drain: {}", e.message()))?
                .into_inner();
            Ok(Update::Flash(format!(
                "swrtp {} {}",
                st.node_id,
                if st.draining {
                    "draining"
                } else {
                    "accepting sessions"
                }
            )))
        }
    }
}
