//! A look at a message's head before any parsing: the Call-ID and whether
//! the CSeq method is INVITE, read straight off the wire bytes. The UDP
//! workers pick a message's worker by its Call-ID (`transport::workers`),
//! and SIP capture files it under its call (`capture::scan`); both see
//! every datagram, malformed ones included, so this validates nothing and
//! costs one pass over the head (`memchr` for line ends; only lines whose
//! name starts with `c` or `i` are looked at further).
//!
//! Names are case-insensitive, the compact form `i` (RFC 3261 §7.3.3) is
//! accepted, spaces before the colon too. The head ends at the first
//! empty line. Continuation lines (leading white space: a folded value of
//! another header) are never headers. The first non-empty Call-ID counts.

/// What [`peek`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peek<'a> {
    /// The first non-empty Call-ID value, trimmed.
    pub call_id: Option<&'a [u8]>,
    /// The CSeq method is INVITE (only looked for with `want_cseq`).
    pub invite: bool,
}

/// The Call-ID (and, with `want_cseq`, the CSeq method) of the head of
/// `data`. Without `want_cseq` the scan stops at the Call-ID.
pub fn peek(data: &[u8], want_cseq: bool) -> Peek<'_> {
    let mut out = Peek::default();
    // The start line is skipped: it is never a header.
    let Some(mut rest) = memchr::memchr(b'\n', data).and_then(|nl| data.get(nl + 1..)) else {
        return out;
    };
    loop {
        let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let line = rest.get(..end).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line.first(), Some(b'c' | b'C' | b'i' | b'I')) {
            header(line, &mut out);
            if out.call_id.is_some() && (out.invite || !want_cseq) {
                break;
            }
        }
        match rest.get(end + 1..) {
            Some(r) => rest = r,
            None => break,
        }
    }
    out
}

/// One header line: note the first Call-ID, or a CSeq's method.
fn header<'a>(line: &'a [u8], out: &mut Peek<'a>) {
    let Some(colon) = memchr::memchr(b':', line) else {
        return;
    };
    let (name, value) = line.split_at(colon);
    let name = name.trim_ascii_end();
    let value = value.get(1..).unwrap_or_default().trim_ascii();
    if name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i") {
        if out.call_id.is_none() && !value.is_empty() {
            out.call_id = Some(value);
        }
    } else if name.eq_ignore_ascii_case(b"cseq") {
        out.invite = value
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .nth(1)
            .is_some_and(|m| m == b"INVITE");
    }
}
