//! Redirects (RFC 3261 §8.1.3.4): a B-leg's 3xx, as the `dial` action's
//! `redirect` option says.
//!
//! **`redirect: follow`** (the default): the 3xx's Contacts, best `q`
//! first, are called in parallel, each through the same rules as a `dial`
//! target: a URI in one of our domains (`sip.domains`) without a port is
//! the user `user/NAME` (registrar; 404 unknown, 480 not registered),
//! anything else a direct `sip:` URI (resolved as the target `sip:URI`);
//! every new B-leg carries the caller's identity and counts toward
//! `b2bua.max_branches` like any other. A leg reached through
//! [`MAX_REDIRECTS`] redirects in a row that redirects again fails with
//! `482 Loop Detected`, and so does a Contact the dial already called. A
//! 3xx without a usable Contact (none, `*`, not sip/sips, or with URI
//! headers) fails the leg with `480`. A followed 3xx is neither the leg's
//! success nor its failure: the dial's outcome is what the new legs do.
//!
//! **`redirect: pass`**: the 3xx is the leg's failure. When the dial ends
//! with it (no other target answered and the aggregated status is that
//! 3xx), the caller gets it with its Contacts, whatever status the
//! dialplan hangs up with next (as with a refused SDP or no media node).
//! The Contacts are written from their parsed form: URI and header
//! parameters that are plain tokens, no display name, at most
//! [`MAX_CONTACTS`].

use super::*;
use crate::dialplan::Redirect;
use crate::sip::{ContactList, NameAddr};

/// Redirects followed in a row before a leg's 3xx is its failure.
pub(super) const MAX_REDIRECTS: u8 = 5;

/// Contacts of one 3xx followed or passed on.
pub(super) const MAX_CONTACTS: usize = 8;

/// How this dial treats 3xx, and the one to pass on.
#[derive(Debug, Default)]
pub(super) struct Redirects {
    mode: Redirect,
    /// The 3xx to give A (pass mode): status and Contact values.
    passed: Option<(u16, Vec<String>)>,
}

impl Redirects {
    /// A dial starts with `mode`.
    pub(super) fn begin(&mut self, mode: Redirect) {
        self.mode = mode;
        self.passed = None;
    }

    /// The dial ended with `outcome`: keep a passed 3xx only if it is the
    /// dial's status.
    pub(super) fn end(&mut self, outcome: &DialOutcome) {
        if !matches!(outcome, DialOutcome::Failed(c) if (300..400).contains(c)) {
            self.passed = None;
        }
        self.mode = Redirect::default();
    }
}

/// `q` of a Contact (RFC 3261 §20.10), 1 when absent or malformed.
fn q_value(contact: &NameAddr) -> f32 {
    contact
        .params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("q"))
        .and_then(|(_, v)| v.as_deref())
        .and_then(|v| v.parse::<f32>().ok())
        .filter(|q| (0.0..=1.0).contains(q))
        .unwrap_or(1.0)
}

/// A parameter name or value that is a plain token (RFC 3261 §25.1),
/// safe to write back as it is.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// A 3xx's Contacts, best `q` first (at most [`MAX_CONTACTS`]).
fn contacts_of(resp: &Response) -> Vec<NameAddr> {
    let Ok(ContactList::Contacts(mut list)) = resp.contacts() else {
        return Vec::new();
    };
    list.sort_by(|a, b| q_value(b).total_cmp(&q_value(a)));
    list.truncate(MAX_CONTACTS);
    list
}

/// A Contact as it goes to A: its URI and its token parameters.
fn contact_value(contact: NameAddr) -> String {
    NameAddr {
        display: None,
        uri: contact.uri,
        params: contact
            .params
            .into_iter()
            .filter(|(n, v)| is_token(n) && v.as_deref().is_none_or(is_token))
            .collect(),
    }
    .to_string()
}

impl Ctl {
    /// A 3xx on B-leg `i`. `true` when it was followed (the leg is over,
    /// new legs may ring); `false` when it is the leg's failure (pass mode,
    /// kept for A).
    pub(super) async fn on_redirect(&mut self, i: usize, resp: &Response) -> bool {
        if self.redirect.mode == Redirect::Pass {
            let contacts: Vec<String> = contacts_of(resp).into_iter().map(contact_value).collect();
            if !contacts.is_empty() && self.redirect.passed.is_none() {
                self.redirect.passed = Some((resp.code, contacts));
            }
            return false;
        }
        let Some(hops) = self.b_legs.get(i).map(|b| b.redirects) else {
            return false;
        };
        if hops >= MAX_REDIRECTS {
            tracing::info!(
                code = resp.code,
                max = MAX_REDIRECTS,
                "redirect not followed: too many in a row"
            );
            self.b_failed(i, 482).await;
            return true;
        }
        let targets: Vec<DialTarget> = contacts_of(resp)
            .iter()
            .filter_map(|c| self.redirect_target(&c.uri))
            .collect();
        // The redirected leg is over: release its session.
        self.b_failed(i, resp.code).await;
        let mut started = false;
        let mut first_error: Option<u16> = None;
        for target in targets {
            let attempts = match self.resolve(&target).await {
                Ok(a) => a,
                Err(code) => {
                    tracing::info!(%target, code, "redirect target unavailable");
                    first_error.get_or_insert(code);
                    continue;
                }
            };
            for (uri, to, flow, fallbacks) in attempts {
                let canonical = Uri::parse(&uri).map(|u| u.to_string()).unwrap_or_default();
                if self
                    .b_legs
                    .iter()
                    .any(|b| b.request.uri.to_string() == canonical)
                {
                    tracing::info!(%target, "redirect not followed: this dial called it already");
                    first_error.get_or_insert(482);
                    continue;
                }
                let ringing = self.b_legs.iter().filter(|b| b.txn.is_some()).count();
                if ringing >= self.deps.config.b2bua.max_branches {
                    tracing::warn!(%target, "b2bua.max_branches reached: redirect target not called");
                    break;
                }
                match self
                    .start_b_leg(target.clone(), &uri, &to, flow, fallbacks)
                    .await
                {
                    Ok(()) => {
                        if let Some(leg) = self.b_legs.last_mut() {
                            leg.redirects = hops.saturating_add(1);
                        }
                        tracing::info!(%target, code = resp.code, "following redirect");
                        started = true;
                    }
                    Err(e) => {
                        tracing::info!(%target, error = %e, "redirect target not started");
                        first_error.get_or_insert(e.code);
                    }
                }
            }
        }
        if let Some(leg) = self.b_legs.get_mut(i) {
            // Followed: the new legs decide. Not followed: why.
            leg.failed = if started {
                None
            } else {
                Some(first_error.unwrap_or(480))
            };
        }
        true
    }

    /// The dial target a redirect Contact names (module docs), or `None`
    /// when it is not followed.
    fn redirect_target(&self, uri: &Uri) -> Option<DialTarget> {
        let sip = uri.as_sip()?;
        if sip.headers().is_some() {
            // `?Replaces=...` and friends: not ours to act on.
            return None;
        }
        let host = sip.host_text();
        let ours = self
            .deps
            .config
            .sip
            .domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(&host));
        match sip.user_decoded() {
            Some(user) if ours && sip.port().is_none() && !user.is_empty() => {
                Some(DialTarget::User(user.into_owned()))
            }
            _ => Some(DialTarget::Uri(uri.to_string())),
        }
    }

    /// Before a final response to A: a 3xx the route passes goes instead,
    /// with its Contacts. `true` when it went.
    pub(super) fn pass_redirect(&mut self) -> bool {
        if self.final_sent {
            return false;
        }
        let Some((code, contacts)) = self.redirect.passed.take() else {
            return false;
        };
        let mut resp = self
            .a
            .response(code, crate::dialplan::plan::reason_phrase(code));
        for c in contacts {
            resp.headers.insert(Name::CONTACT, c);
        }
        tracing::info!(code, "redirect passed to the caller");
        self.send_a(resp);
        self.handle.update(None, |r| {
            r.end_status = code;
            if let Some(l) = r.legs.first_mut() {
                l.state = LegState::Terminated;
            }
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_are_sorted_by_q_and_written_back_without_display_names() {
        let mut resp = Response::new(302, "Moved");
        resp.headers.insert(
            Name::CONTACT,
            "\"Low\" <sip:low@example.com>;q=0.1, <sip:high@example.com;transport=tcp>;q=0.9;x=\"a b\"",
        );
        let list = contacts_of(&resp);
        assert_eq!(list.len(), 2);
        let values: Vec<String> = list.into_iter().map(contact_value).collect();
        assert_eq!(
            values,
            [
                "<sip:high@example.com;transport=tcp>;q=0.9",
                "<sip:low@example.com>;q=0.1"
            ]
        );
    }

    #[test]
    fn at_most_max_contacts_are_kept() {
        let mut resp = Response::new(300, "Multiple Choices");
        let many: Vec<String> = (0..50).map(|i| format!("<sip:u{i}@example.com>")).collect();
        resp.headers.insert(Name::CONTACT, many.join(", "));
        assert_eq!(contacts_of(&resp).len(), MAX_CONTACTS);
    }
}
