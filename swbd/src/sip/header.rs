//! Typed views of the headers a B2BUA needs.
//!
//! Via, From/To/Contact and CSeq have small parsers here (ezk's `NameAddr`
//! only holds `sip:` URIs and From/To may carry `tel:` URIs; its Via parser
//! copied and allocated per parameter, on the hottest path there is).

use std::net::{IpAddr, SocketAddr};

use super::error::{ParseError, Result};
use super::method::Method;
use super::uri::Uri;

/// Header parameters (`;tag=x;lr`), names lowercased, values as written.
pub type Params = Vec<(String, Option<String>)>;

/// Look a parameter up by (case-insensitive) name.
pub fn param<'a>(params: &'a Params, name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

/// Split a header value at commas that are outside quotes and `<>`.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(i) = list_comma(rest) {
        out.push(rest.get(..i).unwrap_or_default().trim());
        rest = rest.get(i + 1..).unwrap_or_default();
    }
    out.push(rest.trim());
    out
}

/// The first item of a comma list (see [`split_list`]), without building
/// the list.
pub fn first_item(value: &str) -> &str {
    match list_comma(value) {
        Some(i) => value.get(..i).unwrap_or_default().trim(),
        None => value.trim(),
    }
}

/// Index of the first comma outside quotes and `<>`. Bytewise: none of
/// the bytes looked for can be part of a multi-byte UTF-8 character.
fn list_comma(value: &str) -> Option<usize> {
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    for (i, c) in value.bytes().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && !angle => return Some(i),
            _ => {}
        }
    }
    None
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// Parse `;a=b;c;d="x y"` (the leading `;` included). Empty parameters
/// (`;;`) and bad names are errors.
pub fn parse_params(s: &str, what: &str) -> Result<Params> {
    let mut params = Vec::new();
    let s = s.trim();
    if s.is_empty() {
        return Ok(params);
    }
    let Some(rest) = s.strip_prefix(';') else {
        return Err(ParseError::new(format!(
            "malformed {what} header parameters"
        )));
    };
    for raw in split_outside_quotes(rest, ';') {
        let (name, value) = check_param(raw, what)?;
        params.push((name.to_ascii_lowercase(), value.map(str::to_string)));
    }
    Ok(params)
}

/// The checks of [`parse_params`] without building the list.
pub fn parse_params_check(s: &str, what: &str) -> Result<()> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(());
    }
    let Some(rest) = s.strip_prefix(';') else {
        return Err(ParseError::new(format!(
            "malformed {what} header parameters"
        )));
    };
    let mut any = false;
    for raw in (SplitOutsideQuotes { s: rest, sep: ';' }) {
        any = true;
        check_param(raw, what)?;
    }
    if !any || rest.ends_with(';') {
        // `;` alone or a trailing `;`: an empty parameter.
        return Err(ParseError::new(format!(
            "malformed {what} header parameter"
        )));
    }
    Ok(())
}

fn check_param<'a>(raw: &'a str, what: &str) -> Result<(&'a str, Option<&'a str>)> {
    let raw = raw.trim();
    let (name, value) = match raw.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (raw, None),
    };
    if name.is_empty() || !name.chars().all(is_token_char) {
        return Err(ParseError::new(format!(
            "malformed {what} header parameter"
        )));
    }
    if let Some(v) = value {
        if v.is_empty() {
            return Err(ParseError::new(format!(
                "empty {what} header parameter value"
            )));
        }
        if v.starts_with('"') && (v.len() < 2 || !v.ends_with('"')) {
            return Err(ParseError::new(format!(
                "unbalanced quotes in {what} header"
            )));
        }
    }
    Ok((name, value))
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = sep_outside_quotes(rest, sep) {
        out.push(rest.get(..i).unwrap_or_default());
        rest = rest.get(i + sep.len_utf8()..).unwrap_or_default();
    }
    out.push(rest);
    out
}

/// Index of the first `sep` (ASCII) outside double quotes, bytewise.
fn sep_outside_quotes(s: &str, sep: char) -> Option<usize> {
    let sep = u8::try_from(sep).ok()?;
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in s.bytes().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == b'\\' && quoted {
            escaped = true;
        } else if c == b'"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            return Some(i);
        }
    }
    None
}

/// `name-addr` or `addr-spec` with parameters: From, To, Contact, Route.
#[derive(Debug, Clone)]
pub struct NameAddr {
    /// Display name without quotes.
    pub display: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters (after the URI / `>`).
    pub params: Params,
}

impl NameAddr {
    /// Parse one `name-addr`/`addr-spec` with params. `what` names the
    /// header in error reasons.
    pub fn parse(value: &str, what: &str) -> Result<NameAddr> {
        let (display, uri_text, rest) = split_name_addr(value, what)?;
        let uri = Uri::parse(uri_text).ok_or_else(|| name_addr_error("malformed URI", what))?;
        let params = parse_params(rest, what)?;
        Ok(NameAddr {
            display: display.map(
                |d| match d.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
                    Some(inner) => unquote_pairs(inner),
                    None => d.to_string(),
                },
            ),
            uri,
            params,
        })
    }

    /// The checks of [`NameAddr::parse`] without keeping anything (message
    /// validation; handlers parse what they use).
    pub fn check(value: &str, what: &str) -> Result<()> {
        let (_, uri_text, rest) = split_name_addr(value, what)?;
        Uri::parse(uri_text).ok_or_else(|| name_addr_error("malformed URI", what))?;
        parse_params_check(rest, what)
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        param(&self.params, "tag").flatten()
    }

    /// Whether a From/To value carries a `tag` parameter, without building
    /// anything (the front door asks this of every request).
    pub fn has_tag(value: &str) -> bool {
        let Ok((_, _, rest)) = split_name_addr(value, "To") else {
            return false;
        };
        rest.split(';').any(|p| {
            p.split('=')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case("tag"))
        })
    }
}

/// The inside of a `quoted-string` with its `quoted-pair`s (`\\x`)
/// resolved.
fn unquote_pairs(inner: &str) -> String {
    if !inner.contains('\\') {
        return inner.to_string();
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// `display` as a SIP `quoted-string` (RFC 3261 §25.1): `"` and `\\`
/// escaped, control characters (CR, LF, NUL, ESC, ...) dropped, so a
/// display name taken from a peer can neither end the quotes early nor
/// start a header line of its own.
pub fn quoted_display(display: &str) -> String {
    let mut out = String::with_capacity(display.len() + 2);
    push_quoted_display(&mut out, display);
    out
}

/// [`quoted_display`] appended to `out`.
fn push_quoted_display(out: &mut String, display: &str) {
    out.push('"');
    for c in display.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
}

impl NameAddr {
    /// Print onto `out` (what `Display` prints), without the formatting
    /// machinery: a call prints its From/To a few times per message.
    pub fn push_to(&self, out: &mut String) {
        if let Some(d) = &self.display {
            push_quoted_display(out, d);
            out.push(' ');
        }
        out.push('<');
        out.push_str(self.uri.as_str());
        out.push('>');
        for (n, v) in &self.params {
            out.push(';');
            out.push_str(n);
            if let Some(v) = v {
                out.push('=');
                out.push_str(v);
            }
        }
    }

    /// Bytes [`NameAddr::push_to`] prints, at least (for sizing buffers).
    pub fn printed_len_hint(&self) -> usize {
        let uri = self.uri.as_str().len();
        let params: usize = self
            .params
            .iter()
            .map(|(n, v)| 2 + n.len() + v.as_ref().map_or(0, String::len))
            .sum();
        self.display.as_ref().map_or(0, |d| d.len() + 3) + uri + 2 + params
    }
}

impl std::fmt::Display for NameAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::with_capacity(self.printed_len_hint());
        self.push_to(&mut out);
        f.write_str(&out)
    }
}

fn name_addr_error(m: &str, what: &str) -> ParseError {
    ParseError::new(format!("{m} in {what} header"))
}

/// Display name (as written, quotes kept), URI text and the parameters
/// after it of a `name-addr`/`addr-spec`.
fn split_name_addr<'a>(value: &'a str, what: &str) -> Result<(Option<&'a str>, &'a str, &'a str)> {
    let v = value.trim();
    let bad = |m: &str| name_addr_error(m, what);
    if v.is_empty() {
        return Err(bad("empty value"));
    }
    if let Some(lt) = find_unquoted(v, '<') {
        let display = v.get(..lt).unwrap_or_default().trim();
        let after = v.get(lt + 1..).unwrap_or_default();
        let Some(gt) = after.find('>') else {
            return Err(bad("missing '>'"));
        };
        let display = if display.is_empty() {
            None
        } else if let Some(q) = display.strip_prefix('"') {
            if !q.ends_with('"') {
                return Err(bad("unbalanced quotes"));
            }
            Some(display)
        } else {
            if display.contains('"') {
                return Err(bad("unbalanced quotes"));
            }
            Some(display)
        };
        Ok((
            display,
            after.get(..gt).unwrap_or_default(),
            after.get(gt + 1..).unwrap_or_default(),
        ))
    } else {
        if v.contains('"') {
            return Err(bad("unbalanced quotes"));
        }
        // addr-spec: parameters after the first ';' belong to the header.
        Ok(match v.find(';') {
            Some(i) => (
                None,
                v.get(..i).unwrap_or_default(),
                v.get(i..).unwrap_or_default(),
            ),
            None => (None, v, ""),
        })
    }
}

fn find_unquoted(s: &str, needle: char) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == needle && !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// A Contact value: a binding URI, or `*` (REGISTER only).
pub type Contact = NameAddr;

/// All Contact values of a message.
#[derive(Debug, Clone)]
pub enum ContactList {
    /// `Contact: *`.
    Star,
    /// Zero or more contacts.
    Contacts(Vec<Contact>),
}

/// Parse all Contact header values (comma lists and repeated headers).
pub fn parse_contacts<'a>(values: impl Iterator<Item = &'a str>) -> Result<ContactList> {
    let mut out = Vec::new();
    let star = each_contact(values, |item| {
        out.push(NameAddr::parse(item, "Contact")?);
        Ok(())
    })?;
    contact_list(star, out)
}

/// The checks of [`parse_contacts`] without keeping anything.
pub fn check_contacts<'a>(values: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut any = false;
    let star = each_contact(values, |item| {
        any = true;
        NameAddr::check(item, "Contact")
    })?;
    if star && any {
        return Err(ParseError::new("Contact: * mixed with other contacts"));
    }
    Ok(())
}

/// Call `f` on every contact item but `*`; whether there was a `*`.
fn each_contact<'a>(
    values: impl Iterator<Item = &'a str>,
    mut f: impl FnMut(&'a str) -> Result<()>,
) -> Result<bool> {
    let mut star = false;
    for value in values {
        let mut rest = value;
        loop {
            let item = first_item(rest);
            if item == "*" {
                star = true;
            } else {
                f(item)?;
            }
            match list_comma(rest) {
                Some(i) => rest = rest.get(i + 1..).unwrap_or_default(),
                None => break,
            }
        }
    }
    Ok(star)
}

fn contact_list(star: bool, out: Vec<Contact>) -> Result<ContactList> {
    match (star, out.is_empty()) {
        (true, true) => Ok(ContactList::Star),
        (true, false) => Err(ParseError::new("Contact: * mixed with other contacts")),
        (false, _) => Ok(ContactList::Contacts(out)),
    }
}

/// CSeq: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number (< 2^31, RFC 3261 §8.1.1.5).
    pub number: u32,
    /// Method.
    pub method: Method,
}

impl CSeq {
    /// Parse `8 INVITE`.
    pub fn parse(value: &str) -> Result<CSeq> {
        let mut it = value.split_whitespace();
        let (Some(n), Some(m), None) = (it.next(), it.next(), it.next()) else {
            return Err(ParseError::new("malformed CSeq header"));
        };
        let number: u32 = n
            .parse()
            .ok()
            .filter(|n| *n < (1 << 31))
            .ok_or_else(|| ParseError::new("CSeq number out of range"))?;
        if !m.chars().all(is_token_char) {
            return Err(ParseError::new("malformed CSeq method"));
        }
        Ok(CSeq {
            number,
            method: Method::from_token(m),
        })
    }
}

impl std::fmt::Display for CSeq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.number, self.method)
    }
}

/// One Via value (RFC 3261 §20.42): parsed in place over the received
/// text, plus the helpers the transport and transaction layers need.
/// One allocation per value (the text); parameters are looked up by
/// scanning it.
#[derive(Debug, Clone)]
pub struct ViaHeader {
    /// The value as received, trimmed (for RFC 2543 transaction matching).
    pub raw: String,
    /// `sent-protocol` transport token, as written.
    transport: std::ops::Range<usize>,
    /// The sent-by host as written (brackets kept for IPv6).
    host: std::ops::Range<usize>,
    /// The host when it is an IP address.
    host_ip: Option<IpAddr>,
    /// The sent-by port.
    port: Option<u16>,
    /// Start of the parameters (`;...`), or the end of `raw`.
    params: usize,
    /// The value with `received`/`rport` filled, once stamped.
    stamped: Option<String>,
}

/// Skip SWS (spaces and tabs; folding is already undone).
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// The end of a token starting at `i`.
fn token_end(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|c| is_token_char(char::from(*c))) {
        i += 1;
    }
    i
}

impl ViaHeader {
    /// Parse a single Via value; trailing garbage is an error.
    pub fn parse(value: &str) -> Result<ViaHeader> {
        let bad = || ParseError::new("malformed Via header");
        let v = value.trim();
        let b = v.as_bytes();
        // sent-protocol: name SLASH version SLASH transport (SLASH = SWS "/" SWS).
        let mut i = 0;
        let mut transport = 0..0;
        for part in 0..3 {
            let start = skip_ws(b, i);
            let end = token_end(b, start);
            if end == start {
                return Err(bad());
            }
            i = skip_ws(b, end);
            if part < 2 {
                if b.get(i) != Some(&b'/') {
                    return Err(bad());
                }
                i += 1;
            } else {
                transport = start..end;
                // LWS between sent-protocol and sent-by is required.
                if i == end {
                    return Err(bad());
                }
            }
        }
        // sent-by: host [ SWS ":" SWS port ]
        let host_start = i;
        let host_end = if b.get(i) == Some(&b'[') {
            v.get(i..)
                .and_then(|r| r.find(']'))
                .map(|c| i + c + 1)
                .ok_or_else(bad)?
        } else {
            let mut j = i;
            while b
                .get(j)
                .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
            {
                j += 1;
            }
            j
        };
        let host_text = v.get(host_start..host_end).ok_or_else(bad)?;
        if host_text.is_empty() {
            return Err(bad());
        }
        let host_ip = match host_text.strip_prefix('[') {
            Some(inner) => Some(IpAddr::V6(
                inner
                    .strip_suffix(']')
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(bad)?,
            )),
            None => host_text.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
        };
        i = skip_ws(b, host_end);
        let mut port = None;
        if b.get(i) == Some(&b':') {
            let ps = skip_ws(b, i + 1);
            let mut pe = ps;
            while b.get(pe).is_some_and(u8::is_ascii_digit) {
                pe += 1;
            }
            port = Some(
                v.get(ps..pe)
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(bad)?,
            );
            i = skip_ws(b, pe);
        }
        let params = i;
        let rest = v.get(params..).unwrap_or_default();
        if !rest.is_empty() {
            // Strict parameters: `;;` and bad names are errors (RFC 4475 badinv01).
            parse_params_check(rest, "Via")?;
        }
        Ok(ViaHeader {
            raw: v.to_string(),
            transport,
            host: host_start..host_end,
            host_ip,
            port,
            params,
            stamped: None,
        })
    }

    fn params_text(&self) -> &str {
        self.raw.get(self.params..).unwrap_or_default()
    }

    /// A parameter by (case-insensitive) name: `Some(None)` when present
    /// without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        param_iter(self.params_text())
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// Transport token, uppercased (`UDP`, `TCP`).
    pub fn transport(&self) -> String {
        self.raw
            .get(self.transport.clone())
            .unwrap_or_default()
            .to_ascii_uppercase()
    }

    /// The sent-by port, when written.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `sent-by` as `host:port` text (port defaulted to 5060), for keys:
    /// names lowercased, IPs without brackets.
    pub fn sent_by(&self) -> String {
        use std::fmt::Write as _;
        let port = self.port.unwrap_or(5060);
        let mut out = String::with_capacity(self.host.len() + 6);
        match self.host_ip {
            Some(ip) => {
                let _ = write!(out, "{ip}:{port}");
            }
            None => {
                let host = self.raw.get(self.host.clone()).unwrap_or_default();
                out.push_str(host);
                out.make_ascii_lowercase();
                let _ = write!(out, ":{port}");
            }
        }
        out
    }

    /// Where to send a response over UDP (RFC 3261 §18.2.2 and RFC 3581):
    /// the source IP; the `rport` value or source port when `rport` is
    /// present, else the sent-by port (5060 by default).
    pub fn response_address(&self, source: SocketAddr) -> SocketAddr {
        let rport = self.param("rport").map(|v| {
            v.and_then(|v| v.parse::<u16>().ok())
                .unwrap_or(source.port())
        });
        let port = rport.unwrap_or_else(|| self.port.unwrap_or(5060));
        SocketAddr::new(source.ip(), port)
    }

    /// Add `received` and fill `rport` as RFC 3261 §18.2.1 / RFC 3581 ask.
    /// Returns whether the value changed.
    pub fn stamp_source(&mut self, source: SocketAddr) -> bool {
        use std::fmt::Write as _;
        let need_received = self.host_ip != Some(source.ip());
        let has_rport = self.param("rport").is_some();
        if !need_received && !has_rport {
            return false;
        }
        let head = self.raw.get(..self.params).unwrap_or_default();
        let mut out = String::with_capacity(self.raw.len() + 40);
        out.push_str(head.trim_end());
        let mut received_done = !need_received;
        for (n, v) in param_iter(self.params_text()) {
            if n.eq_ignore_ascii_case("rport") {
                let _ = write!(out, ";{n}={}", source.port());
            } else if n.eq_ignore_ascii_case("received") && !received_done {
                let _ = write!(out, ";{n}={}", source.ip());
                received_done = true;
            } else {
                out.push(';');
                out.push_str(n);
                if let Some(v) = v {
                    out.push('=');
                    out.push_str(v);
                }
            }
        }
        if !received_done {
            let _ = write!(out, ";received={}", source.ip());
        }
        self.stamped = Some(out);
        true
    }

    /// Print back as a header value (stamped, when it was).
    pub fn to_value(&self) -> String {
        self.stamped.clone().unwrap_or_else(|| self.raw.clone())
    }
}

/// `(name, value)` of each `;name[=value]` in `s`, SWS trimmed; quoted
/// values may hold `;`. Assumes `s` passed [`parse_params_check`].
fn param_iter(s: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    let s = s.trim().strip_prefix(';').unwrap_or_default();
    SplitOutsideQuotes { s, sep: ';' }.filter_map(|raw| {
        let raw = raw.trim();
        if raw.is_empty() {
            return None;
        }
        Some(match raw.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (raw, None),
        })
    })
}

/// Non-allocating [`split_outside_quotes`].
struct SplitOutsideQuotes<'a> {
    s: &'a str,
    sep: char,
}

impl<'a> Iterator for SplitOutsideQuotes<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.s.is_empty() {
            return None;
        }
        match sep_outside_quotes(self.s, self.sep) {
            Some(i) => {
                let item = self.s.get(..i).unwrap_or_default();
                // A trailing separator's empty item is not yielded (callers
                // that care check for it).
                self.s = self.s.get(i + self.sep.len_utf8()..).unwrap_or_default();
                Some(item)
            }
            None => Some(std::mem::take(&mut self.s)),
        }
    }
}

/// Parse every Via value (comma lists and repeated headers), in order.
pub fn parse_vias<'a>(values: impl Iterator<Item = &'a str>) -> Result<Vec<ViaHeader>> {
    let mut out = Vec::new();
    for value in values {
        for item in split_list(value) {
            out.push(ViaHeader::parse(item)?);
        }
    }
    if out.is_empty() {
        return Err(ParseError::new("missing Via header"));
    }
    Ok(out)
}

/// Parse a non-negative integer header (Max-Forwards, Expires).
pub fn parse_u32(value: &str, what: &str) -> Result<u32> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::new(format!("malformed {what} header")));
    }
    v.parse()
        .map_err(|_| ParseError::new(format!("{what} header out of range")))
}

#[cfg(test)]
mod tests {

    #[test]
    fn has_tag_reads_header_parameters_only() {
        assert!(NameAddr::has_tag("<sip:a@b>;tag=1"));
        assert!(NameAddr::has_tag("Bob <sip:a@b> ; TAG = 1"));
        assert!(
            NameAddr::has_tag("sip:a@b;tag=1"),
            "addr-spec: the params are the header's"
        );
        assert!(
            !NameAddr::has_tag("<sip:a@b;tag=1>"),
            "a URI parameter is not a tag"
        );
        assert!(
            !NameAddr::has_tag("\"x;tag=1>\" <sip:a@b>"),
            "quoted display name"
        );
        assert!(!NameAddr::has_tag("<sip:a@b>;tagx=1"));
        assert!(!NameAddr::has_tag(""));
    }

    use super::*;

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse("\"Alice \\\"A\\\"\" <sip:alice@example.com>;tag=1", "From")
            .expect("parses");
        assert_eq!(n.display.as_deref(), Some("Alice \"A\""));
        assert_eq!(n.tag(), Some("1"));
        let n = NameAddr::parse("sip:caller@example.net;tag=93334", "From").expect("parses");
        assert_eq!(n.tag(), Some("93334"));
        let n = NameAddr::parse("<tel:+15550100>;tag=9", "From").expect("tel");
        assert!(matches!(n.uri, Uri::Tel(_)));
        assert!(NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>", "To").is_err());
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=2", "From").expect("lwsdisp");
        assert_eq!(n.display.as_deref(), Some("caller"));
    }

    #[test]
    fn contact_lists() {
        let c = parse_contacts(
            [
                "<sip:a@h1>;q=0.5, \"x,y\" <sip:b@h2>;expires=60",
                "sip:c@h3",
            ]
            .into_iter(),
        )
        .expect("parses");
        let ContactList::Contacts(c) = c else {
            panic!("not a list")
        };
        assert_eq!(c.len(), 3);
        assert!(matches!(
            parse_contacts(["*"].into_iter()),
            Ok(ContactList::Star)
        ));
    }

    #[test]
    fn via_forms() {
        let v = ViaHeader::parse("SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bKx;rport")
            .expect("v6 via");
        assert_eq!(v.branch(), Some("z9hG4bKx"));
        let src: SocketAddr = "[2001:db8::9]:40000".parse().expect("addr");
        assert_eq!(v.response_address(src), src);
        assert!(ViaHeader::parse("SIP/2.0/UDP 192.0.2.15;;,;,,").is_err());
        let vs =
            parse_vias(["SIP/2.0/UDP a.example;branch=z9hG4bK1, SIP/2.0/TCP b:5061"].into_iter())
                .expect("list");
        assert_eq!(vs.len(), 2);
        assert_eq!(vs[1].sent_by(), "b:5061");
    }

    #[test]
    fn via_lws_params_and_rejects() {
        // RFC 4475 wsinv after unfolding: LWS around the slashes.
        let v = ViaHeader::parse("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").expect("lws");
        assert_eq!(v.transport(), "UDP");
        assert_eq!(v.sent_by(), "192.0.2.2:5060");
        let v = ViaHeader::parse("SIP/2.0/TCP Host.Example.COM : 5070 ;branch=z9hG4bK1 ;x=\"a;b\"")
            .expect("spaces, quoted ;");
        assert_eq!(v.sent_by(), "host.example.com:5070");
        assert_eq!(v.branch(), Some("z9hG4bK1"));
        assert_eq!(v.param("X"), Some(Some("\"a;b\"")));
        assert_eq!(v.param("rport"), None);
        for bad in [
            "SIP/2.0/UDP",
            "SIP/2.0 UDP host",
            "SIP/2.0/UDPhost",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP host:",
            "SIP/2.0/UDP [::1",
            "SIP/2.0/UDP [zz::1]",
            "SIP/2.0/UDP host;",
            "SIP/2.0/UDP host;;branch=z9hG4bK1",
            "SIP/2.0/UDP host;branch=",
            "SIP/2.0/UDP host junk",
            "SIP/2.0/UDP host;x=\"open",
        ] {
            assert!(ViaHeader::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn via_stamp() {
        let src: SocketAddr = "192.0.2.9:40000".parse().expect("addr");
        // Same IP, no rport: nothing to change.
        let mut v = ViaHeader::parse("SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1").expect("via");
        assert!(!v.stamp_source(src));
        assert_eq!(v.to_value(), "SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1");
        // A name as sent-by and an empty rport: both filled, order kept.
        let mut v =
            ViaHeader::parse("SIP/2.0/UDP pc.example.com ;rport;branch=z9hG4bK1").expect("via");
        assert!(v.stamp_source(src));
        assert_eq!(
            v.to_value(),
            "SIP/2.0/UDP pc.example.com;rport=40000;branch=z9hG4bK1;received=192.0.2.9"
        );
        assert_eq!(v.response_address(src), src);
        // An old received value is replaced, not duplicated.
        let mut v = ViaHeader::parse("SIP/2.0/UDP 10.0.0.1;received=10.9.9.9;branch=z9hG4bK1")
            .expect("via");
        assert!(v.stamp_source(src));
        assert_eq!(
            v.to_value(),
            "SIP/2.0/UDP 10.0.0.1;received=192.0.2.9;branch=z9hG4bK1"
        );
        // The raw value stays as received (RFC 2543 matching uses it).
        assert_eq!(
            v.raw,
            "SIP/2.0/UDP 10.0.0.1;received=10.9.9.9;branch=z9hG4bK1"
        );
        let v = ViaHeader::parse("SIP/2.0/UDP 10.0.0.1:5070").expect("via");
        assert_eq!(
            v.response_address(src),
            "192.0.2.9:5070".parse().expect("addr")
        );
    }

    #[test]
    fn first_item_of_lists() {
        assert_eq!(first_item(" a , b"), "a");
        assert_eq!(first_item("\"x,y\" <sip:a@b>, c"), "\"x,y\" <sip:a@b>");
        assert_eq!(first_item("<sip:a@b;p=1,2>;q=1"), "<sip:a@b;p=1,2>;q=1");
        assert_eq!(first_item("only"), "only");
    }

    #[test]
    fn check_accepts_exactly_what_parse_accepts() {
        let parts = [
            "\"Alice\" <sip:alice@example.com>;tag=1",
            "<sip:a@b>",
            "sip:c@h3;tag=x",
            "caller<sip:caller@example.com>;tag=2",
            "<tel:+15550100>;tag=9",
            "\"x,y\" <sip:b@h2>;expires=60",
            "\"Mr. J. User <sip:j.user@example.com>",
            "<sip:a@b",
            "<sip:a@b>;;",
            "<sip:a@b>;x=",
            "<sip:a b@c>",
            "\"",
            "",
            "*",
            "<sip:a@b>;q=\"open",
            "no-scheme",
        ];
        for a in parts {
            assert_eq!(
                NameAddr::check(a, "To").is_ok(),
                NameAddr::parse(a, "To").is_ok(),
                "{a:?}"
            );
            for b in parts {
                let list = format!("{a}, {b}");
                assert_eq!(
                    check_contacts([list.as_str()].into_iter()).is_ok(),
                    parse_contacts([list.as_str()].into_iter()).is_ok(),
                    "{list:?}"
                );
                assert_eq!(
                    check_contacts([a, b].into_iter()).is_ok(),
                    parse_contacts([a, b].into_iter()).is_ok(),
                    "{a:?} / {b:?}"
                );
            }
        }
    }

    #[test]
    fn cseq_range() {
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert_eq!(CSeq::parse("8  INVITE").expect("ok").number, 8);
    }
}
