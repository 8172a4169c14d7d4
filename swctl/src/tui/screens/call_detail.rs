//! One call: both legs with live RTP stats per direction, and the SIP ladder
//! from GetCall (Enter shows the full message).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, Wrap};
use switchboard_proto::admin::v1 as pb;

use super::Selection;
use crate::tui::store::{CallKey, Store, short_id};
use crate::tui::widgets::{Theme, cut};
use crate::views;

/// State of the detail view of one call.
#[derive(Debug)]
pub struct CallDetailScreen {
    /// Which call.
    pub key: CallKey,
    /// The call as GetCall returned it (with its ladder); `None` until it answers.
    pub fetched: Option<pb::Call>,
    /// Cursor in the ladder.
    pub sel: Selection,
    /// Showing the full message of the selected ladder row.
    pub raw: bool,
    /// Scroll of the full message.
    pub raw_scroll: u16,
}

impl CallDetailScreen {
    /// Open on `key`.
    pub fn new(key: CallKey) -> Self {
        Self {
            key,
            fetched: None,
            sel: Selection::default(),
            raw: false,
            raw_scroll: 0,
        }
    }

    /// Ladder length.
    pub fn ladder_len(&self) -> usize {
        self.fetched.as_ref().map(|c| c.ladder.len()).unwrap_or(0)
    }

    /// Draw.
    pub fn render(&mut self, f: &mut Frame, area: Rect, store: &Store, theme: &Theme) {
        // Live fields from the store; the ladder from GetCall.
        let live = store.calls.get(&self.key);
        let Some(call) = live.or(self.fetched.as_ref()) else {
            f.render_widget(
                Paragraph::new(format!(
                    " call {} is gone (Esc back)",
                    short_id(&self.key.1)
                ))
                .style(theme.dim()),
                area,
            );
            return;
        };
        let w = area.width as usize;
        let state = views::call_state(call.state);
        let mut lines = vec![Line::from(vec![
            Span::styled(format!(" Call {}", short_id(&call.call_id)), theme.header()),
            Span::raw(format!("  {} -> {}  ", call.caller, call.destination)),
            Span::styled(state, theme.call_state(state)),
            Span::raw(format!(
                " {}  route {}  dialplan {}{}",
                views::mmss(store.call_secs(call)),
                call.route_id,
                if call.dialplan_version.is_empty() {
                    "-"
                } else {
                    &call.dialplan_version
                },
                if call.end_status != 0 || !call.end_cause.is_empty() {
                    format!("  ended: {} {}", call.end_status, call.end_cause)
                } else {
                    String::new()
                }
            )),
        ])];
        for leg in &call.legs {
            let role = views::leg_role(leg.role).to_uppercase();
            let stats = store
                .sessions
                .get(&leg.media_session_id)
                .and_then(|(_, s)| s.stats.as_ref());
            let rtp = match stats {
                Some(st) => {
                    let rx = st.rx.unwrap_or_default();
                    let tx = st.tx.unwrap_or_default();
                    format!(
                        "in {} loss {:.1}% jitter {:.1} ms  out {}{}",
                        rx.packets,
                        views::loss_percent(&rx),
                        rx.jitter_ms,
                        tx.packets,
                        if st.remote_address.is_empty() || w < 120 {
                            String::new()
                        } else {
                            format!("  rtp from {}", st.remote_address)
                        }
                    )
                }
                None => "no RTP stats".into(),
            };
            let codec = if leg.codec.is_empty() {
                "-"
            } else {
                &leg.codec
            };
            let text = if w >= 120 {
                format!(
                    " {role}  {} {}  {}  {codec}  {rtp}",
                    leg.remote_uri,
                    leg.remote_address,
                    views::leg_state(leg.state),
                )
            } else {
                format!(" {role}  {}  {codec}  {rtp}", cut(&leg.remote_uri, 28))
            };
            lines.push(Line::raw(cut(&text, w)));
        }
        let head_h = lines.len() as u16;
        let [head, body, foot] = Layout::vertical([
            Constraint::Length(head_h),
            Constraint::Fill(1),
            Constraint::Length(1),
        ])
        .areas(area);
        f.render_widget(Paragraph::new(lines), head);
        let footer = if self.raw {
            " Esc back to ladder   ↑/↓ scroll"
        } else {
            " Esc back   Enter full message   h hang up   r refresh"
        };
        f.render_widget(Paragraph::new(footer).style(theme.dim()), foot);

        let Some(fetched) = &self.fetched else {
            f.render_widget(Paragraph::new(" loading ladder…").style(theme.dim()), body);
            return;
        };
        if self.raw {
            let msg = fetched
                .ladder
                .get(self.sel.selected)
                .map(|m| m.raw.replace('\r', ""))
                .unwrap_or_default();
            f.render_widget(
                Paragraph::new(msg)
                    .wrap(Wrap { trim: false })
                    .scroll((self.raw_scroll, 0))
                    .block(Block::default().borders(Borders::TOP).title(" message ")),
                body,
            );
            return;
        }
        let range = self.sel.window(fetched.ladder.len(), body.height as usize);
        let rows: Vec<Row> = fetched.ladder[range.clone()]
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let leg = views::leg_role(m.leg).to_uppercase();
                let flow = if m.inbound {
                    format!("{leg} -> sb")
                } else {
                    format!("sb -> {leg}")
                };
                let row = Row::new(vec![
                    format!(" {}", views::clock_ms(m.at.as_ref())),
                    flow,
                    cut(&m.summary, w.saturating_sub(26)),
                ]);
                if range.start + i == self.sel.selected {
                    row.style(theme.selected())
                } else {
                    row
                }
            })
            .collect();
        if rows.is_empty() {
            f.render_widget(
                Paragraph::new(" no SIP messages recorded").style(theme.dim()),
                body,
            );
            return;
        }
        f.render_widget(
            Table::new(
                rows,
                [
                    Constraint::Length(13),
                    Constraint::Length(8),
                    Constraint::Fill(1),
                ],
            )
            .column_spacing(1),
            body,
        );
    }
}
