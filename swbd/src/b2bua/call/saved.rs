//! The bridged call's record in the state store (issue #18): saved when
//! the call is bridged, again whenever its dialogs change (a re-INVITE, a
//! request we sent on a leg), deleted when it ends. See
//! `b2bua/restart/mod.rs`.

use super::*;
use crate::b2bua::restart::saved_call::{self, SavedCall, SavedDialog, unix_ms};

impl Ctl {
    /// The record of this call as it stands, if both legs are up.
    fn saved_call(&self) -> Option<SavedCall> {
        let a = self.a_dialog.as_ref()?;
        let w = self.winner.as_ref()?;
        let a_session = self.a_session.as_ref()?.0.clone();
        let a = match SavedDialog::of(a) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "caller's dialog not saved");
                return None;
            }
        };
        let b = match SavedDialog::of(&w.dialog) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "callee's dialog not saved");
                return None;
            }
        };
        let mut call = SavedCall {
            version: saved_call::VERSION,
            id: self.handle.id().to_string(),
            instance: self.deps.saved_calls.instance().to_string(),
            caller: String::new(),
            destination: String::new(),
            route_id: String::new(),
            dialplan_version: String::new(),
            node: self.node_name(),
            a_session,
            b_session: w.session_id.clone(),
            codec: String::new(),
            b_target: String::new(),
            created_at_ms: 0,
            answered_at_ms: 0,
            a,
            b,
        };
        self.handle.update(None, |r| {
            call.caller.clone_from(&r.caller);
            call.destination.clone_from(&r.destination);
            call.route_id.clone_from(&r.route_id);
            call.dialplan_version.clone_from(&r.dialplan_version);
            call.created_at_ms = unix_ms(r.created_at);
            call.answered_at_ms = r.answered_at.map(unix_ms).unwrap_or(call.created_at_ms);
            if let Some(b) = r.legs.iter().rev().find(|l| !l.is_a) {
                call.codec.clone_from(&b.codec);
                call.b_target.clone_from(&b.target);
            }
        });
        (!call.node.is_empty() && !call.b_session.is_empty()).then_some(call)
    }

    /// Save the call when it is new to the store, its dialogs changed or
    /// its media moved (drain with migration, migrate.rs).
    pub(super) fn save_call(&mut self) {
        if !self.deps.saved_calls.enabled() {
            return;
        }
        let Some(call) = self.saved_call() else {
            return;
        };
        if self
            .saved
            .as_ref()
            .is_some_and(|s| !record_changed(s, &call))
        {
            return;
        }
        self.deps.saved_calls.save(&call);
        self.saved = Some(call);
    }

    /// The call ended: its record goes.
    pub(super) fn forget_call(&mut self) {
        if self.saved.take().is_some() {
            self.deps.saved_calls.delete(self.handle.id());
        }
    }
}

/// Whether `new` must overwrite the saved `old`: a dialog changed, or the
/// media did (a migrated call has a new node and new sessions; a restart
/// must find them there, not on the drained node).
fn record_changed(old: &SavedCall, new: &SavedCall) -> bool {
    old.dialogs_differ(new)
        || old.node != new.node
        || old.a_session != new.a_session
        || old.b_session != new.b_session
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_to_another_node_is_a_change_even_with_the_same_dialogs() {
        use crate::b2bua::restart::saved_call::tests::{call, dialog};
        let d = SavedDialog::of(&dialog()).expect("fits");
        let old = call(d.clone(), d);
        assert!(!record_changed(&old, &old.clone()));
        let mut moved = old.clone();
        moved.node = "rtp-2".into();
        moved.a_session = "a-new".into();
        moved.b_session = "b-new".into();
        assert!(!old.dialogs_differ(&moved), "same dialogs");
        assert!(record_changed(&old, &moved));
        let mut b_only = old.clone();
        b_only.b_session = "b-new".into();
        assert!(record_changed(&old, &b_only));
    }
}
