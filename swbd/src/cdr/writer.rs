//! The bounded queue between call tasks and the stores, the writer task
//! that empties it (module docs of [`super`]: what "written" means), and
//! the history read back for admin.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchboard_proto::admin::v1 as pb;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::config::CdrConfig;
use super::file::FileWriter;
use super::history::{self, HistoryQuery};
use super::postgres::{self, Postgres};
use super::record::Cdr;
use crate::b2bua::record::CallRecord;

/// Records written per file batch at most.
const FILE_BATCH: usize = 256;
/// After the first record of a batch, how long the writer gathers more
/// before writing. Each batch costs a hand-off to the blocking pool and a
/// `write(2)` (and a database round trip): written one by one at 1,200
/// calls/s that was ~9% of swbd's CPU per call; gathered, it is shared by
/// ~30 records. A record is counted written (acknowledged) only once its
/// batch is, so this delays the acknowledgement, never loses one.
const GATHER: Duration = Duration::from_millis(25);
/// First pause after a failed database attempt; doubles up to [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest pause between database attempts (and probes while it is down).
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long stopping waits for the queue to be written.
const STOP_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Counters {
    submitted: AtomicU64,
    written_file: AtomicU64,
    written_postgres: AtomicU64,
    spilled: AtomicU64,
    failed: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<Cdr>,
    counters: Arc<Counters>,
    node_id: String,
    file: Option<(PathBuf, u32)>,
    scan_budget: u64,
    postgres: Option<Postgres>,
    /// The history's own connection (the writer has another).
    reader: Mutex<Option<Arc<tokio_postgres::Client>>>,
}

/// Where call tasks hand their records; also reads the history. Cheap to
/// clone. A disabled sink (no file, no database) takes records and drops
/// them uncounted: CDRs are off.
#[derive(Debug, Clone, Default)]
pub struct CdrSink {
    inner: Option<Arc<Inner>>,
}

/// The writer task's handle, to stop it at shutdown once the queue is written.
#[derive(Debug)]
pub struct CdrWriter {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Start the writer for `cfg` (nothing runs when CDRs are off). A
/// database that cannot be reached now is retried by the writer; swbd
/// starts anyway (records go to the file meanwhile).
pub fn start(cfg: &CdrConfig, node_id: &str) -> anyhow::Result<(CdrSink, CdrWriter)> {
    let postgres = cfg
        .postgres
        .url
        .as_deref()
        .map(Postgres::new)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let file_path = cfg.file_path();
    if !cfg.file.enabled && postgres.is_none() {
        tracing::info!(
            "call detail records are off (cdr.file.enabled: false, no cdr.postgres.url)"
        );
        return Ok((
            CdrSink::default(),
            CdrWriter {
                stop: None,
                task: None,
            },
        ));
    }
    // The file is the spill of a database that is down, even when it is
    // not written otherwise.
    let file = FileWriter::new(
        file_path.clone(),
        cfg.file.max_bytes,
        cfg.file.keep,
        cfg.file.fsync,
    );
    let (tx, rx) = mpsc::channel(cfg.queue_size);
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = Task {
        rx,
        counters: counters.clone(),
        file: Some(file),
        file_enabled: cfg.file.enabled,
        postgres: postgres.clone(),
        client: None,
        pg_batch: cfg.postgres.batch(),
        pg_attempts: cfg.postgres.attempts(),
        down_until: None,
        backoff: BACKOFF_START,
    };
    let task = tokio::spawn(task.run(stop_rx));
    tracing::info!(
        file = %file_path.display(),
        file_enabled = cfg.file.enabled,
        postgres = postgres.is_some(),
        "call detail records on"
    );
    let inner = Inner {
        tx,
        counters,
        node_id: node_id.to_string(),
        file: cfg.file.enabled.then_some((file_path, cfg.file.keep)),
        scan_budget: cfg.history_scan_bytes,
        postgres,
        reader: Mutex::new(None),
    };
    Ok((
        CdrSink {
            inner: Some(Arc::new(inner)),
        },
        CdrWriter {
            stop: Some(stop_tx),
            task: Some(task),
        },
    ))
}

/// A record that no store took: counted and logged whole, so it can be
/// recovered from the log.
fn lost(counters: &Counters, record: &Cdr, why: &str) {
    counters.failed.fetch_add(1, Ordering::Relaxed);
    let json = serde_json::to_string(record).unwrap_or_default();
    tracing::error!(call = %record.call_id, why, cdr = %json, "call detail record NOT written");
}

impl CdrSink {
    /// Hand over the record of a call that ended. Never waits.
    pub fn submit(&self, call: &CallRecord) {
        let Some(inner) = &self.inner else { return };
        let record = Cdr::from_call(call, &inner.node_id);
        inner.counters.submitted.fetch_add(1, Ordering::Relaxed);
        match inner.tx.try_send(record) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(r)) => {
                lost(&inner.counters, &r, "queue full (cdr.queue_size)");
            }
            Err(mpsc::error::TrySendError::Closed(r)) => {
                lost(&inner.counters, &r, "writer stopped");
            }
        }
    }

    /// The counters for `GetStatus` (`None`: CDRs off).
    pub fn counters(&self) -> Option<pb::CdrCounters> {
        let inner = self.inner.as_ref()?;
        let c = &inner.counters;
        let queued = inner.tx.max_capacity().saturating_sub(inner.tx.capacity());
        Some(pb::CdrCounters {
            submitted: c.submitted.load(Ordering::Relaxed),
            written_file: c.written_file.load(Ordering::Relaxed),
            written_postgres: c.written_postgres.load(Ordering::Relaxed),
            spilled_to_file: c.spilled.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            queued: queued as u64,
        })
    }

    /// The history: PostgreSQL when configured, else the files. `Err` is
    /// a gRPC status (bad filter, nothing to read from, store down).
    pub async fn history(
        &self,
        req: pb::ListCallHistoryRequest,
    ) -> Result<pb::ListCallHistoryResponse, tonic::Status> {
        let q = HistoryQuery::from_proto(req).map_err(tonic::Status::invalid_argument)?;
        let Some(inner) = &self.inner else {
            return Err(tonic::Status::failed_precondition(
                "call detail records are off on this swbd (cdr.file.enabled: false, no cdr.postgres.url)",
            ));
        };
        let (records, source, truncated) = match &inner.postgres {
            Some(pg) => {
                let records = inner.query_postgres(pg, &q).await.map_err(|e| {
                    tracing::warn!(error = %e, "CDR history: PostgreSQL query failed");
                    tonic::Status::unavailable(format!("CDR database: {e}"))
                })?;
                (records, "postgres", false)
            }
            None => {
                let Some((path, keep)) = inner.file.clone() else {
                    return Err(tonic::Status::failed_precondition("no CDR file"));
                };
                let budget = inner.scan_budget;
                let (records, truncated) = tokio::task::spawn_blocking(move || {
                    history::scan_files(&path, keep, &q, budget)
                })
                .await
                .map_err(|e| tonic::Status::internal(format!("CDR history task: {e}")))?;
                (records, "file", truncated)
            }
        };
        Ok(pb::ListCallHistoryResponse {
            records: records.iter().map(Cdr::to_proto).collect(),
            source: source.into(),
            truncated,
        })
    }
}

impl Inner {
    async fn query_postgres(
        &self,
        pg: &Postgres,
        q: &HistoryQuery,
    ) -> Result<Vec<Cdr>, postgres::Error> {
        let mut slot = self.reader.lock().await;
        let client = match slot.as_ref().filter(|c| !c.is_closed()) {
            Some(c) => c.clone(),
            None => {
                let c = Arc::new(pg.connect().await?);
                *slot = Some(c.clone());
                c
            }
        };
        drop(slot);
        let result = postgres::query(&client, q).await;
        if result.is_err() && client.is_closed() {
            *self.reader.lock().await = None;
        }
        result
    }
}

impl CdrWriter {
    /// Write what is queued, then stop (at shutdown, after the calls ended).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && tokio::time::timeout(STOP_WAIT, task).await.is_err()
        {
            tracing::warn!("CDR writer did not finish in time; queued records may be lost");
        }
    }
}

/// The writer task's state.
struct Task {
    rx: mpsc::Receiver<Cdr>,
    counters: Arc<Counters>,
    /// `None` only while a write runs on the blocking pool.
    file: Option<FileWriter>,
    file_enabled: bool,
    postgres: Option<Postgres>,
    client: Option<tokio_postgres::Client>,
    pg_batch: usize,
    pg_attempts: u32,
    /// The database failed a whole batch: until then, batches go straight
    /// to the file (one probe when it passes).
    down_until: Option<Instant>,
    backoff: Duration,
}

impl Task {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let max = if self.postgres.is_some() {
            self.pg_batch.max(1)
        } else {
            FILE_BATCH
        };
        loop {
            let first = tokio::select! {
                r = self.rx.recv() => r,
                _ = &mut stop => {
                    self.rx.close();
                    // Write what is left, then end.
                    loop {
                        let mut batch = Vec::new();
                        while batch.len() < max {
                            match self.rx.try_recv() {
                                Ok(r) => batch.push(r),
                                Err(_) => break,
                            }
                        }
                        if batch.is_empty() {
                            return;
                        }
                        self.write(batch).await;
                    }
                }
            };
            let Some(first) = first else { return };
            // Gather by sleeping, then taking what queued meanwhile: one
            // wake per batch, not one per record (waiting on `recv` in the
            // window woke the task for each call that ended). A stop in
            // the window waits for it to pass (GATHER, far below STOP_WAIT).
            tokio::time::sleep(GATHER).await;
            let mut batch = vec![first];
            loop {
                while batch.len() < max {
                    match self.rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                let full = batch.len() >= max;
                self.write(std::mem::take(&mut batch)).await;
                if !full {
                    break;
                }
            }
        }
    }

    async fn write(&mut self, batch: Vec<Cdr>) {
        let lines: Vec<(Cdr, String)> = batch
            .into_iter()
            .filter_map(|c| match encode(&c) {
                Ok(json) => Some((c, json)),
                Err(e) => {
                    lost(&self.counters, &c, &format!("cannot encode: {e}"));
                    None
                }
            })
            .collect();
        let in_file = self.file_enabled && self.append(&lines).await;
        let mut stored = in_file;
        if self.postgres.is_some() {
            if self.insert(&lines).await {
                self.counters
                    .written_postgres
                    .fetch_add(lines.len() as u64, Ordering::Relaxed);
                stored = true;
            } else {
                // The spill: the file (written anyway when enabled).
                if !in_file {
                    stored = self.append(&lines).await;
                }
                if stored {
                    self.counters
                        .spilled
                        .fetch_add(lines.len() as u64, Ordering::Relaxed);
                }
            }
        }
        if !stored {
            for (c, _) in &lines {
                lost(&self.counters, c, "no store took it");
            }
        }
    }

    /// Append to the file on the blocking pool; counted written on success.
    async fn append(&mut self, lines: &[(Cdr, String)]) -> bool {
        let Some(mut file) = self.file.take() else {
            return false;
        };
        let text: Vec<String> = lines.iter().map(|(_, j)| j.clone()).collect();
        let joined = tokio::task::spawn_blocking(move || {
            let r = file.append(&text);
            (file, r)
        })
        .await;
        match joined {
            Ok((file, result)) => {
                let path = file.path().display().to_string();
                self.file = Some(file);
                match result {
                    Ok(()) => {
                        self.counters
                            .written_file
                            .fetch_add(lines.len() as u64, Ordering::Relaxed);
                        true
                    }
                    Err(e) => {
                        tracing::error!(file = %path, error = %e, "cannot write the CDR file");
                        false
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "CDR file task failed");
                false
            }
        }
    }

    /// Insert into PostgreSQL with retries; `false`: the batch is not in it.
    async fn insert(&mut self, lines: &[(Cdr, String)]) -> bool {
        let Some(pg) = self.postgres.clone() else {
            return false;
        };
        if let Some(until) = self.down_until {
            if Instant::now() < until {
                return false;
            }
            // One probe: a single attempt.
            if self.try_insert(&pg, lines).await {
                tracing::info!("PostgreSQL is back: CDRs go to it again");
                self.down_until = None;
                self.backoff = BACKOFF_START;
                return true;
            }
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            self.down_until = Some(Instant::now() + self.backoff);
            return false;
        }
        let mut pause = BACKOFF_START;
        for attempt in 1..=self.pg_attempts {
            if self.try_insert(&pg, lines).await {
                return true;
            }
            if attempt < self.pg_attempts {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(BACKOFF_MAX);
            }
        }
        tracing::error!(
            records = lines.len(),
            "PostgreSQL refused a CDR batch {} times: spilling to the file until it is back",
            self.pg_attempts
        );
        self.backoff = pause;
        self.down_until = Some(Instant::now() + self.backoff);
        false
    }

    async fn try_insert(&mut self, pg: &Postgres, lines: &[(Cdr, String)]) -> bool {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            match pg.connect().await {
                Ok(c) => self.client = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "CDR database unreachable");
                    self.client = None;
                    return false;
                }
            }
        }
        let Some(client) = &self.client else {
            return false;
        };
        match postgres::insert(client, lines).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, records = lines.len(), "CDR insert failed");
                if client.is_closed() {
                    self.client = None;
                }
                false
            }
        }
    }
}

/// A record as one JSON line, into a buffer sized for a typical record
/// (growing a small one was a visible share of swbd's CPU at 1,200 calls/s:
/// reallocations and copies).
fn encode(c: &Cdr) -> serde_json::Result<String> {
    let mut buf = Vec::with_capacity(2048);
    serde_json::to_writer(&mut buf, c)?;
    // serde_json writes UTF-8 only.
    String::from_utf8(buf).map_err(|e| serde::ser::Error::custom(e.to_string()))
}
