//! One state struct per screen; each renders itself from the [`Store`](super::store::Store).

pub mod call_detail;
pub mod calls;
pub mod events;
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

/// Case-insensitive "contains" for filters.
pub fn matches(filter: &str, fields: &[&str]) -> bool {
    if filter.is_empty() {
        return true;
    }
    let f = filter.to_lowercase();
    fields.iter().any(|x| x.to_lowercase().contains(&f))
}

#[cfg(test)]
mod tests {
    use super::*;

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
