//! UDP workers: the tasks that parse and handle what the UDP receive loops
//! read, so one socket's traffic uses every core.
//!
//! The trade-off: several tasks reading one socket (`sip.udp_receivers`)
//! spread the work but hand two back-to-back datagrams of one call to two
//! tasks, which may handle them in either order (pjsua2's DTMF INFOs then
//! reached the call out of CSeq order and one got `500`, RFC 3261
//! §12.2.2); one task keeps the order but is one core at most. The rule
//! here: order matters within a call, not across calls. A receive loop
//! reads, recognises overload control's markers, and hands each datagram to
//! the worker its Call-ID hashes to ([`super::call_id`]; the source address
//! when it has none), over a bounded FIFO queue. So every message of one
//! dialog or transaction (requests, their responses, ACK, CANCEL: one
//! Call-ID) is handled in arrival order by one task, and different calls
//! are handled in parallel.
//!
//! The hash is keyed at random per process, so a peer cannot aim its
//! Call-IDs at one worker to starve the calls that share it.
//!
//! A full worker queue drops the datagram and counts it (`udp_queue_dropped`),
//! as a full socket buffer would: the peer retransmits, and overload
//! control, whose markers pass through every worker queue (see
//! [`super::backlog`]), has already seen the delay that filled it.

use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::backlog::{Marker, ReceiveBacklog};
use super::call_id::call_id;
use super::{Receiver, SipCounters, Source};
use crate::overload::ticket::{Ticket, with_ticket};

/// Messages one worker's queue holds; beyond, they are dropped and
/// counted. At 2,048 of ~1 KiB, a few MiB for all workers, and well over
/// the overload delay target's worth of messages at any rate a core
/// handles.
pub const WORKER_QUEUE: usize = 2048;
/// Messages a worker takes off its queue at a time.
const BATCH: usize = 64;

/// What a worker handles.
enum Item {
    /// A datagram, with its admission decided when the receive loop did
    /// ([`crate::overload::ticket`]).
    Message(Bytes, Source, Option<Ticket>),
    Marker(Arc<MarkerRound>),
}

/// One marker on its way through every worker.
struct MarkerRound {
    backlog: Arc<ReceiveBacklog>,
    marker: Marker,
    /// Workers yet to reach it.
    remaining: AtomicUsize,
}

/// The receive loops' side: hands datagrams to the workers. Cheap to
/// share (one per transport, behind an `Arc`).
pub(crate) struct Workers {
    queues: Vec<mpsc::Sender<Item>>,
    hasher: std::collections::hash_map::RandomState,
    counters: Arc<SipCounters>,
}

impl Workers {
    /// Start `count` (at least 1) workers handing everything to `receiver`.
    /// They end once every receive loop holding this is gone.
    pub(crate) fn start(
        count: usize,
        receiver: Arc<dyn Receiver>,
        counters: Arc<SipCounters>,
    ) -> Self {
        let queues = (0..count.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(WORKER_QUEUE);
                tokio::spawn(run(rx, receiver.clone()));
                tx
            })
            .collect();
        Self {
            queues,
            hasher: Default::default(),
            counters,
        }
    }

    /// Hand a datagram to its worker (dropped and counted when that
    /// worker's queue is full).
    pub(crate) fn dispatch(&self, data: Bytes, source: Source, ticket: Option<Ticket>) {
        let i = self.worker_for(&data, source.remote);
        let Some(queue) = self.queues.get(i) else {
            return;
        };
        if queue.try_send(Item::Message(data, source, ticket)).is_err() {
            SipCounters::inc(&self.counters.udp_queue_dropped);
        }
    }

    /// Hand a marker to every worker; it is noted on `backlog` when the
    /// last one reaches it (never, when a queue was full: lost).
    pub(crate) fn marker(&self, backlog: &Arc<ReceiveBacklog>, marker: Marker) {
        let round = Arc::new(MarkerRound {
            backlog: backlog.clone(),
            marker,
            remaining: AtomicUsize::new(self.queues.len()),
        });
        for queue in &self.queues {
            let _ = queue.try_send(Item::Marker(round.clone()));
        }
    }

    fn worker_for(&self, data: &[u8], remote: SocketAddr) -> usize {
        let n = self.queues.len();
        if n <= 1 {
            return 0;
        }
        let hash = match call_id(data) {
            Some(id) => self.hasher.hash_one(id),
            None => self.hasher.hash_one(remote),
        };
        // `n` is small: the remainder fits.
        usize::try_from(hash % n as u64).unwrap_or(0)
    }
}

async fn run(mut queue: mpsc::Receiver<Item>, receiver: Arc<dyn Receiver>) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        for item in batch.drain(..) {
            match item {
                Item::Message(data, source, ticket) => {
                    with_ticket(ticket, || receiver.receive(data, source))
                }
                Item::Marker(round) => {
                    if round.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                        round.backlog.note(round.marker);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use crate::config::Transport;

    /// Records every message handed to it, in the order handled.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<Bytes>>);

    impl Receiver for Recorder {
        fn receive(&self, data: Bytes, _source: Source) {
            if let Ok(mut v) = self.0.lock() {
                v.push(data);
            }
        }
    }

    fn source(port: u16) -> Source {
        Source {
            transport: Transport::Udp,
            remote: SocketAddr::from(([127, 0, 0, 1], port)),
            local: SocketAddr::from(([127, 0, 0, 1], 5060)),
        }
    }

    fn message(call: usize, seq: usize) -> Bytes {
        Bytes::from(format!(
            "INFO sip:b@x SIP/2.0\r\nCall-ID: call-{call}\r\nCSeq: {seq} INFO\r\n\r\n"
        ))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn each_call_keeps_its_order_and_every_message_arrives() {
        let recorder = Arc::new(Recorder::default());
        let workers = Workers::start(4, recorder.clone(), Arc::default());
        for seq in 0..200 {
            for call in 0..8 {
                workers.dispatch(message(call, seq), source(5070 + call as u16), None);
            }
        }
        let mut seen = 0;
        for _ in 0..500 {
            seen = recorder.0.lock().map(|v| v.len()).unwrap_or(0);
            if seen == 1600 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(seen, 1600, "every message handled");
        let got = recorder.0.lock().expect("lock").clone();
        for call in 0..8 {
            let id = format!("Call-ID: call-{call}\r\n");
            let seqs: Vec<usize> = got
                .iter()
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .filter(|m| m.contains(&id))
                .map(|m| {
                    let at = m.find("CSeq: ").expect("CSeq") + 6;
                    m[at..]
                        .split(' ')
                        .next()
                        .expect("n")
                        .parse()
                        .expect("number")
                })
                .collect();
            assert_eq!(seqs, (0..200).collect::<Vec<_>>(), "call {call} in order");
        }
    }

    #[test]
    fn one_call_always_goes_to_one_worker_and_calls_spread() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let _guard = rt.enter();
        let workers = Workers::start(4, Arc::new(Recorder::default()), Arc::default());
        let remote = SocketAddr::from(([127, 0, 0, 1], 5070));
        let mut used = std::collections::HashSet::new();
        for call in 0..64 {
            let a = workers.worker_for(&message(call, 1), remote);
            let b = workers.worker_for(&message(call, 2), SocketAddr::from(([10, 0, 0, 1], 9)));
            assert_eq!(a, b, "call {call}: the Call-ID decides, not the source");
            used.insert(a);
        }
        assert_eq!(used.len(), 4, "64 calls use all four workers");
        // No Call-ID: the source decides.
        let junk = b"garbage";
        assert_eq!(
            workers.worker_for(junk, remote),
            workers.worker_for(b"other garbage", remote)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_marker_counts_as_read_only_when_every_worker_reached_it() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let backlog = Arc::new(ReceiveBacklog::new(socket.local_addr().expect("addr")));
        let seq = backlog
            .mark(std::time::Instant::now())
            .expect("marker sent");
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        let (n, from) = socket.recv_from(&mut buf).expect("marker");
        let marker = backlog.read_marker(&buf[..n], from).expect("ours");
        assert!(!backlog.has_read(seq));

        // A worker blocked in its receiver holds the marker back.
        struct Gate(Mutex<std::sync::mpsc::Receiver<()>>);
        impl Receiver for Gate {
            fn receive(&self, _data: Bytes, _source: Source) {
                if let Ok(open) = self.0.lock() {
                    let _ = open.recv();
                }
            }
        }
        let (open, gate) = std::sync::mpsc::channel();
        let workers = Workers::start(2, Arc::new(Gate(Mutex::new(gate))), Arc::default());
        // One message to one worker, which blocks in it.
        workers.dispatch(message(1, 1), source(5070), None);
        workers.marker(&backlog, marker);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!backlog.has_read(seq), "one worker has not reached it");
        open.send(()).expect("open the gate");
        for _ in 0..500 {
            if backlog.has_read(seq) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(backlog.has_read(seq), "read once both workers passed it");
    }
}
