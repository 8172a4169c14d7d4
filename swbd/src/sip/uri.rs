//! URIs: `sip:`/`sips:` parsed by ezk-sip-types, anything else (`tel:`, ...)
//! kept as text with its scheme.

use std::fmt;

use ezk_sip_types::print::{AppendCtx, PrintCtx};
use ezk_sip_types::uri::{SipUri, SipUriUserPart};

/// A URI as found in a Request-URI, From, To or Contact.
#[derive(Debug, Clone)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(Box<SipUri>),
    /// `tel:` (RFC 3966), kept as text.
    Tel(String),
    /// Any other scheme, kept as text (a registrar/proxy answers 416 to it
    /// in a Request-URI).
    Other(String),
}

impl Uri {
    /// Parse a URI; `None` when a `sip:`/`sips:` URI is malformed or the
    /// text has no scheme.
    pub fn parse(s: &str) -> Option<Uri> {
        let s = s.trim();
        let (scheme, rest) = s.split_once(':')?;
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return None;
        }
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            s.parse::<SipUri>().ok().map(|u| Uri::Sip(Box::new(u)))
        } else if rest.is_empty()
            || rest
                .chars()
                .any(|c| c.is_whitespace() || c == '<' || c == '>')
        {
            None
        } else if scheme.eq_ignore_ascii_case("tel") {
            Some(Uri::Tel(s.to_string()))
        } else {
            Some(Uri::Other(s.to_string()))
        }
    }

    /// The typed SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// The user part (`1001` of `sip:1001@host`, the number of `tel:+1555`).
    pub fn user(&self) -> Option<String> {
        match self {
            Uri::Sip(u) => match &u.user_part {
                SipUriUserPart::Empty => None,
                SipUriUserPart::User(user) => Some(user.to_string()),
                SipUriUserPart::UserPw(up) => Some(up.user.to_string()),
            },
            Uri::Tel(t) => t
                .split_once(':')
                .map(|(_, n)| n.split(';').next().unwrap_or(n).to_string()),
            Uri::Other(_) => None,
        }
    }

    /// The host of a SIP URI, lowercased, without brackets for IPv6.
    pub fn host(&self) -> Option<String> {
        self.as_sip().map(|u| host_text(&u.host_port.host))
    }

    /// Whether the scheme is `sip`/`sips`/`tel` (the ones swbd handles).
    pub fn is_supported_scheme(&self) -> bool {
        matches!(self, Uri::Sip(_) | Uri::Tel(_))
    }
}

/// Host as plain text: lowercased name, or IP without brackets.
pub fn host_text(host: &ezk_sip_types::host::Host) -> String {
    use ezk_sip_types::host::Host;
    match host {
        Host::IP4(ip) => ip.to_string(),
        Host::IP6(ip) => ip.to_string(),
        Host::Name(n) => n.to_ascii_lowercase(),
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => write!(f, "{}", u.print_ctx(PrintCtx::default())),
            Uri::Tel(s) | Uri::Other(s) => f.write_str(s),
        }
    }
}

fn sip_user(part: &SipUriUserPart) -> Option<&str> {
    match part {
        SipUriUserPart::Empty => None,
        SipUriUserPart::User(user) => Some(user),
        SipUriUserPart::UserPw(up) => Some(&up.user),
    }
}

/// RFC 3261 §19.1.4 URI equality, simplified: SIP URIs compare scheme,
/// user, host (case-insensitive) and port; others compare as text
/// (case-insensitive).
pub fn same_uri(a: &Uri, b: &Uri) -> bool {
    match (a, b) {
        (Uri::Sip(a), Uri::Sip(b)) => {
            a.sips == b.sips
                && sip_user(&a.user_part) == sip_user(&b.user_part)
                && host_text(&a.host_port.host) == host_text(&b.host_port.host)
                && a.host_port.port == b.host_port.port
        }
        (a, b) => a.to_string().eq_ignore_ascii_case(&b.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_tel_and_other() {
        assert!(matches!(
            Uri::parse("sip:1001@[::1]:5060"),
            Some(Uri::Sip(_))
        ));
        let tel = Uri::parse("tel:+15550100;phone-context=x").expect("tel parses");
        assert_eq!(tel.user().as_deref(), Some("+15550100"));
        assert!(matches!(
            Uri::parse("nobodyKnowsThisScheme:totallyopaquecontent"),
            Some(Uri::Other(_))
        ));
        assert!(Uri::parse("<sip:a@b>").is_none());
        assert!(Uri::parse("no scheme").is_none());
        let v6 = Uri::parse("sip:alice@[2001:db8::10]").expect("v6");
        assert_eq!(v6.host().as_deref(), Some("2001:db8::10"));
    }
}
