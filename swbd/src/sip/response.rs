//! Building responses from requests (RFC 3261 §8.2.6.2).

use crate::sip::Name;

use super::message::{Request, Response, edit_to_tag};

/// A response to `request`: Via (all), From, To, Call-ID and CSeq copied;
/// a To tag added when the request had none and `to_tag` is given (every
/// response but `100 Trying` should carry one).
pub fn make_response(request: &Request, code: u16, reason: &str, to_tag: Option<&str>) -> Response {
    let mut resp = Response::new(code, reason);
    for name in [Name::VIA, Name::FROM, Name::TO, Name::CALL_ID, Name::CSEQ] {
        for v in request.headers.get_raw(&name) {
            resp.headers.insert(name.clone(), v.clone());
        }
    }
    if let Some(tag) = to_tag
        && code > 100
    {
        edit_to_tag(&mut resp.headers, tag);
    }
    resp
}
