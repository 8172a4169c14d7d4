//! A datagram's Call-ID before any parsing: which UDP worker handles it
//! ([`super::workers`]) is chosen from it, so the messages of one call keep
//! their arrival order. The scan is [`crate::sip::peek`] (shared with SIP
//! capture); it validates nothing: a message it misreads is only handled
//! on another worker, and the parser still rejects what is malformed.

/// The Call-ID value of the message head in `data` (trimmed), or `None`
/// when the head names none (or names it empty).
pub fn call_id(data: &[u8]) -> Option<&[u8]> {
    crate::sip::peek::peek(data, false).call_id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::HeaderAccess;
    use crate::sip::{Request, SipMessage};

    fn head(headers: &str) -> Vec<u8> {
        format!("INFO sip:b@x SIP/2.0\r\n{headers}\r\n").into_bytes()
    }

    #[test]
    fn long_and_compact_forms_any_case_spaces_around_the_colon() {
        for (h, want) in [
            ("Call-ID: abc@h\r\n", Some(&b"abc@h"[..])),
            ("call-id:abc\r\n", Some(b"abc")),
            ("CALL-ID   :   abc  \r\n", Some(b"abc")),
            ("i: xyz\r\n", Some(b"xyz")),
            ("I:xyz\n", Some(b"xyz")),
            (
                "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:b@x>\r\nCall-ID: c1\r\n",
                Some(b"c1"),
            ),
            ("Call-ID:\r\n", None),
            ("Call-IDx: no\r\n", None),
            ("X-Call-ID: no\r\n", None),
            ("Subject: a\r\n i: folded, not a header\r\n", None),
            ("", None),
        ] {
            assert_eq!(call_id(&head(h)), want, "{h:?}");
        }
    }

    #[test]
    fn the_body_is_not_the_head() {
        let msg = b"INFO sip:b@x SIP/2.0\r\nContent-Length: 11\r\n\r\ni: in-body\r\n";
        assert_eq!(call_id(msg), None);
        assert_eq!(call_id(b""), None);
        assert_eq!(call_id(b"\0SWB"), None);
    }

    #[test]
    fn agrees_with_the_parser_on_well_formed_messages() {
        // The scan against the full parser, on long and compact forms.
        for (i, form) in ["Call-ID", "i", "call-ID", "CALL-ID "].iter().enumerate() {
            let text = format!(
                "OPTIONS sip:b@example.com SIP/2.0\r\n\
                 Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{i}\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:a@example.com>;tag=f{i}\r\n\
                 To: <sip:b@example.com>\r\n\
                 {form}: id-{i}@127.0.0.1\r\n\
                 CSeq: 1 OPTIONS\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            let parsed: Request = match SipMessage::parse(text.as_bytes(), true) {
                Ok(SipMessage::Request(r)) => r,
                other => panic!("{form}: {other:?}"),
            };
            let want = parsed.call_id().expect("a Call-ID");
            assert_eq!(call_id(text.as_bytes()), Some(want.as_bytes()), "{form}");
        }
    }
}
