//! The route index: finds the first matching route without scanning them
//! all.
//!
//! Every enabled route sits in exactly one bucket, keyed by the literal
//! characters its destination must start with:
//! - `exact`: globs without wildcards (`500`), keyed by the whole string;
//! - `prefix`: everything else, keyed by its literal prefix (`1*` under
//!   `1`, `^9(\d+)$` under `9`, `*` and prefix-less regexes under ``).
//!
//! A lookup visits the exact bucket of the destination and the prefix
//! bucket of each of its prefixes (at most `len + 2` hash lookups), and
//! merges those rank-sorted lists lazily, lowest rank first, checking each
//! candidate's remaining conditions. The first candidate that holds is the
//! answer: the same route a linear scan in (priority, file order) would
//! find, because every route that could match is in one of the visited
//! buckets and ranks are that order.

use std::collections::HashMap;

use super::pattern::GlobShape;
use super::plan::{CallInfo, DestinationPattern, Route};

/// One bucket entry.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Position in evaluation order.
    rank: u32,
    /// The bucket alone proves the destination matches.
    destination_known: bool,
}

/// Buckets of ranks, each sorted ascending.
#[derive(Debug, Default)]
pub struct RouteIndex {
    exact: HashMap<Box<str>, Vec<Entry>>,
    prefix: HashMap<Box<str>, Vec<Entry>>,
    /// Longest prefix key, in bytes: longer destination prefixes are not looked up.
    longest_prefix: usize,
}

impl RouteIndex {
    /// Index the routes of the default context (those without a
    /// `context:`) among `routes` (already in evaluation order).
    pub fn build(routes: &[Route]) -> Self {
        Self::build_context(routes, None)
    }

    /// Index the routes of `context` (`None`: the default one) among
    /// `routes`; ranks stay positions in `routes`.
    pub fn build_context(routes: &[Route], context: Option<&str>) -> Self {
        let mut idx = Self::default();
        for (rank, r) in routes.iter().enumerate() {
            if !r.enabled || r.context.as_deref() != context {
                continue;
            }
            let Ok(rank) = u32::try_from(rank) else {
                break;
            };
            let (map, key, known) = match &r.matcher.destination {
                DestinationPattern::Any => (&mut idx.prefix, String::new(), true),
                DestinationPattern::Glob(g) => match g.shape() {
                    GlobShape::Exact => (&mut idx.exact, g.as_str().to_string(), true),
                    GlobShape::Prefix => (&mut idx.prefix, g.literal_prefix(), true),
                    GlobShape::Complex => (&mut idx.prefix, g.literal_prefix(), false),
                },
                DestinationPattern::Regex(re) => {
                    (&mut idx.prefix, re.literal_prefix().to_string(), false)
                }
            };
            idx.longest_prefix = idx.longest_prefix.max(key.len());
            map.entry(key.into_boxed_str()).or_default().push(Entry {
                rank,
                destination_known: known,
            });
        }
        idx
    }

    /// The rank of the first route that matches `call`, with its captures.
    pub fn lookup(
        &self,
        routes: &[Route],
        call: &CallInfo,
    ) -> Option<(usize, Vec<(String, String)>)> {
        let dest = call.destination.as_str();
        // Candidate lists: at most one per prefix length plus the exact one.
        let mut lists: Vec<&[Entry]> = Vec::with_capacity(16);
        if let Some(l) = self.exact.get(dest) {
            lists.push(l);
        }
        let ends = dest
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(dest.len()))
            .take_while(|&i| i <= self.longest_prefix);
        for end in ends {
            if let Some(l) = dest.get(..end).and_then(|p| self.prefix.get(p)) {
                lists.push(l);
            }
        }
        // Lazy k-way merge by rank.
        let mut heads = vec![0usize; lists.len()];
        loop {
            let mut best: Option<(usize, Entry)> = None;
            for (i, list) in lists.iter().enumerate() {
                if let Some(e) = heads.get(i).and_then(|&h| list.get(h))
                    && best.is_none_or(|(_, b)| e.rank < b.rank)
                {
                    best = Some((i, *e));
                }
            }
            let (i, e) = best?;
            if let Some(h) = heads.get_mut(i) {
                *h += 1;
            }
            let rank = usize::try_from(e.rank).ok()?;
            if let Some(route) = routes.get(rank)
                && let Some(captures) = route.matcher.check(call, e.destination_known)
            {
                return Some((rank, captures));
            }
        }
    }
}
