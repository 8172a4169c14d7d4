//! The registrar (RFC 3261 §10.3) and location service.
//!
//! # Layout
//! - [`Registrar`]: cheap-clone handle over the location table; applies a
//!   REGISTER ([`Registrar::register_with`]), answers lookups for the B2BUA
//!   ([`Registrar::lookup`]) and lists bindings for admin
//!   ([`Registrar::list`]). A sweeper task removes expired bindings on time.
//! - [`binding`] - [`Binding`].
//! - [`store_sync`] - the table kept in step with the state store
//!   (`state.backend: redis`): write-through, queued while it is down.
//!
//! Behaviour:
//! - AORs are keyed by user part: all `sip.domains` are aliases of one
//!   domain. A REGISTER whose To host is not one of them is answered
//!   `404 Not Found` (swbd is not a proxy: it does not forward it).
//! - Expiry per contact: its `expires` param, else the `Expires` header,
//!   else `registrar.default_expires_secs`; below `min_expires_secs` (and
//!   not 0) the whole request gets `423 Interval Too Brief` with
//!   `Min-Expires`; above `max_expires_secs` it is cut down.
//! - Call-ID/CSeq (§10.3 step 7): a contact already bound with the same
//!   Call-ID and a CSeq not higher is refused with `400`; a different
//!   Call-ID replaces the binding.
//! - The `200 OK` lists all current contacts of the AOR with `expires`.
//! - At most `registrar.max_contacts_per_aor` bindings per AOR (an INVITE
//!   forks one B-leg per binding). A REGISTER listing more Contacts than
//!   that is refused with `403` before the table is looked at; one that
//!   would leave more bindings is refused (`contacts_overflow: reject`,
//!   the default) or makes room by removing the AOR's least recently
//!   refreshed bindings (`replace_oldest`).
//! - Events: Added / Refreshed / Removed / Expired on the EventBus.

pub mod binding;
pub mod store_sync;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::config::{ContactsOverflow, RegistrarConfig, Transport};
use crate::events::{BindingInfo, Event, EventBus, RegistrationChange};
use crate::sip::header::param;
use crate::sip::uri::same_uri;
use crate::sip::{ContactList, Uri};
use crate::transport::Source;
pub use binding::Binding;

/// Why a REGISTER was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not one of our domains.
    #[error("not authoritative for domain {0}")]
    NotOurDomain(String),
    /// Below the minimum.
    #[error("expiry below {min_expires} seconds")]
    IntervalTooBrief {
        /// Min-Expires to send.
        min_expires: u32,
    },
    /// Malformed or out-of-order request.
    #[error("{0}")]
    BadRequest(String),
    /// More bindings than `registrar.max_contacts_per_aor` (sent as 403).
    #[error("too many contacts: at most {max} per address of record")]
    TooManyContacts {
        /// The configured cap.
        max: usize,
    },
}

impl Error {
    /// The SIP status.
    pub fn status_code(&self) -> u16 {
        match self {
            Error::NotOurDomain(_) => 404,
            Error::IntervalTooBrief { .. } => 423,
            Error::BadRequest(_) => 400,
            Error::TooManyContacts { .. } => 403,
        }
    }
}

/// What a REGISTER asks for, extracted by the method handler.
#[derive(Debug, Clone)]
pub struct RegisterRequest {
    /// AOR (To URI).
    pub aor: Uri,
    /// Contacts (or `*`).
    pub contacts: ContactList,
    /// `Expires` header.
    pub expires: Option<u32>,
    /// Call-ID.
    pub call_id: String,
    /// CSeq number.
    pub cseq: u32,
    /// Real source.
    pub source: Source,
    /// User-Agent.
    pub user_agent: String,
}

/// Cheap-clone handle to the location table.
#[derive(Clone, Debug)]
pub struct Registrar {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: RegistrarConfig,
    domains: Vec<String>,
    events: EventBus,
    /// Bindings by user. A std Mutex: every access is a short, non-async
    /// critical section (mini-redis `db.rs` style).
    table: Mutex<HashMap<String, Vec<Binding>>>,
    /// The state store, when it is shared (Redis): set once at start.
    store: std::sync::OnceLock<Arc<store_sync::StoreLink>>,
}

impl Registrar {
    /// A registrar for `domains` (lowercased).
    pub fn new(config: RegistrarConfig, domains: &[String], events: EventBus) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
                events,
                table: Mutex::new(HashMap::new()),
                store: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Whether `host` is one of our domains.
    pub fn is_our_domain(&self, host: &str) -> bool {
        let h = host.trim_start_matches('[').trim_end_matches(']');
        self.inner.domains.iter().any(|d| d.eq_ignore_ascii_case(h))
    }

    /// Current bindings of `user`, best q first.
    pub fn lookup(&self, user: &str) -> Vec<Binding> {
        let now = Instant::now();
        let mut v: Vec<Binding> = self
            .inner
            .table
            .lock()
            .map(|t| t.get(user).cloned().unwrap_or_default())
            .unwrap_or_default();
        v.retain(|b| b.expires_at > now);
        // A TCP flow held by another swbd cannot be reached from here (the
        // phone's connection ends there): RFC 5626 outbound is the way
        // forward; until then such a contact is not called from this
        // instance (docs/features/state.md).
        v.retain(|b| {
            let foreign_tcp = b.instance.is_some() && b.source.transport == Transport::Tcp;
            if foreign_tcp {
                tracing::info!(aor = %b.aor, contact = %b.contact, instance = b.instance.as_deref().unwrap_or(""), "contact skipped: its TCP flow is held by another swbd instance");
            }
            !foreign_tcp
        });
        v.sort_by(|a, b| b.q.total_cmp(&a.q));
        v
    }

    /// Every binding, for admin.
    pub fn list(&self) -> Vec<BindingInfo> {
        let now = Instant::now();
        self.inner
            .table
            .lock()
            .map(|t| {
                t.values()
                    .flatten()
                    .filter(|b| b.expires_at > now)
                    .map(Binding::info)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Number of bindings.
    pub fn len(&self) -> usize {
        self.inner
            .table
            .lock()
            .map(|t| t.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Apply a REGISTER (RFC 3261 §10.3 steps 1 and 5-8), handing the
    /// AOR's bindings afterwards to `render` under the table lock instead of
    /// cloning them (the REGISTER handler prints its Contact headers from
    /// them).
    pub fn register_with<R>(
        &self,
        req: &RegisterRequest,
        render: impl FnOnce(&[Binding]) -> R,
    ) -> Result<R, Error> {
        let cfg = self.inner.config;
        let host = req.aor.host().unwrap_or_default();
        if !self.is_our_domain(&host) {
            return Err(Error::NotOurDomain(host));
        }
        let user = req
            .aor
            .user()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Error::BadRequest("To URI has no user".into()))?;
        let max_contacts = cfg.max_contacts_per_aor;
        if let ContactList::Contacts(contacts) = &req.contacts
            && max_contacts > 0
            && contacts.len() > max_contacts
        {
            return Err(Error::TooManyContacts { max: max_contacts });
        }
        let aor_text = format!("sip:{user}@{host}");
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut events = Vec::new();
        let mut replaced = 0usize;
        let sync = self.inner.store.get();
        let mut writes: Vec<store_sync::Write> = Vec::new();
        let remove = |writes: &mut Vec<store_sync::Write>, b: &Binding| {
            if sync.is_some() {
                writes.push(store_sync::Write::Remove(
                    b.user.clone(),
                    b.contact.to_string(),
                ));
            }
        };
        // Events (and their info log lines) cost a BindingInfo each: build
        // them only when someone listens.
        let publish =
            self.inner.events.has_subscribers() || tracing::enabled!(tracing::Level::INFO);

        let result = {
            let Ok(mut table) = self.inner.table.lock() else {
                return Err(Error::BadRequest("registrar unavailable".into()));
            };
            let current = table.entry(user.clone()).or_default();
            current.retain(|b| b.expires_at > now);
            match &req.contacts {
                ContactList::Star => {
                    if req.expires != Some(0) {
                        return Err(Error::BadRequest("Contact: * needs Expires: 0".into()));
                    }
                    // §10.3 step 6: refuse if any binding has this Call-ID
                    // with a CSeq not lower.
                    if current
                        .iter()
                        .any(|b| b.call_id == req.call_id && b.cseq >= req.cseq)
                    {
                        return Err(Error::BadRequest(
                            "CSeq not higher than the binding's".into(),
                        ));
                    }
                    for b in current.drain(..) {
                        remove(&mut writes, &b);
                        if publish {
                            events.push((RegistrationChange::Removed, b.info()));
                        }
                    }
                }
                ContactList::Contacts(contacts) => {
                    // Validate everything before changing anything.
                    let mut plan = Vec::new();
                    for c in contacts {
                        let expires = match param(&c.params, "expires") {
                            Some(Some(v)) => v.parse::<u64>().map_err(|_| {
                                Error::BadRequest("malformed contact expires".into())
                            })?,
                            Some(None) => {
                                return Err(Error::BadRequest("malformed contact expires".into()));
                            }
                            None => u64::from(req.expires.unwrap_or(cfg.default_expires_secs)),
                        };
                        if expires != 0 && expires < u64::from(cfg.min_expires_secs) {
                            return Err(Error::IntervalTooBrief {
                                min_expires: cfg.min_expires_secs,
                            });
                        }
                        let expires = expires.min(u64::from(cfg.max_expires_secs));
                        let q = match param(&c.params, "q") {
                            Some(Some(v)) => v
                                .parse::<f32>()
                                .ok()
                                .filter(|q| (0.0..=1.0).contains(q))
                                .ok_or_else(|| Error::BadRequest("malformed q value".into()))?,
                            Some(None) => {
                                return Err(Error::BadRequest("malformed q value".into()));
                            }
                            None => 1.0,
                        };
                        if let Some(b) = current.iter().find(|b| same_uri(&b.contact, &c.uri))
                            && b.call_id == req.call_id
                            && b.cseq >= req.cseq
                        {
                            return Err(Error::BadRequest(
                                "CSeq not higher than the binding's".into(),
                            ));
                        }
                        plan.push((c, expires, q));
                    }
                    // The count is only replayed when it could be over.
                    if max_contacts > 0
                        && cfg.contacts_overflow == ContactsOverflow::Reject
                        && current.len() + plan.len() > max_contacts
                        && bindings_after(current, &plan) > max_contacts
                    {
                        return Err(Error::TooManyContacts { max: max_contacts });
                    }
                    let replace = max_contacts > 0
                        && cfg.contacts_overflow == ContactsOverflow::ReplaceOldest;
                    // What `replace_oldest` must keep (no allocation otherwise).
                    let touched: Vec<&Uri> = if replace {
                        plan.iter()
                            .filter(|(_, expires, _)| *expires != 0)
                            .map(|(c, _, _)| &c.uri)
                            .collect()
                    } else {
                        Vec::new()
                    };
                    for (c, expires, q) in plan {
                        let existing = current.iter().position(|b| same_uri(&b.contact, &c.uri));
                        if expires == 0 {
                            if let Some(i) = existing {
                                let b = current.remove(i);
                                remove(&mut writes, &b);
                                if publish {
                                    events.push((RegistrationChange::Removed, b.info()));
                                }
                            }
                            continue;
                        }
                        let params = c
                            .params
                            .iter()
                            .filter(|(n, _)| n != "expires" && n != "q")
                            .cloned()
                            .collect();
                        let dur = Duration::from_secs(expires);
                        let new = Binding {
                            aor: aor_text.clone(),
                            user: user.clone(),
                            contact: c.uri.clone(),
                            source: req.source,
                            q,
                            expires_at: now + dur,
                            expires_at_wall: wall + dur,
                            registered_at: wall,
                            refreshed_at: now,
                            call_id: req.call_id.clone(),
                            cseq: req.cseq,
                            user_agent: req.user_agent.clone(),
                            params,
                            instance: None,
                        };
                        if let Some(link) = sync {
                            writes.push(store_sync::Write::Put(Box::new(store_sync::to_stored(
                                &new,
                                link.store.instance_id(),
                            ))));
                        }
                        match existing {
                            Some(i) => {
                                if let Some(slot) = current.get_mut(i) {
                                    let registered_at = slot.registered_at;
                                    *slot = Binding {
                                        registered_at,
                                        ..new
                                    };
                                    if publish {
                                        events.push((RegistrationChange::Refreshed, slot.info()));
                                    }
                                }
                            }
                            None => {
                                if publish {
                                    events.push((RegistrationChange::Added, new.info()));
                                }
                                current.push(new);
                            }
                        }
                    }
                    if replace {
                        // `reject` refused too many above. What this
                        // REGISTER added or refreshed is kept (it lists at
                        // most `max_contacts`); ties go to the earlier one.
                        while current.len() > max_contacts {
                            let oldest = current
                                .iter()
                                .enumerate()
                                .filter(|(_, b)| !touched.iter().any(|u| same_uri(u, &b.contact)))
                                .min_by_key(|(_, b)| b.refreshed_at)
                                .map(|(i, _)| i);
                            let Some(i) = oldest else { break };
                            let b = current.remove(i);
                            remove(&mut writes, &b);
                            replaced += 1;
                            if publish {
                                events.push((RegistrationChange::Removed, b.info()));
                            }
                        }
                    }
                }
            }
            let result = render(current);
            if current.is_empty() {
                table.remove(&user);
            }
            result
        };
        if let Some(link) = sync {
            link.queue(writes);
        }
        if replaced > 0 {
            tracing::info!(aor = %aor_text, replaced, max = max_contacts, "oldest bindings replaced: too many contacts for the AOR");
        }
        for (change, binding) in events {
            tracing::info!(?change, aor = %binding.aor, contact = %binding.contact, source = %binding.source, "registration");
            self.inner
                .events
                .publish(Event::Registration { change, binding });
        }
        Ok(result)
    }

    /// Remove expired bindings now, publishing `Expired` for each.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut expired = Vec::new();
        if let Ok(mut table) = self.inner.table.lock() {
            table.retain(|_, bindings| {
                bindings.retain(|b| {
                    let keep = b.expires_at > now;
                    if !keep {
                        expired.push(b.info());
                    }
                    keep
                });
                !bindings.is_empty()
            });
        }
        for binding in expired {
            tracing::info!(aor = %binding.aor, contact = %binding.contact, "registration expired");
            self.inner.events.publish(Event::Registration {
                change: RegistrationChange::Expired,
                binding,
            });
        }
    }

    /// Run the sweeper (every second) until `shutdown`.
    pub async fn run_sweeper(self, mut shutdown: switchboard_proto::support::shutdown::Shutdown) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.sweep(),
                _ = shutdown.wait() => return,
            }
        }
    }
}

/// How many bindings `current` would hold after applying `plan`, replaying
/// the apply loop on contact URIs alone (a new contact adds one, `expires=0`
/// on a bound one removes it, a contact listed twice counts once). `plan`
/// is at most `max_contacts_per_aor` long, so the quadratic matching stays
/// small.
fn bindings_after(current: &[Binding], plan: &[(&crate::sip::Contact, u64, f32)]) -> usize {
    let mut bound: Vec<&Uri> = current.iter().map(|b| &b.contact).collect();
    for (c, expires, _) in plan {
        let at = bound.iter().position(|u| same_uri(u, &c.uri));
        match (at, *expires == 0) {
            (Some(i), true) => {
                bound.swap_remove(i);
            }
            (None, false) => bound.push(&c.uri),
            _ => {}
        }
    }
    bound.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Transport;
    use crate::sip::SipMessage;
    use crate::sip::message::HeaderAccess;

    fn registrar(max: usize, overflow: ContactsOverflow) -> Registrar {
        let config = RegistrarConfig {
            max_contacts_per_aor: max,
            contacts_overflow: overflow,
            ..RegistrarConfig::default()
        };
        Registrar::new(config, &["example.com".to_string()], EventBus::new())
    }

    /// A REGISTER for alice with `contacts` (`port` or `port;expires=N`).
    fn request(call_id: &str, cseq: u32, contacts: &[&str]) -> RegisterRequest {
        let mut text = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
             From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
        );
        for c in contacts {
            let (port, params) = c.split_once(';').unwrap_or((c, ""));
            let params = if params.is_empty() {
                String::new()
            } else {
                format!(";{params}")
            };
            text.push_str(&format!(
                "Contact: <sip:alice@192.0.2.1:{port}>{params}\r\n"
            ));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        let Ok(SipMessage::Request(r)) = SipMessage::parse(text.as_bytes(), true) else {
            panic!("test REGISTER parses")
        };
        RegisterRequest {
            aor: r.header_to().expect("To").uri,
            contacts: r.contacts().expect("contacts"),
            expires: None,
            call_id: call_id.into(),
            cseq,
            source: Source {
                transport: Transport::Udp,
                remote: "192.0.2.1:5060".parse().expect("addr"),
                local: "192.0.2.9:5060".parse().expect("addr"),
            },
            user_agent: String::new(),
        }
    }

    fn ports(r: &Registrar) -> Vec<u16> {
        let mut v: Vec<u16> = r
            .lookup("alice")
            .iter()
            .filter_map(|b| b.contact.as_sip().and_then(|u| u.port()))
            .collect();
        v.sort_unstable();
        v
    }

    #[tokio::test(start_paused = true)]
    async fn more_contacts_than_the_cap_in_one_request_touch_nothing() {
        let r = registrar(3, ContactsOverflow::ReplaceOldest);
        assert!(r.register_with(&request("a", 1, &["1"]), |_| ()).is_ok());
        let err = r
            .register_with(&request("b", 1, &["2", "3", "4", "5"]), |_| ())
            .expect_err("refused");
        assert_eq!(err, Error::TooManyContacts { max: 3 });
        assert_eq!(err.status_code(), 403);
        assert_eq!(ports(&r), vec![1]);
    }

    #[tokio::test(start_paused = true)]
    async fn reject_refuses_the_binding_beyond_the_cap_and_keeps_the_table() {
        let r = registrar(2, ContactsOverflow::Reject);
        assert!(r.register_with(&request("a", 1, &["1"]), |_| ()).is_ok());
        assert!(r.register_with(&request("b", 1, &["2"]), |_| ()).is_ok());
        assert_eq!(
            r.register_with(&request("c", 1, &["3"]), |_| ()),
            Err(Error::TooManyContacts { max: 2 })
        );
        assert_eq!(ports(&r), vec![1, 2]);
        // Refreshing a bound contact, or swapping one for another in one
        // request, stays within the cap.
        assert!(r.register_with(&request("a", 2, &["1"]), |_| ()).is_ok());
        assert!(
            r.register_with(&request("a", 3, &["1;expires=0", "3"]), |_| ())
                .is_ok()
        );
        assert_eq!(ports(&r), vec![2, 3]);
        assert!(
            r.register_with(&request("b", 2, &["2;expires=0", "4"]), |_| ())
                .is_ok()
        );
        assert_eq!(ports(&r), vec![3, 4]);
        // The same new contact listed twice counts once.
        assert!(
            r.register_with(&request("a", 4, &["3;expires=0"]), |_| ())
                .is_ok()
        );
        assert!(
            r.register_with(&request("c", 2, &["5", "5"]), |_| ())
                .is_ok()
        );
        assert_eq!(ports(&r), vec![4, 5]);
    }

    #[tokio::test(start_paused = true)]
    async fn replace_oldest_removes_the_least_recently_refreshed() {
        let r = registrar(2, ContactsOverflow::ReplaceOldest);
        let mut events = r.inner.events.subscribe();
        assert!(r.register_with(&request("a", 1, &["1"]), |_| ()).is_ok());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(r.register_with(&request("b", 1, &["2"]), |_| ()).is_ok());
        tokio::time::advance(Duration::from_secs(1)).await;
        // 1 is refreshed, so 2 is now the least recently refreshed.
        assert!(r.register_with(&request("a", 2, &["1"]), |_| ()).is_ok());
        tokio::time::advance(Duration::from_secs(1)).await;
        let listed = r
            .register_with(&request("c", 1, &["3"]), |b| b.len())
            .expect("accepted");
        assert_eq!(listed, 2, "the 200 lists the cap's worth");
        assert_eq!(ports(&r), vec![1, 3]);
        let mut removed = Vec::new();
        while let Ok(ev) = events.try_recv() {
            if let Event::Registration {
                change: RegistrationChange::Removed,
                binding,
            } = &ev.1
            {
                removed.push(binding.contact.clone());
            }
        }
        assert_eq!(removed, vec!["sip:alice@192.0.2.1:2".to_string()]);
        // A request's own contacts are never the ones removed.
        assert!(
            r.register_with(&request("d", 1, &["4", "5"]), |_| ())
                .is_ok()
        );
        assert_eq!(ports(&r), vec![4, 5]);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_means_no_cap() {
        let r = registrar(0, ContactsOverflow::Reject);
        let many: Vec<String> = (1..=50).map(|p| p.to_string()).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(r.register_with(&request("a", 1, &many), |_| ()).is_ok());
        assert_eq!(r.len(), 50);
    }
}
