//! Media nodes: swbd's pool view (state, calls, drain) and each swrtp's own
//! status (sessions, free ports, draining).

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::widgets::{Paragraph, Row, Table};
use switchboard_proto::admin::v1 as pb;

use super::Selection;
use crate::tui::store::Store;
use crate::tui::widgets::{Theme, cut, cut_middle};
use crate::views;

/// One row of the nodes screen.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeRow {
    /// A node in a swbd's pool: drain goes through that swbd.
    Pool {
        /// swbd backend.
        backend: usize,
        /// Node.
        node: pb::MediaNode,
    },
    /// A swrtp backend: drain goes to it directly.
    Rtp {
        /// swrtp backend.
        backend: usize,
        /// Its status.
        status: pb::MediaStatus,
    },
}

impl NodeRow {
    /// Name shown.
    pub fn name(&self) -> &str {
        match self {
            NodeRow::Pool { node, .. } => &node.name,
            NodeRow::Rtp { status, .. } => &status.node_id,
        }
    }

    /// Currently draining.
    pub fn draining(&self) -> bool {
        match self {
            NodeRow::Pool { node, .. } => node.state == pb::MediaNodeState::Draining as i32,
            NodeRow::Rtp { status, .. } => status.draining,
        }
    }
}

/// State of the nodes screen.
#[derive(Debug, Default)]
pub struct NodesScreen {
    /// Cursor.
    pub sel: Selection,
}

impl NodesScreen {
    /// Pool nodes first (by swbd, config order), then swrtp backends.
    pub fn rows(store: &Store) -> Vec<NodeRow> {
        let mut rows: Vec<NodeRow> = store
            .nodes
            .iter()
            .map(|((b, _), n)| NodeRow::Pool {
                backend: *b,
                node: n.clone(),
            })
            .collect();
        for (i, b) in store.backends.iter().enumerate() {
            if let Some(st) = &b.media_status {
                rows.push(NodeRow::Rtp {
                    backend: i,
                    status: st.clone(),
                });
            }
        }
        rows
    }

    /// Draw.
    pub fn render(&mut self, f: &mut Frame, area: Rect, store: &Store, theme: &Theme) {
        let rows = Self::rows(store);
        let range = self
            .sel
            .window(rows.len(), area.height.saturating_sub(1) as usize);
        let table_rows: Vec<Row> = rows[range.clone()]
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let cells = match r {
                    NodeRow::Pool { backend, node } => {
                        let state = views::node_state(node.state);
                        vec![
                            cut_middle(&node.name, 12),
                            format!("pool of {}", cut_middle(store.label(*backend), 8)),
                            state.to_string(),
                            node.active_calls.to_string(),
                            node.sessions.to_string(),
                            node.free_port_pairs.to_string(),
                            if let Some(m) = migration_cell(node) {
                                m
                            } else if node.drained {
                                "drained".into()
                            } else if node.state == pb::MediaNodeState::Draining as i32 {
                                "draining".into()
                            } else {
                                "-".into()
                            },
                            cut(&node.last_error, 30),
                        ]
                    }
                    NodeRow::Rtp { backend, status } => vec![
                        cut_middle(&status.node_id, 12),
                        format!("swrtp {}", cut_middle(store.label(*backend), 8)),
                        "up".into(),
                        "-".into(),
                        status.active_sessions.to_string(),
                        format!("{}/{}", status.free_port_pairs, status.total_port_pairs),
                        if status.draining {
                            "draining".into()
                        } else {
                            "-".into()
                        },
                        String::new(),
                    ],
                };
                let style = if r.draining() {
                    theme.warn()
                } else {
                    ratatui::style::Style::default()
                };
                let row = Row::new(cells).style(style);
                if range.start + i == self.sel.selected {
                    row.style(theme.selected())
                } else {
                    row
                }
            })
            .collect();
        let empty = table_rows.is_empty();
        f.render_widget(
            Table::new(
                table_rows,
                [
                    Constraint::Length(12),
                    Constraint::Length(15),
                    Constraint::Length(8),
                    Constraint::Length(5),
                    Constraint::Length(8),
                    Constraint::Length(11),
                    Constraint::Length(14),
                    Constraint::Fill(1),
                ],
            )
            .header(
                Row::new([
                    "NODE",
                    "VIA",
                    "STATE",
                    "CALLS",
                    "SESSIONS",
                    "FREE PORTS",
                    "DRAIN",
                    "ERROR",
                ])
                .style(theme.header()),
            )
            .column_spacing(1),
            area,
        );
        if empty {
            let body = Rect {
                y: area.y + 1,
                height: area.height.saturating_sub(1),
                ..area
            };
            f.render_widget(
                Paragraph::new(" no media nodes known yet").style(theme.dim()),
                body,
            );
        }
    }
}

/// Drain with migration in 14 columns: `mig 1 (4ok 1x)` while calls are
/// left to move, `moved 4 (1x)` after (x: calls that stayed).
fn migration_cell(n: &pb::MediaNode) -> Option<String> {
    views::migration_progress(n)?;
    Some(if n.migrating > 0 {
        format!(
            "mig {} ({}ok {}x)",
            n.migrating, n.migrated, n.migration_failed
        )
    } else {
        format!("moved {} ({}x)", n.migrated, n.migration_failed)
    })
}
