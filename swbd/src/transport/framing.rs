//! Stream framing (RFC 3261 §18.3): a message ends Content-Length bytes
//! after the empty line; a missing Content-Length on a stream means 0.

use bytes::{Bytes, BytesMut};

use crate::sip::message::find_head_end;

/// Why a stream cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The message (head, or head + body) exceeds the maximum size; `head`
    /// holds the head when it was complete, to answer 513.
    #[error("message larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
        /// The complete head, when there was one.
        head: Option<Bytes>,
    },
    /// Content-Length is not a number.
    #[error("malformed Content-Length on a stream")]
    BadContentLength,
}

/// Take the next complete message off `buf`, `Ok(None)` when more bytes are
/// needed. Leading CRLFs (keep-alives) are discarded.
pub fn next_message(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    let skip = buf
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(buf.len());
    let _ = buf.split_to(skip);
    if buf.is_empty() {
        return Ok(None);
    }
    let Some((head_len, body_start)) = find_head_end(buf) else {
        if buf.len() > max {
            return Err(FrameError::TooLarge { max, head: None });
        }
        return Ok(None);
    };
    let head = buf.get(..head_len).unwrap_or_default();
    let length = stream_content_length(head)?;
    let total = body_start.saturating_add(length);
    if total > max {
        let head = Bytes::copy_from_slice(buf.get(..body_start).unwrap_or_default());
        buf.clear();
        return Err(FrameError::TooLarge {
            max,
            head: Some(head),
        });
    }
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(buf.split_to(total).freeze()))
}

/// What an unfinished message in the buffer has got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partial {
    /// Bytes of a head, no empty line yet.
    Head,
    /// A complete head, the body still short.
    Body,
}

/// What is left in `buf` after [`next_message`] returned `Ok(None)`:
/// nothing (keep-alive CRLFs are discarded, so they never count), part of
/// a head, or a head and part of its body.
pub fn partial(buf: &[u8]) -> Option<Partial> {
    if buf.is_empty() {
        None
    } else if find_head_end(buf).is_some() {
        Some(Partial::Body)
    } else {
        Some(Partial::Head)
    }
}

fn stream_content_length(head: &[u8]) -> Result<usize, FrameError> {
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let name = name.trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let value = value.get(1..).unwrap_or_default().trim_ascii();
            return std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(FrameError::BadContentLength);
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_two_messages_and_partial() {
        let mut b = BytesMut::from(
            &b"\r\n\r\nOPTIONS sip:a SIP/2.0\r\nl: 3\r\n\r\nabcBYE sip:b SIP/2.0\r\nContent-Length: 0\r\n\r\nINV"[..],
        );
        let m1 = next_message(&mut b, 1000).expect("ok").expect("one");
        assert!(m1.ends_with(b"abc"));
        let m2 = next_message(&mut b, 1000).expect("ok").expect("two");
        assert!(m2.starts_with(b"BYE"));
        assert_eq!(next_message(&mut b, 1000), Ok(None));
        assert_eq!(&b[..], b"INV");
    }

    #[test]
    fn partial_tells_head_from_body_and_ignores_keepalives() {
        let mut b = BytesMut::from(&b"\r\n\r\n"[..]);
        assert_eq!(next_message(&mut b, 1000), Ok(None));
        assert_eq!(partial(&b), None, "a keep-alive is not a message");
        b.extend_from_slice(b"OPTIONS sip:a SIP/2.0\r\nl: 3\r\n");
        assert_eq!(next_message(&mut b, 1000), Ok(None));
        assert_eq!(partial(&b), Some(Partial::Head));
        b.extend_from_slice(b"\r\na");
        assert_eq!(next_message(&mut b, 1000), Ok(None));
        assert_eq!(partial(&b), Some(Partial::Body));
        b.extend_from_slice(b"bc");
        assert!(next_message(&mut b, 1000).expect("ok").is_some());
        assert_eq!(partial(&b), None);
    }

    #[test]
    fn oversize_is_refused() {
        let mut b = BytesMut::from(&b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 99999\r\n\r\n"[..]);
        assert!(matches!(
            next_message(&mut b, 1000),
            Err(FrameError::TooLarge { head: Some(_), .. })
        ));
        let mut b = BytesMut::from(vec![b'x'; 2000].as_slice());
        assert!(matches!(
            next_message(&mut b, 1000),
            Err(FrameError::TooLarge { head: None, .. })
        ));
    }
}
