//! SIP message layer over `ezk-sip-types`: parse and print requests and
//! responses, typed access to the headers a B2BUA needs. No I/O here.
//!
//! # Layout
//! - [`message`] - [`Request`], [`Response`], [`SipMessage`] and the parser.
//! - [`header`]: typed views of Via, From/To, CSeq, Contact, Max-Forwards, Expires.
//! - [`uri`] - [`Uri`] (`sip:`/`sips:` typed via ezk, `tel:` and others kept as text).
//! - [`error`] - [`ParseError`], which knows whether a `400` can still be formed.
//! - [`response`]: building a response from a request (RFC 3261 §8.2.6).
//! - [`dtmf`]: DTMF key presses in INFO bodies (parse strictly, build).

pub mod capabilities;
pub mod dtmf;
pub mod error;
pub mod header;
pub mod headers;
pub mod message;
pub mod method;
pub mod peek;
pub mod response;
pub mod uri;

pub use error::ParseError;
pub use header::{CSeq, Contact, ContactList, NameAddr, ViaHeader};
pub use message::{Request, Response, SipMessage};
pub use method::Method;
pub use uri::Uri;

/// Re-exports of the `ezk-sip-types` pieces our API exposes.
pub use headers::{Headers, Name};

/// The `branch` magic cookie of RFC 3261 §8.1.1.7.
pub const BRANCH_MAGIC_COOKIE: &str = "z9hG4bK";

/// A fresh RFC 3261 branch (`z9hG4bK` + 20 random alphanumerics).
pub fn new_branch() -> String {
    let mut out = String::with_capacity(BRANCH_MAGIC_COOKIE.len() + 20);
    out.push_str(BRANCH_MAGIC_COOKIE);
    push_random_token(&mut out, 20);
    out
}

/// A fresh tag (From/To) or Call-ID part.
pub fn random_token(len: usize) -> String {
    let mut out = String::with_capacity(len);
    push_random_token(&mut out, len);
    out
}

/// [`random_token`] appended to `out`.
pub fn push_random_token(out: &mut String, len: usize) {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    out.extend(
        rand::rng()
            .sample_iter(Alphanumeric)
            .take(len)
            .map(char::from),
    );
}

/// Run every parser entry point over `data` the way a peer's bytes would
/// reach them, and check printing round-trips. Shared by the cargo-fuzz
/// target (`swbd/fuzz`) and the regression test over
/// `testdata/sip/fuzz-regressions/`, which fail on the error it returns
/// (a message that prints to something that does not parse again); any
/// panic inside is a bug too.
#[doc(hidden)]
pub fn exercise(data: &[u8]) -> Result<(), String> {
    use message::HeaderAccess;

    for datagram in [true, false] {
        match SipMessage::parse(data, datagram) {
            Ok(msg) => {
                let h: &dyn HeaderAccess = match &msg {
                    SipMessage::Request(r) => r,
                    SipMessage::Response(r) => r,
                };
                let _ = (h.vias(), h.contacts(), h.header_from(), h.header_to());
                let printed = msg.to_bytes();
                if let Err(e) = SipMessage::parse(&printed, false) {
                    return Err(format!(
                        "printed message does not parse again ({e}):\n{}",
                        String::from_utf8_lossy(&printed)
                    ));
                }
            }
            Err(e) => {
                if let Some(r) = e.to_response() {
                    let _ = r.to_bytes();
                }
            }
        }
    }
    let mut buf = bytes::BytesMut::from(data);
    while let Ok(Some(m)) = crate::transport::framing::next_message(&mut buf, 65_535) {
        let _ = SipMessage::parse(&m, false);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::auth::digest::Credentials::parse(text);
        let _ = header::parse_contacts(std::iter::once(text));
        let _ = uri::Uri::parse(text);
    }
    Ok(())
}
