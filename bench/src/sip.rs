//! Just enough SIP (RFC 3261) for a load generator: a zero-policy parser that
//! splits start line, headers and body, and builders for the few requests
//! and responses the UAC and UAS send. No I/O here.

use std::fmt::Write as _;
use std::net::SocketAddr;

/// Why a datagram is not a SIP message we can use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("not UTF-8")]
    NotUtf8,
    #[error("no blank line after the headers")]
    NoHeaderEnd,
    #[error("bad start line")]
    StartLine,
    #[error("missing {0} header")]
    Missing(&'static str),
}

/// Request or response start line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { code: u16 },
}

/// A parsed message: header names are canonical long forms, lower case.
#[derive(Debug, Clone)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// RFC 3261 §7.3.3 compact forms to long names.
fn long_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "i" => "call-id".into(),
        "v" => "via".into(),
        "f" => "from".into(),
        "t" => "to".into(),
        "m" => "contact".into(),
        "l" => "content-length".into(),
        "c" => "content-type".into(),
        _ => lower,
    }
}

impl Message {
    pub fn parse(data: &[u8]) -> Result<Message, ParseError> {
        let text = std::str::from_utf8(data).map_err(|_| ParseError::NotUtf8)?;
        let (head, body) = text.split_once("\r\n\r\n").ok_or(ParseError::NoHeaderEnd)?;
        let mut lines = head.split("\r\n");
        let first = lines.next().ok_or(ParseError::StartLine)?;
        let start = if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
            let code = rest
                .split(' ')
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (100..700).contains(c))
                .ok_or(ParseError::StartLine)?;
            StartLine::Response { code }
        } else {
            let mut parts = first.split(' ');
            let method = parts.next().filter(|m| !m.is_empty());
            let uri = parts.next();
            match (method, uri, parts.next()) {
                (Some(m), Some(u), Some("SIP/2.0")) => StartLine::Request {
                    method: m.to_string(),
                    uri: u.to_string(),
                },
                _ => return Err(ParseError::StartLine),
            }
        };
        let mut headers: Vec<(String, String)> = Vec::with_capacity(16);
        for line in lines {
            if line.starts_with([' ', '\t']) {
                // RFC 3261 §7.3.1 folded continuation
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
                continue;
            }
            if let Some((n, v)) = line.split_once(':') {
                headers.push((long_name(n.trim()), v.trim().to_string()));
            }
        }
        let msg = Message {
            start,
            headers,
            body: body.to_string(),
        };
        if msg.header("call-id").is_none() {
            return Err(ParseError::Missing("Call-ID"));
        }
        if msg.header("cseq").is_none() {
            return Err(ParseError::Missing("CSeq"));
        }
        Ok(msg)
    }

    /// First value of a header (long lower-case name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, comma-separated values split for Via/Record-Route.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| split_list(v))
            .collect()
    }

    pub fn call_id(&self) -> &str {
        self.header("call-id").unwrap_or_default()
    }

    /// `(number, method)` of CSeq.
    pub fn cseq(&self) -> (u32, &str) {
        let v = self.header("cseq").unwrap_or_default();
        let mut it = v.split_whitespace();
        let n = it.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        (n, it.next().unwrap_or_default())
    }

    pub fn code(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The `tag` parameter of To or From.
    pub fn tag(&self, header: &str) -> Option<&str> {
        param(self.header(header)?, "tag")
    }

    /// The URI inside the first Contact, without `<>` and header params.
    pub fn contact_uri(&self) -> Option<String> {
        self.header("contact").map(|c| name_addr_uri(c).to_string())
    }

    /// Branch of the top Via.
    pub fn branch(&self) -> Option<&str> {
        param(self.header_all("via").first()?, "branch")
    }
}

/// Split a header value at commas outside quotes and angle brackets.
pub fn split_list(v: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut start) = (false, false, 0);
    for (i, ch) in v.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(v[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(v[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

/// `;name=value` parameter of a header value (outside `<>`).
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let after = match value.rfind('>') {
        Some(i) => value.get(i + 1..)?,
        None => value,
    };
    after.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The URI of a name-addr (`"x" <sip:u@h;lr>;tag=1` -> `sip:u@h;lr`).
pub fn name_addr_uri(v: &str) -> &str {
    match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v.split(';').next().unwrap_or(v).trim(),
    }
}

/// `(ip, port)` of the audio stream in an SDP body.
pub fn sdp_media_addr(body: &str) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for line in body.lines() {
        if let Some(c) = line.strip_prefix("c=IN IP4 ") {
            ip = c.trim().parse::<std::net::IpAddr>().ok();
        }
        if let Some(m) = line.strip_prefix("m=audio ") {
            port = m.split_whitespace().next()?.parse::<u16>().ok();
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

/// A PCMU-only SDP offer/answer for `port` on 127.0.0.1.
pub fn sdp(port: u16, session: u64) -> String {
    format!(
        "v=0\r\no=swbench {session} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// Fields of an outgoing request.
#[derive(Debug, Clone)]
pub struct RequestSpec<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub via_host: SocketAddr,
    pub branch: &'a str,
    pub from: &'a str,
    pub from_tag: &'a str,
    pub to: &'a str,
    pub to_tag: Option<&'a str>,
    pub call_id: &'a str,
    pub cseq: u32,
    pub contact: Option<&'a str>,
    pub routes: &'a [String],
    /// Extra `Name: value` lines (Authorization, Expires ...), without CRLF.
    pub extra: &'a [String],
    pub body: Option<&'a str>,
}

impl RequestSpec<'_> {
    pub fn build(&self) -> String {
        let mut m = String::with_capacity(512 + self.body.map_or(0, str::len));
        let _ = write!(
            m,
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: <{from}>;tag={ftag}\r\nTo: <{to}>",
            method = self.method,
            uri = self.uri,
            via = self.via_host,
            branch = self.branch,
            from = self.from,
            ftag = self.from_tag,
            to = self.to,
        );
        if let Some(t) = self.to_tag {
            let _ = write!(m, ";tag={t}");
        }
        let _ = write!(
            m,
            "\r\nCall-ID: {}\r\nCSeq: {} {}\r\n",
            self.call_id, self.cseq, self.method
        );
        for r in self.routes {
            let _ = write!(m, "Route: {r}\r\n");
        }
        if let Some(c) = self.contact {
            let _ = write!(m, "Contact: <{c}>\r\n");
        }
        for e in self.extra {
            m.push_str(e);
            m.push_str("\r\n");
        }
        m.push_str("User-Agent: swbench\r\n");
        match self.body {
            Some(b) => {
                let _ = write!(
                    m,
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len()
                );
            }
            None => m.push_str("Content-Length: 0\r\n\r\n"),
        }
        m
    }
}

/// A response to `req`: Via, From, Call-ID, CSeq copied; To gets `to_tag` if
/// it has none (RFC 3261 §8.2.6.2).
pub fn response(
    req: &Message,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    contact: Option<&str>,
    body: Option<&str>,
) -> String {
    let mut m = String::with_capacity(512 + body.map_or(0, str::len));
    let _ = write!(m, "SIP/2.0 {code} {reason}\r\n");
    for (n, v) in &req.headers {
        if n == "via" || n == "record-route" {
            let name = if n == "via" { "Via" } else { "Record-Route" };
            let _ = write!(m, "{name}: {v}\r\n");
        }
    }
    let to = req.header("to").unwrap_or_default();
    let _ = write!(
        m,
        "From: {}\r\nTo: {to}",
        req.header("from").unwrap_or_default()
    );
    if let Some(t) = to_tag
        && param(to, "tag").is_none()
    {
        let _ = write!(m, ";tag={t}");
    }
    let _ = write!(
        m,
        "\r\nCall-ID: {}\r\nCSeq: {}\r\n",
        req.call_id(),
        req.header("cseq").unwrap_or_default()
    );
    if let Some(c) = contact {
        let _ = write!(m, "Contact: <{c}>\r\n");
    }
    match body {
        Some(b) => {
            let _ = write!(
                m,
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            );
        }
        None => m.push_str("Content-Length: 0\r\n\r\n"),
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:1002@127.0.0.1 SIP/2.0\r\n\
        v: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK1, SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK2\r\n\
        f: \"A, B\" <sip:1001@127.0.0.1>;tag=abc\r\nt: <sip:1002@127.0.0.1>\r\ni: cid-1\r\n\
        CSeq: 7 INVITE\r\nm: <sip:1001@127.0.0.1:5090;transport=udp>\r\n\
        Record-Route: <sip:127.0.0.1;lr;ftag=abc>\r\n\
        Subject: folded\r\n  line\r\nl: 5\r\n\r\nhello";

    #[test]
    fn parses_compact_forms_folding_and_lists() {
        let m = Message::parse(INVITE.as_bytes()).unwrap();
        assert_eq!(m.method(), Some("INVITE"));
        assert_eq!(m.call_id(), "cid-1");
        assert_eq!(m.cseq(), (7, "INVITE"));
        assert_eq!(m.tag("from"), Some("abc"));
        assert_eq!(m.tag("to"), None);
        assert_eq!(m.header_all("via").len(), 2);
        assert_eq!(m.branch(), Some("z9hG4bK1"));
        assert_eq!(
            m.contact_uri().as_deref(),
            Some("sip:1001@127.0.0.1:5090;transport=udp")
        );
        assert_eq!(m.header("subject"), Some("folded line"));
        assert_eq!(m.body, "hello");
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(
            Message::parse(b"hello").unwrap_err(),
            ParseError::NoHeaderEnd
        );
        assert_eq!(
            Message::parse(b"SIP/2.0 99 X\r\n\r\n").unwrap_err(),
            ParseError::StartLine
        );
        assert_eq!(
            Message::parse(b"SIP/2.0 200 OK\r\nCSeq: 1 X\r\n\r\n").unwrap_err(),
            ParseError::Missing("Call-ID")
        );
        assert!(Message::parse(&[0xff, 0xfe, b'\r', b'\n', b'\r', b'\n']).is_err());
    }

    #[test]
    fn response_copies_vias_and_adds_tag_once() {
        let req = Message::parse(INVITE.as_bytes()).unwrap();
        let r = response(&req, 180, "Ringing", Some("t1"), Some("sip:u@h"), None);
        let p = Message::parse(r.as_bytes()).unwrap();
        assert_eq!(p.code(), Some(180));
        assert_eq!(p.header_all("via").len(), 2);
        assert_eq!(p.tag("to"), Some("t1"));
        assert_eq!(p.cseq(), (7, "INVITE"));
        assert_eq!(p.header("record-route"), req.header("record-route"));
        // An already tagged To keeps its tag.
        let again = response(&p_as_request(&p), 200, "OK", Some("t2"), None, Some("x"));
        assert_eq!(
            Message::parse(again.as_bytes()).unwrap().tag("to"),
            Some("t1")
        );
    }

    fn p_as_request(p: &Message) -> Message {
        let mut m = p.clone();
        m.start = StartLine::Request {
            method: "INVITE".into(),
            uri: "sip:x".into(),
        };
        m
    }

    #[test]
    fn request_builder_round_trips() {
        let routes = vec!["<sip:127.0.0.1:5060;lr>".to_string()];
        let body = sdp(4000, 1);
        let text = RequestSpec {
            method: "INVITE",
            uri: "sip:1002@127.0.0.1:5060",
            via_host: "127.0.0.1:7000".parse().unwrap(),
            branch: "z9hG4bKx",
            from: "sip:1001@127.0.0.1",
            from_tag: "ft",
            to: "sip:1002@127.0.0.1",
            to_tag: None,
            call_id: "c1",
            cseq: 3,
            contact: Some("sip:1001@127.0.0.1:7000"),
            routes: &routes,
            extra: &["Expires: 60".to_string()],
            body: Some(&body),
        }
        .build();
        let m = Message::parse(text.as_bytes()).unwrap();
        assert_eq!(m.cseq(), (3, "INVITE"));
        assert_eq!(m.branch(), Some("z9hG4bKx"));
        assert_eq!(m.header("route"), Some("<sip:127.0.0.1:5060;lr>"));
        assert_eq!(m.header("expires"), Some("60"));
        assert_eq!(
            m.header("content-length").and_then(|l| l.parse().ok()),
            Some(body.len())
        );
        assert_eq!(
            sdp_media_addr(&m.body),
            Some("127.0.0.1:4000".parse().unwrap())
        );
    }

    #[test]
    fn params_and_uris() {
        assert_eq!(param("<sip:a@b;tag=no>;tag=yes", "tag"), Some("yes"));
        assert_eq!(param("sip:a@b;lr", "lr"), Some(""));
        assert_eq!(name_addr_uri("\"x\" <sip:u@h;lr>;tag=1"), "sip:u@h;lr");
        assert_eq!(name_addr_uri("sip:u@h;tag=1"), "sip:u@h");
        assert_eq!(
            split_list("<sip:a;lr>, <sip:b,c>, \"q,\" <sip:d>"),
            vec!["<sip:a;lr>", "<sip:b,c>", "\"q,\" <sip:d>"]
        );
    }
}
