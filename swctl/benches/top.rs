//! `swctl top` frame time with 10,000 active calls, rendered into ratatui's
//! TestBackend (no terminal I/O), plus the cost of applying events at
//! 100 events/s (25 per 250 ms frame). A plain timed loop, no harness:
//!
//! ```text
//! cargo bench -p swctl --bench top
//! ```
//!
//! Numbers go to docs/BENCHMARKS.md.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use swctl::fixtures;
use swctl::tui::app::App;
use switchboard_proto::admin::v1 as pb;

const CALLS: usize = 10_000;
const FRAMES: usize = 200;

fn stats(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples.get(i).copied().unwrap_or_default()
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<52} median {:7.3} ms   p99 {:7.3} ms   max {:7.3} ms",
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(pct(1.0))
    );
}

fn frame(t: &mut Terminal<TestBackend>, app: &mut App) -> Duration {
    let start = Instant::now();
    t.draw(|f| app.render(f)).expect("draw");
    start.elapsed()
}

fn bench_size(w: u16, h: u16) {
    let mut app = fixtures::big_app(CALLS);
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    // First frame: builds the sorted index of 10,004 calls.
    let first = frame(&mut t, &mut app);
    println!(
        "{:<52} {:7.3} ms",
        format!("{w}x{h} first frame (index build)"),
        first.as_secs_f64() * 1e3
    );

    // Steady state: nothing changed, index cached.
    let steady: Vec<Duration> = (0..FRAMES).map(|_| frame(&mut t, &mut app)).collect();
    stats(&format!("{w}x{h} frame, no change"), steady);

    // 100 events/s drawn every 250 ms: 25 call updates per frame, then a frame
    // (the index is rebuilt because calls changed).
    let mut n = 0usize;
    let mut apply_t = Vec::new();
    let mut frames = Vec::new();
    for _ in 0..FRAMES {
        let start = Instant::now();
        for _ in 0..25 {
            let i = (n * 7919) % CALLS;
            n += 1;
            let id = format!("{i:08x}");
            let mut c = fixtures::call(
                &id,
                &format!("{}", 100_000 + i),
                "2",
                pb::CallState::Bridged,
                10,
                (n % 3600) as i64,
                "rtp-a",
                "PCMU",
            );
            c.route_id = format!("r{n}");
            app.apply(fixtures::call_event(pb::CallEventKind::Updated, c, 0));
        }
        apply_t.push(start.elapsed());
        frames.push(frame(&mut t, &mut app));
    }
    stats(&format!("{w}x{h} apply 25 events"), apply_t);
    stats(
        &format!("{w}x{h} frame after 25 events (index rebuild)"),
        frames,
    );

    // Same with a filter typed.
    app.calls.filter = "1234".into();
    let filtered: Vec<Duration> = (0..FRAMES)
        .map(|i| {
            if i % 2 == 0 {
                app.calls.filter.push('5');
            } else {
                app.calls.filter.pop();
            }
            frame(&mut t, &mut app)
        })
        .collect();
    stats(
        &format!("{w}x{h} frame, filter changed every frame"),
        filtered,
    );
}

fn main() {
    println!("swctl top with {CALLS} active calls, {FRAMES} frames per row");
    bench_size(80, 24);
    bench_size(160, 48);
}
