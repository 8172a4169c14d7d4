//! From the fast path's tree to a [`DialplanFile`]: serde-saphyr's
//! locations, and what serde + serde-saphyr make of each node, for our
//! types only.

use serde::Deserialize;
use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, IntoDeserializer, Visitor};
use serde_saphyr::{Location, Spanned};

use super::{Mark, Node, Scalar, Tree};
use crate::dialplan::file::{
    ActionFile, DialFile, DialplanFile, DurationValue, HangupFile, MatchFile, NoMatchFile,
    OnFailure, PlaybackFile, ReadFile, Redirect, RouteFile, SetFile,
};

// ---------------------------------------------------------------------
// Locations: serde-saphyr's `Location` has no public constructor, but it
// deserializes from `{line, column, span: {offset, len, byte_info}}`.

enum LocValue {
    Num(u32),
    Pair(u32, u32),
    Span(u32, u32, u32, u32),
}

type DeError = de::value::Error;

impl<'de> IntoDeserializer<'de, DeError> for LocValue {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for LocValue {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self {
            LocValue::Num(n) => v.visit_u32(n),
            LocValue::Pair(a, b) => v.visit_seq(SeqDeserializer::new([a, b].into_iter())),
            LocValue::Span(offset, len, byte, byte_len) => v.visit_map(MapDeserializer::new(
                [
                    ("offset", LocValue::Num(offset)),
                    ("len", LocValue::Num(len)),
                    ("byte_info", LocValue::Pair(byte, byte_len)),
                ]
                .into_iter(),
            )),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

fn location(m: Mark) -> Option<Location> {
    let n = |v: u32| (v < u32::MAX - 1).then_some(v);
    let fields = [
        ("line", LocValue::Num(n(m.line)?)),
        ("column", LocValue::Num(n(m.column)?)),
        (
            "span",
            LocValue::Span(n(m.chr)?, n(m.chr_len)?, n(m.byte)?, n(m.byte_len)?),
        ),
    ];
    let d: MapDeserializer<'_, _, DeError> = MapDeserializer::new(fields.into_iter());
    Location::deserialize(d).ok()
}

fn spanned<T>(value: T, at: Mark) -> Option<Spanned<T>> {
    let loc = location(at)?;
    Some(Spanned::new(value, loc, loc))
}

// ---------------------------------------------------------------------
// Typing: what serde + serde-saphyr make of the tree, for our types only.

impl Node<'_> {
    fn mark(&self) -> Mark {
        match self {
            Node::Scalar(s) => s.at,
            Node::Map(_, m) | Node::Seq(_, m) => *m,
        }
    }
}

fn scalar<'n, 'a>(node: &'n Node<'a>) -> Option<&'n Scalar<'a>> {
    match node {
        Node::Scalar(s) => Some(s),
        _ => None,
    }
}

/// A string: quoted, or plain and not a null.
fn string(s: &Scalar<'_>) -> Option<String> {
    if !s.quoted && matches!(s.text.as_ref(), "~" | "null" | "Null" | "NULL" | "") {
        return None;
    }
    Some(s.text.to_string())
}

fn spanned_string(node: &Node<'_>) -> Option<Spanned<String>> {
    let s = scalar(node)?;
    spanned(string(s)?, s.at)
}

fn plain_string(node: &Node<'_>) -> Option<String> {
    string(scalar(node)?)
}

/// Plain decimal digits, no sign, no leading zero.
fn digits<'s>(s: &'s Scalar<'_>) -> Option<&'s str> {
    let t = s.text.as_ref();
    let ok = !s.quoted
        && !t.is_empty()
        && t.bytes().all(|c| c.is_ascii_digit())
        && (t == "0" || !t.starts_with('0'));
    ok.then_some(t)
}

fn unsigned<T: std::str::FromStr>(node: &Node<'_>) -> Option<Spanned<T>> {
    let s = scalar(node)?;
    spanned(digits(s)?.parse().ok()?, s.at)
}

fn signed(node: &Node<'_>) -> Option<i32> {
    let s = scalar(node)?;
    if s.quoted {
        return None;
    }
    let t = s.text.as_ref();
    let (negative, abs) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let ok = !abs.is_empty() && abs.bytes().all(|c| c.is_ascii_digit()) && !abs.starts_with('0')
        || (!negative && abs == "0");
    if !ok {
        return None;
    }
    t.parse().ok()
}

fn boolean(node: &Node<'_>) -> Option<bool> {
    let s = scalar(node)?;
    match (s.quoted, s.text.as_ref()) {
        (false, "true") => Some(true),
        (false, "false") => Some(false),
        _ => None,
    }
}

fn on_failure(node: &Node<'_>) -> Option<OnFailure> {
    let s = scalar(node)?;
    match (s.quoted, s.text.as_ref()) {
        (false, "next") => Some(OnFailure::Next),
        (false, "stop") => Some(OnFailure::Stop),
        _ => None,
    }
}

fn redirect(node: &Node<'_>) -> Option<Redirect> {
    let s = scalar(node)?;
    match (s.quoted, s.text.as_ref()) {
        (false, "follow") => Some(Redirect::Follow),
        (false, "pass") => Some(Redirect::Pass),
        _ => None,
    }
}

/// `30s`, `1.5s`, `500ms` (strings) or plain digits (an integer); the
/// duration must parse, or serde's error is the one to show.
fn duration(node: &Node<'_>) -> Option<Spanned<DurationValue>> {
    let s = scalar(node)?;
    let t = s.text.as_ref();
    let ok = if s.quoted || digits(s).is_some() {
        true
    } else {
        let num = t
            .strip_suffix("ms")
            .or_else(|| t.strip_suffix(['s', 'm', 'h']))
            .unwrap_or("");
        let (int, frac) = num.split_once('.').unwrap_or((num, "0"));
        !int.is_empty()
            && !frac.is_empty()
            && int.bytes().all(|c| c.is_ascii_digit())
            && frac.bytes().all(|c| c.is_ascii_digit())
    };
    if !ok {
        return None;
    }
    spanned(DurationValue::parse(t).ok()?, s.at)
}

/// An optional field: absent is `Some(None)`, present and wrong is `None`.
fn opt<T>(node: Option<&Node<'_>>, f: impl FnOnce(&Node<'_>) -> Option<T>) -> Option<Option<T>> {
    match node {
        Some(n) => f(n).map(Some),
        None => Some(None),
    }
}

impl<'a> Tree<'a> {
    fn map(&self, node: &Node<'a>) -> Option<&[(Scalar<'a>, Node<'a>)]> {
        match node {
            Node::Map(r, _) => self.entries.get(r.clone()),
            _ => None,
        }
    }

    fn seq(&self, node: &Node<'a>) -> Option<&[Node<'a>]> {
        match node {
            Node::Seq(r, _) => self.items.get(r.clone()),
            _ => None,
        }
    }

    /// The values of a mapping's keys, in the order of `known`; unknown
    /// and duplicate keys decline.
    fn fields<const N: usize>(
        &self,
        node: &Node<'a>,
        known: [&str; N],
    ) -> Option<[Option<&Node<'a>>; N]> {
        let mut out = [None; N];
        for (k, v) in self.map(node)? {
            let slot = known.iter().position(|name| *name == k.text)?;
            let slot = out.get_mut(slot)?;
            if slot.replace(v).is_some() {
                return None;
            }
        }
        Some(out)
    }

    fn string_list(&self, node: &Node<'a>) -> Option<Vec<Spanned<String>>> {
        self.seq(node)?.iter().map(spanned_string).collect()
    }

    pub(super) fn file(&self, root: &Node<'a>) -> Option<DialplanFile> {
        let [version, no_match, routes] = self.fields(root, ["version", "no_match", "routes"])?;
        let no_match = opt(no_match, |n| {
            let [code, reason] = self.fields(n, ["code", "reason"])?;
            Some(NoMatchFile {
                code: unsigned::<u16>(code?)?,
                reason: opt(reason, plain_string)?,
            })
        })?;
        let routes = opt(routes, |n| {
            self.seq(n)?
                .iter()
                .map(|r| self.route(r))
                .collect::<Option<Vec<_>>>()
        })?;
        Some(DialplanFile {
            version: unsigned::<u32>(version?)?,
            no_match,
            routes: routes.unwrap_or_default(),
        })
    }

    fn route(&self, node: &Node<'a>) -> Option<RouteFile> {
        let [
            id,
            name,
            priority,
            enabled,
            match_,
            actions,
            transfer,
            context,
        ] = self.fields(
            node,
            [
                "id", "name", "priority", "enabled", "match", "actions", "transfer", "context",
            ],
        )?;
        let actions = actions?;
        let list = self
            .seq(actions)?
            .iter()
            .map(|a| self.action(a))
            .collect::<Option<Vec<_>>>()?;
        Some(RouteFile {
            id: spanned_string(id?)?,
            name: opt(name, plain_string)?,
            priority: opt(priority, signed)?.unwrap_or(100),
            enabled: opt(enabled, boolean)?.unwrap_or(true),
            match_: self.matcher(match_?)?,
            actions: spanned(list, actions.mark())?,
            transfer: opt(transfer, spanned_string)?,
            context: opt(context, spanned_string)?,
        })
    }

    fn matcher(&self, node: &Node<'a>) -> Option<MatchFile> {
        let [
            destination,
            destination_regex,
            caller,
            domain,
            from_domain,
            source,
        ] = self.fields(
            node,
            [
                "destination",
                "destination_regex",
                "caller",
                "domain",
                "from_domain",
                "source",
            ],
        )?;
        Some(MatchFile {
            destination: opt(destination, spanned_string)?,
            destination_regex: opt(destination_regex, spanned_string)?,
            caller: opt(caller, spanned_string)?,
            domain: opt(domain, spanned_string)?,
            from_domain: opt(from_domain, spanned_string)?,
            source: opt(source, |n| self.string_list(n))?,
        })
    }

    fn action(&self, node: &Node<'a>) -> Option<Spanned<ActionFile>> {
        let value = match node {
            Node::Scalar(s) if !s.quoted && s.text == "answer" => ActionFile::Answer,
            Node::Map(..) => {
                let [(name, body)] = self.map(node)? else {
                    return None;
                };
                match name.text.as_ref() {
                    "playback" => {
                        let [file, looped] = self.fields(body, ["file", "loop"])?;
                        ActionFile::Playback(PlaybackFile {
                            file: spanned_string(file?)?,
                            looped: opt(looped, boolean)?.unwrap_or(false),
                        })
                    }
                    "dial" => {
                        let [target, targets, timeout, failure, redirect_mode] = self.fields(
                            body,
                            ["target", "targets", "timeout", "on_failure", "redirect"],
                        )?;
                        ActionFile::Dial(DialFile {
                            target: opt(target, spanned_string)?,
                            targets: opt(targets, |n| self.string_list(n))?,
                            timeout: opt(timeout, duration)?,
                            on_failure: opt(failure, on_failure)?.unwrap_or_default(),
                            redirect: opt(redirect_mode, redirect)?.unwrap_or_default(),
                        })
                    }
                    "hangup" => {
                        let [code, reason] = self.fields(body, ["code", "reason"])?;
                        ActionFile::Hangup(HangupFile {
                            code: unsigned::<u16>(code?)?,
                            reason: opt(reason, spanned_string)?,
                        })
                    }
                    "sleep" => ActionFile::Sleep(duration(body)?),
                    "read" => {
                        let [var, max, timeout, terminator, prompt] = self.fields(
                            body,
                            ["var", "max_digits", "timeout", "terminator", "prompt"],
                        )?;
                        ActionFile::Read(ReadFile {
                            var: spanned_string(var?)?,
                            max_digits: opt(max, unsigned::<u32>)?,
                            timeout: opt(timeout, duration)?,
                            terminator: opt(terminator, spanned_string)?,
                            prompt: opt(prompt, spanned_string)?,
                        })
                    }
                    "set" => {
                        let pairs = self.map(body)?;
                        let mut out = Vec::with_capacity(pairs.len());
                        for (n, (k, v)) in pairs.iter().enumerate() {
                            if pairs.iter().take(n).any(|(o, _)| o.text == k.text) {
                                return None;
                            }
                            out.push((spanned(string(k)?, k.at)?, spanned_string(v)?));
                        }
                        ActionFile::Set(SetFile(out))
                    }
                    _ => return None,
                }
            }
            _ => return None,
        };
        spanned(value, node.mark())
    }
}
