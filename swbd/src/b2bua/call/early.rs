//! Early dialogs (RFC 3261 §12.1): what our responses to A carry, and the
//! routes that let requests inside early dialogs (UPDATE, RFC 3311) reach
//! the call.
//!
//! - Every provisional to A carries our Contact (§12.1.1: it is the remote
//!   target of the early dialog) and `Allow`; the first one routes A's
//!   early dialog to the call. Our 2xx also carries `Allow` and
//!   `Supported` (§13.3.1.4), from [`crate::sip::capabilities`].
//! - A B-leg's first 18x with a To tag and a Contact routes that leg's
//!   early dialog. One per leg: a callee that keeps changing tags cannot
//!   grow the dialog table. The routes of the legs that lose are removed
//!   when one answers, all of them when the call ends.

use super::*;
use crate::sip::capabilities;

impl Ctl {
    /// Headers a response to A's INVITE carries in a dialog (1xx with a To
    /// tag, 2xx): Contact, Allow, and on 2xx Supported. The first 18x also
    /// routes A's early dialog to the call.
    pub(super) fn dialog_headers(&mut self, resp: &mut Response) {
        if !(101..300).contains(&resp.code) {
            return;
        }
        if !resp.headers.contains(&Name::CONTACT) {
            let source = *self.a.source();
            let contact = self.local_contact(&Target::reply_to(&source, source.remote));
            resp.headers.insert(Name::CONTACT, format!("<{contact}>"));
        }
        if !resp.headers.contains(&Name::ALLOW) {
            resp.headers
                .insert(Name::ALLOW, capabilities::ALLOW_IN_DIALOG);
        }
        if resp.code >= 200 {
            if !resp.headers.contains(&Name::SUPPORTED) {
                resp.headers
                    .insert(Name::SUPPORTED, capabilities::supported_value());
            }
            return;
        }
        if self.updates.a_early_routed {
            return;
        }
        let Some(id) = self.a_dialog_id() else {
            return;
        };
        self.handle.route_dialog(id.clone(), self.dlg_tx.clone());
        self.updates.early_routes.push(id);
        self.updates.a_early_routed = true;
    }

    /// A's dialog (early or confirmed): its Call-ID, our To tag, its From tag.
    fn a_dialog_id(&self) -> Option<DialogId> {
        let request = self.a.request();
        let remote_tag = request.header_from().ok()?.tag()?.to_string();
        Some(DialogId {
            call_id: request.call_id().ok()?.to_string(),
            local_tag: self.a.to_tag().to_string(),
            remote_tag,
        })
    }

    /// B-leg `i` sent a provisional: route its early dialog (the first one
    /// with a To tag and a Contact) so its UPDATEs reach the call.
    pub(super) fn route_b_early(&mut self, i: usize, resp: &Response) {
        let Some(leg) = self.b_legs.get_mut(i) else {
            return;
        };
        if leg.early_dialog.is_some() || leg.txn.is_none() {
            return;
        }
        let Ok(dialog) = Dialog::as_uac(&leg.request, resp, leg.contact.clone(), leg.flow) else {
            return;
        };
        leg.early_dialog = Some(dialog.id.clone());
        self.handle
            .route_dialog(dialog.id.clone(), self.dlg_tx.clone());
        self.updates.b_early.add(dialog.id.clone());
        self.updates.early_routes.push(dialog.id);
    }

    /// B-leg `winner` answered: the early dialogs of the others end, its
    /// own is confirmed.
    pub(super) fn unroute_early_except(&mut self, winner: usize) {
        if let Some(id) = self
            .b_legs
            .get(winner)
            .and_then(|b| b.early_dialog.as_ref())
        {
            self.updates.b_early.remove(id);
        }
        let losing: Vec<DialogId> = self
            .b_legs
            .iter_mut()
            .enumerate()
            .filter(|(j, _)| *j != winner)
            .filter_map(|(_, b)| b.early_dialog.take())
            .collect();
        for id in &losing {
            self.handle.unroute_dialog(id);
            self.updates.b_early.remove(id);
        }
        self.updates.early_routes.retain(|r| !losing.contains(r));
    }

    /// The call ends: no early dialog routes it any more, nor A's dialog
    /// (whose `a_dialog` is gone once A got its BYE).
    pub(super) fn unroute_early(&mut self) {
        for id in std::mem::take(&mut self.updates.early_routes) {
            self.handle.unroute_dialog(&id);
        }
        self.updates.b_early.clear();
        if let Some(id) = self.a_dialog_id() {
            self.handle.unroute_dialog(&id);
        }
    }
}
