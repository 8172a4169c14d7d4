//! What a finished B2BUA call leaves in swbd (issue #14), measured by
//! reading swbd's tables, not RSS: calls through the real B2BUA (call
//! tasks, dialplan, media node, transaction layer, dialog routes) where the
//! caller hangs up, so swbd answers A's BYE (a server transaction) and sends
//! its own BYE to B (a client transaction). After the calls every table
//! holds only what RFC 3261 needs for its windows (keys, last responses),
//! the console's bounded list of ended calls, and one start time per call
//! for calls/s: under 1 KiB per finished call.
//!
//! swbd runs in this process (the same wiring as `swbd::server::run`,
//! without the admin listeners) so the test can read its tables; swrtp is
//! the real daemon.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::sync::Arc;

use support::ua::{Ua, sdp};
use swbd::b2bua::table::Retention;
use swbd::b2bua::{CallDeps, CallTable, dispatch};
use swbd::config::{Config, ListenAddr, MediaNodeConfig, Transport};
use swbd::dialplan::DialplanStore;
use swbd::endpoint::SipEndpoint;
use swbd::events::EventBus;
use swbd::media::{LeaseOwner, MediaPool, MediaTokens};
use swbd::sip::message::HeaderAccess;
use swbd::sip::{Name, Request};
use switchboard_proto::support::shutdown::{self, ShutdownTrigger};

/// More calls than the console keeps, so its bound shows.
const CALLS: usize = 240;

/// swbd's services, in this process.
struct Swbd {
    endpoint: SipEndpoint,
    calls: CallTable,
    _trigger: ShutdownTrigger,
}

async fn start_swbd(node: &support::Node, dir: &std::path::Path) -> Swbd {
    let mut config = Config::default();
    config.auth.enabled = false;
    config.sip.listen = vec![ListenAddr {
        transport: Transport::Udp,
        addr: "127.0.0.1:0".parse().expect("addr"),
    }];
    config.sip.domains = vec!["127.0.0.1".into()];
    // Timer K as long as the 64*T1 windows, so every BYE swbd sent is still
    // in its window when the tables are read: the measure is the most a
    // finished call keeps, not what is left after some windows closed.
    config.sip.timers.t4_ms = 60_000;
    config.media.token_file = Some(support::media_token_file(dir));
    config.media.health_interval_ms = 100;
    config.media.nodes = vec![MediaNodeConfig {
        name: node.name.clone(),
        address: node.control.clone(),
        token_file: None,
    }];
    let config = Arc::new(config);
    let events = EventBus::new();
    let (trigger, sd) = shutdown::channel();
    let dialplan = DialplanStore::from_config(&config, events.clone()).expect("dialplan");
    let tokens = MediaTokens::load(&config.media).expect("media token");
    let owner = LeaseOwner::new(
        "callmem",
        config.media.lease_secs,
        config.media.lease_renew_secs,
    )
    .expect("owner");
    let media = MediaPool::with_owner(&config.media, &tokens, events.clone(), owner).expect("pool");
    let endpoint = SipEndpoint::start(config.clone(), events.clone(), sd.clone())
        .await
        .expect("endpoint");
    media.start(sd);
    let calls = CallTable::new(events);
    endpoint.set_dialog_router(Arc::new(dispatch::Router {
        calls: calls.clone(),
    }));
    let deps = CallDeps {
        layer: endpoint.transactions().clone(),
        config,
        media: media.clone(),
        dialplan,
        calls: calls.clone(),
        locator: Arc::new(endpoint.registrar().clone()),
        // CDRs off: this test measures the tables, not the writer's queue.
        cdr: swbd::cdr::CdrSink::default(),
        overload: endpoint.overload().clone(),
        saved_calls: swbd::b2bua::restart::SavedCalls::off(),
    };
    let mut invites = endpoint.take_invites().expect("invites");
    tokio::spawn(async move {
        while let Some(incoming) = invites.recv().await {
            dispatch::invite(&deps, incoming.transaction);
        }
    });
    support::eventually(30, "media node up", || {
        let up = media.up_count() == 1;
        async move { up.then_some(()) }
    })
    .await;
    Swbd {
        endpoint,
        calls,
        _trigger: trigger,
    }
}

/// One call: alice calls bob, bob answers, alice hangs up; swbd's BYE to
/// bob is answered. Returns bob's answer to that BYE (to resend it).
async fn one_call(alice: &mut Ua, bob: &mut Ua) -> Vec<u8> {
    let mut call = alice.invite("1002", None).await;
    let inv = bob.request("INVITE").await;
    let tag = format!("bob{}", inv.call_id().expect("call-id"));
    let body = sdp(bob.rtp_port);
    bob.reply(&inv, 200, "OK", Some(&tag), Some(&body)).await;
    let _ack = bob.request("ACK").await;
    assert_eq!(alice.final_response(&mut call).await.code, 200);
    alice.ack(&call).await;
    assert_eq!(alice.bye(&call).await.code, 200);
    let bye: Request = bob.request("BYE").await;
    bob.reply(&bye, 200, "OK", None, None).await;
    ok_text(&bye)
}

/// The 200 bob sent for `bye`, as bytes (the same as `Ua::reply` builds).
fn ok_text(bye: &Request) -> Vec<u8> {
    let mut msg = String::from("SIP/2.0 200 OK\r\n");
    for v in bye.raw_values(&Name::VIA) {
        msg.push_str(&format!("Via: {v}\r\n"));
    }
    msg.push_str(&format!(
        "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        bye.raw(&Name::FROM).unwrap_or_default(),
        bye.raw(&Name::TO).unwrap_or_default(),
        bye.raw(&Name::CALL_ID).unwrap_or_default(),
        bye.raw(&Name::CSEQ).unwrap_or_default(),
    ));
    msg.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_b2bua_call_keeps_under_a_kibibyte() {
    let dir = support::tempdir("callmem");
    let node = support::start_swrtp(&dir, "rtp-a", 0);
    let addr = node.control.trim_start_matches("tcp://").to_string();
    support::eventually(20, "swrtp listening", || {
        let addr = addr.clone();
        async move { std::net::TcpStream::connect(addr).ok().map(drop) }
    })
    .await;
    let swbd = start_swbd(&node, &dir).await;
    let sip = swbd.endpoint.local_addr(Transport::Udp).expect("udp bound");
    let layer = swbd.endpoint.transactions();
    let mut alice = Ua::new("1001", sip).await;
    let mut bob = Ua::new("1002", sip).await;
    assert_eq!(bob.register(3600).await.code, 200);

    let tx_before = layer.retained();
    let calls_before = swbd.calls.retained();
    let mut last_ok = Vec::new();
    for _ in 0..CALLS {
        last_ok = one_call(&mut alice, &mut bob).await;
    }

    // Every call task has ended, and every transaction task with it.
    support::eventually(20, "every call ended, no transaction task left", || {
        let tx = layer.retained();
        let calls = swbd.calls.retained();
        let done = calls.live == 0 && tx.live_invites == 0 && tx.clients == 0;
        async move { done.then_some(()) }
    })
    .await;
    let tx = layer.retained();
    let calls = swbd.calls.retained();
    println!("after {CALLS} finished calls: {tx:?}");
    println!("call table: {calls:?}");
    assert_eq!(
        tx.clients, 0,
        "no client transaction task outlives its final response"
    );
    assert_eq!(
        tx.clients_completed, CALLS,
        "one key per BYE swbd sent, until Timer K"
    );
    assert_eq!(tx.accepted, 0);
    assert_eq!(calls.dialogs, 0, "no dialog route outlives its call");
    assert_eq!(calls.sessions, 0, "no media index entry outlives its call");
    assert!(
        calls.ended <= Retention::default().keep,
        "the console keeps at most {} ended calls, not {}",
        Retention::default().keep,
        calls.ended
    );
    let grown = (tx.bytes + calls.bytes).saturating_sub(tx_before.bytes + calls_before.bytes);
    let per_call = grown / CALLS;
    println!(
        "retained per finished call: {per_call} bytes (transactions {} + call table {}); \
         console records: {} calls, {} bytes, bounded by count",
        (tx.bytes - tx_before.bytes) / CALLS,
        (calls.bytes - calls_before.bytes) / CALLS,
        calls.ended,
        calls.ended_bytes
    );
    assert!(
        per_call < 1024,
        "{per_call} bytes retained per finished call"
    );

    // The last BYE's 200, retransmitted, is absorbed by its Completed key:
    // not a stray response. A response for no transaction, sent after it
    // over the same socket, is one: once it is counted, the retransmission
    // before it has been handled too.
    let stray_before = swbd.endpoint.counters().stray_responses;
    bob.sock.send_to(&last_ok, sip).await.expect("send");
    let stray = String::from_utf8(last_ok).expect("utf-8").replacen(
        ";branch=z9hG4bK",
        ";branch=z9hG4bKnone",
        1,
    );
    bob.sock.send_to(stray.as_bytes(), sip).await.expect("send");
    support::eventually(10, "the stray response counted", || {
        let n = swbd.endpoint.counters().stray_responses;
        async move { (n > stray_before).then_some(()) }
    })
    .await;
    assert_eq!(
        swbd.endpoint.counters().stray_responses,
        stray_before + 1,
        "the retransmitted 200 was absorbed, only the made-up one is stray"
    );
}
