//! Registrar bindings.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::widgets::{Paragraph, Row, Table};

use super::{Selection, matches};
use crate::tui::store::Store;
use crate::tui::widgets::{Theme, cut};

/// State of the registrations screen.
#[derive(Debug, Default)]
pub struct RegistrationsScreen {
    /// Cursor.
    pub sel: Selection,
    /// Filter (aor, contact, source, user agent).
    pub filter: String,
}

impl RegistrationsScreen {
    /// Rows matching the filter, in AOR order.
    pub fn rows<'a>(
        &self,
        store: &'a Store,
    ) -> Vec<&'a switchboard_proto::admin::v1::Registration> {
        store
            .registrations
            .values()
            .filter(|r| {
                matches(
                    &self.filter,
                    &[&r.aor, &r.contact, &r.source, &r.user_agent],
                )
            })
            .collect()
    }

    /// Draw.
    pub fn render(&mut self, f: &mut Frame, area: Rect, store: &Store, theme: &Theme) {
        let rows = self.rows(store);
        let range = self
            .sel
            .window(rows.len(), area.height.saturating_sub(1) as usize);
        let now = store.now_ts();
        let w = area.width as usize;
        let col = (w.saturating_sub(22) / 3).max(8);
        let table_rows: Vec<Row> = rows[range.clone()]
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let left = r
                    .expires_at
                    .as_ref()
                    .map(|e| e.seconds.saturating_sub(now.seconds).max(0))
                    .unwrap_or(0);
                let row = Row::new(vec![
                    cut(&r.aor, col),
                    cut(&r.contact, col),
                    cut(&r.source, col),
                    format!("{left}s"),
                    cut(&r.user_agent, 20),
                ]);
                if range.start + i == self.sel.selected {
                    row.style(theme.selected())
                } else {
                    row
                }
            })
            .collect();
        let empty = table_rows.is_empty();
        let table = Table::new(
            table_rows,
            [
                Constraint::Fill(1),
                Constraint::Fill(1),
                Constraint::Fill(1),
                Constraint::Length(7),
                Constraint::Length(if w >= 120 { 20 } else { 0 }),
            ],
        )
        .header(
            Row::new(["AOR", "CONTACT", "SOURCE", "EXPIRES", "USER-AGENT"]).style(theme.header()),
        )
        .column_spacing(1);
        f.render_widget(table, area);
        if empty {
            let msg = if self.filter.is_empty() {
                " no registrations"
            } else {
                " no registration matches the filter"
            };
            let body = Rect {
                y: area.y + 1,
                height: area.height.saturating_sub(1),
                ..area
            };
            f.render_widget(Paragraph::new(msg).style(theme.dim()), body);
        }
    }
}
