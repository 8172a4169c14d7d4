//! The two header lines: totals and connection state, then the call-rate
//! sparkline with the dialplan in force and the last reload's outcome.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};

use super::Theme;
use crate::tui::event::ConnState;
use crate::tui::store::Store;
use crate::views;

/// Draw the header into `area` (2 lines).
pub fn render(f: &mut Frame, area: Rect, store: &Store, theme: &Theme) {
    let [top, spark] = Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    let (calls, regs, up, total, draining) = store.totals();
    let mut spans: Vec<Span> = Vec::new();
    // Who: the swbd node ids (or labels until known).
    let swbd: Vec<String> = store
        .backends
        .iter()
        .filter(|b| b.kind != crate::cmd::Kind::Swrtp)
        .map(|b| {
            b.status
                .as_ref()
                .map(|s| s.node_id.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| b.label.clone())
        })
        .collect();
    spans.push(Span::styled(
        format!(" {} ", super::cut(&swbd.join(","), 20)),
        theme.header(),
    ));
    let reconnecting = store
        .backends
        .iter()
        .filter(|b| matches!(b.conn, ConnState::Reconnecting { .. }))
        .count();
    let connecting = store
        .backends
        .iter()
        .filter(|b| b.conn == ConnState::Connecting)
        .count();
    spans.push(Span::raw(format!(
        " calls {calls}  cps {:.1}  regs {regs}  nodes {up}/{total}",
        store.calls_per_second()
    )));
    if draining > 0 {
        spans.push(Span::styled(
            format!(" ({draining} draining)"),
            theme.warn(),
        ));
    }
    if reconnecting > 0 {
        spans.push(Span::styled(
            if store.backends.len() > 1 {
                format!("  reconnecting… ({reconnecting}/{})", store.backends.len())
            } else {
                "  reconnecting…".to_string()
            },
            theme.bad(),
        ));
    } else if connecting > 0 {
        spans.push(Span::styled("  connecting…", theme.warn()));
    }
    let clock = views::clock(Some(&store.now_ts()));
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    if used + clock.len() < area.width as usize {
        let pad = (area.width as usize).saturating_sub(used + clock.len() + 1);
        spans.push(Span::raw(" ".repeat(pad)));
        spans.push(Span::raw(clock));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), top);

    let plan = dialplan_spans(store, theme, (area.width as usize / 2).max(10));
    let plan_w: usize = plan.iter().map(|s| s.content.chars().count()).sum();
    let [label, graph, plan_area] = Layout::horizontal([
        Constraint::Length(9),
        Constraint::Fill(1),
        Constraint::Length(plan_w as u16),
    ])
    .areas(spark);
    f.render_widget(Paragraph::new(Line::from(plan)), plan_area);
    f.render_widget(Paragraph::new(" calls/s "), label);
    let n = graph.width as usize;
    // The current (partial) second is left out.
    let len = store.rate.len().saturating_sub(1);
    let data: Vec<u64> = store
        .rate
        .iter()
        .take(len)
        .skip(len.saturating_sub(n))
        .copied()
        .collect();
    f.render_widget(Sparkline::default().data(&data).style(theme.good()), graph);
}

/// `plan 3f9a1c` and the last reload since start: `reloaded 10:02:11`, or
/// `reload FAILED 10:13:02: plan.yaml:3:5: unknown action` (at most `max`
/// characters). Several swbd: the versions in force, and a failure of any.
fn dialplan_spans(store: &Store, theme: &Theme, max: usize) -> Vec<Span<'static>> {
    let mut versions: Vec<&str> = store
        .backends
        .iter()
        .enumerate()
        .filter(|(_, b)| b.kind != crate::cmd::Kind::Swrtp)
        .filter_map(|(i, b)| {
            store
                .dialplans
                .get(&i)
                .map(String::as_str)
                .or_else(|| b.status.as_ref().map(|s| s.dialplan_version.as_str()))
                .filter(|v| !v.is_empty())
        })
        .collect();
    versions.dedup();
    if versions.is_empty() {
        return Vec::new();
    }
    let mut spans = vec![Span::raw(format!(
        " plan {} ",
        super::cut(&versions.join("/"), 20)
    ))];
    // The newest reload, a refused one first.
    let last = store
        .reloads
        .values()
        .filter(|r| !r.applied)
        .max_by_key(|r| r.at.map(|t| (t.seconds, t.nanos)))
        .or_else(|| {
            store
                .reloads
                .values()
                .max_by_key(|r| r.at.map(|t| (t.seconds, t.nanos)))
        });
    if let Some(r) = last {
        let at = views::clock(r.at.as_ref());
        if r.applied {
            spans.push(Span::styled(format!("reloaded {at} "), theme.good()));
        } else {
            let why = r
                .errors
                .first()
                .map(|e| {
                    // The file's name is enough here (`swctl dialplan` has the path).
                    let mut e = e.clone();
                    if let Some(name) = e.file.rsplit('/').next().map(str::to_string) {
                        e.file = name;
                    }
                    views::FileErrorView::new(&e).to_string()
                })
                .unwrap_or_else(|| "refused".into());
            let used = spans[0].content.chars().count();
            let text = super::cut(
                &format!("reload FAILED {at}: {why}"),
                max.saturating_sub(used + 1),
            );
            spans.push(Span::styled(format!("{text} "), theme.bad()));
        }
    }
    spans
}
