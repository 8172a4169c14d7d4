//! Killing swbd loses no call detail record it acknowledged as written:
//! calls keep coming, swbd's `GetStatus` says W records are written, swbd
//! gets SIGKILL at once, and at least those W records (whole, parseable,
//! each once) are in the file, or committed in PostgreSQL.
//!
//! "Written" is defined in `swbd/src/cdr/mod.rs`: file, `write(2)`
//! returned (a SIGKILL cannot undo that; a power loss can without
//! `cdr.file.fsync`); PostgreSQL, the INSERT committed.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::collections::HashSet;

use support::postgres::Postgres;
use support::ua::Ua;
use support::{Options, System, eventually};
use swbd::cdr::Cdr;
use switchboard_proto::admin::v1 as pb;

/// Calls placed at most (the kill comes long before).
const MAX_CALLS: usize = 400;
/// Records acknowledged before the kill, at least.
const BEFORE_KILL: u64 = 25;

/// Place calls to a destination nobody routes (404, a record each) until
/// aborted or [`MAX_CALLS`].
fn keep_calling(sys: &System) -> tokio::task::JoinHandle<()> {
    let sip = sys.sip;
    tokio::spawn(async move {
        let mut alice = Ua::new("1001", sip).await;
        for _ in 0..MAX_CALLS {
            let mut call = alice.invite("777", None).await;
            let _ = alice.final_response(&mut call).await;
        }
    })
}

async fn written(sys: &System, which: fn(&pb::CdrCounters) -> u64) -> Option<u64> {
    let status = sys
        .signaling()
        .await
        .ok()?
        .get_status(pb::GetStatusRequest {})
        .await
        .ok()?
        .into_inner();
    status.cdr.as_ref().map(which)
}

/// Calls until at least [`BEFORE_KILL`] records are acknowledged, then
/// SIGKILL; returns how many were acknowledged at the last look.
async fn kill_while_calling(sys: &mut System, which: fn(&pb::CdrCounters) -> u64) -> u64 {
    let calls = keep_calling(sys);
    let acked = eventually(60, "records acknowledged", || async {
        written(sys, which).await.filter(|n| *n >= BEFORE_KILL)
    })
    .await;
    sys.swbd.kill(); // SIGKILL, calls still coming
    calls.abort();
    let _ = calls.await;
    acked
}

/// The call ids of the whole records in `sys`'s CDR file (a torn last
/// line is not a record); panics on a duplicate.
fn ids_in_file(sys: &System) -> HashSet<String> {
    let text = std::fs::read_to_string(sys.dir.join("cdr.jsonl")).expect("CDR file");
    let mut ids = HashSet::new();
    for line in text.lines() {
        if let Ok(c) = serde_json::from_str::<Cdr>(line) {
            assert!(ids.insert(c.call_id.clone()), "{} written twice", c.call_id);
        }
    }
    ids
}

#[tokio::test]
async fn sigkill_loses_no_record_acknowledged_in_the_file() {
    let mut sys = System::start(Options::default()).await;
    let acked = kill_while_calling(&mut sys, |c| c.written_file).await;
    let ids = ids_in_file(&sys);
    assert!(
        ids.len() as u64 >= acked,
        "{acked} records acknowledged, {} in the file",
        ids.len()
    );
}

#[tokio::test]
async fn sigkill_loses_no_record_committed_to_postgresql() {
    let dir = support::tempdir("pgkill");
    let Some(pg) = Postgres::start(&dir) else {
        return;
    };
    let mut sys = System::start(Options {
        extra_config: format!(
            "cdr:\n  file: {{ enabled: false, path: cdr.jsonl }}\n  postgres: {{ url: \"{}\", batch_size: 4 }}\n",
            pg.url
        ),
        ..Default::default()
    })
    .await;
    let acked = kill_while_calling(&mut sys, |c| c.written_postgres).await;
    let db = pg.client().await;
    let rows: i64 = db
        .query_one("SELECT count(DISTINCT call_id) FROM swbd_cdr", &[])
        .await
        .expect("count")
        .get(0);
    let total: i64 = db
        .query_one("SELECT count(*) FROM swbd_cdr", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, total, "no record twice");
    assert!(
        rows as u64 >= acked,
        "{acked} records committed per swbd, {rows} in the table"
    );
    // A restarted swbd keeps writing to the same table.
    sys.restart_swbd().await;
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut call = alice.invite("777", None).await;
    assert_eq!(alice.final_response(&mut call).await.code, 404);
    eventually(20, "the restarted swbd's record", || async {
        let n: i64 = db
            .query_one("SELECT count(*) FROM swbd_cdr", &[])
            .await
            .ok()?
            .get(0);
        (n > total).then_some(())
    })
    .await;
}
