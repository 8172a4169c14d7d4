//! What swbd implements, in one place: the methods it allows and the SIP
//! extensions (option tags) it supports. `Allow` and `Supported` headers,
//! the front door's `420 Bad Extension` check and the B2BUA's INVITEs all
//! read these lists, so adding a feature is one line here.

/// Methods swbd accepts (`Allow`, RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER";

/// Methods offered in a dialog swbd takes part in (`Allow` on INVITEs and
/// their 2xx): REGISTER is not a dialog method.
pub const ALLOW_IN_DIALOG: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS";

/// Option tags swbd supports (`Supported`, RFC 3261 §20.37). A request
/// whose `Require` names anything else gets `420 Bad Extension`.
pub const SUPPORTED_EXTENSIONS: &[&str] = &[];

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
