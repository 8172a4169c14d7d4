//! SIP capture: swbd keeps the SIP messages of recent calls, as they were
//! on the wire, with addresses, transport and times (`swctl calls pcap ID`
//! writes one call as a pcap file), and optionally copies every SIP message
//! to a HEP v3 collector (Homer, heplify-server).
//!
//! # Layout
//! - [`config`]: the `capture:` section.
//! - [`scan`]: Call-ID and CSeq read off the wire bytes.
//! - [`store`]: the bounded per-call store (pending Call-IDs, then calls).
//! - [`hep`]: HEP v3 encoding and the non-blocking sender.
//!
//! # Where messages come from
//! The transports show [`Capture`] every message they send ([`Tap`]) and
//! every message they receive ([`Capture::wrap`] sits in front of the
//! transaction layer), so the capture holds what really crossed the wire:
//! 100 Trying, retransmissions, the ACK of a 2xx, the challenge before an
//! authenticated INVITE. Which call a message belongs to comes from the
//! calls themselves: a task follows the event bus and, for every leg a call
//! announces, claims that leg's SIP Call-ID ([`store::Store::claim`]).
//!
//! Received messages are seen before the ACL and the front door (like a
//! capture agent on the network interface would); the store keeps only
//! INVITE-started Call-IDs, the HEP copy sends everything.

pub mod config;
pub mod hep;
pub mod scan;
pub mod store;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use switchboard_proto::admin::v1 as pb;
use switchboard_proto::support::shutdown::Shutdown;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::config::Transport;
use crate::events::{Event, EventBus};
use crate::transport::{Receiver, Source, Tap};
use config::CaptureConfig;
use store::{CallCapture, LookupError, Store};

/// Pause of the claiming task between batches of call events (see
/// `Capture::spawn_claims`).
const CLAIM_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// HEP counters (relaxed atomics: statistics).
#[derive(Debug, Default)]
pub struct Counters {
    /// Packets sent to the collector.
    pub hep_sent: AtomicU64,
    /// Packets dropped: the queue was full.
    pub hep_dropped: AtomicU64,
    /// Packets the socket refused, or with no collector address.
    pub hep_send_errors: AtomicU64,
}

/// Cheap-clone handle to the capture.
#[derive(Debug, Clone)]
pub struct Capture {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `None` when `capture.enabled` is false. A std Mutex: one short
    /// insert per SIP message, never held across an await.
    store: Option<Mutex<Store>>,
    hep: Option<hep::HepSender>,
    counters: Arc<Counters>,
}

impl Capture {
    /// Capture as configured: the store (and its claiming task, which
    /// follows `bus`) and the HEP sender, both until `shutdown`.
    pub fn start(config: &CaptureConfig, bus: &EventBus, shutdown: Shutdown) -> Self {
        let counters = Arc::new(Counters::default());
        let hep = config
            .hep
            .as_deref()
            .and_then(|c| match config::parse_host_port(c) {
                Ok(target) => Some(hep::HepSender::start(
                    target,
                    config.hep_id,
                    config.hep_password.clone(),
                    config.hep_queue,
                    counters.clone(),
                    shutdown.clone(),
                )),
                Err(why) => {
                    // Config validation refuses this; never reached from a file.
                    tracing::warn!(hep = %c, why, "capture.hep ignored");
                    None
                }
            });
        let capture = Self {
            inner: Arc::new(Inner {
                store: config.enabled.then(|| Mutex::new(Store::new(config))),
                hep,
                counters,
            }),
        };
        if config.enabled {
            capture.spawn_claims(bus, shutdown);
        }
        capture
    }

    /// Whether anything is captured (store or HEP).
    pub fn is_active(&self) -> bool {
        self.inner.store.is_some() || self.inner.hep.is_some()
    }

    /// `next`, with every received message shown to the capture first.
    pub fn wrap(&self, next: Arc<dyn Receiver>) -> Arc<dyn Receiver> {
        if !self.is_active() {
            return next;
        }
        Arc::new(Tapped {
            capture: self.clone(),
            next,
        })
    }

    /// One message on the wire at `at`.
    fn message(
        &self,
        at: SystemTime,
        data: &[u8],
        transport: Transport,
        source: SocketAddr,
        destination: SocketAddr,
        inbound: bool,
    ) {
        let Some(head) = scan::head(data) else {
            return; // a keep-alive, or not SIP
        };
        let call = self.inner.store.as_ref().and_then(|store| {
            let mut store = store.lock().ok()?;
            store.record(head.call_id, head.invite, || {
                store::Message::new(at, transport, source, destination, inbound, data)
            })
        });
        if let Some(hep) = &self.inner.hep {
            hep.offer(&hep::Captured {
                at,
                transport,
                source,
                destination,
                payload: data,
                correlation: call.as_deref(),
            });
        }
    }

    /// Follow the bus: every leg a call announces claims its SIP Call-ID.
    ///
    /// Batched: after an event wakes the task, it takes every event already
    /// queued, then pauses [`CLAIM_PAUSE`] before waiting again, so under
    /// load it wakes at most ~100 times a second instead of once per call
    /// event (each wake is a task switch: 1-2% of swbd's CPU per call at
    /// 1,200 calls/s). Messages of a leg not yet claimed wait meanwhile in
    /// the pending tier, which exists for that.
    fn spawn_claims(&self, bus: &EventBus, mut shutdown: Shutdown) {
        let mut rx = bus.subscribe();
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = shutdown.wait() => return,
                    ev = rx.recv() => ev,
                };
                let mut claims = Vec::new();
                let mut next = Some(ev);
                while let Some(ev) = next.take() {
                    match ev {
                        Ok(ev) => {
                            if matches!(ev.1, Event::Call { .. }) {
                                claims.push(ev);
                            }
                        }
                        Err(RecvError::Lagged(n)) => {
                            tracing::warn!(
                                missed = n,
                                "capture fell behind the event bus: some calls may not be captured"
                            );
                        }
                        Err(RecvError::Closed) => {
                            this.claim_all(&claims);
                            return;
                        }
                    }
                    next = match rx.try_recv() {
                        Ok(ev) => Some(Ok(ev)),
                        Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
                        Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
                        Err(TryRecvError::Empty) => None,
                    };
                }
                this.claim_all(&claims);
                drop(claims);
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = tokio::time::sleep(CLAIM_PAUSE) => {}
                }
            }
        });
    }

    /// Claim the legs of every call event in `events`, under one lock.
    fn claim_all(&self, events: &[crate::events::Stamped]) {
        let Some(store) = &self.inner.store else {
            return;
        };
        if events.is_empty() {
            return;
        }
        let Ok(mut store) = store.lock() else {
            return;
        };
        for ev in events {
            if let Event::Call { call, .. } = &ev.1 {
                for leg in call.legs.iter().filter(|l| !l.sip_call_id.is_empty()) {
                    store.claim(&call.call_id, &leg.sip_call_id);
                }
            }
        }
    }

    /// Claim the SIP Call-IDs of `call`'s legs.
    pub fn claim(&self, call: &pb::Call) {
        let Some(store) = &self.inner.store else {
            return;
        };
        let Ok(mut store) = store.lock() else {
            return;
        };
        for leg in call.legs.iter().filter(|l| !l.sip_call_id.is_empty()) {
            store.claim(&call.call_id, &leg.sip_call_id);
        }
    }

    /// The capture of a call (swbd call id, unique prefix, or SIP Call-ID
    /// of a leg).
    pub fn get(&self, id: &str) -> Result<CallCapture, LookupError> {
        match &self.inner.store {
            Some(store) => store
                .lock()
                .map_err(|_| LookupError::NotFound(id.into()))?
                .get(id),
            None => Err(LookupError::NotFound(id.into())),
        }
    }

    /// The admin form of [`Capture::get`].
    pub fn get_proto(&self, id: &str) -> Result<pb::CallCapture, tonic::Status> {
        if self.inner.store.is_none() {
            return Err(tonic::Status::failed_precondition(
                "SIP capture is off on this swbd (capture.enabled: false)",
            ));
        }
        let c = self.get(id).map_err(|e| match e {
            LookupError::NotFound(_) => tonic::Status::not_found(format!(
                "{e} (capture keeps the last capture.max_calls calls, within capture.max_bytes)"
            )),
            LookupError::Ambiguous(_) => tonic::Status::invalid_argument(e.to_string()),
        })?;
        Ok(pb::CallCapture {
            call_id: c.call_id,
            sip_call_ids: c.sip_call_ids,
            messages: c.messages.iter().map(message_to_proto).collect(),
            messages_not_kept: c.not_kept,
        })
    }

    /// Counters for status.
    pub fn counters(&self) -> pb::CaptureCounters {
        let totals = self
            .inner
            .store
            .as_ref()
            .and_then(|s| s.lock().ok().map(|s| s.totals()))
            .unwrap_or_default();
        let c = &self.inner.counters;
        pb::CaptureCounters {
            calls_kept: u32::try_from(totals.calls).unwrap_or(u32::MAX),
            bytes_kept: totals.bytes as u64,
            messages_not_kept: totals.not_kept,
            calls_evicted: totals.evicted,
            hep_sent: c.hep_sent.load(Ordering::Relaxed),
            hep_dropped: c.hep_dropped.load(Ordering::Relaxed),
            hep_send_errors: c.hep_send_errors.load(Ordering::Relaxed),
        }
    }
}

fn message_to_proto(m: &store::Message) -> pb::CapturedMessage {
    pb::CapturedMessage {
        at: Some(switchboard_proto::timestamp(m.at)),
        transport: match m.transport {
            Transport::Udp => pb::CaptureTransport::Udp,
            Transport::Tcp => pb::CaptureTransport::Tcp,
        } as i32,
        source: m.source.to_string(),
        destination: m.destination.to_string(),
        inbound: m.inbound,
        raw: m.raw.to_vec(),
        original_length: m.original_len,
    }
}

impl Tap for Capture {
    fn sent(
        &self,
        at: SystemTime,
        data: &[u8],
        transport: Transport,
        local: SocketAddr,
        remote: SocketAddr,
    ) {
        self.message(at, data, transport, local, remote, false);
    }
}

/// The receiver in front of the transaction layer.
struct Tapped {
    capture: Capture,
    next: Arc<dyn Receiver>,
}

impl Receiver for Tapped {
    fn receive(&self, data: Bytes, source: Source) {
        self.capture.message(
            SystemTime::now(),
            &data,
            source.transport,
            source.remote,
            source.local,
            true,
        );
        self.next.receive(data, source);
    }
}
