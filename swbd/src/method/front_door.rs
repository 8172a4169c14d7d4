//! The stateless front door: everything that can be answered without a
//! transaction is answered here, once, before the transaction layer keeps
//! anything for the request, the way Kamailio's `sl` module does. What
//! passes carries its [`Principal`] into its server transaction.
//!
//! In order, for a request that matches no transaction:
//! 1. `acl.allow` (asked for every message by [`FrontDoor::admits`]):
//!    sources outside it are dropped unanswered.
//! 2. The per-source rate limit (`sip.rate_limit`): out-of-dialog requests
//!    over it get `503` with `Retry-After` (or are dropped). Then overload
//!    control ([`crate::overload`], `sip.overload`): a new INVITE that the
//!    measured load does not admit gets `503` with `Retry-After`, before
//!    its digest check; nothing else is refused for load.
//! 3. CANCEL passes (the layer matches it to its INVITE); an in-dialog
//!    request (To tag) passes when the B2BUA knows its dialog, else gets
//!    `481` here.
//! 4. RFC 3261 §8.2.2 / §16.3: `Max-Forwards: 0` gets `483`, a `Require`
//!    naming extensions gets `420`, a method swbd does not implement `501`
//!    and one it does not handle out of a dialog `405` (both with `Allow`).
//!    OPTIONS gets its `200` here and a BYE outside a dialog its `481`.
//! 5. INVITE and REGISTER: an INVITE from a trusted network
//!    (`acl.trusted`) passes as [`Principal::Trusted`]; otherwise digest authentication answers
//!    `401`/`407` challenges, `403` for blocked sources and `400` for a
//!    digest `uri` that is not the Request-URI. An INVITE whose From names
//!    someone other than the authenticated user gets `403` under
//!    `auth.identity: reject`.
//!
//! Every refusal (ACL drop, rate limit, authentication failure, block,
//! identity) is also reported to [`crate::events::security`], which turns
//! it into a bounded stream of security events and log lines.
//!
//! Every answer here is sent once and forgotten: a retransmission is
//! screened again (a challenge gets a fresh nonce, which is as good), and a
//! spoofed request costs one reply of about its own size, never Timer G's
//! twelve.

use std::sync::Arc;

use crate::auth::acl::Acl;
use crate::auth::ratelimit::{RateLimiter, Verdict};
use crate::auth::{Authenticator, ChallengeKind, Principal};
use crate::config::{Config, IdentityPolicy, RateLimitAction};
use crate::events::security::SecurityKind;
use crate::sip::header::NameAddr;
use crate::sip::message::HeaderAccess;
use crate::sip::response::make_response;
use crate::sip::{Method, Name, Request, Response, random_token};
use crate::transaction::layer::{FrontDoor, Screening};
use crate::transport::{SipCounters, Source};

use super::{ALLOW, Context};

/// swbd's [`FrontDoor`].
pub struct SwbdFrontDoor {
    acl: Acl,
    auth: Authenticator,
    identity: IdentityPolicy,
    /// `None` when `sip.rate_limit` is off.
    limiter: Option<RateLimiter>,
    /// The handlers' context: its dialog router (once a B2BUA is attached)
    /// says which in-dialog requests name a dialog that exists.
    context: Arc<Context>,
    limit_action: RateLimitAction,
    counters: Arc<SipCounters>,
}

impl std::fmt::Debug for SwbdFrontDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwbdFrontDoor").finish_non_exhaustive()
    }
}

impl SwbdFrontDoor {
    /// From the config (validated: the ACL compiles).
    pub fn new(
        config: &Config,
        auth: Authenticator,
        counters: Arc<SipCounters>,
        context: Arc<Context>,
    ) -> Result<Self, String> {
        Ok(Self {
            context,
            acl: Acl::from_config(&config.acl)?,
            auth,
            identity: config.auth.identity,
            limiter: Some(RateLimiter::new(&config.sip.rate_limit)).filter(RateLimiter::enabled),
            limit_action: config.sip.rate_limit.action,
            counters,
        })
    }

    fn answer(request: &Request, code: u16, reason: &str) -> Response {
        make_response(request, code, reason, Some(&random_token(10)))
    }

    fn authenticate(&self, request: &Request, source: &Source) -> Screening {
        let ip = source.remote.ip();
        // Trusted networks place calls without a password; a REGISTER
        // always needs one (a spoofed trunk address must not take over a
        // phone's registration).
        if request.method == Method::Invite
            && let Some(network) = self.acl.trusted(ip)
        {
            return Screening::Pass(Some(Principal::Trusted(network.clone())));
        }
        if !self.auth.enabled() {
            return Screening::Pass(Some(Principal::Unverified));
        }
        let kind = if request.method == Method::Register {
            ChallengeKind::Www
        } else {
            ChallengeKind::Proxy
        };
        let user = match self.auth.check(request, source, kind) {
            Ok(user) => user,
            Err(rejection) => {
                self.report_rejection(&rejection, source);
                let mut resp = Self::answer(request, rejection.code, rejection.reason);
                rejection.apply(&mut resp);
                return Screening::Answer(resp);
            }
        };
        if request.method == Method::Invite && self.identity == IdentityPolicy::Reject {
            let from_user = request.header_from().ok().and_then(|f| f.uri.user());
            if from_user.as_deref() != Some(user.username.as_str()) {
                SipCounters::inc(&self.counters.identity_refused);
                // Logged (bounded) by the security events.
                self.context.security.report(
                    SecurityKind::IdentityRefused,
                    source,
                    &user.username,
                    &format!(
                        "From names {:?}, not the authenticated user",
                        from_user.unwrap_or_default()
                    ),
                );
                return Screening::Answer(Self::answer(
                    request,
                    403,
                    "Forbidden (From does not match the authenticated user)",
                ));
            }
        }
        Screening::Pass(Some(Principal::User(Arc::from(user.username))))
    }

    /// A failed authentication as security events: the failure, and the
    /// block it caused.
    fn report_rejection(&self, rejection: &crate::auth::AuthRejection, source: &Source) {
        let Some(failure) = rejection.failure else {
            return;
        };
        let user = rejection.user.as_deref().unwrap_or_default();
        let kind = match failure {
            crate::auth::AuthFailure::Blocked => SecurityKind::BlockedRequest,
            _ => SecurityKind::AuthFailure,
        };
        let security = &self.context.security;
        security.report(kind, source, user, failure.as_str());
        if let Some((failures, block)) = rejection.blocked_now {
            security.blocked(source, user, failures, block);
        }
    }
}

impl FrontDoor for SwbdFrontDoor {
    fn admits(&self, source: &Source) -> bool {
        let allowed = self.acl.allows(source.remote.ip());
        if !allowed {
            self.context.security.report(
                SecurityKind::AclDropped,
                source,
                "",
                "source outside acl.allow: dropped",
            );
        }
        allowed
    }

    fn screen(&self, request: &Request, source: &Source) -> Screening {
        if matches!(request.method, Method::Ack | Method::Cancel) {
            return Screening::Pass(None);
        }
        let in_dialog = request.raw(&Name::TO).is_some_and(NameAddr::has_tag);
        if in_dialog {
            let router = self.context.dialogs.lock().ok().and_then(|r| r.clone());
            return match router {
                Some(router) if !router.knows(request) => Screening::Answer(Self::answer(
                    request,
                    481,
                    "Call/Transaction Does Not Exist",
                )),
                _ => Screening::Pass(None),
            };
        }
        if let Some(limiter) = &self.limiter
            && limiter.check(source.remote.ip(), tokio::time::Instant::now()) == Verdict::Limited
        {
            SipCounters::inc(&self.counters.rate_limited);
            let dropped = self.limit_action == RateLimitAction::Drop;
            self.context.security.report(
                SecurityKind::RateLimited,
                source,
                "",
                if dropped {
                    "over sip.rate_limit: dropped"
                } else {
                    "over sip.rate_limit: answered 503"
                },
            );
            if dropped {
                return Screening::Drop;
            }
            let mut resp = Self::answer(request, 503, "Service Unavailable (rate limited)");
            resp.headers.insert(Name::RETRY_AFTER, "5");
            return Screening::Answer(resp);
        }
        if request.method == Method::Invite && self.context.overload.admit_invite().is_err() {
            let mut resp = Self::answer(request, 503, "Service Unavailable (overloaded)");
            resp.headers.insert(
                Name::RETRY_AFTER,
                self.context.overload.retry_after_secs().to_string(),
            );
            return Screening::Answer(resp);
        }
        if let Some(resp) = precheck(request) {
            return Screening::Answer(resp);
        }
        match &request.method {
            Method::Invite | Method::Register => self.authenticate(request, source),
            // Answered here, once: an OPTIONS ping keeps nothing, and a
            // flood of them (or of BYEs for no dialog) grows no table.
            Method::Options => {
                let mut resp = Self::answer(request, 200, "OK");
                resp.headers.insert(Name::ALLOW, ALLOW);
                resp.headers.insert(Name::ACCEPT, "application/sdp");
                resp.headers.insert(
                    Name::SUPPORTED,
                    crate::sip::capabilities::supported_header().unwrap_or_default(),
                );
                Screening::Answer(resp)
            }
            Method::Bye => Screening::Answer(Self::answer(
                request,
                481,
                "Call/Transaction Does Not Exist",
            )),
            Method::Other(_) => {
                let mut resp = Self::answer(request, 501, "Not Implemented");
                resp.headers.insert(Name::ALLOW, ALLOW);
                Screening::Answer(resp)
            }
            _ => {
                let mut resp = Self::answer(request, 405, "Method Not Allowed");
                resp.headers.insert(Name::ALLOW, ALLOW);
                Screening::Answer(resp)
            }
        }
    }
}

/// RFC 3261 §8.2.2 / §16.3 checks: `Max-Forwards: 0` gets `483`; a
/// `Require` naming an extension swbd does not support
/// ([`crate::sip::capabilities`]) gets `420` with `Unsupported`.
fn precheck(request: &Request) -> Option<Response> {
    if request.max_forwards().ok().flatten() == Some(0) {
        return Some(SwbdFrontDoor::answer(request, 483, "Too Many Hops"));
    }
    let mut required: Option<String> = None;
    for value in request.raw_values(&Name::REQUIRE) {
        for item in value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty() && !crate::sip::capabilities::is_supported(s))
        {
            let list = required.get_or_insert_with(String::new);
            if !list.is_empty() {
                list.push_str(", ");
            }
            list.push_str(item);
        }
    }
    let required = required?;
    let mut resp = SwbdFrontDoor::answer(request, 420, "Bad Extension");
    resp.headers.insert(Name::UNSUPPORTED, required);
    Some(resp)
}
