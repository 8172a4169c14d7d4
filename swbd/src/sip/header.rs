//! Typed views of the headers a B2BUA needs.
//!
//! Via goes through ezk-sip-types' parser; From/To/Contact have their own
//! small parser here because ezk's `NameAddr` only holds `sip:` URIs and
//! From/To may carry `tel:` URIs.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use ezk_sip_types::header::HeaderParse;
use ezk_sip_types::header::typed::Via;

use super::error::{ParseError, Result};
use super::method::Method;
use super::uri::{Uri, host_text};

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
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out
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
        params.push((name.to_ascii_lowercase(), value.map(str::to_string)));
    }
    Ok(params)
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' && quoted {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&s[start..i]);
            start = i + sep.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
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
        let v = value.trim();
        let bad = |m: &str| ParseError::new(format!("{m} in {what} header"));
        if v.is_empty() {
            return Err(bad("empty value"));
        }
        let (display, uri_text, rest) = if let Some(lt) = find_unquoted(v, '<') {
            let display = v[..lt].trim();
            let after = &v[lt + 1..];
            let Some(gt) = after.find('>') else {
                return Err(bad("missing '>'"));
            };
            let display = if display.is_empty() {
                None
            } else if let Some(q) = display.strip_prefix('"') {
                let Some(inner) = q.strip_suffix('"') else {
                    return Err(bad("unbalanced quotes"));
                };
                Some(inner.replace("\\\"", "\""))
            } else {
                if display.contains('"') {
                    return Err(bad("unbalanced quotes"));
                }
                Some(display.to_string())
            };
            (display, &after[..gt], &after[gt + 1..])
        } else {
            if v.contains('"') {
                return Err(bad("unbalanced quotes"));
            }
            // addr-spec: parameters after the first ';' belong to the header.
            match v.find(';') {
                Some(i) => (None, &v[..i], &v[i..]),
                None => (None, v, ""),
            }
        };
        let uri = Uri::parse(uri_text).ok_or_else(|| bad("malformed URI"))?;
        let params = parse_params(rest, what)?;
        Ok(NameAddr {
            display,
            uri,
            params,
        })
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        param(&self.params, "tag").flatten()
    }
}

impl std::fmt::Display for NameAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "\"{}\" ", d.replace('"', "\\\""))?;
        }
        write!(f, "<{}>", self.uri)?;
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
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
    let mut star = false;
    for value in values {
        for item in split_list(value) {
            if item == "*" {
                star = true;
            } else {
                out.push(NameAddr::parse(item, "Contact")?);
            }
        }
    }
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

/// One Via value, parsed by ezk-sip-types, plus the helpers the transport
/// and transaction layers need.
#[derive(Debug, Clone)]
pub struct ViaHeader {
    /// The parsed value.
    pub via: Via,
    /// The value as received (for RFC 2543 transaction matching).
    pub raw: String,
}

impl ViaHeader {
    /// Parse a single Via value; trailing garbage is an error.
    pub fn parse(value: &str) -> Result<ViaHeader> {
        let bad = || ParseError::new("malformed Via header");
        let v = value.trim();
        // ezk's parameter parser tolerates empty parameters; RFC 3261 does not.
        if let Some(i) = v.find(';') {
            parse_params(&v[i..], "Via")?;
        }
        let src = Bytes::copy_from_slice(v.as_bytes());
        let text = std::str::from_utf8(&src).map_err(|_| bad())?;
        let (rest, via) = Via::parse(&src, text).map_err(|_| bad())?;
        if !rest.trim().is_empty() {
            return Err(bad());
        }
        Ok(ViaHeader {
            via,
            raw: v.to_string(),
        })
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        self.via.params.get_val("branch").map(|b| b.as_str())
    }

    /// Transport token, uppercased (`UDP`, `TCP`).
    pub fn transport(&self) -> String {
        self.via.transport.to_ascii_uppercase()
    }

    /// `sent-by` as `host:port` text (port defaulted to 5060), for keys.
    pub fn sent_by(&self) -> String {
        format!(
            "{}:{}",
            host_text(&self.via.sent_by.host),
            self.via.sent_by.port.unwrap_or(5060)
        )
    }

    /// Where to send a response over UDP (RFC 3261 §18.2.2 and RFC 3581):
    /// the source IP; the `rport` value or source port when `rport` is
    /// present, else the sent-by port (5060 by default).
    pub fn response_address(&self, source: SocketAddr) -> SocketAddr {
        let rport = self.via.params.get("rport").map(|p| {
            p.value
                .as_ref()
                .and_then(|v| v.parse::<u16>().ok())
                .unwrap_or(source.port())
        });
        let port = rport.unwrap_or_else(|| self.via.sent_by.port.unwrap_or(5060));
        let ip: IpAddr = source.ip();
        SocketAddr::new(ip, port)
    }

    /// Add `received` and fill `rport` as RFC 3261 §18.2.1 / RFC 3581 ask.
    pub fn stamp_source(&mut self, source: SocketAddr) {
        use ezk_sip_types::uri::params::Param;
        let sent_ip = self.via.sent_by.ip();
        if sent_ip != Some(source.ip()) {
            self.via
                .params
                .push_or_edit("received", source.ip().to_string());
        }
        if let Some(p) = self.via.params.get_mut("rport") {
            *p = Param::value("rport", source.port().to_string());
        }
    }

    /// Print back as a header value.
    pub fn to_value(&self) -> String {
        use ezk_sip_types::print::{AppendCtx, PrintCtx};
        self.via.print_ctx(PrintCtx::default()).to_string()
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
    fn cseq_range() {
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert_eq!(CSeq::parse("8  INVITE").expect("ok").number, 8);
    }
}
