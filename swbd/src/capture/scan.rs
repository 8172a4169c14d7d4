//! The two headers capture needs, read straight off the wire bytes: the
//! Call-ID (which call a message belongs to) and whether the CSeq method
//! is INVITE (only an INVITE may start a new capture). No full parse: the
//! tap sees every message, before the transaction layer parses it, and a
//! malformed one must cost nothing more than a scan of its head.

/// Longest Call-ID taken (a longer one is not captured per call).
const MAX_CALL_ID: usize = 256;

/// What capture reads of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head<'a> {
    /// Call-ID value, trimmed.
    pub call_id: &'a str,
    /// The CSeq method is INVITE.
    pub invite: bool,
}

/// Call-ID and CSeq of a SIP message, or `None` when it has no Call-ID
/// (keep-alives, garbage).
pub fn head(data: &[u8]) -> Option<Head<'_>> {
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    let head = data.get(..end)?;
    let mut call_id = None;
    let mut invite = false;
    // The start line is skipped: it never starts with a header name and colon.
    for line in head.split(|b| *b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let name = name.trim_ascii();
        let value = value.get(1..).unwrap_or_default().trim_ascii();
        if name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i") {
            if call_id.is_none() && !value.is_empty() && value.len() <= MAX_CALL_ID {
                call_id = std::str::from_utf8(value).ok();
            }
        } else if name.eq_ignore_ascii_case(b"cseq") {
            invite = value
                .split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty())
                .nth(1)
                .is_some_and(|m| m == b"INVITE");
        }
        if call_id.is_some() && invite {
            break;
        }
    }
    Some(Head {
        call_id: call_id?,
        invite,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_call_id_and_invite_cseq() {
        let m = b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCall-ID:  abc@h \r\nCSeq: 1 INVITE\r\n\r\nv=0\r\nCall-ID: body\r\n";
        assert_eq!(
            head(m),
            Some(Head {
                call_id: "abc@h",
                invite: true
            })
        );
        let r = b"SIP/2.0 200 OK\r\ni: xyz\r\ncseq: 2 BYE\r\n\r\n";
        assert_eq!(
            head(r),
            Some(Head {
                call_id: "xyz",
                invite: false
            })
        );
    }

    #[test]
    fn no_call_id_no_head() {
        assert_eq!(head(b"\r\n\r\n"), None);
        assert_eq!(head(b""), None);
        assert_eq!(head(b"garbage"), None);
        let long = format!("OPTIONS x SIP/2.0\r\nCall-ID: {}\r\n\r\n", "a".repeat(300));
        assert_eq!(head(long.as_bytes()), None);
        assert_eq!(
            head(b"OPTIONS x SIP/2.0\r\nCall-ID: \xff\xfe\r\n\r\n"),
            None
        );
    }
}
