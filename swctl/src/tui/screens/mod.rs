//! One state struct per screen; each renders itself from the [`Store`](super::store::Store).

pub mod call_detail;
pub mod calls;
pub mod events;
pub mod failed_calls;
pub mod help;
pub mod nodes;
pub mod registrations;

/// Cursor and scroll position of a list; only the visible window is rendered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Selected row.
    pub selected: usize,
    /// First visible row.
    pub offset: usize,
}

impl Selection {
    /// Move by `delta` rows within `len`.
    pub fn step(&mut self, delta: isize, len: usize) {
        if len == 0 {
            self.selected = 0;
            return;
        }
        let s = self.selected as isize + delta;
        self.selected = s.clamp(0, len as isize - 1) as usize;
    }

    /// Keep the selection inside `len` and visible in `height` rows; returns
    /// the visible range.
    pub fn window(&mut self, len: usize, height: usize) -> std::ops::Range<usize> {
        if len == 0 {
            self.selected = 0;
            self.offset = 0;
            return 0..0;
        }
        self.selected = self.selected.min(len - 1);
        let height = height.max(1);
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + height {
            self.offset = self.selected + 1 - height;
        }
        self.offset = self.offset.min(len.saturating_sub(height));
        self.offset..(self.offset + height).min(len)
    }
}

/// Whether any field contains `filter_lower` (already lowercased), ignoring case.
pub fn matches(filter_lower: &str, fields: &[&str]) -> bool {
    filter_lower.is_empty() || fields.iter().any(|x| contains_ci(x, filter_lower))
}

/// Case-insensitive `contains`; allocation-free for ASCII (the common case
/// for numbers, ids and URIs), so filtering 10,000 calls per keystroke is cheap.
pub fn contains_ci(hay: &str, needle_lower: &str) -> bool {
    if needle_lower.is_empty() {
        return true;
    }
    if hay.is_ascii() && needle_lower.is_ascii() {
        let n = needle_lower.as_bytes();
        hay.as_bytes()
            .windows(n.len())
            .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
    } else {
        hay.to_lowercase().contains(needle_lower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_filter() {
        assert!(contains_ci("Sip:Alice@EXAMPLE.com", "alice@ex"));
        assert!(!contains_ci("1001", "1002"));
        assert!(contains_ci("Ärger", "ärg"));
        assert!(matches("", &[]));
        assert!(matches("bri", &["1001", "bridged"]));
    }

    #[test]
    fn window_follows_the_selection() {
        let mut s = Selection::default();
        assert_eq!(s.window(100, 10), 0..10);
        s.step(15, 100);
        assert_eq!(s.window(100, 10), 6..16);
        s.step(-100, 100);
        assert_eq!(s.window(100, 10), 0..10);
        s.step(1000, 100);
        assert_eq!(s.window(100, 10), 90..100);
        assert_eq!(s.window(5, 10), 0..5);
        assert_eq!(s.selected, 4);
        assert_eq!(s.window(0, 10), 0..0);
    }
}
