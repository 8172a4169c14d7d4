//! Pieces shared by screens: the theme, the header, the footer, popups.

pub mod confirm;
pub mod header;

use ratatui::style::{Color, Modifier, Style};

/// Colours, or none at all when `NO_COLOR` is set (<https://no-color.org>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    /// Use colours.
    pub color: bool,
}

impl Theme {
    /// From the environment: `NO_COLOR` set and non-empty disables colour.
    pub fn from_env() -> Self {
        Self {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }

    /// Table headers.
    pub fn header(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }

    /// The selected row (reverse video works without colour).
    pub fn selected(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }

    /// Something wrong.
    pub fn bad(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    /// Something to watch.
    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow)
    }

    /// Fine.
    pub fn good(&self) -> Style {
        self.fg(Color::Green)
    }

    /// Less important text.
    pub fn dim(&self) -> Style {
        if self.color {
            Style::default().fg(Color::DarkGray)
        } else {
            Style::default()
        }
    }

    /// Style of a call state name.
    pub fn call_state(&self, state: &str) -> Style {
        match state {
            "bridged" | "answered" => self.good(),
            "ringing" | "early-media" | "routing" => self.warn(),
            "ended" | "ending" => self.dim(),
            _ => Style::default(),
        }
    }
}

/// Cut to `max` characters with `…`.
pub fn cut(s: &str, max: usize) -> String {
    crate::output::cut(&s.replace(['\r', '\n', '\t'], " "), max)
}

/// Cut to `max` characters keeping the start and the end (`127.…051`):
/// for ids and addresses, which differ at the end.
pub fn cut_middle(s: &str, max: usize) -> String {
    crate::output::cut_middle(&s.replace(['\r', '\n', '\t'], " "), max)
}
