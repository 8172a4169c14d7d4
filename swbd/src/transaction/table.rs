//! The one owner of transaction state: the server, client and Accepted
//! tables and the timer queues of what finished transactions keep for
//! their RFC 3261 windows (non-INVITE server: 64*T1 safety net and Timer J;
//! ACKed INVITE server: Timer L; completed clients: Timers K and D). The
//! layer's receive path and the transaction state machines reach these only
//! through the methods here; nothing else holds the maps.
//!
//! Every table is a std `Mutex` over a `HashMap`: each access is one short
//! insert, lookup or remove, never held across an `.await`. After a burst
//! the timer task gives the maps' and queues' spare capacity back (at most
//! once a second, and when the last window closes), so their size follows
//! the calls of the last 32 s, not the peak.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::key::TransactionKey;
use super::layer::NetInput;
use super::server;
use crate::sip::Response;
use crate::transport::Target;

/// A server transaction in the table.
#[derive(Debug, Clone)]
pub(crate) enum ServerEntry {
    /// INVITE: its task takes retransmissions, ACK and CANCEL.
    Invite(mpsc::UnboundedSender<NetInput>),
    /// Non-INVITE: no task; the entry answers retransmissions and is
    /// removed by Timer J.
    NonInvite(Arc<server::State>),
    /// An INVITE whose 2xx was ACKed: its task is gone; the key alone
    /// stays until Timer L to absorb retransmitted INVITEs (RFC 6026
    /// §7.1), so a finished call keeps a key, not a task and its INVITE.
    Absorbed,
}

/// A client transaction in the table.
#[derive(Debug, Clone)]
pub(crate) enum ClientEntry {
    /// Its task takes the responses.
    Live(mpsc::UnboundedSender<Box<Response>>),
    /// Completed (RFC 3261 §17.1.1.2 / §17.1.2.2): the task ended at the
    /// final response; until Timer D (INVITE) or K (non-INVITE) the key
    /// alone absorbs retransmitted final responses, and a non-2xx INVITE's
    /// ACK is sent again for each ([`Resend`]). A finished BYE keeps a
    /// key for 5 s, not a task with its request.
    Completed(Option<Arc<Resend>>),
}

/// The ACK a Completed INVITE client transaction sends again for each
/// retransmitted non-2xx final response (RFC 3261 §17.1.1.3).
#[derive(Debug)]
pub(crate) struct Resend {
    /// Where the INVITE went.
    pub(crate) target: Target,
    /// The ACK, as sent.
    pub(crate) bytes: Bytes,
}

/// What [`TransactionTable::enter_server`] found or made.
pub(crate) enum Entered {
    /// A transaction already had this key (a retransmission, or a copy
    /// that arrived on another receiver meanwhile).
    Existing(ServerEntry),
    /// A new INVITE transaction: its network input.
    NewInvite(mpsc::UnboundedReceiver<NetInput>),
    /// A new non-INVITE transaction.
    New(Arc<server::State>),
}

/// What [`TransactionTable::retained`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    /// INVITE server transactions with a task (calls being set up, 2xx not
    /// yet ACKed, non-2xx in Completed/Confirmed).
    pub live_invites: usize,
    /// ACKed INVITEs kept as a bare key until Timer L.
    pub absorbed: usize,
    /// Non-INVITE server transactions (answering retransmissions until
    /// Timer J, or waiting for the TU).
    pub non_invite: usize,
    /// Client transactions with a task (waiting for a final response, or
    /// an INVITE in the Accepted state).
    pub clients: usize,
    /// Completed client transactions kept as a key until Timer K or D.
    pub clients_completed: usize,
    /// INVITEs waiting for the ACK of their 2xx.
    pub accepted: usize,
    /// Estimated heap bytes of the absorbed, non-INVITE and completed
    /// client entries and of the timer queues.
    pub bytes: usize,
}

/// Transaction tables and timers; see the module docs.
#[derive(Default)]
pub(crate) struct TransactionTable {
    servers: Mutex<HashMap<TransactionKey, ServerEntry>>,
    clients: Mutex<HashMap<TransactionKey, ClientEntry>>,
    /// INVITE server transactions in the Accepted state, by Call-ID and
    /// CSeq number, so the ACK for a 2xx (a new branch) finds them.
    accepted: Mutex<HashMap<(String, u32), mpsc::UnboundedSender<NetInput>>>,
    /// INVITE server transactions that sent a reliable provisional (RFC
    /// 3262), by Call-ID and CSeq number, so a PRACK (its `RAck` names the
    /// CSeq) finds them. An entry lives while its transaction proceeds.
    reliable: Mutex<HashMap<(String, u32), mpsc::UnboundedSender<NetInput>>>,
    /// Shared with the timer task, which holds the table only weakly.
    timers: Arc<TimerQueue>,
}

impl std::fmt::Debug for TransactionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, c) = self.live();
        f.debug_struct("TransactionTable")
            .field("servers", &s)
            .field("clients", &c)
            .finish_non_exhaustive()
    }
}

/// Deadlines of non-INVITE server transactions. Each queue holds one kind
/// of timer, all of the same duration, so pushing in time order keeps it
/// sorted: no heap, no per-transaction task.
#[derive(Default)]
struct TimerQueue {
    /// Timer J: remove a Completed transaction.
    completed: Mutex<VecDeque<(Instant, Arc<server::State>)>>,
    /// 64*T1 after creation: end a transaction the TU never answered.
    /// Keyed, not a `Weak<State>`: a weak reference would keep the state's
    /// allocation for 32 s after the transaction is gone.
    started: Mutex<VecDeque<(Instant, TransactionKey)>>,
    /// Timer L of ACKed INVITEs ([`ServerEntry::Absorbed`]).
    absorbed: Mutex<VecDeque<(Instant, TransactionKey)>>,
    /// Timer K of completed non-INVITE client transactions.
    client_k: Mutex<VecDeque<(Instant, TransactionKey)>>,
    /// Timer D of completed INVITE client transactions (non-2xx).
    client_d: Mutex<VecDeque<(Instant, TransactionKey)>>,
    wake: Notify,
}

impl TimerQueue {
    fn push<T>(&self, queue: &Mutex<VecDeque<(Instant, T)>>, at: Instant, item: T) {
        let was_empty = match queue.lock() {
            Ok(mut q) => {
                let empty = q.is_empty();
                q.push_back((at, item));
                empty
            }
            Err(_) => return,
        };
        if was_empty {
            self.wake.notify_one();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let a = self.completed.lock().ok()?.front().map(|(t, _)| *t);
        let b = self.started.lock().ok()?.front().map(|(t, _)| *t);
        let c = self.absorbed.lock().ok()?.front().map(|(t, _)| *t);
        let d = self.client_k.lock().ok()?.front().map(|(t, _)| *t);
        let e = self.client_d.lock().ok()?.front().map(|(t, _)| *t);
        [a, b, c, d, e].into_iter().flatten().min()
    }

    fn expired<T>(queue: &Mutex<VecDeque<(Instant, T)>>, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        if let Ok(mut q) = queue.lock() {
            while q.front().is_some_and(|(t, _)| *t <= now) {
                if let Some((_, item)) = q.pop_front() {
                    out.push(item);
                }
            }
        }
        out
    }
}

impl TransactionTable {
    /// A table whose timers run on a task of their own until the table is
    /// dropped.
    pub(crate) fn start() -> Arc<Self> {
        let table = Arc::new(Self::default());
        tokio::spawn(run_timers(Arc::downgrade(&table), table.timers.clone()));
        table
    }

    /// Number of live transactions (server, client).
    pub(crate) fn live(&self) -> (usize, usize) {
        (
            self.servers.lock().map(|m| m.len()).unwrap_or(0),
            self.clients.lock().map(|m| m.len()).unwrap_or(0),
        )
    }

    // ---- server transactions --------------------------------------------

    /// The server transaction with `key`, if any.
    pub(crate) fn server(&self, key: &TransactionKey) -> Option<ServerEntry> {
        self.servers.lock().ok()?.get(key).cloned()
    }

    /// The INVITE server transaction with `key`, if any.
    pub(crate) fn invite_server(
        &self,
        key: &TransactionKey,
    ) -> Option<mpsc::UnboundedSender<NetInput>> {
        match self.server(key)? {
            ServerEntry::Invite(tx) => Some(tx),
            ServerEntry::NonInvite(_) | ServerEntry::Absorbed => None,
        }
    }

    /// Find the transaction with `key`, or enter a new one (INVITE when
    /// `invite`, else non-INVITE with `state`), under one lock.
    pub(crate) fn enter_server(
        &self,
        key: &TransactionKey,
        invite: bool,
        state: impl FnOnce() -> Arc<server::State>,
    ) -> Option<Entered> {
        let mut m = self.servers.lock().ok()?;
        Some(match m.get(key) {
            Some(entry) => Entered::Existing(entry.clone()),
            None if invite => {
                let (net_tx, net_rx) = mpsc::unbounded_channel();
                m.insert(key.clone(), ServerEntry::Invite(net_tx));
                Entered::NewInvite(net_rx)
            }
            None => {
                let state = state();
                m.insert(key.clone(), ServerEntry::NonInvite(state.clone()));
                Entered::New(state)
            }
        })
    }

    /// Remove a server transaction (the INVITE task ended).
    pub(crate) fn remove_server(&self, key: &TransactionKey) {
        if let Ok(mut m) = self.servers.lock() {
            m.remove(key);
        }
    }

    /// Remove a non-INVITE transaction's entry, if it is still this one.
    pub(crate) fn remove_server_state(&self, state: &Arc<server::State>) {
        if let Ok(mut m) = self.servers.lock()
            && matches!(m.get(&state.key), Some(ServerEntry::NonInvite(s)) if Arc::ptr_eq(s, state))
        {
            m.remove(&state.key);
        }
    }

    /// A non-INVITE transaction was created: end it at `give_up_at` if the
    /// TU has not answered by then (64*T1).
    pub(crate) fn server_started(&self, state: &Arc<server::State>, give_up_at: Instant) {
        self.timers
            .push(&self.timers.started, give_up_at, state.key.clone());
    }

    /// An INVITE transaction's 2xx was ACKed: replace its entry with
    /// [`ServerEntry::Absorbed`] for `window` (what is left of Timer L, at
    /// most 64*T1; a whole 64*T1 keeps the queue in time order).
    pub(crate) fn absorb(&self, key: &TransactionKey, window: std::time::Duration) {
        if let Ok(mut m) = self.servers.lock() {
            m.insert(key.clone(), ServerEntry::Absorbed);
        }
        self.timers
            .push(&self.timers.absorbed, Instant::now() + window, key.clone());
    }

    /// What the tables hold now, and an estimate of the heap bytes of the
    /// entries a finished transaction leaves for its RFC 3261 windows
    /// (Timer J's last response, Timer L's absorbed keys) and of the timer
    /// queues. Live INVITE transactions are counted, not sized (their
    /// tasks hold what a call in progress needs).
    pub(crate) fn retained(&self) -> Retained {
        let mut r = Retained::default();
        let entry = std::mem::size_of::<(TransactionKey, ServerEntry)>();
        if let Ok(m) = self.servers.lock() {
            for (key, e) in m.iter() {
                match e {
                    ServerEntry::Invite(_) => r.live_invites += 1,
                    ServerEntry::NonInvite(state) => {
                        r.non_invite += 1;
                        r.bytes += entry
                            + key.heap_bytes()
                            + std::mem::size_of::<server::State>()
                            + state.last_response().map(|b| b.len()).unwrap_or(0);
                    }
                    ServerEntry::Absorbed => {
                        r.absorbed += 1;
                        r.bytes += entry + key.heap_bytes();
                    }
                }
            }
        }
        let client_entry = std::mem::size_of::<(TransactionKey, ClientEntry)>();
        if let Ok(m) = self.clients.lock() {
            for (key, e) in m.iter() {
                match e {
                    ClientEntry::Live(_) => r.clients += 1,
                    ClientEntry::Completed(resend) => {
                        r.clients_completed += 1;
                        r.bytes += client_entry
                            + key.heap_bytes()
                            + resend
                                .as_ref()
                                .map_or(0, |a| std::mem::size_of::<Resend>() + 16 + a.bytes.len());
                    }
                }
            }
        }
        let q = std::mem::size_of::<(Instant, TransactionKey)>();
        for queue in [
            &self.timers.started,
            &self.timers.absorbed,
            &self.timers.client_k,
            &self.timers.client_d,
        ] {
            r.bytes += queue.lock().map(|v| v.len() * q).unwrap_or(0);
        }
        r.bytes += self
            .timers
            .completed
            .lock()
            .map(|v| v.len() * std::mem::size_of::<(Instant, Arc<server::State>)>())
            .unwrap_or(0);
        r.accepted = self.accepted.lock().map(|m| m.len()).unwrap_or(0);
        r
    }

    /// A non-INVITE transaction sent its final response: Completed until
    /// Timer J (`wait`; zero over TCP removes it now).
    pub(crate) fn server_completed(&self, state: &Arc<server::State>, wait: std::time::Duration) {
        if wait.is_zero() {
            self.remove_server_state(state);
        } else {
            self.timers
                .push(&self.timers.completed, Instant::now() + wait, state.clone());
        }
    }

    // ---- INVITE server transactions in the Accepted state ---------------

    /// Route ACKs for (Call-ID, CSeq) to `tx`, or stop routing them (`None`).
    pub(crate) fn set_accepted(
        &self,
        id: (String, u32),
        tx: Option<mpsc::UnboundedSender<NetInput>>,
    ) {
        if let Ok(mut m) = self.accepted.lock() {
            match tx {
                Some(tx) => m.insert(id, tx),
                None => m.remove(&id),
            };
        }
    }

    /// Where an ACK for (Call-ID, CSeq) goes, if a transaction is Accepted.
    pub(crate) fn accepted(
        &self,
        call_id: &str,
        cseq: u32,
    ) -> Option<mpsc::UnboundedSender<NetInput>> {
        self.accepted
            .lock()
            .ok()?
            .get(&(call_id.to_string(), cseq))
            .cloned()
    }

    // ---- INVITE server transactions with reliable provisionals ----------

    /// Route PRACKs for (Call-ID, CSeq) to `tx`, or stop routing them (`None`).
    pub(crate) fn set_reliable(
        &self,
        id: (String, u32),
        tx: Option<mpsc::UnboundedSender<NetInput>>,
    ) {
        if let Ok(mut m) = self.reliable.lock() {
            match tx {
                Some(tx) => m.insert(id, tx),
                None => m.remove(&id),
            };
        }
    }

    /// Where a PRACK whose `RAck` names CSeq `cseq` of `call_id` goes.
    pub(crate) fn reliable(
        &self,
        call_id: &str,
        cseq: u32,
    ) -> Option<mpsc::UnboundedSender<NetInput>> {
        self.reliable
            .lock()
            .ok()?
            .get(&(call_id.to_string(), cseq))
            .cloned()
    }

    // ---- client transactions --------------------------------------------

    /// Route responses with `key` to `tx`.
    pub(crate) fn register_client(
        &self,
        key: TransactionKey,
        tx: mpsc::UnboundedSender<Box<Response>>,
    ) {
        if let Ok(mut m) = self.clients.lock() {
            m.insert(key, ClientEntry::Live(tx));
        }
    }

    /// Stop routing responses with `key`.
    pub(crate) fn remove_client(&self, key: &TransactionKey) {
        if let Ok(mut m) = self.clients.lock() {
            m.remove(key);
        }
    }

    /// A client transaction got its final response and its task ends: keep
    /// the key (and the ACK to resend, for a non-2xx INVITE) until Timer K
    /// or D (`wait`; zero over TCP removes it now).
    pub(crate) fn client_completed(
        &self,
        key: &TransactionKey,
        ack: Option<Resend>,
        wait: std::time::Duration,
    ) {
        if wait.is_zero() {
            self.remove_client(key);
            return;
        }
        let queue = if ack.is_some() {
            &self.timers.client_d
        } else {
            &self.timers.client_k
        };
        if let Ok(mut m) = self.clients.lock() {
            m.insert(key.clone(), ClientEntry::Completed(ack.map(Arc::new)));
        }
        self.timers.push(queue, Instant::now() + wait, key.clone());
    }

    /// Where a response with `key` goes.
    pub(crate) fn client(&self, key: &TransactionKey) -> Option<ClientEntry> {
        self.clients.lock().ok()?.get(key).cloned()
    }
}

/// Give back the spare capacity of `map` once it holds a quarter of it or
/// less (after a burst), keeping room to double: a `HashMap` or `VecDeque`
/// never shrinks by itself, so without this the tables would stay at the
/// size of the busiest 32 s ever seen.
fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.len() <= map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}

fn shrink_queue<T>(queue: &Mutex<VecDeque<T>>) {
    if let Ok(mut q) = queue.lock()
        && q.capacity() > 64
        && q.len() <= q.capacity() / 4
    {
        let keep = q.len() * 2;
        q.shrink_to(keep);
    }
}

impl TransactionTable {
    /// Shrink every table and queue that has grown far past what it holds.
    fn shrink(&self) {
        if let Ok(mut m) = self.servers.lock() {
            shrink(&mut m);
        }
        if let Ok(mut m) = self.clients.lock() {
            shrink(&mut m);
        }
        if let Ok(mut m) = self.accepted.lock() {
            shrink(&mut m);
        }
        shrink_queue(&self.timers.completed);
        shrink_queue(&self.timers.started);
        shrink_queue(&self.timers.absorbed);
        shrink_queue(&self.timers.client_k);
        shrink_queue(&self.timers.client_d);
    }
}

impl Drop for TransactionTable {
    fn drop(&mut self) {
        // Lets the timer task notice the table is gone.
        self.timers.wake.notify_one();
    }
}

/// The timer task: Timer J and the 64*T1 safety net of non-INVITE server
/// transactions, Timer L of absorbed INVITEs, Timers K and D of completed
/// client transactions, for as long as the table lives.
async fn run_timers(table: Weak<TransactionTable>, timers: Arc<TimerQueue>) {
    let mut next_shrink = Instant::now();
    loop {
        match timers.next_deadline() {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = timers.wake.notified() => {}
                }
            }
            None => timers.wake.notified().await,
        }
        let Some(t) = table.upgrade() else {
            return;
        };
        let now = Instant::now();
        for state in TimerQueue::expired(&timers.completed, now) {
            t.remove_server_state(&state);
        }
        for key in TimerQueue::expired(&timers.started, now) {
            if let Some(ServerEntry::NonInvite(state)) = t.server(&key)
                && state.give_up()
            {
                t.remove_server_state(&state);
            }
        }
        for key in TimerQueue::expired(&timers.absorbed, now) {
            if let Ok(mut m) = t.servers.lock()
                && matches!(m.get(&key), Some(ServerEntry::Absorbed))
            {
                m.remove(&key);
            }
        }
        let mut clients = TimerQueue::expired(&timers.client_k, now);
        clients.extend(TimerQueue::expired(&timers.client_d, now));
        for key in clients {
            if let Ok(mut m) = t.clients.lock()
                && matches!(m.get(&key), Some(ClientEntry::Completed(_)))
            {
                m.remove(&key);
            }
        }
        if now >= next_shrink || timers.next_deadline().is_none() {
            t.shrink();
            next_shrink = now + std::time::Duration::from_secs(1);
        }
    }
}
