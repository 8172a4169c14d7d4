//! The Calls screen's other view (`f`): recent calls that failed, newest
//! first, with why. From the call history (swbd's CDRs: final code,
//! failed dial targets, end cause), plus ended calls this top saw whose
//! record has not arrived (or never will: CDRs off), with swbd's end cause.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use switchboard_proto::admin::v1 as pb;

use super::{Selection, matches};
use crate::tui::history::{HistoryState, failure_cause};
use crate::tui::store::{CallKey, Store, short_id};
use crate::tui::widgets::{Theme, cut, cut_middle};
use crate::views;

/// One failed call.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedRow {
    /// (backend, swbd call id).
    pub key: CallKey,
    /// When it ended.
    pub ended: Option<prost_types::Timestamp>,
    /// Caller.
    pub caller: String,
    /// Destination.
    pub destination: String,
    /// Final status the caller got (0: none).
    pub code: u32,
    /// Why (`user/1029 404 Not Found · dial failed: ...`).
    pub cause: String,
}

/// Rows kept at most (the history keeps more, answered calls included).
pub const ROWS: usize = 1000;

/// State of the failed-calls view.
#[derive(Debug, Default)]
pub struct FailedCallsView {
    /// Cursor.
    pub sel: Selection,
    rows: Vec<FailedRow>,
    /// (history version, calls version, filter) the rows were built for.
    built: Option<(u64, u64, String)>,
    /// Rows visible at the last render.
    pub page: usize,
}

fn ts_key(t: &Option<prost_types::Timestamp>) -> (i64, i32) {
    t.as_ref().map(|t| (t.seconds, t.nanos)).unwrap_or((0, 0))
}

impl FailedCallsView {
    /// The rows, newest first, rebuilt only when the data or the filter moved.
    pub fn rows(&mut self, store: &Store, filter: &str) -> &[FailedRow] {
        let want = (
            store.history.version,
            store.calls_version,
            filter.to_string(),
        );
        if self.built.as_ref() == Some(&want) {
            return &self.rows;
        }
        let filter = filter.to_lowercase();
        let mut rows: Vec<FailedRow> = store
            .history
            .newest_first()
            .filter(|(_, r)| r.status == "failed")
            .map(|(k, r)| FailedRow {
                key: k.clone(),
                ended: r.end_time,
                caller: r.caller.clone(),
                destination: r.destination.clone(),
                code: r.sip_code,
                cause: failure_cause(r),
            })
            .take(ROWS)
            .collect();
        // Ended, never answered, no record yet.
        let ended = pb::CallState::Ended as i32;
        rows.extend(
            store
                .calls
                .iter()
                .filter(|(k, c)| {
                    c.state == ended
                        && c.answered_at.as_ref().is_none_or(|t| t.seconds == 0)
                        && store.history.get(k).is_none()
                })
                .map(|(k, c)| FailedRow {
                    key: k.clone(),
                    ended: c.ended_at,
                    caller: c.caller.clone(),
                    destination: c.destination.clone(),
                    code: c.end_status,
                    cause: c.end_cause.clone(),
                }),
        );
        rows.retain(|r| matches(&filter, &[&r.key.1, &r.caller, &r.destination, &r.cause]));
        rows.sort_by(|a, b| {
            ts_key(&b.ended)
                .cmp(&ts_key(&a.ended))
                .then_with(|| a.key.cmp(&b.key))
        });
        rows.truncate(ROWS);
        self.rows = rows;
        self.built = Some(want);
        &self.rows
    }

    /// Key of the selected row.
    pub fn selected(&mut self, store: &Store, filter: &str) -> Option<CallKey> {
        let i = self.sel.selected;
        self.rows(store, filter).get(i).map(|r| r.key.clone())
    }

    /// Draw.
    pub fn render(
        &mut self,
        f: &mut Frame,
        area: Rect,
        store: &Store,
        theme: &Theme,
        filter: &str,
    ) {
        let several = store
            .backends
            .iter()
            .filter(|b| b.kind != crate::cmd::Kind::Swrtp)
            .count()
            > 1;
        let wide = area.width >= 120;
        let height = area.height.saturating_sub(1) as usize;
        self.page = height.max(1);
        let len = self.rows(store, filter).len();
        let range = self.sel.window(len, height);
        let selected = self.sel.selected;
        let mut header = vec!["ENDED", "FROM", "TO", "CODE", "CAUSE"];
        let mut widths = vec![
            Constraint::Length(8),
            Constraint::Length(if wide { 24 } else { 12 }),
            Constraint::Length(if wide { 16 } else { 10 }),
            Constraint::Length(4),
            Constraint::Fill(1),
        ];
        if wide {
            header.insert(1, "ID");
            widths.insert(1, Constraint::Length(8));
        }
        if several {
            header.insert(0, "BACKEND");
            widths.insert(0, Constraint::Length(8));
        }
        let cell_w = |c: &Constraint| match c {
            Constraint::Length(l) => *l as usize,
            _ => 0,
        };
        let (from_w, to_w) = if wide { (24, 16) } else { (12, 10) };
        let cause_w = {
            let fixed: usize = widths.iter().map(cell_w).sum::<usize>() + widths.len();
            (area.width as usize).saturating_sub(fixed).max(8)
        };
        let table_rows: Vec<Row> = self.rows[range.clone()]
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut cells = vec![
                    Cell::from(views::clock(r.ended.as_ref())),
                    Cell::from(cut(&r.caller, from_w)),
                    Cell::from(cut(&r.destination, to_w)),
                    Cell::from(if r.code == 0 {
                        "-".to_string()
                    } else {
                        r.code.to_string()
                    })
                    .style(theme.warn()),
                    Cell::from(cut(&r.cause, cause_w)),
                ];
                if wide {
                    cells.insert(1, Cell::from(short_id(&r.key.1).to_string()));
                }
                if several {
                    cells.insert(0, Cell::from(cut_middle(store.label(r.key.0), 8)));
                }
                let row = Row::new(cells);
                if range.start + i == selected {
                    row.style(theme.selected())
                } else {
                    row
                }
            })
            .collect();
        let table = Table::new(table_rows, widths)
            .header(Row::new(header).style(theme.header()))
            .column_spacing(1);
        f.render_widget(table, area);
        if len == 0 {
            let [_, body] =
                Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
            let msg = empty_message(store, filter);
            f.render_widget(Paragraph::new(Line::styled(msg, theme.dim())), body);
        }
    }
}

/// Why the view is empty.
fn empty_message(store: &Store, filter: &str) -> String {
    if !filter.is_empty() {
        return format!(" no failed call matches /{filter}");
    }
    let states: Vec<&HistoryState> = store.history.state.values().collect();
    if states.is_empty() || states.iter().all(|s| **s == HistoryState::Loading) {
        return " loading the call history…".into();
    }
    if let Some(HistoryState::Unavailable(why)) = states
        .iter()
        .find(|s| matches!(s, HistoryState::Unavailable(_)))
        .copied()
        && store.history.is_empty()
    {
        return format!(" no call history: {why}");
    }
    " no failed calls in the recent history".into()
}
