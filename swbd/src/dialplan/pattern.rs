//! Match patterns: globs, anchored regexes and CIDR blocks, each with the
//! literal prefix the route index keys on.
//!
//! Globs know `*` (any run, also empty), `?` (one character) and `[...]`
//! classes (`[0-9]`, `[135]`, `[!0]`). Everything else is literal.

use std::net::IpAddr;

use regex::Regex;

use super::Error;

/// One element of a compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GlobToken {
    /// A literal character.
    Literal(char),
    /// `?`: any one character.
    Any,
    /// `*`: any run of characters.
    Star,
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl GlobToken {
    fn matches_char(&self, c: char) -> bool {
        match self {
            GlobToken::Literal(l) => *l == c,
            GlobToken::Any => true,
            GlobToken::Star => false,
            GlobToken::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    tokens: Vec<GlobToken>,
    case_insensitive: bool,
}

impl Glob {
    /// Compile `pattern`. `case_insensitive` lowercases pattern and input
    /// (domains).
    pub fn new(pattern: &str, case_insensitive: bool) -> Result<Self, Error> {
        let bad = |reason: &str| Error::BadGlob {
            pattern: pattern.to_string(),
            reason: reason.to_string(),
        };
        if pattern.is_empty() {
            return Err(bad("it is empty (use \"*\" to match anything)"));
        }
        let lowered;
        let text = if case_insensitive {
            lowered = pattern.to_lowercase();
            lowered.as_str()
        } else {
            pattern
        };
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    // `**` is the same as `*`; keep one.
                    if tokens.last() != Some(&GlobToken::Star) {
                        tokens.push(GlobToken::Star);
                    }
                }
                '?' => tokens.push(GlobToken::Any),
                '[' => {
                    let negated = matches!(chars.peek(), Some('!') | Some('^'));
                    if negated {
                        chars.next();
                    }
                    let mut ranges = Vec::new();
                    let mut closed = false;
                    while let Some(c) = chars.next() {
                        if c == ']' {
                            closed = true;
                            break;
                        }
                        if chars.peek() == Some(&'-') {
                            chars.next();
                            match chars.next() {
                                Some(']') | None => {
                                    return Err(bad(&format!(
                                        "range `{c}-` in a [...] class has no end (expected like [0-9])"
                                    )));
                                }
                                Some(hi) if hi < c => {
                                    return Err(bad(&format!(
                                        "range `{c}-{hi}` is reversed (expected low-high, like [0-9])"
                                    )));
                                }
                                Some(hi) => ranges.push((c, hi)),
                            }
                        } else {
                            ranges.push((c, c));
                        }
                    }
                    if !closed {
                        return Err(bad("`[` is never closed by `]`"));
                    }
                    if ranges.is_empty() {
                        return Err(bad("`[]` is an empty class (expected like [0-9])"));
                    }
                    tokens.push(GlobToken::Class { negated, ranges });
                }
                ']' => return Err(bad("`]` without an opening `[`")),
                c if c.is_whitespace() || c.is_control() => {
                    return Err(bad(
                        "it contains whitespace or a control character, which never occurs in a SIP user part",
                    ));
                }
                c => tokens.push(GlobToken::Literal(c)),
            }
        }
        Ok(Self {
            source: pattern.to_string(),
            tokens,
            case_insensitive,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The literal characters every match starts with.
    pub fn literal_prefix(&self) -> String {
        self.tokens
            .iter()
            .map_while(|t| match t {
                GlobToken::Literal(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    /// The shape the index can use without running the matcher.
    pub fn shape(&self) -> GlobShape {
        let lits = self
            .tokens
            .iter()
            .take_while(|t| matches!(t, GlobToken::Literal(_)))
            .count();
        let rest = self.tokens.get(lits..).unwrap_or_default();
        if self.case_insensitive {
            GlobShape::Complex
        } else if rest.is_empty() {
            GlobShape::Exact
        } else if rest == [GlobToken::Star] {
            GlobShape::Prefix
        } else {
            GlobShape::Complex
        }
    }

    /// Whether `input` matches the whole glob.
    pub fn is_match(&self, input: &str) -> bool {
        if self.case_insensitive {
            self.match_chars(&input.to_lowercase())
        } else {
            self.match_chars(input)
        }
    }

    /// Iterative wildcard matching with single-star backtracking: O(n*m)
    /// worst case, no recursion.
    fn match_chars(&self, input: &str) -> bool {
        let text: Vec<char> = input.chars().collect();
        let (mut t, mut p) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match (self.tokens.get(p), text.get(t)) {
                (Some(GlobToken::Star), _) => {
                    star = Some((p, t));
                    p += 1;
                }
                (Some(tok), Some(&c)) if tok.matches_char(c) => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        self.tokens
            .get(p..)
            .unwrap_or_default()
            .iter()
            .all(|t| *t == GlobToken::Star)
    }
}

/// How a glob can be indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobShape {
    /// Only literal characters: a hash lookup decides.
    Exact,
    /// Literal characters then one `*`: the prefix decides.
    Prefix,
    /// Anything else: the prefix narrows, the matcher decides.
    Complex,
}

/// A regex anchored at both ends, with its captures.
#[derive(Debug, Clone)]
pub struct AnchoredRegex {
    source: String,
    regex: Regex,
    prefix: String,
    /// Numbered groups (1-based) and named groups.
    capture_names: Vec<String>,
}

impl AnchoredRegex {
    /// Compile `pattern` as `^(?:pattern)$`.
    pub fn new(pattern: &str) -> Result<Self, Error> {
        let regex = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(1 << 20)
            .build()
            .map_err(|e| Error::BadRegex {
                pattern: pattern.to_string(),
                reason: regex_reason(&e),
            })?;
        let mut capture_names = Vec::new();
        for (i, name) in regex.capture_names().enumerate().skip(1) {
            capture_names.push(i.to_string());
            if let Some(n) = name {
                capture_names.push(n.to_string());
            }
        }
        Ok(Self {
            source: pattern.to_string(),
            prefix: regex_literal_prefix(pattern),
            regex,
            capture_names,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The literal prefix every match starts with (conservative, may be empty).
    pub fn literal_prefix(&self) -> &str {
        &self.prefix
    }

    /// Variables the captures define (`1`, `2`, ..., and the named ones).
    pub fn capture_names(&self) -> &[String] {
        &self.capture_names
    }

    /// Match and return the captures as variables (unmatched groups are
    /// empty strings), or `None`.
    pub fn captures(&self, input: &str) -> Option<Vec<(String, String)>> {
        let caps = self.regex.captures(input)?;
        let mut out = Vec::with_capacity(self.capture_names.len());
        for (i, name) in self.regex.capture_names().enumerate().skip(1) {
            let value = caps.get(i).map(|m| m.as_str()).unwrap_or("").to_string();
            if let Some(n) = name {
                out.push((n.to_string(), value.clone()));
            }
            out.push((i.to_string(), value));
        }
        Some(out)
    }

    /// Whether `input` matches.
    pub fn is_match(&self, input: &str) -> bool {
        self.regex.is_match(input)
    }
}

/// The regex crate's error, on one line.
fn regex_reason(e: &regex::Error) -> String {
    match e {
        regex::Error::CompiledTooBig(_) => "it compiles too big (over 1 MiB)".into(),
        other => {
            let text = other.to_string();
            // Keep the last line, the one that says what is wrong.
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().trim_start_matches("error: ").to_string())
                .unwrap_or(text)
        }
    }
}

/// Literal characters any match of `pattern` must start with.
///
/// Conservative: an alternation anywhere, or anything that is not a plain
/// ASCII alphanumeric, ends (or empties) the prefix, and a character that
/// a quantifier follows is dropped.
fn regex_literal_prefix(pattern: &str) -> String {
    if pattern.contains('|') {
        return String::new();
    }
    let mut out = String::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if !c.is_ascii_alphanumeric() {
            break;
        }
        match chars.peek() {
            Some('?' | '*' | '+' | '{') => break,
            _ => out.push(c),
        }
    }
    out
}

/// An IP network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// Parse `10.0.0.0/8`, `2001:db8::/32` or a bare address (a host route).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::BadCidr {
            cidr: text.to_string(),
            reason: reason.to_string(),
        };
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| bad("expected an IPv4 or IPv6 address before `/`"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| bad(&format!("prefix length must be 0-{max}")))?,
        };
        Ok(Self { addr, len })
    }

    /// Whether `ip` is inside (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("500", "500", true),
            ("500", "5000", false),
            ("500", "50", false),
            ("1*", "1", true),
            ("1*", "1234", true),
            ("1*", "2134", false),
            ("*", "", true),
            ("*", "anything", true),
            ("1???", "1234", true),
            ("1???", "123", false),
            ("1???", "12345", false),
            ("*5", "12345", true),
            ("*5", "12354", false),
            ("1*5*9", "1x5y9", true),
            ("1*5*9", "159", true),
            ("1*5*9", "1x5y", false),
            ("[2-4]1?", "312", true),
            ("[2-4]1?", "512", false),
            ("[!0]*", "0123", false),
            ("[!0]*", "9123", true),
            ("+1[0-9]*", "+15551234", true),
            ("a**b", "ab", true),
        ];
        for (pat, input, want) in cases {
            let g = Glob::new(pat, false).expect(pat);
            assert_eq!(g.is_match(input), *want, "{pat} vs {input}");
        }
    }

    #[test]
    fn glob_shapes_and_prefixes() {
        let shape = |p: &str| Glob::new(p, false).expect(p).shape();
        assert_eq!(shape("500"), GlobShape::Exact);
        assert_eq!(shape("1*"), GlobShape::Prefix);
        assert_eq!(shape("*"), GlobShape::Prefix);
        assert_eq!(shape("1???"), GlobShape::Complex);
        assert_eq!(shape("1*5"), GlobShape::Complex);
        assert_eq!(
            Glob::new("12[3]*", false).expect("ok").literal_prefix(),
            "12"
        );
    }

    #[test]
    fn domain_globs_ignore_case() {
        let g = Glob::new("*.Example.COM", true).expect("ok");
        assert!(g.is_match("pbx.example.com"));
        assert!(g.is_match("PBX.EXAMPLE.com"));
        assert!(!g.is_match("example.org"));
    }

    #[test]
    fn bad_globs_are_refused() {
        for p in ["", "1[", "[]", "[9-0]", "1]", "1 2", "[0-]"] {
            assert!(Glob::new(p, false).is_err(), "{p:?} should be refused");
        }
    }

    #[test]
    fn regex_captures_and_anchoring() {
        let r = AnchoredRegex::new(r"9(?P<number>\d+)").expect("ok");
        assert_eq!(r.capture_names(), ["1", "number"]);
        assert!(r.captures("x9123").is_none(), "anchored at the start");
        assert!(r.captures("9123x").is_none(), "anchored at the end");
        let caps = r.captures("95551234").expect("matches");
        assert!(caps.contains(&("1".into(), "5551234".into())));
        assert!(caps.contains(&("number".into(), "5551234".into())));
    }

    #[test]
    fn regex_literal_prefixes_are_conservative() {
        let cases = [
            (r"9(\d+)", "9"),
            (r"1\d{3}", "1"),
            ("12?3", "1"),
            ("abc+", "ab"),
            ("1|2", ""),
            ("(?i)abc", ""),
            ("", ""),
            ("555.*", "555"),
        ];
        for (pat, want) in cases {
            assert_eq!(regex_literal_prefix(pat), want, "{pat}");
            let r = AnchoredRegex::new(pat).expect(pat);
            assert_eq!(r.literal_prefix(), want);
        }
    }

    #[test]
    fn bad_regex_is_refused_with_a_reason() {
        let e = AnchoredRegex::new("(12").expect_err("refused");
        assert!(e.to_string().contains("unclosed group"), "{e}");
    }

    #[test]
    fn cidr_table() {
        let cases = [
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "11.1.2.3", false),
            ("192.168.1.7", "192.168.1.7", true),
            ("192.168.1.7", "192.168.1.8", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("2001:db8::/32", "2001:db8::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("10.0.0.0/8", "::ffff:10.0.0.1", true),
            ("10.0.0.0/8", "2001:db8::1", false),
        ];
        for (net, ip, want) in cases {
            let c = Cidr::parse(net).expect(net);
            assert_eq!(c.contains(ip.parse().expect(ip)), want, "{net} {ip}");
        }
        for bad in ["10.0.0.0/33", "10.0.0/8", "host", "::/129", "1.2.3.4/x"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
