//! SIP methods. Our own small type rather than ezk's `Method`, whose parser
//! matches known names by case-insensitive prefix (`INVITEX` would read as
//! `INVITE`); SIP methods are case-sensitive (RFC 3261 §7.1).

use std::fmt;

/// A SIP method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE.
    Invite,
    /// ACK.
    Ack,
    /// CANCEL.
    Cancel,
    /// BYE.
    Bye,
    /// REGISTER.
    Register,
    /// OPTIONS.
    Options,
    /// MESSAGE.
    Message,
    /// UPDATE.
    Update,
    /// PRACK.
    Prack,
    /// SUBSCRIBE.
    Subscribe,
    /// NOTIFY.
    Notify,
    /// PUBLISH.
    Publish,
    /// INFO.
    Info,
    /// REFER.
    Refer,
    /// Anything else (answered 501 Not Implemented).
    Other(String),
}

const KNOWN: &[(&str, Method)] = &[
    ("INVITE", Method::Invite),
    ("ACK", Method::Ack),
    ("CANCEL", Method::Cancel),
    ("BYE", Method::Bye),
    ("REGISTER", Method::Register),
    ("OPTIONS", Method::Options),
    ("MESSAGE", Method::Message),
    ("UPDATE", Method::Update),
    ("PRACK", Method::Prack),
    ("SUBSCRIBE", Method::Subscribe),
    ("NOTIFY", Method::Notify),
    ("PUBLISH", Method::Publish),
    ("INFO", Method::Info),
    ("REFER", Method::Refer),
];

impl Method {
    /// From the exact (case-sensitive) token.
    pub fn from_token(s: &str) -> Method {
        KNOWN
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| Method::Other(s.to_string()))
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Other(s) => s,
            m => KNOWN
                .iter()
                .find(|(_, k)| k == m)
                .map(|(n, _)| *n)
                .unwrap_or(""),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_only() {
        assert_eq!(Method::from_token("INVITE"), Method::Invite);
        assert_eq!(
            Method::from_token("INVITEX"),
            Method::Other("INVITEX".into())
        );
        assert_eq!(Method::from_token("invite"), Method::Other("invite".into()));
        assert_eq!(Method::Register.to_string(), "REGISTER");
    }
}
