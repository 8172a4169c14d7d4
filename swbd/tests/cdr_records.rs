//! Call detail records from real calls: an answered call hung up by the
//! caller, a destination nobody routes (404), an unknown user (404 from
//! the dial target), a busy callee (486) and a call whose audio flows one
//! way. Each gives the expected record in the JSON-lines file and, with
//! `cdr.postgres.url`, in a real PostgreSQL; the admin history finds
//! them by every filter.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::time::Duration;

use support::postgres::Postgres;
use support::ua::{Ua, sdp, sdp_media_addr};
use support::{Options, System, eventually};
use swbd::cdr::Cdr;
use switchboard_proto::admin::v1 as pb;

const PLAN: &str = "version: 1
no_match: { code: 404, reason: Not Found }
routes:
  - id: ext
    match: { destination: \"1???\" }
    actions:
      - dial: { target: \"user/${destination}\", timeout: 10s, on_failure: stop }
";

/// The A-leg SIP Call-IDs of the scenario's calls.
struct Calls {
    answered: String,
    no_route: String,
    unknown_user: String,
    busy: String,
    one_way: String,
}

/// Bob answers; both send RTP (or only Alice when `one_way`); Alice hangs up.
async fn bridged_call(alice: &mut Ua, bob: &mut Ua, one_way: bool) -> String {
    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    let tag = format!("bob{}", bob.rtp_port);
    bob.reply(&inv, 180, "Ringing", Some(&tag), None).await;
    let body = sdp(bob.rtp_port);
    bob.reply(&inv, 200, "OK", Some(&tag), Some(&body)).await;
    let _ack = bob.request("ACK").await;
    let b_media = sdp_media_addr(&inv.body).expect("B offer has media");
    let ok = alice.final_response(&mut call).await;
    assert_eq!(ok.code, 200);
    alice.ack(&call).await;
    let a_media = sdp_media_addr(&ok.body).expect("200 has SDP");
    for seq in 0..25u16 {
        alice.send_rtp(a_media, seq, 0xA11CE, &[0x55; 160]).await;
        if !one_way {
            bob.send_rtp(b_media, seq, 0xB0B, &[0x2a; 160]).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!bob.recv_rtp(5, 10).await.is_empty(), "bob hears alice");
    if !one_way {
        assert!(!alice.recv_rtp(5, 10).await.is_empty(), "alice hears bob");
    }
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    call.call_id
}

async fn scenarios(sys: &System) -> Calls {
    let mut alice = Ua::new("1001", sys.sip).await;
    let mut bob = Ua::new("1002", sys.sip).await;
    assert_eq!(bob.register(300).await.code, 200);

    let answered = bridged_call(&mut alice, &mut bob, false).await;

    let mut call = alice.invite("777", None).await;
    assert_eq!(alice.final_response(&mut call).await.code, 404);
    let no_route = call.call_id;

    let mut call = alice.invite("1029", None).await;
    assert_eq!(alice.final_response(&mut call).await.code, 404);
    let unknown_user = call.call_id;

    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    bob.reply(&inv, 486, "Busy Here", Some("busy"), None).await;
    let _ack = bob.request("ACK").await;
    assert_eq!(alice.final_response(&mut call).await.code, 486);
    let busy = call.call_id;

    let one_way = bridged_call(&mut alice, &mut bob, true).await;
    sys.assert_clean().await;
    Calls {
        answered,
        no_route,
        unknown_user,
        busy,
        one_way,
    }
}

fn by_a_leg<'a>(records: &'a [Cdr], sip_call_id: &str) -> &'a Cdr {
    records
        .iter()
        .find(|c| c.legs.first().is_some_and(|l| l.sip_call_id == sip_call_id))
        .unwrap_or_else(|| panic!("no CDR for {sip_call_id}: {records:#?}"))
}

/// Every record as the scenario must have left it.
fn check_records(records: &[Cdr], calls: &Calls) {
    assert_eq!(
        records.len(),
        5,
        "one record per call attempt: {records:#?}"
    );

    let c = by_a_leg(records, &calls.answered);
    assert_eq!(c.status.as_str(), "answered");
    assert_eq!(c.sip_code, 200);
    assert_eq!(
        (c.caller.as_str(), c.destination.as_str()),
        ("1001", "1002")
    );
    assert_eq!(c.route_id, "ext");
    assert!(!c.dialplan_version.is_empty());
    assert_eq!(c.media_node, "rtp-a");
    assert_eq!(c.codec, "PCMU");
    assert_eq!(c.end_reason, "caller_bye");
    assert_eq!(c.hangup_by, "caller");
    assert!(c.answer_time.is_some() && c.end_time >= c.start_time);
    assert_eq!(c.legs.len(), 2);
    let (a, b) = (&c.legs[0], &c.legs[1]);
    assert_eq!(
        (a.role.as_str(), a.final_code, a.end.as_str()),
        ("a", 200, "bye_received")
    );
    assert_eq!(
        (b.role.as_str(), b.final_code, b.end.as_str()),
        ("b", 200, "bye_sent")
    );
    assert_eq!(b.target, "user/1002");
    assert_ne!(a.sip_call_id, b.sip_call_id, "each leg has its own Call-ID");
    for leg in [a, b] {
        let rtp = leg
            .rtp
            .as_ref()
            .expect("final RTP stats kept for the record");
        assert!(rtp.rx.packets > 0 && rtp.tx.packets > 0, "{rtp:?}");
        assert!(rtp.rx.bytes >= rtp.rx.packets * 160, "{rtp:?}");
        assert!(rtp.mos.is_some_and(|m| m > 4.0), "{rtp:?}");
    }
    assert!(!c.one_way && !c.silent);
    assert!(c.mos.is_some_and(|m| m > 4.0));

    let c = by_a_leg(records, &calls.no_route);
    assert_eq!((c.status.as_str(), c.sip_code), ("failed", 404));
    assert_eq!(c.end_reason, "no_route");
    assert_eq!(c.hangup_by, "dialplan");
    assert_eq!(c.legs.len(), 1);
    assert_eq!(
        (c.legs[0].final_code, c.legs[0].end.as_str()),
        (404, "rejected")
    );
    assert!(c.answer_time.is_none() && c.mos.is_none());

    let c = by_a_leg(records, &calls.unknown_user);
    assert_eq!((c.status.as_str(), c.sip_code), ("failed", 404));
    assert_eq!(c.end_reason, "dial_failed");
    assert_eq!(c.failed_targets.len(), 1, "{c:#?}");
    assert_eq!(
        (
            c.failed_targets[0].target.as_str(),
            c.failed_targets[0].code
        ),
        ("user/1029", 404),
        "the real cause, not only in swbd's log"
    );

    let c = by_a_leg(records, &calls.busy);
    assert_eq!((c.status.as_str(), c.sip_code), ("failed", 486));
    assert_eq!(c.hangup_by, "callee");
    assert_eq!(c.legs.len(), 2);
    assert_eq!(
        (c.legs[1].final_code, c.legs[1].end.as_str()),
        (486, "rejected")
    );

    let c = by_a_leg(records, &calls.one_way);
    assert_eq!(c.status.as_str(), "answered");
    assert!(c.one_way, "audio only from the caller: {c:#?}");
    assert!(!c.silent);
    let a = c.legs[0].rtp.as_ref().expect("A stats");
    assert!(a.rx.packets > 0 && a.tx.packets == 0, "{a:?}");
}

fn read_file(sys: &System) -> Vec<Cdr> {
    let text = std::fs::read_to_string(sys.dir.join("cdr.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("each line is one record"))
        .collect()
}

async fn history(sys: &System, req: pb::ListCallHistoryRequest) -> pb::ListCallHistoryResponse {
    sys.signaling()
        .await
        .expect("admin")
        .list_call_history(req)
        .await
        .expect("history")
        .into_inner()
}

/// The admin history: every filter finds the right records.
async fn check_history(sys: &System, calls: &Calls, source: &str) {
    let all = history(sys, Default::default()).await;
    assert_eq!(all.source, source);
    assert_eq!(all.records.len(), 5);
    assert!(
        all.records
            .windows(2)
            .all(|w| w[0].end_time.as_ref().map(|t| (t.seconds, t.nanos))
                >= w[1].end_time.as_ref().map(|t| (t.seconds, t.nanos))),
        "newest first"
    );
    let a_leg = |r: &pb::CallDetailRecord| {
        r.legs
            .first()
            .map(|l| l.sip_call_id.clone())
            .unwrap_or_default()
    };
    let ids = |resp: pb::ListCallHistoryResponse| -> Vec<String> {
        resp.records.iter().map(a_leg).collect()
    };
    let q = |f: fn(&mut pb::ListCallHistoryRequest)| {
        let mut r = pb::ListCallHistoryRequest::default();
        f(&mut r);
        r
    };
    let failed = ids(history(sys, q(|r| r.status = pb::CallHistoryStatus::Failed as i32)).await);
    assert_eq!(failed.len(), 3, "{failed:?}");
    let answered = ids(history(
        sys,
        q(|r| r.status = pb::CallHistoryStatus::Answered as i32),
    )
    .await);
    assert_eq!(answered, [calls.one_way.as_str(), calls.answered.as_str()]);
    assert_eq!(
        ids(history(sys, q(|r| r.sip_code = 486)).await),
        [calls.busy.as_str()]
    );
    assert_eq!(
        ids(history(sys, q(|r| r.destination = "777".into())).await),
        [calls.no_route.as_str()]
    );
    assert_eq!(
        ids(history(sys, q(|r| r.caller = "1001".into())).await).len(),
        5
    );
    assert!(ids(history(sys, q(|r| r.caller = "1002".into())).await).is_empty());
    assert_eq!(
        ids(history(sys, q(|r| r.media_node = "rtp-a".into())).await).len(),
        3
    );
    assert_eq!(ids(history(sys, q(|r| r.limit = 2)).await).len(), 2);
    let by_id = pb::ListCallHistoryRequest {
        call_id: calls.unknown_user.clone(),
        ..Default::default()
    };
    let one = history(sys, by_id).await;
    assert_eq!(
        ids(one.clone()),
        [calls.unknown_user.as_str()],
        "by the caller's SIP Call-ID"
    );
    let ours = one.records[0].call_id.clone();
    let by_ours = pb::ListCallHistoryRequest {
        call_id: ours,
        ..Default::default()
    };
    assert_eq!(
        ids(history(sys, by_ours).await),
        [calls.unknown_user.as_str()],
        "by swbd's id"
    );
    let future = prost_types::Timestamp {
        seconds: 4_000_000_000,
        nanos: 0,
    };
    let later = pb::ListCallHistoryRequest {
        since: Some(future),
        ..Default::default()
    };
    assert!(history(sys, later).await.records.is_empty());
    let until = pb::ListCallHistoryRequest {
        until: Some(future),
        ..Default::default()
    };
    assert_eq!(history(sys, until).await.records.len(), 5);
    let bad = sys
        .signaling()
        .await
        .expect("admin")
        .list_call_history(q(|r| r.sip_code = 42))
        .await
        .expect_err("refused");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
}

async fn counters(sys: &System) -> pb::CdrCounters {
    sys.status().await.cdr.expect("CDR counters")
}

#[tokio::test]
async fn calls_leave_their_records_in_the_file_and_the_history_finds_them() {
    let sys = System::start(Options {
        dialplan: Some(PLAN.into()),
        ..Default::default()
    })
    .await;
    let calls = scenarios(&sys).await;
    let records = eventually(20, "5 CDRs in the file", || async {
        let r = read_file(&sys);
        (r.len() >= 5).then_some(r)
    })
    .await;
    check_records(&records, &calls);
    let c = counters(&sys).await;
    assert_eq!((c.submitted, c.written_file, c.failed), (5, 5, 0), "{c:?}");
    check_history(&sys, &calls, "file").await;
}

#[tokio::test]
async fn calls_leave_their_records_in_postgresql() {
    let dir = support::tempdir("pg");
    let Some(pg) = Postgres::start(&dir) else {
        return;
    };
    let sys = System::start(Options {
        dialplan: Some(PLAN.into()),
        extra_config: format!(
            "cdr:\n  file: {{ path: cdr.jsonl }}\n  postgres: {{ url: \"{}\" }}\n",
            pg.url
        ),
        ..Default::default()
    })
    .await;
    let calls = scenarios(&sys).await;
    eventually(20, "5 CDRs committed", || async {
        (counters(&sys).await.written_postgres >= 5).then_some(())
    })
    .await;
    let db = pg.client().await;
    let rows = db
        .query(
            "SELECT record::text, status, sip_code, caller FROM swbd_cdr",
            &[],
        )
        .await
        .expect("select");
    let records: Vec<Cdr> = rows
        .iter()
        .map(|r| serde_json::from_str(r.get::<_, &str>(0)).expect("record"))
        .collect();
    check_records(&records, &calls);
    for (row, c) in rows.iter().zip(&records) {
        assert_eq!(
            row.get::<_, &str>(1),
            c.status.as_str(),
            "columns agree with the record"
        );
        assert_eq!(row.get::<_, i32>(2), i32::from(c.sip_code));
        assert_eq!(row.get::<_, &str>(3), c.caller);
    }
    // The file is written too (cdr.file stays on).
    assert_eq!(read_file(&sys).len(), 5);
    let c = counters(&sys).await;
    assert_eq!(
        (
            c.written_postgres,
            c.written_file,
            c.spilled_to_file,
            c.failed
        ),
        (5, 5, 0, 0)
    );
    check_history(&sys, &calls, "postgres").await;
    let version: i32 = db
        .query_one(
            "SELECT version FROM swbd_schema WHERE component = 'cdr'",
            &[],
        )
        .await
        .expect("schema version")
        .get(0);
    assert_eq!(version, 1, "migrated at start");
}
