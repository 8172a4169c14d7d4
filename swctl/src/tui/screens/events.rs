//! Recent events of every backend, newest at the bottom, as `swctl events`
//! shows them (kind, event, subject, detail), coloured by severity:
//! security events and refused dialplans red, failed calls, nodes down and
//! RTP timeouts yellow, registrations dim.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::Paragraph;

use crate::tui::store::{Severity, Store};
use crate::tui::widgets::{Theme, cut};

/// State of the events screen.
#[derive(Debug, Default)]
pub struct EventsScreen {
    /// Lines scrolled back from the newest.
    pub back: usize,
}

impl EventsScreen {
    /// Draw the last lines that fit.
    pub fn render(&mut self, f: &mut Frame, area: Rect, store: &Store, theme: &Theme) {
        let h = area.height as usize;
        let n = store.events.len();
        self.back = self.back.min(n.saturating_sub(h));
        let end = n - self.back;
        let start = end.saturating_sub(h);
        let text: Vec<ratatui::text::Line> = store
            .events
            .range(start..end)
            .map(|l| {
                let style = match l.severity {
                    Severity::Quiet => theme.dim(),
                    Severity::Info => ratatui::style::Style::default(),
                    Severity::Warn => theme.warn(),
                    Severity::Bad => theme.bad(),
                };
                ratatui::text::Line::styled(cut(&l.text, area.width as usize), style)
            })
            .collect();
        if text.is_empty() {
            f.render_widget(Paragraph::new(" no events yet").style(theme.dim()), area);
        } else {
            f.render_widget(Paragraph::new(text), area);
        }
    }
}
