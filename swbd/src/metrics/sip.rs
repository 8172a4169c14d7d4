//! SIP messages by method and status code, counted on the receive and send
//! paths without a lock or a hash: fixed arrays of relaxed atomics indexed
//! by (direction, method) and (direction, method, code), turned into label
//! sets only at scrape time (and only the non-zero ones).
//!
//! Labels are bounded whatever a peer sends: a method outside RFC 3261 and
//! its extensions counts as `other`, and a status code outside IANA's SIP
//! response code registry as `other` (its class, `4xx`, is kept).

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

use crate::sip::Method;

/// Method label values; the last one, `other`, takes every unknown token.
pub const METHODS: [&str; 15] = [
    "INVITE",
    "ACK",
    "CANCEL",
    "BYE",
    "REGISTER",
    "OPTIONS",
    "MESSAGE",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "INFO",
    "REFER",
    "other",
];
const OTHER_METHOD: usize = METHODS.len() - 1;

/// Status codes with a label of their own: IANA's SIP response code
/// registry. Anything else is `other`.
pub const CODES: [u16; 75] = [
    100, 180, 181, 182, 183, 199, 200, 202, 204, 300, 301, 302, 305, 380, 400, 401, 402, 403, 404,
    405, 406, 407, 408, 410, 412, 413, 414, 415, 416, 417, 420, 421, 422, 423, 424, 425, 428, 429,
    430, 433, 436, 437, 438, 439, 440, 469, 470, 480, 481, 482, 483, 484, 485, 486, 487, 488, 489,
    491, 493, 494, 500, 501, 502, 503, 504, 505, 513, 555, 580, 600, 603, 604, 606, 607, 608,
];
const CODE_SLOTS: usize = CODES.len() + 1;
const OTHER_CODE: usize = CODES.len();

/// Index of `code` in [`CODES`], [`CODES`]`.len()` for any other value.
pub fn code_index(code: u16) -> usize {
    CODES.binary_search(&code).unwrap_or(OTHER_CODE)
}

/// The `code` label of a status code (`"404"`, or `"other"`).
pub fn code_label(code: u16) -> String {
    match CODES.binary_search(&code) {
        Ok(_) => code.to_string(),
        Err(_) => "other".into(),
    }
}

/// The `class` label of a status code: `1xx` .. `6xx`, `other` outside.
pub fn class_label(code: u16) -> &'static str {
    match code / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        6 => "6xx",
        _ => "other",
    }
}

fn method_index(token: &[u8]) -> usize {
    METHODS
        .iter()
        .take(OTHER_METHOD)
        .position(|m| m.as_bytes() == token)
        .unwrap_or(OTHER_METHOD)
}

fn method_of(method: &Method) -> usize {
    method_index(method.as_str().as_bytes())
}

/// Received or sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Parsed off the wire.
    Received = 0,
    /// Handed to a socket or a TCP connection.
    Sent = 1,
}

const DIRECTIONS: [(Direction, &str); 2] =
    [(Direction::Received, "received"), (Direction::Sent, "sent")];

/// The counters. One per endpoint, inside [`crate::transport::SipCounters`].
#[derive(Debug)]
pub struct MessageCounters {
    requests: [[AtomicU64; METHODS.len()]; 2],
    /// (direction, method of the CSeq, code slot); boxed: 17 KiB.
    responses: Box<[[[AtomicU64; CODE_SLOTS]; METHODS.len()]; 2]>,
    /// INVITEs refused with `503` because the B2BUA's queue was full.
    pub overload_shed: AtomicU64,
}

impl Default for MessageCounters {
    fn default() -> Self {
        Self {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            responses: Box::new(std::array::from_fn(|_| {
                std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0)))
            })),
            overload_shed: AtomicU64::new(0),
        }
    }
}

impl MessageCounters {
    /// Count a parsed request.
    pub fn request(&self, direction: Direction, method: &Method) {
        self.count_request(direction, method_of(method));
    }

    /// Count a parsed response to a request of `method` (its CSeq).
    pub fn response(&self, direction: Direction, method: &Method, code: u16) {
        self.count_response(direction, method_of(method), code);
    }

    /// Count a message about to leave, from its bytes: the start line
    /// names a request's method or a response's code, and a response's
    /// method comes from its `CSeq` (swbd prints that header as `CSeq`).
    pub fn sent(&self, data: &[u8]) {
        if let Some(status) = data.strip_prefix(b"SIP/2.0 ") {
            let code = status
                .get(..3)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.parse::<u16>().ok())
                .unwrap_or(0);
            let method = cseq_method(data).map_or(OTHER_METHOD, method_index);
            self.count_response(Direction::Sent, method, code);
        } else {
            let token = data.split(|b| *b == b' ').next().unwrap_or_default();
            self.count_request(Direction::Sent, method_index(token));
        }
    }

    fn count_request(&self, direction: Direction, method: usize) {
        if let Some(c) = self
            .requests
            .get(direction as usize)
            .and_then(|d| d.get(method))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn count_response(&self, direction: Direction, method: usize, code: u16) {
        if let Some(c) = self
            .responses
            .get(direction as usize)
            .and_then(|d| d.get(method))
            .and_then(|m| m.get(code_index(code)))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests counted for (`direction`, `method` label).
    pub fn requests(&self, direction: Direction, method: &str) -> u64 {
        self.requests
            .get(direction as usize)
            .and_then(|d| d.get(method_index(method.as_bytes())))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Write `swbd_sip_requests_total` and `swbd_sip_responses_total`
    /// (non-zero series only).
    pub fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut m = encoder.encode_descriptor(
            "swbd_sip_requests",
            "SIP requests by direction (received: parsed off the wire, sent: handed to a socket; retransmissions included) and method (unknown methods: other)",
            None,
            MetricType::Counter,
        )?;
        for (direction, dir) in DIRECTIONS {
            for (i, method) in METHODS.iter().enumerate() {
                let n = self.requests[direction as usize][i].load(Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                let labels = [("direction", dir), ("method", *method)];
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "swbd_sip_responses",
            "SIP responses by direction, method (of the CSeq), class and code (codes outside the IANA registry: other)",
            None,
            MetricType::Counter,
        )?;
        for (direction, dir) in DIRECTIONS {
            for (i, method) in METHODS.iter().enumerate() {
                for (slot, counter) in self.responses[direction as usize][i].iter().enumerate() {
                    let n = counter.load(Ordering::Relaxed);
                    if n == 0 {
                        continue;
                    }
                    let (code, class) = match CODES.get(slot) {
                        Some(code) => (code.to_string(), class_label(*code)),
                        None => ("other".to_string(), "other"),
                    };
                    let labels = [
                        ("direction", dir),
                        ("method", *method),
                        ("class", class),
                        ("code", code.as_str()),
                    ];
                    ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

/// The method token of the `CSeq` header in a message swbd printed.
fn cseq_method(data: &[u8]) -> Option<&[u8]> {
    const NAME: &[u8] = b"\r\nCSeq:";
    let at = data.windows(NAME.len()).position(|w| w == NAME)?;
    let rest = data.get(at + NAME.len()..)?;
    let end = rest.iter().position(|b| *b == b'\r').unwrap_or(rest.len());
    let value = rest.get(..end)?;
    // "CSeq: 1 INVITE": the token after the number.
    value
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|t| !t.is_empty())
        .nth(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_sorted_and_indexed() {
        assert!(
            CODES.windows(2).all(|w| w[0] < w[1]),
            "binary search needs order"
        );
        assert_eq!(code_index(100), 0);
        assert_eq!(CODES[code_index(486)], 486);
        assert_eq!(code_index(499), OTHER_CODE);
        assert_eq!(code_index(0), OTHER_CODE);
        assert_eq!(code_label(499), "other");
        assert_eq!(class_label(499), "4xx");
        assert_eq!(class_label(999), "other");
    }

    #[test]
    fn unknown_methods_collapse_to_other() {
        assert_eq!(METHODS[method_index(b"INVITE")], "INVITE");
        assert_eq!(method_index(b"invite"), OTHER_METHOD);
        assert_eq!(method_index(b"X-ANYTHING-A-PEER-SAYS"), OTHER_METHOD);
        assert_eq!(method_index(b"other"), OTHER_METHOD);
    }

    #[test]
    fn sent_bytes_are_classified_by_start_line_and_cseq() {
        let c = MessageCounters::default();
        c.sent(b"INVITE sip:1002@127.0.0.1 SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n");
        c.sent(b"FOO sip:x SIP/2.0\r\n\r\n");
        c.sent(b"SIP/2.0 486 Busy Here\r\nVia: x\r\nCSeq: 7 INVITE\r\n\r\n");
        c.sent(b"SIP/2.0 200 OK\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n");
        c.sent(b"SIP/2.0 299 Odd\r\nCSeq: 2 WHATEVER\r\n\r\n");
        assert_eq!(c.requests(Direction::Sent, "INVITE"), 1);
        assert_eq!(c.requests(Direction::Sent, "other"), 1);
        let n = |m: usize, code: u16| {
            c.responses[Direction::Sent as usize][m][code_index(code)].load(Ordering::Relaxed)
        };
        assert_eq!(n(0, 486), 1);
        assert_eq!(n(3, 200), 1);
        assert_eq!(n(OTHER_METHOD, 299), 1, "unknown code and method");
    }
}
