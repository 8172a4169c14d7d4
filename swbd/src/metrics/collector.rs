//! What swbd's scrape reads from state it keeps anyway: the endpoint's
//! counters (security, transport, SIP messages), the transaction table, the
//! registrar, the dialplan in force, the media-node pool and the call
//! table. Nothing here runs between scrapes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::b2bua::CallTable;
use crate::b2bua::record::CallState;
use crate::dialplan::DialplanStore;
use crate::media::{MediaNodeInfo, MediaPool, NodeHealth};
use crate::registrar::Registrar;
use crate::transaction::TransactionLayer;
use crate::transport::SipCounters;

/// Everything the scrape reads (cheap-clone handles).
#[derive(Debug, Clone)]
pub struct Sources {
    /// The endpoint's counters.
    pub counters: Arc<SipCounters>,
    /// Transactions in flight.
    pub transactions: TransactionLayer,
    /// Bindings.
    pub registrar: Registrar,
    /// The plan in force and its reloads.
    pub dialplan: DialplanStore,
    /// Media nodes.
    pub media: MediaPool,
    /// Calls.
    pub calls: CallTable,
    /// The state store (reachable, failed operations).
    pub store: crate::state::StateStore,
    /// Saved call records (writes lost).
    pub saved_calls: crate::b2bua::restart::SavedCalls,
}

/// The call states a live call can be in, with their label.
const LIVE_STATES: [(CallState, &str); 6] = [
    (CallState::Routing, "routing"),
    (CallState::Ringing, "ringing"),
    (CallState::EarlyMedia, "early_media"),
    (CallState::Answered, "answered"),
    (CallState::Bridged, "bridged"),
    (CallState::Ending, "ending"),
];

/// A per-node gauge: name, help, value (labelled by the node's configured
/// name only).
type NodeGauge = (&'static str, &'static str, fn(&MediaNodeInfo) -> i64);

const NODE_GAUGES: [NodeGauge; 5] = [
    (
        "swbd_media_node_up",
        "1 when the media node's last health check passed (node: its configured name)",
        |n| i64::from(n.health == NodeHealth::Up),
    ),
    (
        "swbd_media_node_draining",
        "1 when the media node takes no new calls: drained through swbd or by the node itself",
        |n| i64::from(n.drained_by_admin || n.node_draining),
    ),
    (
        "swbd_media_node_accepting",
        "1 when new calls may go to the media node (up and not draining)",
        |n| i64::from(n.accepts_calls()),
    ),
    (
        "swbd_media_node_calls",
        "Calls of this swbd on the media node",
        |n| i64::from(n.active_calls),
    ),
    (
        "swbd_media_node_free_port_pairs",
        "Free RTP port pairs on the media node at its last health check",
        |n| i64::from(n.free_port_pairs),
    ),
];

#[derive(Debug)]
pub(super) struct SwbdCollector(pub(super) Sources);

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for SwbdCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        self.calls(&mut encoder)?;
        s.counters.messages.encode(&mut encoder)?;
        self.security(&mut encoder)?;
        self.transport(&mut encoder)?;

        let (server, client) = s.transactions.live_transactions();
        let mut m = encoder.encode_descriptor(
            "swbd_sip_transactions",
            "SIP transactions in flight (kind: server, client), completed ones kept for their RFC 3261 timers included",
            None,
            MetricType::Gauge,
        )?;
        for (kind, n) in [("server", server), ("client", client)] {
            ConstGauge::new(count(n)).encode(m.encode_family(&[("kind", kind)])?)?;
        }
        gauge(
            &mut encoder,
            "swbd_registrations",
            "Registrar bindings (contacts) in force",
            count(s.registrar.len()),
        )?;
        let h = s.store.health();
        gauge(
            &mut encoder,
            "swbd_state_store_up",
            "1 when the state store (state.backend) is reachable; always 1 for memory",
            i64::from(h.up),
        )?;
        counter(
            &mut encoder,
            "swbd_state_store_errors",
            "State store operations that failed (unreachable, timed out); swbd serves from memory meanwhile",
            h.failed_ops,
        )?;
        gauge(
            &mut encoder,
            "swbd_state_store_pending_writes",
            "Registration writes answered but not yet in the state store (queued while it is down)",
            count(s.registrar.store_pending()),
        )?;
        counter(
            &mut encoder,
            "swbd_saved_call_writes_lost",
            "Saved call record writes lost (queue full, record too large, store error): those calls would not survive a restart",
            crate::state::status::saved_call_writes_lost(&s.saved_calls),
        )?;
        self.dialplan(&mut encoder)?;
        self.media_nodes(&mut encoder)
    }
}

impl SwbdCollector {
    fn calls(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let by_state = self.0.calls.count_by_state();
        let mut m = encoder.encode_descriptor(
            "swbd_calls",
            "Calls in progress by state",
            None,
            MetricType::Gauge,
        )?;
        for (state, label) in LIVE_STATES {
            let n = by_state
                .iter()
                .find(|(s, _)| *s == state)
                .map_or(0, |(_, n)| *n);
            ConstGauge::new(count(n)).encode(m.encode_family(&[("state", label)])?)?;
        }
        Ok(())
    }

    fn security(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.0.counters;
        counter(
            encoder,
            "swbd_auth_failures",
            "Failed digest authentication attempts (wrong password, unknown user, bad nonce)",
            load(&c.auth_failures),
        )?;
        counter(
            encoder,
            "swbd_auth_blocked_requests",
            "Requests refused (403) because their source is blocked after repeated authentication failures",
            load(&c.blocked_requests),
        )?;
        counter(
            encoder,
            "swbd_auth_identity_refused",
            "INVITEs refused because their From named someone other than the authenticated user",
            load(&c.identity_refused),
        )?;
        counter(
            encoder,
            "swbd_sip_acl_dropped",
            "Messages dropped unanswered because their source is outside acl.allow",
            load(&c.acl_dropped),
        )?;
        counter(
            encoder,
            "swbd_sip_rate_limited",
            "Requests over their source's sip.rate_limit (answered 503 or dropped)",
            load(&c.rate_limited),
        )?;
        counter(
            encoder,
            "swbd_sip_overload_shed",
            "INVITEs refused with 503 because the B2BUA's queue was full",
            load(&c.messages.overload_shed),
        )?;
        counter(
            encoder,
            "swbd_sip_overload_early_shed",
            "New INVITEs refused by overload control with a 503 built from their raw head, before any parse",
            load(&c.early_shed),
        )?;
        counter(
            encoder,
            "swbd_sip_overload_shed_acks_absorbed",
            "ACKs of those early 503s, recognised by their To tag and dropped before any parse",
            load(&c.shed_acks_absorbed),
        )
    }

    fn transport(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.0.counters;
        counter(
            encoder,
            "swbd_sip_messages_received",
            "SIP messages read off UDP and TCP, parsed or not",
            load(&c.messages_received),
        )?;
        counter(
            encoder,
            "swbd_sip_parse_errors",
            "Messages that could not be parsed (answered 400 or dropped)",
            load(&c.sip_parse_errors),
        )?;
        counter(
            encoder,
            "swbd_sip_oversize_dropped",
            "Messages above sip.max_message_size (UDP dropped, TCP answered 513 and closed)",
            load(&c.oversize_dropped),
        )?;
        counter(
            encoder,
            "swbd_sip_udp_queue_dropped",
            "UDP datagrams dropped because their worker's queue was full (sip.udp_workers)",
            load(&c.udp_queue_dropped),
        )?;
        counter(
            encoder,
            "swbd_sip_stray_responses",
            "Responses that matched no client transaction",
            load(&c.stray_responses),
        )?;
        counter(
            encoder,
            "swbd_sip_stateless_replies",
            "Requests answered statelessly by the front door (challenges, 403, 420, 483, 501, 400, 503)",
            load(&c.stateless_replies),
        )?;
        counter(
            encoder,
            "swbd_sip_send_errors",
            "Messages that could not be sent",
            load(&c.send_errors),
        )?;
        counter(
            encoder,
            "swbd_sip_tcp_connections",
            "TCP connections accepted or opened",
            load(&c.tcp_connections),
        )?;
        let mut m = encoder.encode_descriptor(
            "swbd_sip_tcp_refused",
            "TCP connections closed at once (reason: cap is sip.tcp_max_connections, per_source is sip.tcp_max_connections_per_source)",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in [
            ("cap", load(&c.tcp_refused)),
            ("per_source", load(&c.tcp_refused_per_source)),
        ] {
            ConstCounter::new(n).encode(m.encode_family(&[("reason", reason)])?)?;
        }
        counter(
            encoder,
            "swbd_sip_tcp_message_timeouts",
            "TCP connections closed because a message head or body did not complete in time",
            load(&c.tcp_message_timeouts),
        )
    }

    fn dialplan(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let store = &self.0.dialplan;
        let (applied, refused) = store.reload_counts();
        let mut m = encoder.encode_descriptor(
            "swbd_dialplan_reloads",
            "Dialplan reloads (SIGHUP, admin) by result: applied, or refused with the running plan kept",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in [("applied", applied), ("refused", refused)] {
            ConstCounter::new(n).encode(m.encode_family(&[("result", result)])?)?;
        }
        let plan = store.current();
        let version = plan.version();
        let mut m = encoder.encode_descriptor(
            "swbd_dialplan",
            "The dialplan in force: its version (content hash) and source",
            None,
            MetricType::Info,
        )?;
        m.encode_info(&[
            ("version", version.hash.as_str()),
            ("source", plan.source()),
        ])?;
        let loaded = version
            .loaded_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let g = ConstGauge::new(loaded);
        g.encode(encoder.encode_descriptor(
            "swbd_dialplan_loaded_timestamp_seconds",
            "When the dialplan in force was loaded (Unix time)",
            None,
            MetricType::Gauge,
        )?)
    }

    fn media_nodes(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let nodes = self.0.media.list();
        for (name, help, value) in NODE_GAUGES {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for n in &nodes {
                ConstGauge::new(value(n)).encode(m.encode_family(&[("node", n.name.as_str())])?)?;
            }
        }
        Ok(())
    }
}
