//! Media health of a call for the calls list: worst loss and jitter, and
//! the one-way / silent flags, judged exactly as swbd's CDR judges them
//! ([`switchboard_proto::quality`]).
//!
//! Sources, best first: the call's detail record once it ended (swrtp's
//! final statistics as swbd received them at teardown); the final
//! statistics of its destroyed sessions (when top watches that swrtp);
//! the live statistics of its sessions. A live call is flagged only once
//! it has been answered for [`GRACE_SECS`]: the first packets may not have
//! crossed yet in the first moments after the 200.

use switchboard_proto::admin::v1 as pb;
use switchboard_proto::quality;

use super::store::{CallKey, Store};

/// Seconds after answer before a live call can be flagged.
pub const GRACE_SECS: i64 = 2;

/// Media that is not two-way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaFlag {
    /// Packets one way, none the other.
    OneWay,
    /// No packets either way.
    Silent,
}

impl MediaFlag {
    /// `one-way` or `silent`.
    pub fn name(self) -> &'static str {
        match self {
            MediaFlag::OneWay => "one-way",
            MediaFlag::Silent => "silent",
        }
    }
}

/// What the calls list shows of a call's media.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Health {
    /// Worst receive loss over the legs, percent.
    pub loss: f64,
    /// Worst receive jitter over the legs, ms.
    pub jitter: f64,
    /// One-way or silent.
    pub flag: Option<MediaFlag>,
}

fn flag(one_way: bool, silent: bool) -> Option<MediaFlag> {
    if silent {
        Some(MediaFlag::Silent)
    } else if one_way {
        Some(MediaFlag::OneWay)
    } else {
        None
    }
}

/// Health from a call detail record.
pub fn from_record(r: &pb::CallDetailRecord) -> Option<Health> {
    let mut worst: Option<(f64, f64)> = None;
    for rtp in r.legs.iter().filter_map(|l| l.rtp.as_ref()) {
        let rx = rtp.rx.unwrap_or_default();
        let (l, j) = worst.unwrap_or((0.0, 0.0));
        worst = Some((
            l.max(quality::loss_percent(rx.packets, rx.lost)),
            j.max(rx.jitter_ms),
        ));
    }
    let flag = flag(r.one_way, r.silent);
    if worst.is_none() && flag.is_none() {
        return None;
    }
    let (loss, jitter) = worst.unwrap_or((0.0, 0.0));
    Some(Health { loss, jitter, flag })
}

/// Health of `call` (module docs for the sources).
pub fn call_health(store: &Store, key: &CallKey, call: &pb::Call) -> Option<Health> {
    let ended = call.state == pb::CallState::Ended as i32;
    if ended && let Some(h) = store.history.get(key).and_then(from_record) {
        return Some(h);
    }
    let mut worst: Option<(f64, f64)> = None;
    for leg in &call.legs {
        let Some(rx) = store
            .session_stats(&leg.media_session_id)
            .and_then(|s| s.rx.as_ref())
        else {
            continue;
        };
        let (l, j) = worst.unwrap_or((0.0, 0.0));
        worst = Some((
            l.max(quality::loss_percent(rx.packets, rx.packets_lost)),
            j.max(rx.jitter_ms),
        ));
    }
    let answered = call.answered_at.as_ref().is_some_and(|t| t.seconds != 0);
    let settled = ended || store.call_secs(call) >= GRACE_SECS;
    let flag = if answered && settled {
        call.legs
            .iter()
            .find(|l| l.role == pb::LegRole::A as i32)
            .and_then(|a| store.session_stats(&a.media_session_id))
            .and_then(|s| {
                let (one_way, silent) = quality::flags(s);
                flag(one_way, silent)
            })
    } else {
        None
    };
    let (loss, jitter) = worst?;
    Some(Health { loss, jitter, flag })
}
