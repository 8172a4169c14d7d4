//! The calls table: sortable (`s` next column, `S` reverse), filterable (`/`),
//! rendering only the visible rows of a lazily rebuilt sorted index.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use switchboard_proto::admin::v1 as pb;

use super::{Selection, matches};
use crate::tui::store::{CallKey, Store, short_id};
use crate::tui::widgets::{Theme, cut, cut_middle};
use crate::views;

/// Sort orders, cycled with `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// Longest running first.
    #[default]
    Duration,
    /// Caller.
    Caller,
    /// Destination.
    Callee,
    /// State.
    State,
    /// Media node.
    Node,
    /// Worst loss first.
    Loss,
}

impl SortKey {
    /// The next order.
    pub fn next(self) -> Self {
        match self {
            SortKey::Duration => SortKey::Caller,
            SortKey::Caller => SortKey::Callee,
            SortKey::Callee => SortKey::State,
            SortKey::State => SortKey::Node,
            SortKey::Node => SortKey::Loss,
            SortKey::Loss => SortKey::Duration,
        }
    }

    /// Name in the title.
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Duration => "duration",
            SortKey::Caller => "from",
            SortKey::Callee => "to",
            SortKey::State => "state",
            SortKey::Node => "node",
            SortKey::Loss => "loss",
        }
    }
}

/// State of the calls screen.
#[derive(Debug, Default)]
pub struct CallsScreen {
    /// Cursor.
    pub sel: Selection,
    /// Filter text (matches id, caller, destination, state, node).
    pub filter: String,
    /// Typing into the filter.
    pub filtering: bool,
    /// Sort order.
    pub sort: SortKey,
    /// Reverse the order.
    pub reverse: bool,
    /// Show ended calls too.
    pub show_ended: bool,
    /// Show recent failed calls (from the call history) instead of live ones.
    pub show_failed: bool,
    /// The failed-calls view.
    pub failed: super::failed_calls::FailedCallsView,
    /// Sorted, filtered keys.
    index: Vec<CallKey>,
    /// (calls_version, filter, sort, reverse, show_ended) the index was built for.
    built: Option<(u64, String, SortKey, bool, bool)>,
    /// Rows visible at the last render (page up/down).
    pub page: usize,
}

impl CallsScreen {
    /// The sorted index, rebuilt only when the store or the view changed.
    pub fn index(&mut self, store: &Store) -> &[CallKey] {
        let want = (
            store.calls_version,
            self.filter.clone(),
            self.sort,
            self.reverse,
            self.show_ended,
        );
        if self.built.as_ref() != Some(&want) {
            let ended = pb::CallState::Ended as i32;
            let filter = self.filter.to_lowercase();
            let rows: Vec<(&CallKey, &pb::Call)> = store
                .calls
                .iter()
                .filter(|(_, c)| self.show_ended || c.state != ended)
                .filter(|(_, c)| {
                    matches(
                        &filter,
                        &[
                            &c.call_id,
                            &c.caller,
                            &c.destination,
                            views::call_state(c.state),
                            &c.media_node,
                        ],
                    )
                })
                .collect();
            // Sort keys are computed once per call (not per comparison); the
            // call key breaks ties so rows never jump between rebuilds.
            let created = |c: &pb::Call| {
                c.created_at
                    .as_ref()
                    .map(|t| (t.seconds, t.nanos))
                    .unwrap_or((0, 0))
            };
            let mut keys: Vec<&CallKey> = match self.sort {
                SortKey::Duration => {
                    let now = store.now_ts();
                    let mut v: Vec<_> = rows
                        .iter()
                        .map(|(k, c)| {
                            (
                                std::cmp::Reverse(Store::call_secs_at(c, &now)),
                                created(c),
                                *k,
                            )
                        })
                        .collect();
                    v.sort_unstable();
                    v.into_iter().map(|x| x.2).collect()
                }
                SortKey::Loss => {
                    let mut v: Vec<_> = rows
                        .iter()
                        .map(|(k, c)| {
                            // Flagged media sorts above any loss.
                            let q = store
                                .call_quality(k, c)
                                .map_or(-1.0, |h| if h.flag.is_some() { 1000.0 } else { h.loss });
                            (q, *k)
                        })
                        .collect();
                    v.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
                    v.into_iter().map(|x| x.1).collect()
                }
                other => {
                    fn field(other: SortKey, c: &pb::Call) -> (i32, &str) {
                        match other {
                            SortKey::Caller => (0, c.caller.as_str()),
                            SortKey::Callee => (0, c.destination.as_str()),
                            SortKey::State => (c.state, ""),
                            _ => (0, c.media_node.as_str()),
                        }
                    }
                    let mut v: Vec<_> = rows.iter().map(|(k, c)| (field(other, c), *k)).collect();
                    v.sort_unstable();
                    v.into_iter().map(|x| x.1).collect()
                }
            };
            if self.reverse {
                keys.reverse();
            }
            self.index = keys.into_iter().cloned().collect();
            self.built = Some(want);
        }
        &self.index
    }

    /// Key of the selected call.
    pub fn selected(&mut self, store: &Store) -> Option<CallKey> {
        let i = self.sel.selected;
        self.index(store).get(i).cloned()
    }

    /// Draw the table (live calls, or the failed calls when toggled).
    pub fn render(&mut self, f: &mut Frame, area: Rect, store: &Store, theme: &Theme) {
        if self.show_failed {
            let filter = self.filter.clone();
            self.failed.render(f, area, store, theme, &filter);
            return;
        }
        let several = store
            .backends
            .iter()
            .filter(|b| b.kind != crate::cmd::Kind::Swrtp)
            .count()
            > 1;
        let height = area.height.saturating_sub(1) as usize;
        self.page = height.max(1);
        let len = self.index(store).len();
        let range = self.sel.window(len, height);
        let selected = self.sel.selected;
        let wide = area.width >= 120;
        let mut header = vec![
            "ID", "FROM", "TO", "STATE", "DUR", "NODE", "CODEC", "LOSS", "JITTER",
        ];
        let mut widths = vec![
            Constraint::Length(8),
            Constraint::Fill(1),
            Constraint::Fill(1),
            Constraint::Length(11),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Length(5),
            Constraint::Length(7),
            Constraint::Length(6),
        ];
        if several {
            header.insert(0, "BACKEND");
            widths.insert(0, Constraint::Length(8));
        }
        if wide {
            header.push("ROUTE");
            widths.push(Constraint::Length(14));
        }
        let fill_w = {
            let fixed: u16 = widths
                .iter()
                .map(|c| match c {
                    Constraint::Length(l) => *l,
                    _ => 0,
                })
                .sum::<u16>()
                + widths.len() as u16;
            (area.width.saturating_sub(fixed) / 2).max(4) as usize
        };
        let rows: Vec<Row> = self.index[range.clone()]
            .iter()
            .enumerate()
            .filter_map(|(i, key)| {
                let c = store.calls.get(key)?;
                let state = views::call_state(c.state);
                let health = store.call_quality(key, c);
                let (loss, jitter) = match health {
                    Some(h) => match h.flag {
                        // Not "0.0%": a one-way call must not look healthy.
                        Some(f) => (Cell::from(f.name()).style(theme.bad()), Cell::from("-")),
                        None => (
                            Cell::from(format!("{:.1}%", h.loss)),
                            Cell::from(format!("{:.0} ms", h.jitter)),
                        ),
                    },
                    None => (Cell::from("-"), Cell::from("-")),
                };
                let codec = c
                    .legs
                    .iter()
                    .map(|l| l.codec.as_str())
                    .find(|x| !x.is_empty())
                    .unwrap_or("-");
                let mut cells = vec![
                    Cell::from(short_id(&c.call_id).to_string()),
                    Cell::from(cut(&c.caller, fill_w)),
                    Cell::from(cut(&c.destination, fill_w)),
                    Cell::from(state).style(theme.call_state(state)),
                    Cell::from(views::mmss(store.call_secs(c))),
                    Cell::from(cut(
                        if c.media_node.is_empty() {
                            "-"
                        } else {
                            &c.media_node
                        },
                        7,
                    )),
                    Cell::from(codec.to_string()),
                    loss,
                    jitter,
                ];
                if several {
                    cells.insert(0, Cell::from(cut_middle(store.label(key.0), 8)));
                }
                if wide {
                    cells.push(Cell::from(cut(&c.route_id, 14)));
                }
                let row = Row::new(cells);
                Some(if range.start + i == selected {
                    row.style(theme.selected())
                } else {
                    row
                })
            })
            .collect();
        if len == 0 {
            let msg = if !self.filter.is_empty() {
                format!(" no call matches /{}", self.filter)
            } else if store.backends.iter().all(|b| {
                matches!(
                    b.conn,
                    crate::tui::event::ConnState::Connected { watching: false }
                ) || b.kind == crate::cmd::Kind::Swrtp
            }) && store.backends.iter().any(|b| b.status.is_some())
            {
                " no call list: this swbd has no Watch stream yet (counts in the header)".into()
            } else {
                " no active calls".into()
            };
            let [_, body] =
                ratatui::layout::Layout::vertical([Constraint::Length(1), Constraint::Fill(1)])
                    .areas(area);
            let table = Table::new(Vec::<Row>::new(), widths)
                .header(Row::new(header).style(theme.header()))
                .column_spacing(1);
            f.render_widget(table, area);
            f.render_widget(Paragraph::new(Line::styled(msg, theme.dim())), body);
            return;
        }
        let table = Table::new(rows, widths)
            .header(Row::new(header).style(theme.header()))
            .column_spacing(1);
        f.render_widget(table, area);
    }
}
