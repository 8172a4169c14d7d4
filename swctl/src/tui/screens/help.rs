//! `?`: the keys.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use crate::tui::widgets::Theme;
use crate::tui::widgets::confirm::centered;

/// Key help.
pub const KEYS: &[(&str, &str)] = &[
    ("1 2 3 4 / Tab", "calls, registrations, nodes, events"),
    ("↑ ↓  j k", "move   PgUp PgDn Home End"),
    ("Enter", "call detail / full SIP message"),
    ("Esc", "back, clear filter"),
    ("/", "filter (Enter keeps it, Esc clears)"),
    ("s  S", "next sort column, reverse"),
    ("e", "show ended calls too"),
    ("f", "recent failed calls and why / live calls"),
    ("h", "hang up the selected call"),
    ("d", "drain / undrain the selected node"),
    ("r", "refresh the call detail"),
    ("?", "this help"),
    ("q  Ctrl-C", "quit"),
];

/// Draw the help popup.
pub fn render(f: &mut Frame, area: Rect, theme: &Theme) {
    let popup = centered(area, 60, KEYS.len() as u16 + 2);
    f.render_widget(Clear, popup);
    let lines: Vec<ratatui::text::Line> = KEYS
        .iter()
        .map(|(k, what)| {
            ratatui::text::Line::from(vec![
                ratatui::text::Span::styled(format!(" {k:<15}"), theme.header()),
                ratatui::text::Span::raw(*what),
            ])
        })
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" keys ")),
        popup,
    );
}
