//! Header names and the header list of a message.
//!
//! The names are an enum for the headers swbd knows (compact forms
//! folded in), so comparing two names is comparing two bytes; anything
//! else keeps its spelling and compares case-insensitively. The list keeps
//! every value separately, same-name values together and in order, as
//! RFC 3261 §7.3.1 requires.

use std::fmt;
use std::sync::Arc;

/// A header name.
#[derive(Clone)]
pub struct Name(Repr);

#[derive(Clone)]
enum Repr {
    Known(Known),
    Other(Box<str>),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Known {
    Accept,
    AcceptEncoding,
    AcceptLanguage,
    AlertInfo,
    Allow,
    AllowEvents,
    AuthenticationInfo,
    Authorization,
    CallID,
    CallInfo,
    Contact,
    ContentDisposition,
    ContentEncoding,
    ContentLanguage,
    ContentLength,
    ContentType,
    CSeq,
    Date,
    ErrorInfo,
    Event,
    Expires,
    From,
    InReplyTo,
    MaxForwards,
    MinExpires,
    MinSe,
    MIMEVersion,
    Organization,
    PAssociatedURI,
    PCalledPartyID,
    PVisitedNetworkID,
    PAccessNetworkInfo,
    PChargingFunctionAddresses,
    PChargingVector,
    Priority,
    ProxyAuthenticate,
    ProxyAuthorization,
    ProxyRequire,
    RAck,
    RecordRoute,
    ReferTo,
    Replaces,
    ReplyTo,
    Require,
    RetryAfter,
    Route,
    RSeq,
    SecurityClient,
    SecurityServer,
    SecurityVerify,
    Server,
    SessionExpires,
    Subject,
    SubscriptionState,
    Supported,
    Timestamp,
    To,
    Unsupported,
    UserAgent,
    Via,
    Warning,
    WWWAuthenticate,
}

impl Name {
    /// `Accept`.
    pub const ACCEPT: Name = Name(Repr::Known(Known::Accept));
    /// `Accept-Encoding`.
    pub const ACCEPT_ENCODING: Name = Name(Repr::Known(Known::AcceptEncoding));
    /// `Accept-Language`.
    pub const ACCEPT_LANGUAGE: Name = Name(Repr::Known(Known::AcceptLanguage));
    /// `Alert-Info`.
    pub const ALERT_INFO: Name = Name(Repr::Known(Known::AlertInfo));
    /// `Allow`.
    pub const ALLOW: Name = Name(Repr::Known(Known::Allow));
    /// `Allow-Events`.
    pub const ALLOW_EVENTS: Name = Name(Repr::Known(Known::AllowEvents));
    /// `Authentication-Info`.
    pub const AUTHENTICATION_INFO: Name = Name(Repr::Known(Known::AuthenticationInfo));
    /// `Authorization`.
    pub const AUTHORIZATION: Name = Name(Repr::Known(Known::Authorization));
    /// `Call-ID`.
    pub const CALL_ID: Name = Name(Repr::Known(Known::CallID));
    /// `Call-Info`.
    pub const CALL_INFO: Name = Name(Repr::Known(Known::CallInfo));
    /// `Contact`.
    pub const CONTACT: Name = Name(Repr::Known(Known::Contact));
    /// `Content-Disposition`.
    pub const CONTENT_DISPOSITION: Name = Name(Repr::Known(Known::ContentDisposition));
    /// `Content-Encoding`.
    pub const CONTENT_ENCODING: Name = Name(Repr::Known(Known::ContentEncoding));
    /// `Content-Language`.
    pub const CONTENT_LANGUAGE: Name = Name(Repr::Known(Known::ContentLanguage));
    /// `Content-Length`.
    pub const CONTENT_LENGTH: Name = Name(Repr::Known(Known::ContentLength));
    /// `Content-Type`.
    pub const CONTENT_TYPE: Name = Name(Repr::Known(Known::ContentType));
    /// `CSeq`.
    pub const CSEQ: Name = Name(Repr::Known(Known::CSeq));
    /// `Date`.
    pub const DATE: Name = Name(Repr::Known(Known::Date));
    /// `Error-Info`.
    pub const ERROR_INFO: Name = Name(Repr::Known(Known::ErrorInfo));
    /// `Event`.
    pub const EVENT: Name = Name(Repr::Known(Known::Event));
    /// `Expires`.
    pub const EXPIRES: Name = Name(Repr::Known(Known::Expires));
    /// `From`.
    pub const FROM: Name = Name(Repr::Known(Known::From));
    /// `In-Reply-To`.
    pub const IN_REPLY_TO: Name = Name(Repr::Known(Known::InReplyTo));
    /// `Max-Forwards`.
    pub const MAX_FORWARDS: Name = Name(Repr::Known(Known::MaxForwards));
    /// `Min-Expires`.
    pub const MIN_EXPIRES: Name = Name(Repr::Known(Known::MinExpires));
    /// `Min-SE`.
    pub const MIN_SE: Name = Name(Repr::Known(Known::MinSe));
    /// `MIME-Version`.
    pub const MIME_VERSION: Name = Name(Repr::Known(Known::MIMEVersion));
    /// `Organization`.
    pub const ORGANIZATION: Name = Name(Repr::Known(Known::Organization));
    /// `P-Associated-URI`.
    pub const P_ASSOCIATED_URI: Name = Name(Repr::Known(Known::PAssociatedURI));
    /// `P-Called-Party-ID`.
    pub const P_CALLED_PARTY_ID: Name = Name(Repr::Known(Known::PCalledPartyID));
    /// `P-Visited-Network-ID`.
    pub const P_VISITED_NETWORK_ID: Name = Name(Repr::Known(Known::PVisitedNetworkID));
    /// `P-Access-Network-Info`.
    pub const P_ACCESS_NETWORK_INFO: Name = Name(Repr::Known(Known::PAccessNetworkInfo));
    /// `P-Charging-Function-Addresses`.
    pub const P_CHARGING_FUNCTION_ADDRESSES: Name =
        Name(Repr::Known(Known::PChargingFunctionAddresses));
    /// `P-Charging-Vector`.
    pub const P_CHARGING_VECTOR: Name = Name(Repr::Known(Known::PChargingVector));
    /// `Priority`.
    pub const PRIORITY: Name = Name(Repr::Known(Known::Priority));
    /// `Proxy-Authenticate`.
    pub const PROXY_AUTHENTICATE: Name = Name(Repr::Known(Known::ProxyAuthenticate));
    /// `Proxy-Authorization`.
    pub const PROXY_AUTHORIZATION: Name = Name(Repr::Known(Known::ProxyAuthorization));
    /// `Proxy-Require`.
    pub const PROXY_REQUIRE: Name = Name(Repr::Known(Known::ProxyRequire));
    /// `RAck`.
    pub const RACK: Name = Name(Repr::Known(Known::RAck));
    /// `Record-Route`.
    pub const RECORD_ROUTE: Name = Name(Repr::Known(Known::RecordRoute));
    /// `Refer-To`.
    pub const REFER_TO: Name = Name(Repr::Known(Known::ReferTo));
    /// `Replaces`.
    pub const REPLACES: Name = Name(Repr::Known(Known::Replaces));
    /// `Reply-To`.
    pub const REPLY_TO: Name = Name(Repr::Known(Known::ReplyTo));
    /// `Require`.
    pub const REQUIRE: Name = Name(Repr::Known(Known::Require));
    /// `Retry-After`.
    pub const RETRY_AFTER: Name = Name(Repr::Known(Known::RetryAfter));
    /// `Route`.
    pub const ROUTE: Name = Name(Repr::Known(Known::Route));
    /// `RSeq`.
    pub const RSEQ: Name = Name(Repr::Known(Known::RSeq));
    /// `Security-Client`.
    pub const SECURITY_CLIENT: Name = Name(Repr::Known(Known::SecurityClient));
    /// `Security-Server`.
    pub const SECURITY_SERVER: Name = Name(Repr::Known(Known::SecurityServer));
    /// `Security-Verify`.
    pub const SECURITY_VERIFY: Name = Name(Repr::Known(Known::SecurityVerify));
    /// `Server`.
    pub const SERVER: Name = Name(Repr::Known(Known::Server));
    /// `Session-Expires`.
    pub const SESSION_EXPIRES: Name = Name(Repr::Known(Known::SessionExpires));
    /// `Subject`.
    pub const SUBJECT: Name = Name(Repr::Known(Known::Subject));
    /// `Subscription-State`.
    pub const SUBSCRIPTION_STATE: Name = Name(Repr::Known(Known::SubscriptionState));
    /// `Supported`.
    pub const SUPPORTED: Name = Name(Repr::Known(Known::Supported));
    /// `Timestamp`.
    pub const TIMESTAMP: Name = Name(Repr::Known(Known::Timestamp));
    /// `To`.
    pub const TO: Name = Name(Repr::Known(Known::To));
    /// `Unsupported`.
    pub const UNSUPPORTED: Name = Name(Repr::Known(Known::Unsupported));
    /// `User-Agent`.
    pub const USER_AGENT: Name = Name(Repr::Known(Known::UserAgent));
    /// `Via`.
    pub const VIA: Name = Name(Repr::Known(Known::Via));
    /// `Warning`.
    pub const WARNING: Name = Name(Repr::Known(Known::Warning));
    /// `WWW-Authenticate`.
    pub const WWW_AUTHENTICATE: Name = Name(Repr::Known(Known::WWWAuthenticate));

    /// The name as printed (the long form, canonical case, for known
    /// headers; as received otherwise).
    pub fn as_print_str(&self) -> &str {
        match &self.0 {
            Repr::Known(k) => k.print(),
            Repr::Other(s) => s,
        }
    }

    /// The name for `text`: compact and long forms of known headers in any
    /// case map to the same name.
    pub fn new(text: &str) -> Name {
        match Known::parse(text.as_bytes()) {
            Some(k) => Name(Repr::Known(k)),
            None => Name(Repr::Other(text.into())),
        }
    }
}

impl Known {
    fn print(self) -> &'static str {
        match self {
            Known::Accept => "Accept",
            Known::AcceptEncoding => "Accept-Encoding",
            Known::AcceptLanguage => "Accept-Language",
            Known::AlertInfo => "Alert-Info",
            Known::Allow => "Allow",
            Known::AllowEvents => "Allow-Events",
            Known::AuthenticationInfo => "Authentication-Info",
            Known::Authorization => "Authorization",
            Known::CallID => "Call-ID",
            Known::CallInfo => "Call-Info",
            Known::Contact => "Contact",
            Known::ContentDisposition => "Content-Disposition",
            Known::ContentEncoding => "Content-Encoding",
            Known::ContentLanguage => "Content-Language",
            Known::ContentLength => "Content-Length",
            Known::ContentType => "Content-Type",
            Known::CSeq => "CSeq",
            Known::Date => "Date",
            Known::ErrorInfo => "Error-Info",
            Known::Event => "Event",
            Known::Expires => "Expires",
            Known::From => "From",
            Known::InReplyTo => "In-Reply-To",
            Known::MaxForwards => "Max-Forwards",
            Known::MinExpires => "Min-Expires",
            Known::MinSe => "Min-SE",
            Known::MIMEVersion => "MIME-Version",
            Known::Organization => "Organization",
            Known::PAssociatedURI => "P-Associated-URI",
            Known::PCalledPartyID => "P-Called-Party-ID",
            Known::PVisitedNetworkID => "P-Visited-Network-ID",
            Known::PAccessNetworkInfo => "P-Access-Network-Info",
            Known::PChargingFunctionAddresses => "P-Charging-Function-Addresses",
            Known::PChargingVector => "P-Charging-Vector",
            Known::Priority => "Priority",
            Known::ProxyAuthenticate => "Proxy-Authenticate",
            Known::ProxyAuthorization => "Proxy-Authorization",
            Known::ProxyRequire => "Proxy-Require",
            Known::RAck => "RAck",
            Known::RecordRoute => "Record-Route",
            Known::ReferTo => "Refer-To",
            Known::Replaces => "Replaces",
            Known::ReplyTo => "Reply-To",
            Known::Require => "Require",
            Known::RetryAfter => "Retry-After",
            Known::Route => "Route",
            Known::RSeq => "RSeq",
            Known::SecurityClient => "Security-Client",
            Known::SecurityServer => "Security-Server",
            Known::SecurityVerify => "Security-Verify",
            Known::Server => "Server",
            Known::SessionExpires => "Session-Expires",
            Known::Subject => "Subject",
            Known::SubscriptionState => "Subscription-State",
            Known::Supported => "Supported",
            Known::Timestamp => "Timestamp",
            Known::To => "To",
            Known::Unsupported => "Unsupported",
            Known::UserAgent => "User-Agent",
            Known::Via => "Via",
            Known::Warning => "Warning",
            Known::WWWAuthenticate => "WWW-Authenticate",
        }
    }

    fn parse(text: &[u8]) -> Option<Known> {
        // The longest known name has 29 bytes.
        let mut buf = [0u8; 32];
        let lower = buf.get_mut(..text.len())?;
        lower.copy_from_slice(text);
        lower.make_ascii_lowercase();
        Some(match &*lower {
            b"accept" => Known::Accept,
            b"accept-encoding" => Known::AcceptEncoding,
            b"accept-language" => Known::AcceptLanguage,
            b"alert-info" => Known::AlertInfo,
            b"allow" => Known::Allow,
            b"allow-events" | b"u" => Known::AllowEvents,
            b"authentication-info" => Known::AuthenticationInfo,
            b"authorization" => Known::Authorization,
            b"call-id" | b"i" => Known::CallID,
            b"call-info" => Known::CallInfo,
            b"contact" | b"m" => Known::Contact,
            b"content-disposition" => Known::ContentDisposition,
            b"content-encoding" | b"e" => Known::ContentEncoding,
            b"content-language" => Known::ContentLanguage,
            b"content-length" | b"l" => Known::ContentLength,
            b"content-type" | b"c" => Known::ContentType,
            b"cseq" => Known::CSeq,
            b"date" => Known::Date,
            b"error-info" => Known::ErrorInfo,
            b"event" | b"o" => Known::Event,
            b"expires" => Known::Expires,
            b"from" | b"f" => Known::From,
            b"in-reply-to" => Known::InReplyTo,
            b"max-forwards" => Known::MaxForwards,
            b"min-expires" => Known::MinExpires,
            b"min-se" => Known::MinSe,
            b"mime-version" => Known::MIMEVersion,
            b"organization" => Known::Organization,
            b"p-associated-uri" => Known::PAssociatedURI,
            b"p-called-party-id" => Known::PCalledPartyID,
            b"p-visited-network-id" => Known::PVisitedNetworkID,
            b"p-access-network-info" => Known::PAccessNetworkInfo,
            b"p-charging-function-addresses" => Known::PChargingFunctionAddresses,
            b"p-charging-vector" => Known::PChargingVector,
            b"priority" => Known::Priority,
            b"proxy-authenticate" => Known::ProxyAuthenticate,
            b"proxy-authorization" => Known::ProxyAuthorization,
            b"proxy-require" => Known::ProxyRequire,
            b"rack" => Known::RAck,
            b"record-route" => Known::RecordRoute,
            b"refer-to" | b"r" => Known::ReferTo,
            b"replaces" => Known::Replaces,
            b"reply-to" => Known::ReplyTo,
            b"require" => Known::Require,
            b"retry-after" => Known::RetryAfter,
            b"route" => Known::Route,
            b"rseq" => Known::RSeq,
            b"security-client" => Known::SecurityClient,
            b"security-server" => Known::SecurityServer,
            b"security-verify" => Known::SecurityVerify,
            b"server" => Known::Server,
            b"session-expires" | b"x" => Known::SessionExpires,
            b"subject" | b"s" => Known::Subject,
            b"subscription-state" => Known::SubscriptionState,
            b"supported" | b"k" => Known::Supported,
            b"timestamp" => Known::Timestamp,
            b"to" | b"t" => Known::To,
            b"unsupported" => Known::Unsupported,
            b"user-agent" => Known::UserAgent,
            b"via" | b"v" => Known::Via,
            b"warning" => Known::Warning,
            b"www-authenticate" => Known::WWWAuthenticate,
            _ => return None,
        })
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        match (&self.0, &other.0) {
            (Repr::Known(a), Repr::Known(b)) => a == b,
            (Repr::Other(a), Repr::Other(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        }
    }
}

impl Eq for Name {}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        *self == Name::new(other)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_print_str())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_print_str())
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Name {
        Name::new(text)
    }
}

impl From<String> for Name {
    fn from(text: String) -> Name {
        match Known::parse(text.as_bytes()) {
            Some(k) => Name(Repr::Known(k)),
            None => Name(Repr::Other(text.into_boxed_str())),
        }
    }
}

impl From<&Name> for Name {
    fn from(name: &Name) -> Name {
        name.clone()
    }
}

/// One header value: a slice of the received message's head (shared with
/// the other values of that message and every copy, so parsing a message
/// allocates once for all its values), or a string of its own (values we
/// build, folded lines, edited values).
#[derive(Clone)]
pub struct Value(ValueRepr);

#[derive(Clone)]
enum ValueRepr {
    Shared {
        text: Arc<str>,
        start: u32,
        end: u32,
    },
    Owned(String),
}

impl Value {
    /// `text[range]`, sharing `text`; an owned copy when the range is not
    /// in it.
    pub fn shared(text: &Arc<str>, range: std::ops::Range<usize>) -> Value {
        match (
            text.get(range.clone()),
            u32::try_from(range.start),
            u32::try_from(range.end),
        ) {
            (Some(_), Ok(start), Ok(end)) => Value(ValueRepr::Shared {
                text: text.clone(),
                start,
                end,
            }),
            (v, _, _) => Value(ValueRepr::Owned(v.unwrap_or_default().to_string())),
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            ValueRepr::Shared { text, start, end } => {
                text.get(*start as usize..*end as usize).unwrap_or_default()
            }
            ValueRepr::Owned(s) => s,
        }
    }

    /// Append `extra` (the value becomes a string of its own; control
    /// characters in `extra` become spaces, as in `From<&str>`).
    pub fn push_str(&mut self, extra: &str) {
        let extra = &*sanitize_value(extra);
        match &mut self.0 {
            ValueRepr::Owned(s) => s.push_str(extra),
            ValueRepr::Shared { .. } => {
                let mut s = String::with_capacity(self.len() + extra.len());
                s.push_str(self.as_str());
                s.push_str(extra);
                self.0 = ValueRepr::Owned(s);
            }
        }
    }
}

impl std::ops::Deref for Value {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.as_str() == other.as_str()
    }
}

/// Whether `s` holds a byte that must never appear inside a header value
/// on the wire: CR, LF, NUL or another control character (HTAB is allowed).
fn has_forbidden_bytes(s: &str) -> bool {
    // No early exit: a branch-free fold the compiler vectorizes, cheaper
    // than `any` on the short values headers have.
    s.bytes().fold(false, |bad, b| {
        bad | ((b < 0x20) & (b != b'\t')) | (b == 0x7f)
    })
}

/// `s` with every control character (but HTAB) replaced by a space.
pub fn sanitize_value(s: &str) -> std::borrow::Cow<'_, str> {
    if !has_forbidden_bytes(s) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
            .collect(),
    )
}

/// Values built by swbd go through here: whatever they were made of (a
/// peer's display name, a dialplan variable, a reason phrase), CR, LF, NUL
/// and other control characters become spaces, so no value can end its
/// header line and start another (header injection, issue #13). Values
/// sliced from a received message were checked by the parser.
impl From<String> for Value {
    fn from(s: String) -> Value {
        if has_forbidden_bytes(&s) {
            return Value(ValueRepr::Owned(sanitize_value(&s).into_owned()));
        }
        Value(ValueRepr::Owned(s))
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value(ValueRepr::Owned(sanitize_value(s).into_owned()))
    }
}

/// The headers of a message, in order.
#[derive(Clone, Default)]
pub struct Headers {
    entries: Vec<(Name, Value)>,
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.entries.iter()).finish()
    }
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// No headers, room for `n`.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            entries: Vec::with_capacity(n),
        }
    }

    /// Whether any `name` header is present.
    pub fn contains(&self, name: &Name) -> bool {
        self.entries.iter().any(|(n, _)| n == name)
    }

    /// Add a value: after the last value of the same name, else at the end.
    pub fn insert(&mut self, name: impl Into<Name>, value: impl Into<Value>) {
        let name = name.into();
        let value = value.into();
        match self.entries.iter().rposition(|(n, _)| *n == name) {
            Some(i) => self.entries.insert(i + 1, (name, value)),
            None => self.entries.push((name, value)),
        }
    }

    /// Add a value before every other header.
    pub fn insert_front(&mut self, name: impl Into<Name>, value: impl Into<Value>) {
        self.entries.insert(0, (name.into(), value.into()));
    }

    /// Remove every `name` value; `None` when there was none.
    pub fn remove(&mut self, name: &Name) -> Option<Vec<Value>> {
        if !self.contains(name) {
            return None;
        }
        let mut removed = Vec::new();
        let mut kept = Vec::with_capacity(self.entries.len());
        for (n, v) in std::mem::take(&mut self.entries) {
            if n == *name {
                removed.push(v);
            } else {
                kept.push((n, v));
            }
        }
        self.entries = kept;
        Some(removed)
    }

    /// The values of `name`, in order.
    pub fn get_raw(&self, name: &Name) -> impl Iterator<Item = &Value> + '_ {
        let name = name.clone();
        self.entries
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// The first value of `name`, to edit in place.
    pub fn first_mut(&mut self, name: &Name) -> Option<&mut Value> {
        self.entries
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Every value of `name`, to edit in place.
    pub fn values_mut<'a>(&'a mut self, name: &'a Name) -> impl Iterator<Item = &'a mut Value> {
        self.entries
            .iter_mut()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Every header, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Name, &Value)> + '_ {
        self.entries.iter().map(|(n, v)| (n, v))
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No headers at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_long_forms_are_one_name() {
        for (a, b) in [
            ("v", "Via"),
            ("i", "CALL-ID"),
            ("m", "contact"),
            ("l", "Content-Length"),
            ("k", "Supported"),
        ] {
            assert_eq!(Name::new(a), Name::new(b), "{a} {b}");
        }
        assert_eq!(Name::new("t").as_print_str(), "To");
        assert_eq!(Name::new("cseq").as_print_str(), "CSeq");
        assert_eq!(Name::new("X-Custom").as_print_str(), "X-Custom");
        assert_eq!(Name::new("x-custom"), Name::new("X-CUSTOM"));
        assert_ne!(Name::new("x-custom"), Name::VIA);
        assert_ne!(Name::TO, Name::FROM);
        // Longer than any known name, with non-ASCII: still a name.
        let long = "X-".to_string() + &"é".repeat(40);
        assert_eq!(Name::new(&long).as_print_str(), long);
    }

    #[test]
    fn same_name_values_stay_together_and_in_order() {
        let mut h = Headers::new();
        h.insert(Name::VIA, "a");
        h.insert(Name::FROM, "f");
        h.insert(Name::VIA, "b");
        h.insert_front(Name::VIA, "top");
        let all: Vec<_> = h.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        assert_eq!(all, ["Via: top", "Via: a", "Via: b", "From: f"]);
        assert_eq!(
            h.remove(&Name::VIA),
            Some(vec!["top".into(), "a".into(), "b".into()])
        );
        assert_eq!(h.remove(&Name::VIA), None);
        assert_eq!(h.len(), 1);
        assert!(h.contains(&Name::new("f")));
    }
}
