//! The `Session-Expires` and `Min-SE` headers (RFC 4028 §4, §5) and the
//! negotiation rules of both roles (§7 UAC, §9 UAS), as pure functions;
//! [`super::session_timer`] applies them to a call's legs.

use super::*;
use crate::config::SessionTimerConfig;
use crate::sip::capabilities::lists_option_tag;

/// Longest interval swbd keeps (a day): peer values above it are lowered.
pub(super) const MAX_INTERVAL_SECS: u32 = 86_400;

/// The option tag (RFC 4028 §3).
pub(super) const TAG: &str = "timer";

/// Who refreshes (RFC 4028 §4), from the transaction's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refresher {
    /// The UAC of the INVITE / UPDATE that carried it.
    Uac,
    /// Its UAS.
    Uas,
}

impl Refresher {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// A `Session-Expires` value (RFC 4028 §4): `1800;refresher=uac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SessionExpires {
    secs: u32,
    refresher: Option<Refresher>,
}

impl SessionExpires {
    /// Parse one value; `None` when malformed. Seconds above a day are
    /// lowered to a day.
    pub(super) fn parse(value: &str) -> Option<SessionExpires> {
        let mut parts = value.split(';');
        let secs = parse_secs(parts.next()?)?;
        let mut refresher = None;
        for p in parts {
            let Some((name, v)) = p.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("refresher") {
                refresher = match v.trim().to_ascii_lowercase().as_str() {
                    "uac" => Some(Refresher::Uac),
                    "uas" => Some(Refresher::Uas),
                    _ => None,
                };
            }
        }
        Some(SessionExpires { secs, refresher })
    }

    /// The header of `message` (long or compact form `x`).
    pub(super) fn of<M: HeaderAccess>(message: &M) -> Option<SessionExpires> {
        message
            .raw(&Name::SESSION_EXPIRES)
            .and_then(SessionExpires::parse)
    }
}

/// Delta-seconds, 1 to a day.
fn parse_secs(s: &str) -> Option<u32> {
    let n: u64 = s.trim().parse().ok()?;
    (n >= 1).then(|| n.min(u64::from(MAX_INTERVAL_SECS)) as u32)
}

/// The `Min-SE` of `message` (RFC 4028 §5).
pub(super) fn min_se<M: HeaderAccess>(message: &M) -> Option<u32> {
    message
        .raw(&Name::MIN_SE)
        .and_then(|v| parse_secs(v.split(';').next().unwrap_or_default()))
}

pub(super) fn supports_timer<M: HeaderAccess>(message: &M) -> bool {
    lists_option_tag(message, &Name::SUPPORTED, TAG)
        || lists_option_tag(message, &Name::REQUIRE, TAG)
}

pub(super) fn allows_update<M: HeaderAccess>(message: &M) -> bool {
    message
        .raw_values(&Name::ALLOW)
        .flat_map(|v| v.split(','))
        .any(|m| m.trim().eq_ignore_ascii_case("UPDATE"))
}

/// As UAS of an INVITE or UPDATE carrying `se` / `min`: the interval and
/// refresher to answer (RFC 4028 §9). `we_refresh_now` is the current
/// role on a leg that already has a timer (a refresh without a refresher
/// keeps it).
pub(super) fn negotiate_as_uas(
    cfg: &SessionTimerConfig,
    se: Option<SessionExpires>,
    min: Option<u32>,
    peer_supports: bool,
    we_refresh_now: Option<bool>,
) -> (u32, Refresher) {
    let floor = cfg.min_se.max(min.unwrap_or(0));
    let secs = match se {
        Some(se) => se.secs.min(cfg.session_expires).max(floor),
        None => cfg.session_expires.max(floor),
    };
    let refresher = match (se.and_then(|s| s.refresher), we_refresh_now) {
        (Some(r), _) => r,
        (None, Some(true)) => Refresher::Uas,
        (None, Some(false)) => Refresher::Uac,
        (None, None) if peer_supports && se.is_some() => Refresher::Uac,
        (None, None) => Refresher::Uas,
    };
    // A peer that does not know timers cannot be asked to refresh.
    let refresher = if peer_supports {
        refresher
    } else {
        Refresher::Uas
    };
    (secs.min(MAX_INTERVAL_SECS), refresher)
}

/// As UAC, from a 2xx's `Session-Expires` to a request that asked for
/// `asked` seconds: (interval, we refresh), or `None` without the header.
pub(super) fn negotiate_as_uac(asked: u32, se: Option<SessionExpires>) -> Option<(u32, bool)> {
    let se = se?;
    Some((
        se.secs.min(asked.max(1)),
        se.refresher != Some(Refresher::Uas),
    ))
}

/// Why an in-dialog INVITE / UPDATE is refused before it is processed.
#[derive(Debug)]
pub(super) struct Refusal {
    /// Status code.
    pub(super) code: u16,
    /// Reason phrase.
    pub(super) reason: &'static str,
    header: Option<(Name, String)>,
}

impl Refusal {
    /// `491 Request Pending` (RFC 3261 §14.2: an INVITE crossing ours).
    pub(super) fn request_pending() -> Refusal {
        Refusal {
            code: 491,
            reason: "Request Pending",
            header: None,
        }
    }

    /// `resp` (built with [`Refusal::code`] and [`Refusal::reason`]) with
    /// the header the refusal needs (`Min-SE`, `Unsupported`).
    pub(super) fn complete(&self, mut resp: Response) -> Response {
        if let Some((name, value)) = &self.header {
            resp.headers.insert(name.clone(), value.clone());
        }
        resp
    }
}

/// What an INVITE or refresh must be refused with, per `cfg`: `420` for
/// `Require: timer` with timers off, `422` with our `Min-SE` for a
/// `Session-Expires` below it.
pub(super) fn refusal(cfg: &SessionTimerConfig, request: &Request) -> Option<Refusal> {
    if !cfg.enabled {
        return lists_option_tag(request, &Name::REQUIRE, TAG).then(|| Refusal {
            code: 420,
            reason: "Bad Extension",
            header: Some((Name::UNSUPPORTED, TAG.to_string())),
        });
    }
    let se = SessionExpires::of(request)?;
    (se.secs < cfg.min_se).then(|| Refusal {
        code: 422,
        reason: "Session Interval Too Small",
        header: Some((Name::MIN_SE, cfg.min_se.to_string())),
    })
}

/// A new call's INVITE that session timers refuse, answered here: the
/// response to send (before any call exists).
pub(super) fn refuse_invite(cfg: &SessionTimerConfig, a: &InviteResponder) -> Option<Response> {
    let r = refusal(cfg, a.request())?;
    tracing::info!(code = r.code, "INVITE refused by session timer rules");
    Some(r.complete(a.response(r.code, r.reason)))
}

/// `Session-Expires` (and `Require: timer` when the peer refreshes) on our
/// 2xx.
pub(super) fn add_answer_headers(resp: &mut Response, secs: u32, refresher: Refresher) {
    resp.headers.remove(&Name::SESSION_EXPIRES);
    resp.headers.insert(
        Name::SESSION_EXPIRES,
        format!("{secs};refresher={}", refresher.as_str()),
    );
    if refresher == Refresher::Uac && !lists_option_tag(resp, &Name::REQUIRE, TAG) {
        resp.headers.insert(Name::REQUIRE, TAG);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(session_expires: u32, min_se: u32) -> SessionTimerConfig {
        SessionTimerConfig {
            enabled: true,
            session_expires,
            min_se,
        }
    }

    fn se(v: &str) -> Option<SessionExpires> {
        SessionExpires::parse(v)
    }

    #[test]
    fn session_expires_parses() {
        assert_eq!(
            se(" 1800 ; refresher=UAC"),
            Some(SessionExpires {
                secs: 1800,
                refresher: Some(Refresher::Uac)
            })
        );
        assert_eq!(se("90").map(|s| s.refresher), Some(None));
        assert_eq!(se("99999999999").map(|s| s.secs), Some(MAX_INTERVAL_SECS));
        for bad in ["", "0", "-5", "x;refresher=uac", "1.5"] {
            assert_eq!(se(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn uas_lowers_to_config_and_keeps_the_callers_floor() {
        let c = cfg(1800, 90);
        // Asked 3600: lowered to ours; the caller named no refresher but
        // supports timers: it refreshes.
        assert_eq!(
            negotiate_as_uas(&c, se("3600"), None, true, None),
            (1800, Refresher::Uac)
        );
        // Asked 120: kept.
        assert_eq!(
            negotiate_as_uas(&c, se("120;refresher=uas"), None, true, None),
            (120, Refresher::Uas)
        );
        // The caller's Min-SE is a floor for our lowering.
        assert_eq!(
            negotiate_as_uas(&c, se("4000"), Some(2000), true, None),
            (2000, Refresher::Uac)
        );
        // No timer asked, no support: swbd refreshes at its own interval.
        assert_eq!(
            negotiate_as_uas(&c, None, None, false, None),
            (1800, Refresher::Uas)
        );
        // A refresh without refresher keeps the roles.
        assert_eq!(
            negotiate_as_uas(&c, se("1800"), None, true, Some(true)),
            (1800, Refresher::Uas)
        );
        assert_eq!(
            negotiate_as_uas(&c, se("1800"), None, true, Some(false)),
            (1800, Refresher::Uac)
        );
    }

    #[test]
    fn uac_takes_the_answer() {
        assert_eq!(
            negotiate_as_uac(1800, se("900;refresher=uas")),
            Some((900, false))
        );
        assert_eq!(
            negotiate_as_uac(1800, se("900;refresher=uac")),
            Some((900, true))
        );
        // No refresher named: the UAC (swbd) refreshes.
        assert_eq!(negotiate_as_uac(1800, se("900")), Some((900, true)));
        // Never more than asked.
        assert_eq!(negotiate_as_uac(90, se("3600")), Some((90, true)));
        assert_eq!(negotiate_as_uac(1800, None), None);
    }
}
