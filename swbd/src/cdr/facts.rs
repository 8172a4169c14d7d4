//! What a call's record does not keep for the admin view but its CDR
//! needs: final codes of B-legs, dial targets that never became legs, the
//! final RTP statistics of destroyed media sessions, an operator's hangup.
//! The call task notes them in its [`crate::b2bua::record::CallRecord`]
//! as they happen (one line at each place); [`super::Cdr::from_call`]
//! reads them when the call ends.

use switchboard_proto::media::v1 as media;

/// Entries of each list at most: a call has a bounded number of legs
/// (`b2bua.max_branches` per dial, redirects and transfers add a few), so
/// this is only a guard against a runaway dialplan.
const MAX_ENTRIES: usize = 64;

/// A call's facts for its CDR (module docs).
#[derive(Debug, Clone, Default)]
pub struct CallFacts {
    /// Final status of B-legs that failed, by SIP Call-ID.
    leg_codes: Vec<(String, u16)>,
    /// Dial targets that never became a leg, and their status.
    targets: Vec<(String, u16)>,
    /// Final statistics of destroyed media sessions, by session id.
    stats: Vec<(String, media::SessionStats)>,
    /// An operator (admin `HangupCall`) asked the call to end.
    pub operator_hangup: bool,
}

fn push<T>(list: &mut Vec<T>, item: T) {
    if list.len() < MAX_ENTRIES {
        list.push(item);
    }
}

impl CallFacts {
    /// A B-leg's INVITE failed with `code`.
    pub fn leg_failed(&mut self, sip_call_id: &str, code: u16) {
        match self.leg_codes.iter_mut().find(|(id, _)| id == sip_call_id) {
            Some(entry) => entry.1 = code,
            None => push(&mut self.leg_codes, (sip_call_id.to_string(), code)),
        }
    }

    /// A dial target could not be started (no contact, unknown user...).
    pub fn target_failed(&mut self, target: String, code: u16) {
        push(&mut self.targets, (target, code));
    }

    /// A media session was destroyed with these final statistics.
    pub fn session_stats(&mut self, session_id: &str, stats: Option<media::SessionStats>) {
        if session_id.is_empty() {
            return;
        }
        if let Some(stats) = stats {
            push(&mut self.stats, (session_id.to_string(), stats));
        }
    }

    /// The statistics of several sessions destroyed in one round trip:
    /// `stats` are in the order of `ids`, skipping `not_found`.
    pub fn batch_stats(
        &mut self,
        ids: &[String],
        not_found: &[String],
        stats: Vec<media::SessionStats>,
    ) {
        let found = ids.iter().filter(|id| !not_found.contains(id));
        for (id, s) in found.zip(stats) {
            self.session_stats(id, Some(s));
        }
    }

    /// The failure code of a B-leg, when it failed.
    pub fn leg_code(&self, sip_call_id: &str) -> Option<u16> {
        self.leg_codes
            .iter()
            .find(|(id, _)| id == sip_call_id)
            .map(|(_, c)| *c)
    }

    /// Dial targets that never became legs.
    pub fn failed_targets(&self) -> &[(String, u16)] {
        &self.targets
    }

    /// Final statistics of a session, when it was destroyed with them.
    pub fn stats_of(&self, session_id: &str) -> Option<&media::SessionStats> {
        if session_id.is_empty() {
            return None;
        }
        self.stats
            .iter()
            .rev()
            .find(|(id, _)| id == session_id)
            .map(|(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_stats_skip_sessions_the_node_did_not_know() {
        let mut f = CallFacts::default();
        let ids = vec!["s1".to_string(), "s2".to_string(), "s3".to_string()];
        let stat = |n| media::SessionStats {
            dropped: n,
            ..Default::default()
        };
        f.batch_stats(&ids, &["s2".to_string()], vec![stat(1), stat(3)]);
        assert_eq!(f.stats_of("s1").map(|s| s.dropped), Some(1));
        assert!(f.stats_of("s2").is_none());
        assert_eq!(f.stats_of("s3").map(|s| s.dropped), Some(3));
    }

    #[test]
    fn lists_are_bounded() {
        let mut f = CallFacts::default();
        for i in 0..MAX_ENTRIES + 10 {
            f.target_failed(format!("user/{i}"), 404);
            f.leg_failed(&format!("c{i}"), 486);
        }
        assert_eq!(f.failed_targets().len(), MAX_ENTRIES);
        assert_eq!(f.leg_codes.len(), MAX_ENTRIES);
    }
}
