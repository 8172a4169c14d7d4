//! A fast path for the YAML that dialplans are actually written in.
//!
//! serde-saphyr is most of a reload (about 10 MB/s, see
//! docs/BENCHMARKS.md), so [`parse`] reads the common subset of YAML in one
//! pass and builds the same [`DialplanFile`], with the same
//! [`Spanned`] locations (line, column, character and byte span), without
//! going through it.
//!
//! It is only a fast path: it never reports an error. Anything it does not
//! fully understand, or that serde-saphyr would refuse, makes it return
//! `None` ("declined") and the caller parses the file with serde-saphyr,
//! which gives the authoritative result and the canonical
//! `FILE:LINE:COLUMN` error. `dialplan_fast_path_matches_serde` in
//! `swbd/tests/dialplan_fuzz.rs` checks on thousands of random and mutated
//! files that it declines or gives exactly what serde-saphyr gives.
//!
//! # The subset
//! - Block mappings with plain keys (`[A-Za-z0-9_]`, then also `-` and
//!   `.`) followed by `: ` or `:` at the end of the line; block sequences
//!   (`- item`, indented or not), whose items are one-line values or block
//!   mappings starting on the item's line.
//! - One-line flow sequences and mappings (`[a, "b"]`, `{code: 480}`),
//!   nested, without trailing commas, with plain keys.
//! - Plain scalars on one line, single-quoted (`''`) and double-quoted
//!   scalars (the usual escapes) closed on the line they start on.
//! - Comments, blank lines, non-ASCII text inside scalars and comments.
//!
//! Declined: tabs, carriage returns, byte-order marks, control characters,
//! document markers and directives, anchors, aliases, tags, block scalars
//! (`|`, `>`), multi-line scalars and flow collections, complex and quoted
//! keys, empty values (nulls), duplicate keys, unknown keys, missing
//! required keys, every scalar whose type is not certain (only plain
//! `true`/`false` are booleans, only plain decimal digits are integers,
//! plain `null`/`~` are never strings), and documents near serde-saphyr's
//! budget (nodes, depth, size), which serde-saphyr then refuses itself.

use std::borrow::Cow;
use std::ops::Range;

#[cfg(doc)]
use serde_saphyr::Spanned;

use super::file::DialplanFile;

mod build;

/// serde-saphyr's default budget refuses more than 250,000 nodes; decline
/// a little below, so the budget error stays serde-saphyr's.
const MAX_NODES: usize = 249_000;

/// Nesting deeper than this is declined (serde-saphyr's budget is 64).
const MAX_DEPTH: usize = 32;

/// Bigger documents are declined (serde-saphyr's scalar budget is 64 MiB).
const MAX_BYTES: usize = 16 * 1024 * 1024;

/// Longest key read (YAML's simple-key limit is 1024 characters).
const MAX_KEY_LEN: usize = 128;

/// Parse `yaml` if it is in the subset; `None` means "use serde-saphyr".
pub fn parse(yaml: &str) -> Option<DialplanFile> {
    if yaml.len() > MAX_BYTES {
        return None;
    }
    let mut p = Parser {
        lines: split_lines(yaml)?,
        i: 0,
        nodes: 0,
        depth: 0,
        tree: Tree::default(),
        open_entries: Vec::new(),
        open_items: Vec::new(),
    };
    let root = p.document()?;
    p.tree.file(&root)
}

/// Where a node starts and how long it is, as serde-saphyr reports it
/// (documents are under [`MAX_BYTES`], so everything fits in `u32`).
#[derive(Debug, Clone, Copy)]
struct Mark {
    /// 1-based line.
    line: u32,
    /// 1-based column, in characters.
    column: u32,
    /// Character offset in the document.
    chr: u32,
    /// Character length.
    chr_len: u32,
    /// Byte offset in the document.
    byte: u32,
    /// Byte length.
    byte_len: u32,
}

#[derive(Debug)]
struct Scalar<'a> {
    text: Cow<'a, str>,
    quoted: bool,
    at: Mark,
}

/// A node; collections are ranges of [`Tree`], so the whole document is
/// a few allocations.
#[derive(Debug)]
enum Node<'a> {
    Scalar(Scalar<'a>),
    Map(Range<usize>, Mark),
    Seq(Range<usize>, Mark),
}

/// Where the entries of every mapping and the items of every sequence
/// are, each collection contiguous.
#[derive(Debug, Default)]
struct Tree<'a> {
    entries: Vec<(Scalar<'a>, Node<'a>)>,
    items: Vec<Node<'a>>,
}

/// A line with content (blank and comment-only lines are skipped).
#[derive(Debug)]
struct Line<'a> {
    text: &'a str,
    /// 1-based line number.
    number: usize,
    /// Byte offset of the line in the document.
    byte: usize,
    /// Character offset of the line in the document.
    chr: usize,
    /// Leading spaces.
    indent: usize,
    ascii: bool,
}

impl Line<'_> {
    /// Characters in `text[..to]`.
    fn chars_to(&self, to: usize) -> Option<usize> {
        if self.ascii {
            Some(to)
        } else {
            Some(self.text.get(..to)?.chars().count())
        }
    }

    fn mark(&self, from: usize, to: usize) -> Option<Mark> {
        let before = self.chars_to(from)?;
        let len = if self.ascii {
            to.checked_sub(from)?
        } else {
            self.text.get(from..to)?.chars().count()
        };
        let n = |v: usize| u32::try_from(v).ok();
        Some(Mark {
            line: n(self.number)?,
            column: n(before + 1)?,
            chr: n(self.chr + before)?,
            chr_len: n(len)?,
            byte: n(self.byte + from)?,
            byte_len: n(to.checked_sub(from)?)?,
        })
    }

    fn byte_at(&self, at: usize) -> Option<u8> {
        self.text.as_bytes().get(at).copied()
    }

    /// `- ` or a lone `-` at `at`.
    fn is_item_at(&self, at: usize) -> bool {
        self.byte_at(at) == Some(b'-') && matches!(self.byte_at(at + 1), None | Some(b' '))
    }
}

/// Characters YAML does not allow, or that the fast path leaves to
/// serde-saphyr (tabs, carriage returns, byte-order marks, odd breaks).
fn declined_char(c: char) -> bool {
    c < ' '
        || ('\u{7f}'..='\u{9f}').contains(&c)
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
        )
}

fn split_lines(yaml: &str) -> Option<Vec<Line<'_>>> {
    let mut lines = Vec::with_capacity(yaml.len() / 24);
    let (mut byte, mut chr) = (0usize, 0usize);
    for (n, text) in yaml.split('\n').enumerate() {
        let ascii = text.is_ascii();
        let chars = if ascii {
            if text.bytes().any(|b| b < b' ' || b == 0x7f) {
                return None;
            }
            text.len()
        } else {
            if text.chars().any(declined_char) {
                return None;
            }
            text.chars().count()
        };
        let indent = text.len() - text.trim_start_matches(' ').len();
        let rest = text.get(indent..)?;
        if !rest.is_empty() && !rest.starts_with('#') {
            lines.push(Line {
                text,
                number: n + 1,
                byte,
                chr,
                indent,
                ascii,
            });
        }
        byte += text.len() + 1;
        chr += chars + 1;
    }
    Some(lines)
}

/// A plain key: `[A-Za-z0-9_][A-Za-z0-9_.-]*` then `:` and a space or the
/// end of the line. Returns the end of the key.
fn key_end(text: &str, at: usize) -> Option<usize> {
    let b = text.as_bytes();
    let first = *b.get(at)?;
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return None;
    }
    let mut end = at + 1;
    while let Some(&c) = b.get(end) {
        if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.') {
            end += 1;
        } else {
            break;
        }
    }
    if end - at > MAX_KEY_LEN || b.get(end) != Some(&b':') {
        return None;
    }
    matches!(b.get(end + 1), None | Some(b' ')).then_some(end)
}

fn skip_spaces(text: &str, mut at: usize) -> usize {
    while text.as_bytes().get(at) == Some(&b' ') {
        at += 1;
    }
    at
}

/// Only spaces and maybe a comment (after a space) from `at` on.
fn rest_is_empty(text: &str, at: usize) -> bool {
    let after = skip_spaces(text, at);
    match text.as_bytes().get(after) {
        None => true,
        Some(b'#') => after > at,
        Some(_) => false,
    }
}

struct Parser<'a> {
    lines: Vec<Line<'a>>,
    /// The current line.
    i: usize,
    nodes: usize,
    depth: usize,
    tree: Tree<'a>,
    /// Entries of the mappings being read (innermost last).
    open_entries: Vec<(Scalar<'a>, Node<'a>)>,
    /// Items of the sequences being read (innermost last).
    open_items: Vec<Node<'a>>,
}

impl<'a> Parser<'a> {
    /// Move the entries opened at `base` into the tree.
    fn close_map(&mut self, base: usize, mark: Mark) -> Node<'a> {
        let start = self.tree.entries.len();
        self.tree.entries.extend(self.open_entries.drain(base..));
        Node::Map(start..self.tree.entries.len(), mark)
    }

    /// Move the items opened at `base` into the tree.
    fn close_seq(&mut self, base: usize, mark: Mark) -> Node<'a> {
        let start = self.tree.items.len();
        self.tree.items.extend(self.open_items.drain(base..));
        Node::Seq(start..self.tree.items.len(), mark)
    }

    fn count(&mut self) -> Option<()> {
        self.nodes += 1;
        (self.nodes <= MAX_NODES).then_some(())
    }

    fn line(&self, i: usize) -> Option<&Line<'a>> {
        self.lines.get(i)
    }

    fn document(&mut self) -> Option<Node<'a>> {
        let first = self.line(0)?;
        if first.indent != 0 {
            return None;
        }
        let root = self.block_map(0, 0)?;
        (self.i == self.lines.len()).then_some(root)
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// A block mapping whose keys are at column `indent`; the first key is
    /// at `start` on the current line.
    fn block_map(&mut self, indent: usize, start: usize) -> Option<Node<'a>> {
        self.enter()?;
        self.count()?;
        let mark = self.line(self.i)?.mark(start, start)?;
        let base = self.open_entries.len();
        let mut at = start;
        loop {
            let line = self.line(self.i)?;
            let text = line.text;
            let end = key_end(text, at)?;
            let key = Scalar {
                text: Cow::Borrowed(text.get(at..end)?),
                quoted: false,
                at: line.mark(at, end)?,
            };
            self.count()?;
            let value_at = skip_spaces(text, end + 1);
            let value = if rest_is_empty(text, end + 1) {
                // The value is on the next lines.
                self.i += 1;
                let next = self.line(self.i)?;
                if next.indent > indent {
                    if next.is_item_at(next.indent) {
                        self.block_seq(next.indent, false)?
                    } else {
                        self.block_map(next.indent, next.indent)?
                    }
                } else if next.indent == indent && next.is_item_at(indent) {
                    self.block_seq(indent, true)?
                } else {
                    return None; // an empty value: null
                }
            } else {
                let (v, after) = self.inline_value(self.i, value_at)?;
                if !rest_is_empty(self.line(self.i)?.text, after) {
                    return None;
                }
                self.i += 1;
                v
            };
            self.open_entries.push((key, value));
            let Some(next) = self.line(self.i) else {
                break;
            };
            if next.indent < indent || (next.indent == indent && next.is_item_at(indent)) {
                break;
            }
            if next.indent > indent {
                return None;
            }
            at = indent;
        }
        self.depth -= 1;
        Some(self.close_map(base, mark))
    }

    /// A block sequence whose `-` are at column `indent`, starting on the
    /// current line. `indentless`: at the same column as its key.
    fn block_seq(&mut self, indent: usize, indentless: bool) -> Option<Node<'a>> {
        self.enter()?;
        self.count()?;
        let base = self.open_items.len();
        let mut mark = None;
        loop {
            let line = self.line(self.i)?;
            let text = line.text;
            if !line.is_item_at(indent) {
                return None;
            }
            let content = skip_spaces(text, indent + 1);
            if content == indent + 1 || rest_is_empty(text, indent + 1) {
                return None; // `-` then the item on the next lines
            }
            if mark.is_none() {
                let from = if indentless { content } else { indent };
                mark = Some(line.mark(from, from)?);
            }
            let item = if line.is_item_at(content) {
                return None; // `- - x`
            } else if key_end(text, content).is_some() {
                self.block_map(content, content)?
            } else {
                let (v, after) = self.inline_value(self.i, content)?;
                if !rest_is_empty(text, after) {
                    return None;
                }
                self.i += 1;
                v
            };
            self.open_items.push(item);
            let Some(next) = self.line(self.i) else {
                break;
            };
            if next.indent < indent || (next.indent == indent && !next.is_item_at(indent)) {
                break;
            }
            if next.indent > indent {
                return None;
            }
        }
        self.depth -= 1;
        Some(self.close_seq(base, mark?))
    }

    /// A scalar or flow collection that ends on line `li`; the node and the
    /// byte just after it.
    fn inline_value(&mut self, li: usize, at: usize) -> Option<(Node<'a>, usize)> {
        let line = self.line(li)?;
        let text = line.text;
        match text.as_bytes().get(at)? {
            b'[' | b'{' => self.flow(li, at),
            b'"' | b'\'' => {
                let (s, end) = quoted(line, at)?;
                self.count()?;
                Some((Node::Scalar(s), end))
            }
            _ => {
                let (s, end) = plain(line, at, false)?;
                self.count()?;
                Some((Node::Scalar(s), end))
            }
        }
    }

    /// A one-line flow node at `at` on line `li`.
    fn flow(&mut self, li: usize, at: usize) -> Option<(Node<'a>, usize)> {
        let line = self.line(li)?;
        let text = line.text;
        let b = text.as_bytes();
        match b.get(at)? {
            open @ (b'[' | b'{') => {
                let is_map = *open == b'{';
                let close = if is_map { b'}' } else { b']' };
                let mark = line.mark(at, at + 1)?;
                self.enter()?;
                self.count()?;
                let mut pos = skip_spaces(text, at + 1);
                let (entry_base, item_base) = (self.open_entries.len(), self.open_items.len());
                if b.get(pos) == Some(&close) {
                    pos += 1;
                } else {
                    loop {
                        if is_map {
                            let end = key_end(text, pos)?;
                            // In flow, the `:` must be followed by a space.
                            if b.get(end + 1) != Some(&b' ') {
                                return None;
                            }
                            let line = self.line(li)?;
                            let key = Scalar {
                                text: Cow::Borrowed(text.get(pos..end)?),
                                quoted: false,
                                at: line.mark(pos, end)?,
                            };
                            self.count()?;
                            let v_at = skip_spaces(text, end + 1);
                            if matches!(b.get(v_at), None | Some(b',' | b'}' | b']' | b'#')) {
                                return None; // null value
                            }
                            let (v, after) = self.flow(li, v_at)?;
                            self.open_entries.push((key, v));
                            pos = skip_spaces(text, after);
                        } else {
                            let (v, after) = self.flow(li, pos)?;
                            self.open_items.push(v);
                            pos = skip_spaces(text, after);
                        }
                        match b.get(pos)? {
                            b',' => {
                                pos = skip_spaces(text, pos + 1);
                                if matches!(b.get(pos), None | Some(b',' | b']' | b'}' | b'#')) {
                                    return None; // trailing or double comma
                                }
                            }
                            c if *c == close => {
                                pos += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                self.depth -= 1;
                let node = if is_map {
                    self.close_map(entry_base, mark)
                } else {
                    self.close_seq(item_base, mark)
                };
                Some((node, pos))
            }
            b'"' | b'\'' => {
                let (s, end) = quoted(line, at)?;
                // `"k": v` would be a quoted key.
                if b.get(skip_spaces(text, end)) == Some(&b':') {
                    return None;
                }
                self.count()?;
                Some((Node::Scalar(s), end))
            }
            _ => {
                let (s, end) = plain(line, at, true)?;
                self.count()?;
                Some((Node::Scalar(s), end))
            }
        }
    }
}

/// A plain scalar at `at`; in `flow` it ends at `,[]{}`, else at the end
/// of the line. Declines what could be a key, a comment inside, an
/// indicator at the start, or a document marker.
fn plain<'a>(line: &Line<'a>, at: usize, flow: bool) -> Option<(Scalar<'a>, usize)> {
    let text = line.text;
    let b = text.as_bytes();
    let first = *b.get(at)?;
    if matches!(
        first,
        b'&' | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'%'
            | b'@'
            | b'`'
            | b'#'
            | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'?'
            | b':'
            | b'"'
            | b'\''
    ) {
        return None;
    }
    // `-5` is a plain scalar; leave any other leading `-` to serde.
    if first == b'-' && !b.get(at + 1).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    if text.get(at..)?.starts_with("...") {
        return None;
    }
    let mut end = at;
    while let Some(&c) = b.get(end) {
        match c {
            b',' | b'[' | b']' | b'{' | b'}' if flow => break,
            // A comment: it ends a block scalar, but would swallow the
            // rest of a flow collection.
            b'#' if end > at && b.get(end - 1) == Some(&b' ') => {
                if flow {
                    return None;
                }
                break;
            }
            b':' if matches!(
                b.get(end + 1),
                None | Some(b' ' | b',' | b'[' | b']' | b'{' | b'}')
            ) =>
            {
                return None;
            }
            _ => end += 1,
        }
    }
    if flow && end == b.len() {
        return None; // the flow collection is not closed on this line
    }
    let value = text.get(at..end)?.trim_end_matches(' ');
    let end = at + value.len();
    if value.is_empty() {
        return None;
    }
    Some((
        Scalar {
            text: Cow::Borrowed(value),
            quoted: false,
            at: line.mark(at, end)?,
        },
        end,
    ))
}

/// A single- or double-quoted scalar at `at`, closed on the same line.
fn quoted<'a>(line: &Line<'a>, at: usize) -> Option<(Scalar<'a>, usize)> {
    let text = line.text;
    let quote = *text.as_bytes().get(at)?;
    let body = text.get(at + 1..)?;
    let (value, len) = if quote == b'\'' {
        single_quoted(body)?
    } else {
        double_quoted(body)?
    };
    let end = at + 1 + len + 1;
    Some((
        Scalar {
            text: value,
            quoted: true,
            at: line.mark(at, end)?,
        },
        end,
    ))
}

/// The value and the byte length up to (not including) the closing quote.
fn single_quoted(body: &str) -> Option<(Cow<'_, str>, usize)> {
    let b = body.as_bytes();
    let mut owned: Option<String> = None;
    let mut i = 0;
    let mut run_start = 0;
    loop {
        match b.get(i)? {
            b'\'' if b.get(i + 1) == Some(&b'\'') => {
                let s = owned.get_or_insert_with(String::new);
                s.push_str(body.get(run_start..i)?);
                s.push('\'');
                i += 2;
                run_start = i;
            }
            b'\'' => break,
            _ => i += 1,
        }
    }
    let value = match owned {
        Some(mut s) => {
            s.push_str(body.get(run_start..i)?);
            Cow::Owned(s)
        }
        None => Cow::Borrowed(body.get(..i)?),
    };
    Some((value, i))
}

fn double_quoted(body: &str) -> Option<(Cow<'_, str>, usize)> {
    let b = body.as_bytes();
    let mut owned: Option<String> = None;
    let mut i = 0;
    let mut run_start = 0;
    loop {
        match b.get(i)? {
            b'"' => break,
            b'\\' => {
                let s = owned.get_or_insert_with(String::new);
                s.push_str(body.get(run_start..i)?);
                let esc = *b.get(i + 1)?;
                let (c, used) = match esc {
                    b'0' => ('\0', 2),
                    b'a' => ('\u{7}', 2),
                    b'b' => ('\u{8}', 2),
                    b't' => ('\t', 2),
                    b'n' => ('\n', 2),
                    b'v' => ('\u{b}', 2),
                    b'f' => ('\u{c}', 2),
                    b'r' => ('\r', 2),
                    b'e' => ('\u{1b}', 2),
                    b' ' => (' ', 2),
                    b'"' => ('"', 2),
                    b'/' => ('/', 2),
                    b'\\' => ('\\', 2),
                    b'N' => ('\u{85}', 2),
                    b'_' => ('\u{a0}', 2),
                    b'L' => ('\u{2028}', 2),
                    b'P' => ('\u{2029}', 2),
                    b'x' => (hex_char(body.get(i + 2..i + 4)?)?, 4),
                    b'u' => (hex_char(body.get(i + 2..i + 6)?)?, 6),
                    b'U' => (hex_char(body.get(i + 2..i + 10)?)?, 10),
                    _ => return None,
                };
                s.push(c);
                i += used;
                run_start = i;
            }
            _ => i += 1,
        }
    }
    let value = match owned {
        Some(mut s) => {
            s.push_str(body.get(run_start..i)?);
            Cow::Owned(s)
        }
        None => Cow::Borrowed(body.get(..i)?),
    };
    Some((value, i))
}

fn hex_char(digits: &str) -> Option<char> {
    if !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    char::from_u32(u32::from_str_radix(digits, 16).ok()?)
}

#[cfg(test)]
mod tests;
