//! URIs: `sip:`/`sips:` parsed by our own RFC 3261 §25.1 parser
//! ([`SipUri`]: the text once plus offsets), anything else (`tel:`, ...)
//! kept as text with its scheme.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A URI as found in a Request-URI, From, To or Contact.
#[derive(Debug, Clone)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// `tel:` (RFC 3966), kept as text.
    Tel(String),
    /// Any other scheme, kept as text (a registrar/proxy answers 416 to it
    /// in a Request-URI).
    Other(String),
}

impl Uri {
    /// Parse a URI; `None` when a `sip:`/`sips:` URI is malformed or the
    /// text has no scheme.
    pub fn parse(s: &str) -> Option<Uri> {
        let s = s.trim();
        let (scheme, rest) = s.split_once(':')?;
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return None;
        }
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse(s).map(Uri::Sip)
        } else if rest.is_empty()
            || rest
                .chars()
                .any(|c| c.is_whitespace() || c == '<' || c == '>')
        {
            None
        } else if scheme.eq_ignore_ascii_case("tel") {
            Some(Uri::Tel(s.to_string()))
        } else {
            Some(Uri::Other(s.to_string()))
        }
    }

    /// The URI as printed (what `Display` writes), borrowed.
    pub fn as_str(&self) -> &str {
        match self {
            Uri::Sip(u) => u.as_str(),
            Uri::Tel(s) | Uri::Other(s) => s,
        }
    }

    /// The typed SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// The user part, `%HH` escapes decoded (`1001` of `sip:1001@host`,
    /// the number of `tel:+1555`).
    pub fn user(&self) -> Option<String> {
        match self {
            Uri::Sip(u) => u.user_decoded().map(Cow::into_owned),
            Uri::Tel(t) => t
                .split_once(':')
                .map(|(_, n)| n.split(';').next().unwrap_or(n).to_string()),
            Uri::Other(_) => None,
        }
    }

    /// The host of a SIP URI, lowercased, without brackets for IPv6.
    pub fn host(&self) -> Option<String> {
        self.as_sip().map(|u| u.host_text().into_owned())
    }

    /// Whether the scheme is `sip`/`sips`/`tel` (the ones swbd handles).
    pub fn is_supported_scheme(&self) -> bool {
        matches!(self, Uri::Sip(_) | Uri::Tel(_))
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => f.write_str(u.as_str()),
            Uri::Tel(s) | Uri::Other(s) => f.write_str(s),
        }
    }
}

/// RFC 3261 §19.1.4 URI equality, simplified: SIP URIs compare scheme,
/// user (after unescaping), host (case-insensitive) and port; others
/// compare as text (case-insensitive).
pub fn same_uri(a: &Uri, b: &Uri) -> bool {
    match (a, b) {
        (Uri::Sip(a), Uri::Sip(b)) => a.same_as(b),
        (Uri::Sip(_), _) | (_, Uri::Sip(_)) => false,
        (Uri::Tel(a) | Uri::Other(a), Uri::Tel(b) | Uri::Other(b)) => a.eq_ignore_ascii_case(b),
    }
}

/// The host of a [`SipUri`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 reference (`[...]` in the text).
    Ipv6(Ipv6Addr),
    /// A domain name, as written (not lowercased).
    Name(&'a str),
}

/// Parsed host, without the text (a name lives in [`SipUri::text`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostKind {
    Name,
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

/// A `sip:`/`sips:` URI (RFC 3261 §25.1): the text exactly as received
/// plus offsets of its parts. Printing gives the text back unchanged.
///
/// Layout: `scheme ":" [user [":" password] "@"] host [":" port]
/// [";" params] ["?" headers]`. Offsets are `u16`: URIs longer than
/// 65535 bytes (more than a whole SIP message) are refused.
#[derive(Debug, Clone)]
pub struct SipUri {
    text: Box<str>,
    /// End of the user (start is after the scheme); 0 when no userinfo.
    user_end: u16,
    /// Index of `@` (0 when no userinfo); a password is between
    /// `user_end + 1` and here when `user_end < at`.
    at: u16,
    host_start: u16,
    host_end: u16,
    /// Start of `;params` (its `;`), or of what follows the host/port.
    params_start: u16,
    /// Start of `?headers` (its `?`), or the text length.
    headers_start: u16,
    port: Option<u16>,
    host: HostKind,
    sips: bool,
}

impl SipUri {
    /// Parse a whole `sip:`/`sips:` URI (no surrounding whitespace or
    /// `<>`); `None` when malformed.
    pub fn parse(s: &str) -> Option<SipUri> {
        let b = s.as_bytes();
        u16::try_from(b.len()).ok()?;
        let (sips, scheme_end) = if prefix_ci(b, b"sip:") {
            (false, 4u16)
        } else if prefix_ci(b, b"sips:") {
            (true, 5u16)
        } else {
            return None;
        };
        let rest = b.get(usize::from(scheme_end)..)?;
        // '@' may appear (unescaped) only as the end of userinfo.
        let (user_end, at, host_start) = match rest.iter().position(|&c| c == b'@') {
            Some(p) => {
                let at = scheme_end + u16::try_from(p).ok()?;
                let userinfo = rest.get(..p)?;
                let (user, password) = match userinfo.iter().position(|&c| c == b':') {
                    Some(c) => (userinfo.get(..c)?, Some(userinfo.get(c + 1..)?)),
                    None => (userinfo, None),
                };
                if user.is_empty() || !valid_escaped(user, is_user_char) {
                    return None;
                }
                if password.is_some_and(|p| !valid_escaped(p, is_password_char)) {
                    return None;
                }
                // user() hands out the unescaped user as a string.
                if user.contains(&b'%')
                    && std::str::from_utf8(&decode(user).collect::<Vec<u8>>()).is_err()
                {
                    return None;
                }
                let user_end = scheme_end + u16::try_from(user.len()).ok()?;
                (user_end, at, at + 1)
            }
            None => (0, 0, scheme_end),
        };

        // hostport
        let hp = b.get(usize::from(host_start)..)?;
        let (host, host_len) = if hp.first() == Some(&b'[') {
            let close = hp.iter().position(|&c| c == b']')?;
            let inner = std::str::from_utf8(hp.get(1..close)?).ok()?;
            let ip: Ipv6Addr = inner.parse().ok()?;
            (HostKind::V6(ip), close + 1)
        } else {
            let n = hp
                .iter()
                .position(|&c| !(c.is_ascii_alphanumeric() || c == b'-' || c == b'.'))
                .unwrap_or(hp.len());
            let name = hp.get(..n)?;
            (parse_host_name(name)?, n)
        };
        let host_end = host_start + u16::try_from(host_len).ok()?;
        let mut i = host_end;
        let mut port = None;
        if b.get(usize::from(i)) == Some(&b':') {
            let digits = b.get(usize::from(i) + 1..)?;
            let n = digits
                .iter()
                .position(|c| !c.is_ascii_digit())
                .unwrap_or(digits.len());
            if n == 0 {
                return None;
            }
            let mut v: u32 = 0;
            for &d in digits.get(..n)? {
                v = v * 10 + u32::from(d - b'0');
                if v > u32::from(u16::MAX) {
                    return None;
                }
            }
            port = Some(u16::try_from(v).ok()?);
            i += 1 + u16::try_from(n).ok()?;
        }

        let params_start = i;
        let tail = b.get(usize::from(i)..)?;
        let headers_rel = tail.iter().position(|&c| c == b'?').unwrap_or(tail.len());
        let params = tail.get(..headers_rel)?;
        if let Some(p) = params.strip_prefix(b";") {
            if !p.split(|&c| c == b';').all(valid_param) {
                return None;
            }
        } else if !params.is_empty() {
            return None;
        }
        let headers_start = params_start + u16::try_from(headers_rel).ok()?;
        if let Some(h) = tail.get(headers_rel..).and_then(|h| h.strip_prefix(b"?"))
            && !h.split(|&c| c == b'&').all(valid_header)
        {
            return None;
        }

        Some(SipUri {
            text: s.into(),
            user_end,
            at,
            host_start,
            host_end,
            params_start,
            headers_start,
            port,
            host,
            sips,
        })
    }

    fn span(&self, start: u16, end: u16) -> &str {
        self.text
            .get(usize::from(start)..usize::from(end))
            .unwrap_or_default()
    }

    fn scheme_end(&self) -> u16 {
        if self.sips { 5 } else { 4 }
    }

    /// The URI text exactly as parsed.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `sips:` rather than `sip:`.
    pub fn is_sips(&self) -> bool {
        self.sips
    }

    /// The user as written (escapes kept), if there is a userinfo.
    pub fn user(&self) -> Option<&str> {
        (self.at != 0).then(|| self.span(self.scheme_end(), self.user_end))
    }

    /// The user with `%HH` escapes decoded (borrowed when it has none).
    ///
    /// Decoding never yields a control character (CR, LF, NUL, ESC, any
    /// C0 or C1 control, DEL) nor invalid UTF-8: a user whose escapes would
    /// decode to one is returned as written, still escaped. The decoded user
    /// ends up in dialplan variables, log lines and the headers of B-legs;
    /// `%0D%0A` must stay text there (issue #13, header injection).
    pub fn user_decoded(&self) -> Option<Cow<'_, str>> {
        let user = self.user()?;
        if !user.contains('%') {
            return Some(Cow::Borrowed(user));
        }
        let bytes: Vec<u8> = decode(user.as_bytes()).collect();
        match String::from_utf8(bytes) {
            Ok(s) if !s.chars().any(char::is_control) => Some(Cow::Owned(s)),
            _ => Some(Cow::Borrowed(user)),
        }
    }

    /// The password as written, if present (`sip:user:pw@host`).
    pub fn password(&self) -> Option<&str> {
        (self.at != 0 && self.user_end < self.at).then(|| self.span(self.user_end + 1, self.at))
    }

    /// The host.
    pub fn host(&self) -> Host<'_> {
        match self.host {
            HostKind::V4(ip) => Host::Ipv4(ip),
            HostKind::V6(ip) => Host::Ipv6(ip),
            HostKind::Name => Host::Name(self.span(self.host_start, self.host_end)),
        }
    }

    /// The host as plain text: lowercased name, or IP without brackets
    /// (IPv6 in its canonical form).
    pub fn host_text(&self) -> Cow<'_, str> {
        match self.host() {
            // As written when that is the canonical form (no leading
            // zeros): no formatting per call (a B-leg's target host).
            Host::Ipv4(_) if canonical_ipv4(self.span(self.host_start, self.host_end)) => {
                Cow::Borrowed(self.span(self.host_start, self.host_end))
            }
            Host::Ipv4(ip) => Cow::Owned(ip.to_string()),
            Host::Ipv6(ip) => Cow::Owned(ip.to_string()),
            Host::Name(n) if n.bytes().any(|c| c.is_ascii_uppercase()) => {
                Cow::Owned(n.to_ascii_lowercase())
            }
            Host::Name(n) => Cow::Borrowed(n),
        }
    }

    /// The port, if given.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The URI parameters as written, without the leading `;`.
    pub fn params(&self) -> Option<&str> {
        let p = self.span(self.params_start, self.headers_start);
        p.strip_prefix(';')
    }

    /// A URI parameter by name (case-insensitive, escapes not decoded):
    /// `Some(None)` for a parameter without value, `Some(Some(v))` with.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params()?
            .split(';')
            .find_map(|p| match p.split_once('=') {
                Some((n, v)) => n.eq_ignore_ascii_case(name).then_some(Some(v)),
                None => p.eq_ignore_ascii_case(name).then_some(None),
            })
    }

    /// The headers as written, without the leading `?`.
    pub fn headers(&self) -> Option<&str> {
        self.text
            .get(usize::from(self.headers_start)..)
            .and_then(|h| h.strip_prefix('?'))
    }

    /// Same scheme, user (after unescaping), host (case-insensitive) and
    /// port; allocates nothing.
    pub fn same_as(&self, other: &SipUri) -> bool {
        let users = match (self.user(), other.user()) {
            (None, None) => true,
            (Some(a), Some(b)) => decode(a.as_bytes()).eq(decode(b.as_bytes())),
            _ => false,
        };
        let hosts = match (self.host(), other.host()) {
            (Host::Name(a), Host::Name(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        };
        self.sips == other.sips && users && hosts && self.port == other.port
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn prefix_ci(b: &[u8], p: &[u8]) -> bool {
    b.get(..p.len()).is_some_and(|x| x.eq_ignore_ascii_case(p))
}

/// `unreserved` minus alphanum: `mark`.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

fn is_user_char(c: u8) -> bool {
    is_unreserved(c) || matches!(c, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

fn is_password_char(c: u8) -> bool {
    is_unreserved(c) || matches!(c, b'&' | b'=' | b'+' | b'$' | b',')
}

fn is_param_char(c: u8) -> bool {
    is_unreserved(c) || matches!(c, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

fn is_header_char(c: u8) -> bool {
    is_unreserved(c) || matches!(c, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$')
}

/// Every byte is in `class` or starts a well-formed `%HH` escape.
fn valid_escaped(s: &[u8], class: fn(u8) -> bool) -> bool {
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if c == b'%' {
            let hex = |j: usize| s.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else if class(c) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// `pname [ "=" pvalue ]`: a non-empty name; an empty value (`x=`) is
/// tolerated, as ezk-sip-types did.
fn valid_param(p: &[u8]) -> bool {
    let (name, value) = match p.iter().position(|&c| c == b'=') {
        Some(e) => (p.get(..e).unwrap_or_default(), p.get(e + 1..)),
        None => (p, None),
    };
    !name.is_empty()
        && valid_escaped(name, is_param_char)
        && value.is_none_or(|v| valid_escaped(v, is_param_char))
}

/// `hname "=" hvalue`: a non-empty name, `=` required, value may be empty.
fn valid_header(h: &[u8]) -> bool {
    let Some(e) = h.iter().position(|&c| c == b'=') else {
        return false;
    };
    let name = h.get(..e).unwrap_or_default();
    let value = h.get(e + 1..).unwrap_or_default();
    !name.is_empty() && valid_escaped(name, is_header_char) && valid_escaped(value, is_header_char)
}

/// Whether a dotted quad the parser accepted is written as
/// `Ipv4Addr`'s `Display` prints it: no octet with a leading zero.
fn canonical_ipv4(text: &str) -> bool {
    text.split('.')
        .all(|octet| octet.len() == 1 || !octet.starts_with('0'))
}

/// A host that is not `[IPv6]`: IPv4 when it is only digits and dots
/// (then it must be a dotted quad), else a name of labels made of
/// alphanumerics and `-` (not at either end), optionally ending in `.`.
/// Like ezk-sip-types, digit-leading top labels are tolerated.
fn parse_host_name(name: &[u8]) -> Option<HostKind> {
    if name.is_empty() {
        return None;
    }
    if name.iter().all(|&c| c.is_ascii_digit() || c == b'.') {
        let mut octets = [0u8; 4];
        let mut parts = name.split(|&c| c == b'.');
        for o in &mut octets {
            let part = parts.next()?;
            if part.is_empty() || part.len() > 3 {
                return None;
            }
            let v = part.iter().fold(0u16, |v, &d| v * 10 + u16::from(d - b'0'));
            *o = u8::try_from(v).ok()?;
        }
        return parts
            .next()
            .is_none()
            .then(|| HostKind::V4(Ipv4Addr::from(octets)));
    }
    let body = name.strip_suffix(b".").unwrap_or(name);
    let ok = body.split(|&c| c == b'.').all(|l| {
        !l.is_empty()
            && l.first() != Some(&b'-')
            && l.last() != Some(&b'-')
            && l.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
    });
    ok.then_some(HostKind::Name)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `user` escaped for the user part of a SIP URI (RFC 3261 §25.1:
/// `unreserved / escaped / user-unreserved`): every other byte, control
/// characters, `@`, `:`, `<`, `>`, quotes and spaces included, becomes
/// `%HH`. Borrowed when nothing needs escaping.
pub fn encode_user(user: &str) -> Cow<'_, str> {
    fn allowed(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b)
    }
    if user.bytes().all(allowed) {
        return Cow::Borrowed(user);
    }
    let mut out = String::with_capacity(user.len() + 8);
    for b in user.bytes() {
        if allowed(b) {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    Cow::Owned(out)
}

/// Bytes of `s` with `%HH` escapes decoded (a malformed escape is kept
/// as is; the parser rejects those anyway).
fn decode(s: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let c = *s.get(i)?;
        if c == b'%'
            && let (Some(h), Some(l)) = (
                s.get(i + 1).copied().and_then(hex_val),
                s.get(i + 2).copied().and_then(hex_val),
            )
        {
            i += 3;
            return Some((h << 4) | l);
        }
        i += 1;
        Some(c)
    })
}

#[cfg(test)]
#[path = "uri_tests.rs"]
mod tests;
