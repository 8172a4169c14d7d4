//! The app: which screen is up, key handling, and drawing. Data lives in the
//! [`Store`]; each screen keeps its own cursor/filter state. Keys never do I/O:
//! they return a [`Command`] the event loop runs, so all of this is testable
//! without a terminal.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::event::Update;
use super::screens::call_detail::CallDetailScreen;
use super::screens::calls::CallsScreen;
use super::screens::events::EventsScreen;
use super::screens::help;
use super::screens::nodes::{NodeRow, NodesScreen};
use super::screens::registrations::RegistrationsScreen;
use super::store::{CallKey, Store, short_id};
use super::widgets::{Theme, confirm, header};

/// Top-level screens (Tab / 1-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    /// Calls.
    #[default]
    Calls,
    /// Registrations.
    Registrations,
    /// Media nodes.
    Nodes,
    /// Event log.
    Events,
}

impl Tab {
    const ALL: [Tab; 4] = [Tab::Calls, Tab::Registrations, Tab::Nodes, Tab::Events];

    fn title(self, narrow: bool) -> &'static str {
        match self {
            Tab::Calls => "Calls",
            Tab::Registrations if narrow => "Regs",
            Tab::Registrations => "Registrations",
            Tab::Nodes => "Nodes",
            Tab::Events => "Events",
        }
    }
}

/// Something the event loop must do (network).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// GetCall for the detail view.
    FetchCall(CallKey),
    /// HangupCall.
    Hangup(CallKey),
    /// Drain (true) or undrain a node in a swbd's pool.
    DrainPool {
        /// swbd backend.
        backend: usize,
        /// Node name.
        node: String,
        /// Drain or undrain.
        drain: bool,
    },
    /// SetDraining on a swrtp.
    DrainRtp {
        /// swrtp backend.
        backend: usize,
        /// Drain or undrain.
        drain: bool,
    },
}

/// A pending confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    /// Question shown.
    pub question: String,
    /// What `y` does.
    pub command: Command,
}

/// The whole UI state.
#[derive(Debug)]
pub struct App {
    /// Data.
    pub store: Store,
    /// Screen.
    pub tab: Tab,
    /// Calls screen.
    pub calls: CallsScreen,
    /// Detail view, when open (over the calls screen).
    pub detail: Option<CallDetailScreen>,
    /// Registrations screen.
    pub registrations: RegistrationsScreen,
    /// Nodes screen.
    pub nodes: NodesScreen,
    /// Events screen.
    pub events: EventsScreen,
    /// `?` popup.
    pub help: bool,
    /// Confirmation popup.
    pub confirm: Option<Confirm>,
    /// Footer message (action results).
    pub flash: Option<String>,
    /// Colours.
    pub theme: Theme,
    /// `q` pressed.
    pub quit: bool,
}

impl App {
    /// A fresh app over `store`.
    pub fn new(store: Store, theme: Theme) -> Self {
        Self {
            store,
            tab: Tab::Calls,
            calls: CallsScreen::default(),
            detail: None,
            registrations: RegistrationsScreen::default(),
            nodes: NodesScreen::default(),
            events: EventsScreen::default(),
            help: false,
            confirm: None,
            flash: None,
            theme,
            quit: false,
        }
    }

    /// Apply a feed update.
    pub fn apply(&mut self, u: Update) {
        match u {
            Update::CallDetail { backend, call } => {
                if let Some(d) = &mut self.detail
                    && d.key == (backend, call.call_id.clone())
                {
                    d.fetched = Some(call);
                }
            }
            Update::CallCapture {
                backend,
                call_id,
                capture,
            } => {
                if let Some(d) = &mut self.detail
                    && d.key == (backend, call_id)
                {
                    d.set_capture(&capture);
                }
            }
            Update::Flash(m) => self.flash = Some(m),
            Update::Batch(v) => {
                for u in v {
                    self.apply(u);
                }
            }
            other => self.store.apply(other),
        }
    }

    /// Handle one key; may return a network command for the event loop.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Command> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return None;
        }
        if let Some(c) = self.confirm.take() {
            return match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => Some(c.command),
                _ => {
                    self.flash = Some("cancelled".into());
                    None
                }
            };
        }
        if self.help {
            self.help = false;
            return None;
        }
        if self.calls.filtering && self.tab == Tab::Calls && self.detail.is_none() {
            self.filter_key(key);
            return None;
        }
        self.flash = None;
        if self.detail.is_some() {
            return self.detail_key(key);
        }
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') => self.help = true,
            KeyCode::Tab => self.tab = next_tab(self.tab, 1),
            KeyCode::BackTab => self.tab = next_tab(self.tab, 3),
            KeyCode::Char('1') => self.tab = Tab::Calls,
            KeyCode::Char('2') => self.tab = Tab::Registrations,
            KeyCode::Char('3') => self.tab = Tab::Nodes,
            KeyCode::Char('4') => self.tab = Tab::Events,
            _ => return self.screen_key(key),
        }
        None
    }

    fn detail_key(&mut self, key: KeyEvent) -> Option<Command> {
        let d = self.detail.as_mut()?;
        let len = d.ladder_len();
        match key.code {
            KeyCode::Esc | KeyCode::Char('q') if d.raw => {
                d.raw = false;
                d.raw_scroll = 0;
            }
            KeyCode::Esc | KeyCode::Char('q') => self.detail = None,
            KeyCode::Char('?') => self.help = true,
            KeyCode::Enter if len > 0 => d.raw = true,
            KeyCode::Up | KeyCode::Char('k') if d.raw => {
                d.raw_scroll = d.raw_scroll.saturating_sub(1)
            }
            KeyCode::Down | KeyCode::Char('j') if d.raw => {
                d.raw_scroll = d.raw_scroll.saturating_add(1)
            }
            KeyCode::Up | KeyCode::Char('k') => d.sel.step(-1, len),
            KeyCode::Down | KeyCode::Char('j') => d.sel.step(1, len),
            KeyCode::Home => d.sel.step(-(len as isize), len),
            KeyCode::End => d.sel.step(len as isize, len),
            KeyCode::Char('r') => return Some(Command::FetchCall(d.key.clone())),
            KeyCode::Char('h') => {
                self.confirm = Some(hangup_confirm(&self.store, &d.key));
            }
            _ => {}
        }
        None
    }

    fn filter_key(&mut self, key: KeyEvent) {
        match key.code {
            KeyCode::Enter => self.calls.filtering = false,
            KeyCode::Esc => {
                self.calls.filtering = false;
                self.calls.filter.clear();
            }
            KeyCode::Backspace => {
                self.calls.filter.pop();
            }
            KeyCode::Char(c) => self.calls.filter.push(c),
            _ => {}
        }
        self.calls.sel = Default::default();
        self.calls.failed.sel = Default::default();
    }

    fn screen_key(&mut self, key: KeyEvent) -> Option<Command> {
        let page = if self.calls.show_failed {
            self.calls.failed.page
        } else {
            self.calls.page
        }
        .max(1) as isize;
        let delta = match key.code {
            KeyCode::Up | KeyCode::Char('k') => Some(-1),
            KeyCode::Down | KeyCode::Char('j') => Some(1),
            KeyCode::PageUp => Some(-page),
            KeyCode::PageDown => Some(page),
            KeyCode::Home | KeyCode::Char('g') => Some(isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => Some(isize::MAX / 2),
            _ => None,
        };
        match self.tab {
            Tab::Calls if self.calls.show_failed => {
                let filter = self.calls.filter.clone();
                let len = self.calls.failed.rows(&self.store, &filter).len();
                if let Some(d) = delta {
                    self.calls.failed.sel.step(d, len);
                    return None;
                }
                match key.code {
                    KeyCode::Char('/') => self.calls.filtering = true,
                    KeyCode::Esc => self.calls.filter.clear(),
                    KeyCode::Char('f') => self.calls.show_failed = false,
                    KeyCode::Enter => {
                        let key = self.calls.failed.selected(&self.store, &filter)?;
                        self.detail = Some(CallDetailScreen::new(key.clone()));
                        return Some(Command::FetchCall(key));
                    }
                    _ => {}
                }
            }
            Tab::Calls => {
                let len = self.calls.index(&self.store).len();
                if let Some(d) = delta {
                    self.calls.sel.step(d, len);
                    return None;
                }
                match key.code {
                    KeyCode::Char('/') => {
                        self.calls.filtering = true;
                    }
                    KeyCode::Esc => self.calls.filter.clear(),
                    KeyCode::Char('s') => self.calls.sort = self.calls.sort.next(),
                    KeyCode::Char('S') => self.calls.reverse = !self.calls.reverse,
                    KeyCode::Char('e') => self.calls.show_ended = !self.calls.show_ended,
                    KeyCode::Char('f') => self.calls.show_failed = true,
                    KeyCode::Enter => {
                        let key = self.calls.selected(&self.store)?;
                        self.detail = Some(CallDetailScreen::new(key.clone()));
                        return Some(Command::FetchCall(key));
                    }
                    KeyCode::Char('h') => {
                        let key = self.calls.selected(&self.store)?;
                        self.confirm = Some(hangup_confirm(&self.store, &key));
                    }
                    _ => {}
                }
            }
            Tab::Registrations => {
                let len = self.registrations.rows(&self.store).len();
                if let Some(d) = delta {
                    self.registrations.sel.step(d, len);
                }
            }
            Tab::Nodes => {
                let rows = NodesScreen::rows(&self.store);
                if let Some(d) = delta {
                    self.nodes.sel.step(d, rows.len());
                    return None;
                }
                if key.code == KeyCode::Char('d') {
                    let row = rows.get(self.nodes.sel.selected)?;
                    let drain = !row.draining();
                    let verb = if drain { "Drain" } else { "Undrain" };
                    let (question, command) = match row {
                        NodeRow::Pool { backend, node } => (
                            format!(
                                "{verb} media node {} in {}'s pool?",
                                node.name,
                                self.store.label(*backend)
                            ),
                            Command::DrainPool {
                                backend: *backend,
                                node: node.name.clone(),
                                drain,
                            },
                        ),
                        NodeRow::Rtp { backend, status } => (
                            format!(
                                "{verb} swrtp {} ({})?",
                                status.node_id,
                                self.store.label(*backend)
                            ),
                            Command::DrainRtp {
                                backend: *backend,
                                drain,
                            },
                        ),
                    };
                    self.confirm = Some(Confirm { question, command });
                }
            }
            Tab::Events => match delta {
                Some(d) if d < 0 => {
                    self.events.back = self.events.back.saturating_add(d.unsigned_abs())
                }
                Some(d) => self.events.back = self.events.back.saturating_sub(d.unsigned_abs()),
                None => {}
            },
        }
        None
    }

    /// Draw everything.
    pub fn render(&mut self, f: &mut Frame) {
        let area = f.area();
        let [head, body, foot] = Layout::vertical([
            Constraint::Length(2),
            Constraint::Fill(1),
            Constraint::Length(1),
        ])
        .areas(area);
        header::render(f, head, &self.store, &self.theme);
        if let Some(d) = &mut self.detail {
            d.render(f, body, &self.store, &self.theme);
        } else {
            match self.tab {
                Tab::Calls => self.calls.render(f, body, &self.store, &self.theme),
                Tab::Registrations => self.registrations.render(f, body, &self.store, &self.theme),
                Tab::Nodes => self.nodes.render(f, body, &self.store, &self.theme),
                Tab::Events => self.events.render(f, body, &self.store, &self.theme),
            }
        }
        self.render_footer(f, foot);
        if self.help {
            help::render(f, body, &self.theme);
        }
        if let Some(c) = &self.confirm {
            confirm::render(f, body, &c.question, &self.theme);
        }
    }

    fn render_footer(&self, f: &mut Frame, area: Rect) {
        let t = &self.theme;
        if self.calls.filtering && self.tab == Tab::Calls && self.detail.is_none() {
            f.render_widget(
                Paragraph::new(format!(" /{}█   Enter keep  Esc clear", self.calls.filter)),
                area,
            );
            return;
        }
        if let Some(m) = &self.flash {
            f.render_widget(Paragraph::new(format!(" {m}")).style(t.warn()), area);
            return;
        }
        let mut spans = Vec::new();
        for (i, tab) in Tab::ALL.iter().enumerate() {
            let style = if *tab == self.tab && self.detail.is_none() {
                t.selected()
            } else {
                ratatui::style::Style::default()
            };
            spans.push(Span::styled(
                format!(" {} {} ", i + 1, tab.title(area.width < 100)),
                style,
            ));
        }
        let narrow = area.width < 100;
        let mut hints = String::from(" ");
        if self.tab == Tab::Calls {
            if !self.calls.filter.is_empty() {
                hints.push_str(&format!("/{}  ", self.calls.filter));
            } else {
                hints.push_str("/ filter  ");
            }
            if self.calls.show_failed {
                hints.push_str("f live  ");
            } else {
                hints.push_str(&format!(
                    "s{}{}{}  f failed  ",
                    if narrow { ":" } else { " sort:" },
                    self.calls.sort.name(),
                    if self.calls.reverse { "↑" } else { "" }
                ));
            }
        }
        if self.tab == Tab::Nodes {
            hints.push_str("d drain  ");
        }
        hints.push_str("? help  q quit");
        // 80 columns: the Calls hints fit with single spaces.
        if narrow && self.tab == Tab::Calls {
            hints = hints.replace("  ", " ");
        }
        spans.push(Span::styled(hints, t.dim()));
        f.render_widget(Paragraph::new(Line::from(spans)), area);
    }
}

fn next_tab(t: Tab, by: usize) -> Tab {
    let i = Tab::ALL.iter().position(|x| *x == t).unwrap_or(0);
    Tab::ALL[(i + by) % Tab::ALL.len()]
}

fn hangup_confirm(store: &Store, key: &CallKey) -> Confirm {
    let who = store
        .calls
        .get(key)
        .map(|c| format!(" ({} -> {})", c.caller, c.destination))
        .unwrap_or_default();
    Confirm {
        question: format!("Hang up call {}{who}?", short_id(&key.1)),
        command: Command::Hangup(key.clone()),
    }
}
