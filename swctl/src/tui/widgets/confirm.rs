//! A yes/no popup for actions that change a running system (hangup, drain).

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::Theme;

/// Draw `question` centered, with the y/n hint.
pub fn render(f: &mut Frame, area: Rect, question: &str, theme: &Theme) {
    let max = area.width.saturating_sub(4).max(10);
    let w = (question.chars().count() as u16 + 4).max(30).min(max);
    let popup = centered(area, w, 5);
    f.render_widget(Clear, popup);
    let text = vec![
        Line::raw(question.to_string()),
        Line::raw(""),
        Line::styled("y: yes    n / Esc: no", theme.dim()),
    ];
    f.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .block(Block::default().borders(Borders::ALL).title(" confirm ")),
        popup,
    );
}

/// A `w` x `h` rectangle in the middle of `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(h.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [r] = Layout::horizontal([Constraint::Length(w.min(area.width))])
        .flex(Flex::Center)
        .areas(v);
    r
}
