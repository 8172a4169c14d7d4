//! SIP requests and responses: parsing (RFC 3261 §7, with the leniency and
//! strictness RFC 4475 asks for) and printing.

use super::headers::{Headers, Name, Value};
use bytes::Bytes;

use super::error::{ParseError, Result};
use super::header::{
    self, CSeq, ContactList, NameAddr, ViaHeader, parse_contacts, parse_u32, parse_vias,
};
use super::method::Method;
use super::uri::Uri;

/// A SIP request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method (case-sensitive).
    pub method: Method,
    /// Request-URI.
    pub uri: Uri,
    /// Headers (compact names are stored under their long names).
    pub headers: Headers,
    /// Body (exactly Content-Length bytes).
    pub body: Bytes,
}

/// A SIP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code (100-699).
    pub code: u16,
    /// Reason phrase (may be empty).
    pub reason: String,
    /// Headers.
    pub headers: Headers,
    /// Body.
    pub body: Bytes,
}

/// Either kind of message.
#[derive(Debug, Clone)]
pub enum SipMessage {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// Typed access shared by requests and responses.
pub trait HeaderAccess {
    /// The headers.
    fn headers(&self) -> &Headers;

    /// Raw values of one header, in order.
    fn raw_values<'a>(&'a self, name: &'a Name) -> Box<dyn Iterator<Item = &'a str> + 'a> {
        Box::new(self.headers().get_raw(name).map(|v| v.as_str()))
    }

    /// First raw value of a header.
    fn raw(&self, name: &Name) -> Option<&str> {
        self.headers().get_raw(name).next().map(|v| v.as_str())
    }

    /// Call-ID.
    fn call_id(&self) -> Result<&str> {
        self.raw(&Name::CALL_ID)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ParseError::new("missing Call-ID header"))
    }

    /// CSeq.
    fn cseq(&self) -> Result<CSeq> {
        let mut it = self.headers().get_raw(&Name::CSEQ);
        match (it.next(), it.next()) {
            (Some(v), None) => CSeq::parse(v),
            (None, _) => Err(ParseError::new("missing CSeq header")),
            (Some(_), Some(_)) => Err(ParseError::new("more than one CSeq header")),
        }
    }

    /// From.
    fn header_from(&self) -> Result<NameAddr> {
        single(self.headers(), &Name::FROM, "From")
    }

    /// To.
    fn header_to(&self) -> Result<NameAddr> {
        single(self.headers(), &Name::TO, "To")
    }

    /// All Via values, topmost first.
    fn vias(&self) -> Result<Vec<ViaHeader>> {
        parse_vias(self.headers().get_raw(&Name::VIA).map(Value::as_str))
    }

    /// Topmost Via.
    fn top_via(&self) -> Result<ViaHeader> {
        let first = self
            .raw(&Name::VIA)
            .ok_or_else(|| ParseError::new("missing Via header"))?;
        ViaHeader::parse(header::first_item(first))
    }

    /// All Contact values (or `*`).
    fn contacts(&self) -> Result<ContactList> {
        parse_contacts(self.headers().get_raw(&Name::CONTACT).map(Value::as_str))
    }

    /// Max-Forwards, when present.
    fn max_forwards(&self) -> Result<Option<u32>> {
        self.raw(&Name::MAX_FORWARDS)
            .map(|v| {
                parse_u32(v, "Max-Forwards").and_then(|n| {
                    if n > 255 {
                        Err(ParseError::new("Max-Forwards above 255"))
                    } else {
                        Ok(n)
                    }
                })
            })
            .transpose()
    }

    /// Expires header, when present.
    fn expires(&self) -> Result<Option<u32>> {
        self.raw(&Name::EXPIRES)
            .map(|v| parse_u32(v, "Expires"))
            .transpose()
    }

    /// Route values in order (name-addrs).
    fn routes(&self) -> Result<Vec<NameAddr>> {
        name_addr_list(
            self.headers().get_raw(&Name::ROUTE).map(Value::as_str),
            "Route",
        )
    }

    /// Record-Route values in order (name-addrs).
    fn record_routes(&self) -> Result<Vec<NameAddr>> {
        name_addr_list(
            self.headers()
                .get_raw(&Name::RECORD_ROUTE)
                .map(Value::as_str),
            "Record-Route",
        )
    }

    /// Content-Type, when present.
    fn content_type(&self) -> Option<&str> {
        self.raw(&Name::CONTENT_TYPE).map(str::trim)
    }
}

fn name_addr_list<'a>(values: impl Iterator<Item = &'a str>, what: &str) -> Result<Vec<NameAddr>> {
    let mut out = Vec::new();
    for v in values {
        for item in header::split_list(v) {
            out.push(NameAddr::parse(item, what)?);
        }
    }
    Ok(out)
}

fn single(headers: &Headers, name: &Name, what: &str) -> Result<NameAddr> {
    NameAddr::parse(single_value(headers, name, what)?, what)
}

/// The one value of a header that must appear exactly once.
fn single_value<'a>(headers: &'a Headers, name: &Name, what: &str) -> Result<&'a str> {
    let mut it = headers.get_raw(name);
    match (it.next(), it.next()) {
        (Some(v), None) => Ok(v.as_str()),
        (None, _) => Err(ParseError::new(format!("missing {what} header"))),
        (Some(_), Some(_)) => Err(ParseError::new(format!("more than one {what} header"))),
    }
}

/// The checks of [`single`] without keeping the value.
fn check_single(headers: &Headers, name: &Name, what: &str) -> Result<()> {
    NameAddr::check(single_value(headers, name, what)?, what)
}

impl HeaderAccess for Request {
    fn headers(&self) -> &Headers {
        &self.headers
    }
}

impl HeaderAccess for Response {
    fn headers(&self) -> &Headers {
        &self.headers
    }
}

impl Request {
    /// A request with no headers.
    pub fn new(method: Method, uri: Uri) -> Self {
        Self {
            method,
            uri,
            // Via, Max-Forwards, From, To, Call-ID, CSeq, Contact, a Route
            // or two, User-Agent, Content-Type: grown by reallocation
            // otherwise (4, 8, 16).
            headers: Headers::with_capacity(12),
            body: Bytes::new(),
        }
    }

    /// How many bytes [`Request::to_bytes`] prints, without printing.
    pub fn printed_len(&self) -> usize {
        let start = self.method.as_str().len() + 1 + self.uri.as_str().len() + " SIP/2.0".len();
        let headers: usize = self
            .headers
            .iter()
            .filter(|(name, _)| **name != Name::CONTENT_LENGTH)
            .map(|(name, value)| name.as_print_str().len() + 2 + value.len() + 2)
            .sum();
        let body = self.body.len();
        start + 2 + headers + "Content-Length: ".len() + decimal_len(body) + 4 + body
    }

    /// Print to wire format (Content-Length set from the body).
    pub fn to_bytes(&self) -> Bytes {
        print_message(
            |out| {
                out.push_str(self.method.as_str());
                out.push(' ');
                out.push_str(self.uri.as_str());
                out.push_str(" SIP/2.0");
            },
            &self.headers,
            &self.body,
        )
    }
}

impl Response {
    /// A response with no headers; reason from the code when empty.
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        if reason.is_empty() {
            reason = default_reason(code).to_string();
        } else if reason.chars().any(char::is_control) {
            // A reason may carry a peer's words (a B-leg's reason phrase, a
            // media node's error): it must not end the status line.
            reason = reason
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
        }
        Self {
            code,
            reason,
            // Via, From, To, Call-ID, CSeq, Server, a Contact or two.
            headers: Headers::with_capacity(10),
            body: Bytes::new(),
        }
    }

    /// Print to wire format (Content-Length set from the body).
    pub fn to_bytes(&self) -> Bytes {
        print_message(
            |out| {
                out.push_str("SIP/2.0 ");
                push_decimal(out, usize::from(self.code));
                out.push(' ');
                out.push_str(&self.reason);
            },
            &self.headers,
            &self.body,
        )
    }

    /// 1xx.
    pub fn is_provisional(&self) -> bool {
        self.code < 200
    }

    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// The standard reason phrase of a status code.
pub fn default_reason(code: u16) -> &'static str {
    ezk_sip_types::StatusCode::from(code)
        .text()
        .unwrap_or(match code {
            100..=199 => "Session Progress",
            200..=299 => "OK",
            300..=399 => "Redirection",
            400..=499 => "Request Failure",
            500..=599 => "Server Failure",
            _ => "Global Failure",
        })
}

/// Print a message: `start` writes the start line (without CRLF), then
/// the headers, Content-Length and the body, into one buffer sized up front.
fn print_message(start: impl FnOnce(&mut String), headers: &Headers, body: &[u8]) -> Bytes {
    let size = 80
        + headers
            .iter()
            .map(|(n, v)| n.as_print_str().len() + v.len() + 4)
            .sum::<usize>()
        + 24
        + body.len();
    let mut out = String::with_capacity(size);
    start(&mut out);
    out.push_str("\r\n");
    for (name, value) in headers.iter() {
        if *name == Name::CONTENT_LENGTH {
            continue;
        }
        out.push_str(name.as_print_str());
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("Content-Length: ");
    push_decimal(&mut out, body.len());
    out.push_str("\r\n\r\n");
    let mut buf = out.into_bytes();
    buf.extend_from_slice(body);
    Bytes::from(buf)
}

/// Digits of `n` in decimal.
fn decimal_len(mut n: usize) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

/// `n` in decimal, without the formatting machinery.
pub(crate) fn push_decimal(out: &mut String, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    for d in digits.get(i..).unwrap_or_default() {
        out.push(char::from(*d));
    }
}

impl SipMessage {
    /// Print to wire format.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            SipMessage::Request(r) => r.to_bytes(),
            SipMessage::Response(r) => r.to_bytes(),
        }
    }

    /// Parse one message from a datagram (or a framed stream message).
    ///
    /// `datagram` selects the UDP rule for a missing Content-Length (the
    /// body is the rest of the datagram) — on a stream the framer has
    /// already cut the message to Content-Length.
    pub fn parse(buf: &[u8], datagram: bool) -> Result<SipMessage> {
        // Leading CRLFs are keep-alives / stream noise (RFC 3261 §7.5).
        let start = buf
            .iter()
            .position(|b| *b != b'\r' && *b != b'\n')
            .ok_or_else(|| ParseError::new("empty message"))?;
        let buf = buf.get(start..).unwrap_or_default();
        let (head_len, body_start) =
            find_head_end(buf).ok_or_else(|| ParseError::new("no empty line after the headers"))?;
        let head_bytes = buf.get(..head_len).unwrap_or_default();
        let rest = buf.get(body_start..).unwrap_or_default();
        let (head, utf8_ok) = match std::str::from_utf8(head_bytes) {
            Ok(s) => (std::borrow::Cow::Borrowed(s), true),
            Err(_) => (String::from_utf8_lossy(head_bytes), false),
        };

        let mut lines = unfold(&head).into_iter();
        let first = lines.next().unwrap_or_default();
        let mut header_error: Option<String> = None;
        if first.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            header_error = Some("control character in the start line".into());
        }
        let is_request = !first.starts_with("SIP/");
        let mut headers = Headers::with_capacity(16);
        // Every value not folded is a slice of this one copy of the head.
        let text: std::sync::Arc<str> = std::sync::Arc::from(&*head);
        for line in lines {
            match line.split_once(':') {
                Some((name, value))
                    if !name.trim().is_empty()
                        && name.trim().bytes().all(|b| b.is_ascii_graphic()) =>
                {
                    let value = value.trim();
                    // RFC 3261 §25.1: header values are TEXT-UTF8 and LWS, no
                    // CTLs. A bare CR, a NUL or an ESC inside a value is
                    // refused here, so no received value can carry one into
                    // a response or a log (issue #13).
                    if has_bare_control(value) {
                        header_error.get_or_insert_with(|| {
                            format!(
                                "control character in the {} header",
                                truncate(name.trim(), 40)
                            )
                        });
                        // Kept (control characters made spaces) so the 400
                        // can still be addressed; never echoed raw.
                        headers.insert(Name::new(name.trim()), Value::from(value));
                        continue;
                    }
                    let value = match offset_in(&head, value) {
                        Some(at) => Value::shared(&text, at..at + value.len()),
                        None => Value::from(value),
                    };
                    headers.insert(Name::new(name.trim()), value);
                }
                _ => {
                    header_error.get_or_insert_with(|| {
                        format!("malformed header line {:?}", truncate(&line, 40))
                    });
                }
            }
        }
        let fail = |reason: String, status: u16, headers: Headers| ParseError {
            reason,
            status,
            is_request,
            headers: Some(headers),
        };
        if !utf8_ok {
            return Err(fail("message head is not UTF-8".into(), 400, headers));
        }
        if let Some(e) = header_error {
            return Err(fail(e, 400, headers));
        }

        let body = match content_length(&headers) {
            Err(e) => return Err(fail(e.reason, 400, headers)),
            Ok(Some(n)) => match rest.get(..n) {
                Some(b) => Bytes::copy_from_slice(b),
                None => {
                    return Err(fail(
                        "Content-Length larger than the message body".into(),
                        400,
                        headers,
                    ));
                }
            },
            Ok(None) if datagram => Bytes::copy_from_slice(rest),
            Ok(None) => Bytes::new(),
        };

        let message = if is_request {
            let (method, uri) = match parse_request_line(&first) {
                Ok(v) => v,
                Err(e) => return Err(fail(e.reason, e.status, headers)),
            };
            SipMessage::Request(Request {
                method,
                uri,
                headers,
                body,
            })
        } else {
            let (code, reason) = match parse_status_line(&first) {
                Ok(v) => v,
                Err(e) => return Err(fail(e.reason, e.status, headers)),
            };
            SipMessage::Response(Response {
                code,
                reason,
                headers,
                body,
            })
        };
        if let Err(e) = validate(&message) {
            let (status, headers) = match message {
                SipMessage::Request(r) => (e.status, r.headers),
                SipMessage::Response(r) => (e.status, r.headers),
            };
            return Err(fail(e.reason, status, headers));
        }
        Ok(message)
    }
}

/// Whether a header value holds a control character (but HTAB) other than
/// as a `quoted-pair` inside a quoted string (RFC 3261 §25.1 allows `\`
/// followed by any character but CR and LF there: RFC 4475's `intmeth` has
/// BEL, NUL and DEL that way).
fn has_bare_control(value: &str) -> bool {
    let ctl = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f;
    // Fast path: almost every value has no control character at all.
    if !value.bytes().fold(false, |bad, b| bad | ctl(b)) {
        return false;
    }
    let mut quoted = false;
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'"' => quoted = !quoted,
            b'\\' if quoted => match bytes.next() {
                Some(b'\r' | b'\n') | None => return true,
                Some(_) => {}
            },
            b if ctl(b) => return true,
            _ => {}
        }
    }
    false
}

/// Where `part` starts in `whole`, when it is a slice of it.
fn offset_in(whole: &str, part: &str) -> Option<usize> {
    let at = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (at + part.len() <= whole.len()).then_some(at)
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Index of the end of the head and of the start of the body.
pub(crate) fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        if buf.get(i) == Some(&b'\n') {
            match (buf.get(i + 1), buf.get(i + 2)) {
                (Some(b'\n'), _) => return Some((i, i + 2)),
                (Some(b'\r'), Some(b'\n')) => return Some((i, i + 3)),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// Split the head into logical lines, joining folded continuation lines
/// (RFC 3261 §7.3.1) with a single space.
fn unfold(head: &str) -> Vec<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    let mut out: Vec<Cow<'_, str>> = Vec::with_capacity(16);
    for line in head.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            let len = out.len();
            if len > 1
                && let Some(last) = out.last_mut()
            {
                let joined = last.to_mut();
                joined.push(' ');
                joined.push_str(line.trim());
                continue;
            }
            // Whitespace before the start line or a continuation of it.
            out.push(Cow::Borrowed(line));
            continue;
        }
        if line.is_empty() {
            continue;
        }
        out.push(Cow::Borrowed(line));
    }
    out
}

/// The Content-Length header: several differing values or a bad value are
/// errors (RFC 4475 mcl01, ncl).
pub(crate) fn content_length(headers: &Headers) -> Result<Option<usize>> {
    let mut value = None;
    for v in headers.get_raw(&Name::CONTENT_LENGTH) {
        let n = parse_u32(v, "Content-Length")? as usize;
        if value.is_some_and(|old| old != n) {
            return Err(ParseError::new("multiple differing Content-Length headers"));
        }
        value = Some(n);
    }
    Ok(value)
}

fn parse_request_line(line: &str) -> Result<(Method, Uri)> {
    // Exactly single spaces (RFC 3261 §7.1, RFC 4475 lwsstart, trws).
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::new("malformed Request-Line"));
    };
    if method.is_empty()
        || !method
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c))
    {
        return Err(ParseError::new("malformed method in Request-Line"));
    }
    if uri.starts_with('<') {
        return Err(ParseError::new("Request-URI must not be enclosed in <>"));
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        let mut e = ParseError::new("SIP version not supported");
        e.status = 505;
        if version.starts_with("SIP/") {
            return Err(e);
        }
        return Err(ParseError::new("malformed SIP version in Request-Line"));
    }
    let uri = Uri::parse(uri).ok_or_else(|| ParseError::new("malformed Request-URI"))?;
    Ok((Method::from_token(method), uri))
}

fn parse_status_line(line: &str) -> Result<(u16, String)> {
    let rest = line
        .strip_prefix("SIP/2.0 ")
        .ok_or_else(|| ParseError::new("malformed Status-Line"))?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let code: u16 = code
        .parse()
        .ok()
        .filter(|c| (100..700).contains(c))
        .ok_or_else(|| ParseError::new("malformed status code"))?;
    Ok((code, reason.trim().to_string()))
}

/// Checks every message must pass (RFC 3261 §8.1.1: the six mandatory
/// headers; RFC 4475 §3.1.2).
fn validate(message: &SipMessage) -> Result<()> {
    let h: &dyn HeaderAccess = match message {
        SipMessage::Request(r) => r,
        SipMessage::Response(r) => r,
    };
    h.vias()?;
    check_single(h.headers(), &Name::FROM, "From")?;
    check_single(h.headers(), &Name::TO, "To")?;
    h.call_id()?;
    let cseq = h.cseq()?;
    h.max_forwards()?;
    h.expires()?;
    header::check_contacts(h.headers().get_raw(&Name::CONTACT).map(Value::as_str))?;
    if let SipMessage::Request(r) = message {
        if cseq.method != r.method {
            return Err(ParseError::new(
                "CSeq method does not match the request method",
            ));
        }
        if !r.uri.is_supported_scheme() {
            let mut e = ParseError::new("Unsupported URI Scheme");
            e.status = 416;
            return Err(e);
        }
    }
    Ok(())
}

impl ParseError {
    /// The response for a request that failed to parse, when the headers a
    /// response needs (Via, From, To, Call-ID, CSeq) are there.
    pub fn to_response(&self) -> Option<Response> {
        if !self.is_request {
            return None;
        }
        let h = self.headers.as_ref()?;
        let mut resp = Response::new(self.status, reason_phrase(self.status, &self.reason));
        for name in [Name::VIA, Name::FROM, Name::TO, Name::CALL_ID, Name::CSEQ] {
            let mut any = false;
            for v in h.get_raw(&name) {
                resp.headers.insert(name.clone(), v.clone());
                any = true;
            }
            if !any {
                return None;
            }
        }
        if !resp.headers.get_raw(&Name::TO).any(|t| t.contains("tag=")) {
            edit_to_tag(&mut resp.headers, &super::random_token(10));
        }
        Some(resp)
    }
}

fn reason_phrase(status: u16, reason: &str) -> String {
    match status {
        400 => format!("Bad Request ({reason})"),
        _ => reason.to_string(),
    }
}

/// Append `;tag=` to the To header when it has none.
pub fn edit_to_tag(headers: &mut Headers, tag: &str) {
    for v in headers.values_mut(&Name::TO) {
        if !v.contains("tag=") {
            v.push_str(&format!(";tag={tag}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds, SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKx\r\n\
Max-Forwards: 70\r\n\
t: Bob <sip:bob@example.com>\r\n\
f: \"Alice\" <tel:+15550100>;tag=1928301774\r\n\
i: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Subject: folded\r\n  line\r\n\
m: <sip:alice@10.0.0.1>\r\n\
c: application/sdp\r\n\
l: 4\r\n\r\nv=0\r\n";

    #[test]
    fn printed_len_is_what_to_bytes_prints() {
        let SipMessage::Request(parsed) =
            SipMessage::parse(INVITE.as_bytes(), true).expect("parses")
        else {
            panic!("a request");
        };
        let mut built = Request::new(Method::Bye, Uri::parse("tel:+15550100").expect("uri"));
        built.headers.insert(Name::CSEQ, "2 BYE");
        let mut big = parsed.clone();
        big.body = Bytes::from(vec![b'x'; 12_345]);
        for r in [parsed, built, big] {
            assert_eq!(r.printed_len(), r.to_bytes().len(), "{r:?}");
        }
    }

    #[test]
    fn control_characters_in_headers_are_refused() {
        for (what, bad) in [
            ("bare CR", "Subject: a\rX-Injected: b\r\n"),
            ("NUL", "Subject: a\0b\r\n"),
            ("ESC", "User-Agent: \x1b[2Jphone\r\n"),
            ("DEL", "Subject: a\x7fb\r\n"),
        ] {
            let msg = INVITE.replace(
                "Max-Forwards: 70\r\n",
                &format!("Max-Forwards: 70\r\n{bad}"),
            );
            let e = SipMessage::parse(msg.as_bytes(), true).expect_err(what);
            assert_eq!(e.status, 400, "{what}");
            assert!(
                e.reason.contains("control character"),
                "{what}: {}",
                e.reason
            );
        }
        let tab = INVITE.replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nSubject: a\tb\r\n",
        );
        assert!(
            SipMessage::parse(tab.as_bytes(), true).is_ok(),
            "HTAB is LWS"
        );
        // A quoted-pair may escape a control character (RFC 4475 intmeth).
        let pair = INVITE.replace(
            "t: Bob <sip:bob@example.com>",
            "t: \"BEL:\\\x07 NUL:\\\0 DEL:\\\x7f\" <sip:bob@example.com>",
        );
        assert!(
            SipMessage::parse(pair.as_bytes(), true).is_ok(),
            "quoted-pairs"
        );
        let unquoted = INVITE.replace(
            "t: Bob <sip:bob@example.com>",
            "t: Bob\\\x07 <sip:bob@example.com>",
        );
        assert!(
            SipMessage::parse(unquoted.as_bytes(), true).is_err(),
            "a backslash outside quotes escapes nothing"
        );
        let bad_start = INVITE.replace("SIP/2.0\r\nv:", "SIP/2.0\x1b\r\nv:");
        assert!(SipMessage::parse(bad_start.as_bytes(), true).is_err());
    }

    #[test]
    fn parses_compact_folded_multi_value() {
        let SipMessage::Request(r) = SipMessage::parse(INVITE.as_bytes(), true).expect("parses")
        else {
            panic!("not a request")
        };
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.vias().expect("vias").len(), 2);
        assert_eq!(r.call_id().expect("cid"), "a84b4c76e66710@pc33.example.com");
        assert_eq!(r.raw(&Name::SUBJECT), Some("folded line"));
        assert_eq!(r.header_from().expect("from").tag(), Some("1928301774"));
        assert!(r.routes().expect("no routes").is_empty());
        assert_eq!(&r.body[..], b"v=0\r");
        let again = SipMessage::parse(&r.to_bytes(), false).expect("round trip");
        assert!(matches!(again, SipMessage::Request(_)));
    }

    #[test]
    fn errors_carry_reason_and_response() {
        let bad = INVITE.replace("CSeq: 314159 INVITE", "CSeq: 314159 OPTIONS");
        let e = SipMessage::parse(bad.as_bytes(), true).expect_err("mismatch");
        assert!(e.reason.contains("CSeq method"), "{e}");
        let resp = e.to_response().expect("answerable");
        assert_eq!(resp.code, 400);
        assert!(resp.reason.contains("CSeq method"));
        let e = SipMessage::parse(b"garbage\r\n\r\n", true).expect_err("garbage");
        assert!(e.to_response().is_none());
    }

    #[test]
    fn decimals() {
        for n in [0usize, 7, 10, 200, 65_535, usize::MAX] {
            let mut s = String::new();
            push_decimal(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }

    #[test]
    fn unknown_method_parses() {
        let m = INVITE
            .replace("INVITE sip:", "FOO sip:")
            .replace("314159 INVITE", "314159 FOO");
        let SipMessage::Request(r) = SipMessage::parse(m.as_bytes(), true).expect("parses") else {
            panic!("not a request")
        };
        assert_eq!(r.method, Method::Other("FOO".into()));
    }
}
