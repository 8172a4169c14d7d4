//! The two headers capture needs, read straight off the wire bytes: the
//! Call-ID (which call a message belongs to) and whether the CSeq method
//! is INVITE (only an INVITE may start a new capture). No full parse: the
//! tap sees every message, before the transaction layer parses it, and a
//! malformed one must cost nothing more than a scan of its head
//! ([`crate::sip::peek`]).

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
/// (keep-alives, garbage) or one longer than [`MAX_CALL_ID`] or not UTF-8.
/// The scan is [`crate::sip::peek`] (one pass over the head), shared with
/// the UDP workers; it runs for every message sent and received while
/// capture is on.
pub fn head(data: &[u8]) -> Option<Head<'_>> {
    let p = crate::sip::peek::peek(data, true);
    let id = p.call_id.filter(|v| v.len() <= MAX_CALL_ID)?;
    Some(Head {
        call_id: std::str::from_utf8(id).ok()?,
        invite: p.invite,
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

    /// The obvious reading: split the head off at the first empty line,
    /// then look at every header line.
    fn slow_head(data: &[u8]) -> Option<Head<'_>> {
        let mut call_id: Option<&[u8]> = None;
        let mut invite = false;
        for line in data.split(|b| *b == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                break;
            }
            if line.first().is_some_and(|b| b.is_ascii_whitespace()) {
                continue; // a folded value, not a header
            }
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            let name = line[..colon].trim_ascii_end().to_ascii_lowercase();
            let value = line[colon + 1..].trim_ascii();
            if (name == b"call-id" || name == b"i") && call_id.is_none() && !value.is_empty() {
                call_id = Some(value);
            } else if name == b"cseq" {
                let words: Vec<&[u8]> = value
                    .split(|b| b.is_ascii_whitespace())
                    .filter(|w| !w.is_empty())
                    .collect();
                invite = words.get(1) == Some(&&b"INVITE"[..]);
            }
            if call_id.is_some() && invite {
                break;
            }
        }
        let id = call_id.filter(|v| v.len() <= MAX_CALL_ID)?;
        Some(Head {
            call_id: std::str::from_utf8(id).ok()?,
            invite,
        })
    }

    #[test]
    fn agrees_with_the_obvious_reading() {
        let base: &[&[u8]] = &[
            b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nContact: <sip:a@h>\r\nCall-ID: abc@h\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            b"SIP/2.0 200 OK\r\ni: xyz\r\ncseq: 2 BYE\r\n\r\nCall-ID: body\r\n",
            b"BYE x SIP/2.0\nCSeq: 3 INVITE\n call-id : q \n\nCSeq: 4 BYE\n",
            b"ACK x SIP/2.0\r\nCSeq: 1 INVITE\r\nCSeq: 2 BYE\r\nI:z\r\n",
            b"X\r\n\r\nCall-ID: after-the-head\r\n",
            b"X\nCall-ID:\r\ni: second\r\n",
        ];
        // Every message, and every prefix of it (datagrams cut short).
        let mut seed = 0x9e37_79b9_u32;
        for m in base {
            for cut in 0..=m.len() {
                let d = &m[..cut];
                assert_eq!(head(d), slow_head(d), "{:?}", String::from_utf8_lossy(d));
            }
            // Random bytes of the SIP alphabet flipped in.
            for _ in 0..2000 {
                let mut d = m.to_vec();
                for _ in 0..3 {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    let at = seed as usize % d.len();
                    let alphabet = b"\r\n: iIcC-";
                    d[at] = alphabet[(seed >> 8) as usize % alphabet.len()];
                }
                assert_eq!(head(&d), slow_head(&d), "{:?}", String::from_utf8_lossy(&d));
            }
        }
    }
}
