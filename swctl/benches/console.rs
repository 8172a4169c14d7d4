//! Whole-command timings of the console against an admin server holding
//! 10,000 active calls (an in-process SignalingAdmin on a unix socket, so
//! the numbers are swctl's, not a daemon's):
//! - `swctl calls list -o json` and `-o table`, wall time per run;
//! - `swctl top` left idle for 20 s under a pseudo-terminal: CPU used.
//!
//! `cargo bench -p swctl --bench console`; numbers go to docs/BENCHMARKS.md.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use swctl::fixtures;
use switchboard_proto::admin::v1 as pb;
use switchboard_proto::admin::v1::signaling_admin_server::{SignalingAdmin, SignalingAdminServer};
use tonic::{Request, Response, Status};

const CALLS: usize = 10_000;

#[derive(Clone)]
struct Busy {
    calls: std::sync::Arc<Vec<pb::Call>>,
}

fn no(what: &str) -> Status {
    Status::unimplemented(format!("{what}: not in this benchmark"))
}

type Events =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::SignalingEvent, Status>> + Send>>;

#[tonic::async_trait]
impl SignalingAdmin for Busy {
    async fn get_status(
        &self,
        _: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::Status>, Status> {
        let mut s = fixtures::status();
        s.active_calls = CALLS as u32;
        Ok(Response::new(s))
    }
    async fn list_calls(
        &self,
        _: Request<pb::ListCallsRequest>,
    ) -> Result<Response<pb::ListCallsResponse>, Status> {
        Ok(Response::new(pb::ListCallsResponse {
            calls: self.calls.as_ref().clone(),
        }))
    }
    async fn get_call(&self, _: Request<pb::GetCallRequest>) -> Result<Response<pb::Call>, Status> {
        Err(no("GetCall"))
    }
    async fn hangup_call(
        &self,
        _: Request<pb::HangupCallRequest>,
    ) -> Result<Response<pb::HangupCallResponse>, Status> {
        Err(no("HangupCall"))
    }
    async fn list_registrations(
        &self,
        _: Request<pb::ListRegistrationsRequest>,
    ) -> Result<Response<pb::ListRegistrationsResponse>, Status> {
        Ok(Response::new(pb::ListRegistrationsResponse::default()))
    }
    async fn list_media_nodes(
        &self,
        _: Request<pb::ListMediaNodesRequest>,
    ) -> Result<Response<pb::ListMediaNodesResponse>, Status> {
        Ok(Response::new(pb::ListMediaNodesResponse {
            nodes: fixtures::nodes(),
        }))
    }
    async fn drain_media_node(
        &self,
        _: Request<pb::DrainMediaNodeRequest>,
    ) -> Result<Response<pb::MediaNode>, Status> {
        Err(no("DrainMediaNode"))
    }
    async fn undrain_media_node(
        &self,
        _: Request<pb::UndrainMediaNodeRequest>,
    ) -> Result<Response<pb::MediaNode>, Status> {
        Err(no("UndrainMediaNode"))
    }
    async fn load_dialplan(
        &self,
        _: Request<pb::LoadDialplanRequest>,
    ) -> Result<Response<pb::ReloadDialplanResponse>, Status> {
        Err(no("LoadDialplan"))
    }
    async fn reload_dialplan(
        &self,
        _: Request<pb::ReloadDialplanRequest>,
    ) -> Result<Response<pb::ReloadDialplanResponse>, Status> {
        Err(no("ReloadDialplan"))
    }
    async fn get_dialplan(
        &self,
        _: Request<pb::GetDialplanRequest>,
    ) -> Result<Response<pb::Dialplan>, Status> {
        Err(no("GetDialplan"))
    }
    async fn test_route(
        &self,
        _: Request<pb::TestRouteRequest>,
    ) -> Result<Response<pb::TestRouteResponse>, Status> {
        Err(no("TestRoute"))
    }
    async fn list_call_history(
        &self,
        _: Request<pb::ListCallHistoryRequest>,
    ) -> Result<Response<pb::ListCallHistoryResponse>, Status> {
        Err(no("ListCallHistory"))
    }
    type WatchStream = Events;
    async fn watch(&self, _: Request<pb::WatchRequest>) -> Result<Response<Events>, Status> {
        let calls = self.calls.clone();
        let stream = async_stream::stream! {
            for c in calls.iter() {
                yield Ok(pb::SignalingEvent {
                    at: fixtures::ts(0, 0),
                    is_snapshot: true,
                    event: Some(pb::signaling_event::Event::Call(pb::CallEvent {
                        kind: pb::CallEventKind::Updated as i32,
                        call: Some(c.clone()),
                    })),
                });
            }
            yield Ok(pb::SignalingEvent {
                at: fixtures::ts(0, 0),
                is_snapshot: true,
                event: Some(pb::signaling_event::Event::SnapshotDone(pb::SnapshotDone {})),
            });
            // Idle: no live events.
            std::future::pending::<()>().await;
        };
        Ok(Response::new(Box::pin(stream)))
    }
    type ListEventsStream = Events;
    async fn list_events(
        &self,
        _: Request<pb::ListEventsRequest>,
    ) -> Result<Response<Events>, Status> {
        Err(no("ListEvents"))
    }
    async fn get_call_capture(
        &self,
        _: Request<pb::GetCallCaptureRequest>,
    ) -> Result<Response<pb::CallCapture>, Status> {
        Err(no("GetCallCapture"))
    }
}

fn ten_thousand_calls() -> Vec<pb::Call> {
    (0..CALLS)
        .map(|i| {
            fixtures::call(
                &format!("c{i:08x}"),
                &format!("{}", 100_000 + i),
                &format!("{}", 200_000 + i),
                pb::CallState::Bridged,
                (i % 3600) as i64 + 10,
                (i % 3600) as i64,
                if i % 2 == 0 { "rtp-a" } else { "rtp-b" },
                "PCMU",
            )
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).copied().unwrap_or(0.0)
}

fn time_command(swctl: &Path, host: &str, format: &str, runs: usize) {
    let mut ms = Vec::new();
    let mut bytes = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let out = Command::new(swctl)
            .args(["--host", host, "calls", "list", "-o", format])
            .stderr(Stdio::null())
            .output()
            .expect("run swctl");
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
        assert!(out.status.success(), "swctl calls list failed");
        bytes = out.stdout.len();
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "calls list -o {format:<5} ({CALLS} calls, {bytes} bytes)   median {:7.1} ms   p95 {:7.1} ms   ({runs} runs)",
        percentile(&ms, 0.5),
        percentile(&ms, 0.95)
    );
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based) of the whole line,
    // i.e. 12 and 13 after the ")".
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn idle_top(swctl: &Path, host: &str) {
    // `script` gives swctl top a pseudo-terminal; stdin stays open and silent.
    let cmd = format!("{} --host {host} top", swctl.display());
    let mut child = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .env("COLUMNS", "80")
        .env("LINES", "24")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (util-linux)");
    std::thread::sleep(Duration::from_secs(5)); // snapshot loaded, first frames drawn
    let Some(top) = children_of(child.id()).into_iter().next() else {
        println!("swctl top idle CPU: could not find the swctl process");
        let _ = child.kill();
        let _ = child.wait();
        return;
    };
    let hz = 100.0; // USER_HZ on Linux
    let (t0, c0) = (Instant::now(), cpu_ticks(top).unwrap_or(0));
    std::thread::sleep(Duration::from_secs(20));
    let (t1, c1) = (Instant::now(), cpu_ticks(top).unwrap_or(0));
    let cpu = (c1.saturating_sub(c0)) as f64 / hz;
    let wall = (t1 - t0).as_secs_f64();
    println!(
        "swctl top idle, {CALLS} calls, 80x24: {:.2}% of one core ({cpu:.2} s CPU over {wall:.0} s)",
        100.0 * cpu / wall
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    let swctl = Path::new(env!("CARGO_BIN_EXE_swctl"));
    let dir = std::env::temp_dir().join(format!("swctl-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp");
    let sock = dir.join("admin.sock");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let service = Busy {
        calls: std::sync::Arc::new(ten_thousand_calls()),
    };
    let listener = {
        let _guard = runtime.enter();
        tokio::net::UnixListener::bind(&sock).expect("bind")
    };
    runtime.spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(SignalingAdminServer::new(service).max_encoding_message_size(64 << 20))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
            .await;
    });
    let host = format!("unix://{}", sock.display());
    println!("swctl console benchmark, {CALLS} active calls");
    time_command(swctl, &host, "json", 20);
    time_command(swctl, &host, "table", 20);
    idle_top(swctl, &host);
    let _ = std::fs::remove_dir_all(&dir);
}
