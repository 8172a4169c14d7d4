//! The two header lines: totals and connection state, then the call-rate sparkline.

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

    let [label, graph] =
        Layout::horizontal([Constraint::Length(9), Constraint::Fill(1)]).areas(spark);
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
