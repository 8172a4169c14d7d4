//! Hold policy (issue #15, "Hold that lasts"), pure: what a party's offer
//! says about hold, what the other leg is offered when hold is passed on,
//! and which settings a call uses. The call's side of it (music, bridge,
//! re-INVITEs) is `call/hold.rs`.
//!
//! A party *holds* when its own offer says it does not want to receive:
//! `sendonly` or `inactive`, or `c=0.0.0.0` (RFC 2543), which the media
//! node reports as an empty remote address. Only a party's own offers
//! count: its answer to a re-INVITE we sent is not a hold of its own.

use switchboard_proto::media::v1::{Direction, NegotiatedMedia};

use crate::config::{HoldPolicy, MediaConfig};
use crate::dialplan::Variables;

/// Dialplan variable that overrides `media.hold` for a call
/// (`set: {hold: pass}` before `dial`).
pub const HOLD_VARIABLE: &str = "hold";
/// Dialplan variable that overrides `media.music_on_hold` for a call.
pub const MUSIC_VARIABLE: &str = "music_on_hold";

/// The hold settings of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldSettings {
    /// Music or pass.
    pub policy: HoldPolicy,
    /// Music on hold, relative to the node's audio directory.
    pub music: String,
}

impl HoldSettings {
    /// The config's settings, overridden by the route's variables. A
    /// variable with a value that cannot be used is ignored (logged: the
    /// dialplan cannot check `set` values at load).
    pub fn of_call(config: &MediaConfig, vars: &Variables) -> Self {
        let mut s = Self {
            policy: config.hold,
            music: config.music_on_hold.clone(),
        };
        if let Some(v) = vars.get(HOLD_VARIABLE) {
            match v.trim().to_ascii_lowercase().as_str() {
                "moh" => s.policy = HoldPolicy::Moh,
                "pass" => s.policy = HoldPolicy::Pass,
                _ => tracing::warn!(
                    value = %v.escape_debug(),
                    "dialplan variable hold: expected moh or pass; media.hold applies"
                ),
            }
        }
        if let Some(v) = vars.get(MUSIC_VARIABLE) {
            match check_audio_file(v) {
                Ok(()) => s.music = v.clone(),
                Err(why) => tracing::warn!(
                    value = %v.escape_debug(),
                    %why,
                    "dialplan variable music_on_hold refused; media.music_on_hold applies"
                ),
            }
        }
        s
    }
}

/// A file name the media node will resolve under its audio directory:
/// relative, without `..`, not empty.
pub fn check_audio_file(file: &str) -> Result<(), &'static str> {
    use std::path::{Component, Path};
    if file.trim().is_empty() {
        return Err("must name a file in the media nodes' audio directory");
    }
    let escapes = Path::new(file)
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if escapes {
        return Err("must be relative to the media nodes' audio directory, without \"..\"");
    }
    Ok(())
}

/// What the party behind a session said in its last offer, from its own
/// point of view, given the media node's view of the session (our
/// direction toward it, the address it named).
pub fn said(media: &NegotiatedMedia) -> Direction {
    let theirs = match media.direction() {
        Direction::Unspecified | Direction::Sendrecv => Direction::Sendrecv,
        Direction::Sendonly => Direction::Recvonly,
        Direction::Recvonly => Direction::Sendonly,
        Direction::Inactive => Direction::Inactive,
    };
    match (theirs, media.remote_rtp_address.is_empty()) {
        // c=0.0.0.0: "do not send to me".
        (Direction::Sendrecv, true) => Direction::Sendonly,
        (Direction::Recvonly, true) => Direction::Inactive,
        (d, _) => d,
    }
}

/// Whether a party that said `d` holds the call (does not want to receive).
pub fn holds(d: Direction) -> bool {
    matches!(d, Direction::Sendonly | Direction::Inactive)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(d: Direction, remote: &str) -> NegotiatedMedia {
        NegotiatedMedia {
            direction: d as i32,
            remote_rtp_address: remote.into(),
            ..Default::default()
        }
    }

    #[test]
    fn what_a_party_said_is_our_direction_reversed() {
        let a = "192.0.2.1:4000";
        assert_eq!(said(&media(Direction::Recvonly, a)), Direction::Sendonly);
        assert_eq!(said(&media(Direction::Sendonly, a)), Direction::Recvonly);
        assert_eq!(said(&media(Direction::Inactive, a)), Direction::Inactive);
        assert_eq!(said(&media(Direction::Sendrecv, a)), Direction::Sendrecv);
        assert_eq!(said(&media(Direction::Unspecified, a)), Direction::Sendrecv);
        // RFC 2543 hold: c=0.0.0.0.
        assert_eq!(said(&media(Direction::Sendrecv, "")), Direction::Sendonly);
        assert_eq!(said(&media(Direction::Sendonly, "")), Direction::Inactive);
    }

    #[test]
    fn holding_is_not_wanting_to_receive() {
        assert!(holds(Direction::Sendonly));
        assert!(holds(Direction::Inactive));
        assert!(!holds(Direction::Sendrecv));
        assert!(!holds(Direction::Recvonly), "mute is not hold");
    }

    #[test]
    fn route_variables_override_the_config() {
        let config = MediaConfig::default();
        let mut vars = Variables::new();
        let s = HoldSettings::of_call(&config, &vars);
        assert_eq!(s.policy, HoldPolicy::Moh);
        assert_eq!(s.music, crate::config::DEFAULT_MUSIC_ON_HOLD);
        vars.insert(HOLD_VARIABLE.into(), "Pass".into());
        vars.insert(MUSIC_VARIABLE.into(), "jazz/loop.wav".into());
        let s = HoldSettings::of_call(&config, &vars);
        assert_eq!(s.policy, HoldPolicy::Pass);
        assert_eq!(s.music, "jazz/loop.wav");
        vars.insert(HOLD_VARIABLE.into(), "bounce".into());
        vars.insert(MUSIC_VARIABLE.into(), "../etc/passwd".into());
        let s = HoldSettings::of_call(&config, &vars);
        assert_eq!(s.policy, HoldPolicy::Moh, "a bad value is ignored");
        assert_eq!(s.music, crate::config::DEFAULT_MUSIC_ON_HOLD);
    }

    #[test]
    fn audio_files_stay_in_the_audio_directory() {
        assert!(check_audio_file("music-on-hold.wav").is_ok());
        assert!(check_audio_file("moh/./jazz.wav").is_ok());
        for bad in ["", "  ", "/etc/passwd", "../x.wav", "a/../../x.wav"] {
            assert!(check_audio_file(bad).is_err(), "{bad}");
        }
    }
}
