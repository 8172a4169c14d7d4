//! The PostgreSQL store: schema migration at connect, batched inserts,
//! history queries.
//!
//! One table, `swbd_cdr`: the columns a query filters or sorts on, each
//! indexed, plus the whole record as `jsonb` (`record`), so the columns
//! never have to follow every field the record grows. A row is unique per
//! `(node_id, call_id)` and inserted with `ON CONFLICT DO NOTHING`: a
//! batch retried after a commit whose answer was lost is not duplicated.
//! Migrations are numbered; `swbd_schema` holds the version applied, and
//! they run under an advisory lock so several swbd sharing a database
//! migrate once.

use std::time::{Duration, SystemTime};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

use super::history::HistoryQuery;
use super::record::{CallStatus, Cdr};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Advisory lock key of the migration (any constant; "swbdcdr" in ASCII).
const MIGRATION_LOCK: i64 = 0x0073_7762_6463_6472;

/// Migrations in order; `swbd_schema.version` is how many ran.
const MIGRATIONS: &[&str] = &["
CREATE TABLE IF NOT EXISTS swbd_cdr (
    id           bigserial PRIMARY KEY,
    node_id      text        NOT NULL,
    call_id      text        NOT NULL,
    start_time   timestamptz NOT NULL,
    answer_time  timestamptz,
    end_time     timestamptz NOT NULL,
    status       text        NOT NULL,
    sip_code     integer     NOT NULL,
    caller       text        NOT NULL,
    destination  text        NOT NULL,
    media_node   text        NOT NULL,
    end_reason   text        NOT NULL,
    sip_call_ids text[]      NOT NULL,
    record       jsonb       NOT NULL,
    UNIQUE (node_id, call_id)
);
CREATE INDEX IF NOT EXISTS swbd_cdr_end_time ON swbd_cdr (end_time DESC);
CREATE INDEX IF NOT EXISTS swbd_cdr_start_time ON swbd_cdr (start_time);
CREATE INDEX IF NOT EXISTS swbd_cdr_call_id ON swbd_cdr (call_id);
CREATE INDEX IF NOT EXISTS swbd_cdr_sip_call_ids ON swbd_cdr USING gin (sip_call_ids);
CREATE INDEX IF NOT EXISTS swbd_cdr_caller ON swbd_cdr (caller, end_time DESC);
CREATE INDEX IF NOT EXISTS swbd_cdr_destination ON swbd_cdr (destination, end_time DESC);
CREATE INDEX IF NOT EXISTS swbd_cdr_status ON swbd_cdr (status, sip_code, end_time DESC);
"];

/// What went wrong with the database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection string does not parse.
    #[error("cdr.postgres.url: {0}")]
    Config(String),
    /// Connecting took too long.
    #[error("connecting to PostgreSQL timed out")]
    Timeout,
    /// Anything the server or the connection said.
    #[error("PostgreSQL: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// A stored record that is not one of ours.
    #[error("PostgreSQL: a stored record does not parse: {0}")]
    Record(#[from] serde_json::Error),
}

/// A connection string, parsed once.
#[derive(Clone)]
pub struct Postgres {
    config: tokio_postgres::Config,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection string may hold a password.
        f.debug_struct("Postgres").finish_non_exhaustive()
    }
}

impl Postgres {
    /// Parse `url` (`postgresql://...` or `key=value ...`).
    pub fn new(url: &str) -> Result<Self, Error> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| Error::Config(e.to_string()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("swbd");
        }
        Ok(Self { config })
    }

    /// A migrated connection (its driver runs on a task of its own).
    pub async fn connect(&self) -> Result<Client, Error> {
        let (mut client, connection) =
            tokio::time::timeout(CONNECT_TIMEOUT * 2, self.config.connect(NoTls))
                .await
                .map_err(|_| Error::Timeout)??;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection closed");
            }
        });
        migrate(&mut client).await?;
        Ok(client)
    }
}

/// Apply the migrations not applied yet, once, under an advisory lock.
pub async fn migrate(client: &mut Client) -> Result<(), Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS swbd_schema (component text PRIMARY KEY, version integer NOT NULL)",
    )
    .await?;
    let done: i32 = tx
        .query_opt(
            "SELECT version FROM swbd_schema WHERE component = 'cdr'",
            &[],
        )
        .await?
        .map(|row| row.get(0))
        .unwrap_or(0);
    let done = usize::try_from(done).unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        tracing::info!(version = i + 1, "PostgreSQL: migrating the CDR schema");
        tx.batch_execute(sql).await?;
    }
    if done < MIGRATIONS.len() {
        let version = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO swbd_schema (component, version) VALUES ('cdr', $1)
             ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
            &[&version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Insert a batch (records with their JSON) in one statement; committed
/// when this returns Ok.
pub async fn insert(client: &Client, batch: &[(Cdr, String)]) -> Result<(), Error> {
    let mut node_id = Vec::with_capacity(batch.len());
    let mut call_id = Vec::with_capacity(batch.len());
    let mut start: Vec<SystemTime> = Vec::with_capacity(batch.len());
    let mut answer: Vec<Option<SystemTime>> = Vec::with_capacity(batch.len());
    let mut end: Vec<SystemTime> = Vec::with_capacity(batch.len());
    let mut status = Vec::with_capacity(batch.len());
    let mut code: Vec<i32> = Vec::with_capacity(batch.len());
    let mut caller = Vec::with_capacity(batch.len());
    let mut destination = Vec::with_capacity(batch.len());
    let mut node = Vec::with_capacity(batch.len());
    let mut reason = Vec::with_capacity(batch.len());
    // text[][] cannot be ragged: each row's Call-IDs travel as one JSON
    // array and are unpacked server-side.
    let mut sip_ids = Vec::with_capacity(batch.len());
    let mut record = Vec::with_capacity(batch.len());
    for (c, json) in batch {
        node_id.push(c.node_id.as_str());
        call_id.push(c.call_id.as_str());
        start.push(c.start_time);
        answer.push(c.answer_time);
        end.push(c.end_time);
        status.push(c.status.as_str());
        code.push(i32::from(c.sip_code));
        caller.push(c.caller.as_str());
        destination.push(c.destination.as_str());
        node.push(c.media_node.as_str());
        reason.push(c.end_reason.as_str());
        sip_ids.push(serde_json::to_string(&c.sip_call_ids())?);
        record.push(json.as_str());
    }
    client
        .execute(
            "INSERT INTO swbd_cdr (node_id, call_id, start_time, answer_time, end_time, status,
                 sip_code, caller, destination, media_node, end_reason, sip_call_ids, record)
             SELECT n, c, s, a, e, st, code, cl, d, m, r,
                    ARRAY(SELECT jsonb_array_elements_text(ids::jsonb)), rec::jsonb
             FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                         $5::timestamptz[], $6::text[], $7::int4[], $8::text[], $9::text[],
                         $10::text[], $11::text[], $12::text[], $13::text[])
                  AS t(n, c, s, a, e, st, code, cl, d, m, r, ids, rec)
             ON CONFLICT (node_id, call_id) DO NOTHING",
            &[
                &node_id,
                &call_id,
                &start,
                &answer,
                &end,
                &status,
                &code,
                &caller,
                &destination,
                &node,
                &reason,
                &sip_ids,
                &record,
            ],
        )
        .await?;
    Ok(())
}

/// The history from the table, newest (by end time) first.
pub async fn query(client: &Client, q: &HistoryQuery) -> Result<Vec<Cdr>, Error> {
    let mut sql = String::from("SELECT record::text FROM swbd_cdr WHERE true");
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut add = |sql: &mut String, clause: &str, p: Box<dyn ToSql + Sync + Send>| {
        params.push(p);
        sql.push_str(&clause.replace('?', &format!("${}", params.len())));
    };
    if let Some(t) = q.since {
        add(&mut sql, " AND start_time >= ?", Box::new(t));
    }
    if let Some(t) = q.until {
        add(&mut sql, " AND start_time < ?", Box::new(t));
    }
    if let Some(v) = &q.caller {
        add(&mut sql, " AND caller = ?", Box::new(v.clone()));
    }
    if let Some(v) = &q.destination {
        add(&mut sql, " AND destination = ?", Box::new(v.clone()));
    }
    if let Some(s) = q.status {
        let s = match s {
            CallStatus::Answered => "answered",
            CallStatus::Failed => "failed",
        };
        add(&mut sql, " AND status = ?", Box::new(s.to_string()));
    }
    if let Some(c) = q.sip_code {
        add(&mut sql, " AND sip_code = ?", Box::new(i32::from(c)));
    }
    if let Some(v) = &q.media_node {
        add(&mut sql, " AND media_node = ?", Box::new(v.clone()));
    }
    if let Some(v) = &q.call_id {
        add(
            &mut sql,
            " AND (call_id = ? OR sip_call_ids @> ARRAY[?::text])",
            Box::new(v.clone()),
        );
    }
    let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
    add(
        &mut sql,
        " ORDER BY end_time DESC, id DESC LIMIT ?",
        Box::new(limit),
    );
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = client.query(&sql, &refs).await?;
    rows.iter()
        .map(|row| {
            let text: &str = row.get(0);
            serde_json::from_str(text).map_err(Error::from)
        })
        .collect()
}
