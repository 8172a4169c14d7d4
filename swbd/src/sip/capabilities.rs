//! What swbd implements, in one place: the methods it allows and the SIP
//! extensions (option tags) it supports. `Allow` and `Supported` headers,
//! the front door's `420 Bad Extension` check and the B2BUA's INVITEs all
//! read these lists, so adding a feature is one line here.

/// Methods swbd accepts (`Allow`, RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, PRACK, UPDATE, REFER";

/// Methods offered in a dialog swbd takes part in (`Allow` on INVITEs and
/// their 2xx): REGISTER is not a dialog method. UPDATE (RFC 3311) is
/// answered in early and confirmed dialogs (`b2bua/call/update.rs`).
pub const ALLOW_IN_DIALOG: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, PRACK, UPDATE, REFER";

/// Option tags swbd supports (`Supported`, RFC 3261 §20.37). A request
/// whose `Require` names anything else gets `420 Bad Extension`.
/// - `100rel`: reliable provisional responses and PRACK (RFC 3262,
///   `transaction::reliable`, `b2bua::call::prack`).
/// - `timer`: session timers (RFC 4028, `b2bua::call::session_timer`; a
///   call refuses `Require: timer` with `420` when `sip.session_timer` is
///   off).
/// - `replaces` (RFC 3891) and `norefersub` (RFC 4488): call transfer,
///   [`crate::b2bua::transfer`].
pub const SUPPORTED_EXTENSIONS: &[&str] = &["100rel", "timer", "replaces", "norefersub"];

/// Whether `tag` (one item of a `Require` or `Proxy-Require`) is supported.
pub fn is_supported(tag: &str) -> bool {
    SUPPORTED_EXTENSIONS
        .iter()
        .any(|s| s.eq_ignore_ascii_case(tag.trim()))
}

/// The `Supported` header value, or `None` when swbd supports nothing.
pub fn supported_header() -> Option<String> {
    if SUPPORTED_EXTENSIONS.is_empty() {
        None
    } else {
        Some(SUPPORTED_EXTENSIONS.join(", "))
    }
}

/// The `Supported` header value for responses that must always carry one
/// (a 2xx to INVITE, RFC 3261 §13.3.1.4): the option tags, possibly none
/// (an empty `Supported:` is legal, §20.37).
pub fn supported_value() -> String {
    SUPPORTED_EXTENSIONS.join(", ")
}

/// Whether the `name` header(s) of `message` (`Supported`, `Require`)
/// list the option `tag` (case-insensitive, comma lists and repeated
/// headers alike).
pub fn lists_option_tag<M: super::message::HeaderAccess>(
    message: &M,
    name: &super::Name,
    tag: &str,
) -> bool {
    message
        .raw_values(name)
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(tag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Name, SipMessage};

    #[test]
    fn option_tags_are_found_in_lists_and_compact_forms() {
        let text = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                    From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\
                    k: replaces, 100REL\r\nRequire: timer\r\nContent-Length: 0\r\n\r\n";
        let Ok(SipMessage::Request(r)) = SipMessage::parse(text.as_bytes(), true) else {
            panic!("parses")
        };
        assert!(lists_option_tag(&r, &Name::SUPPORTED, "100rel"));
        assert!(!lists_option_tag(&r, &Name::SUPPORTED, "timer"));
        assert!(lists_option_tag(&r, &Name::REQUIRE, "timer"));
        assert!(is_supported(" 100rel "));
        assert!(is_supported("replaces"));
        assert!(!is_supported("gruu"));
    }
}
