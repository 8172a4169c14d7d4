//! Benchmarks of the media hot paths:
//! - `relay/prepare`: the per-packet relay path after `recv_from` (parse,
//!   latch check, RFC 3550 stats, header rewrite in place), 160-byte payload;
//!   `relay/prepare_transcode` adds PCMU -> PCMA in place;
//!   `relay/prepare_and_send` includes the `send_to` syscall on loopback.
//! - `g711/*`: encoding one 20 ms frame (160 samples).
//!
//! Run: `cargo bench -p swrtp --bench media_path`
//! The per-session memory table is printed first.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use criterion::{Criterion, criterion_group, criterion_main};
use swrtp::config::PortRange;
use swrtp::g711::Law;
use swrtp::ports::PortPool;
use swrtp::relay::fixture;
use swrtp::sdp::AudioCodec;

/// Set sequence number and timestamp of a packet built by `packet`.
fn stamp(p: &mut [u8], seq: u16) {
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
}

fn packet(seq: u16, ts: u32) -> Vec<u8> {
    let mut v = vec![0x80, 0];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    v.extend((0..160).map(|i| i as u8));
    v
}

fn relay(c: &mut Criterion) {
    println!("memory per session (bytes):");
    let mut total = 0;
    for (what, bytes) in swrtp::relay::memory_per_session() {
        println!("  {bytes:>6}  {what}");
        total += bytes;
    }
    println!("  {total:>6}  total (a bridge of two sessions shares one task and buffer)");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let pool = PortPool::new(
        PortRange {
            min: 6500,
            max: 6599,
        },
        IpAddr::from([127, 0, 0, 1]),
    );
    let peer_a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_b = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer_b.set_nonblocking(true).unwrap();
    let a: SocketAddr = peer_a.local_addr().unwrap();
    let b: SocketAddr = peer_b.local_addr().unwrap();

    let mut group = c.benchmark_group("relay");
    for (name, codec_b) in [
        ("prepare", AudioCodec::Pcmu),
        ("prepare_transcode", AudioCodec::Pcma),
    ] {
        let mut r = fixture::bridged(&pool, a, b, AudioCodec::Pcmu, codec_b).unwrap();
        let mut seq = 0u16;
        let mut p = packet(0, 0);
        group.bench_function(name, |bench| {
            bench.iter(|| {
                seq = seq.wrapping_add(1);
                stamp(&mut p, seq);
                let n = r.load(&p);
                black_box(r.prepare_rtp(0, n, a))
            })
        });
    }
    let mut r = fixture::bridged(&pool, a, b, AudioCodec::Pcmu, AudioCodec::Pcmu).unwrap();
    let mut seq = 0u16;
    let mut p = packet(0, 0);
    let mut sink = [0u8; 2048];
    group.bench_function("prepare_and_send", |bench| {
        bench.iter(|| {
            seq = seq.wrapping_add(1);
            stamp(&mut p, seq);
            let n = r.load(&p);
            r.on_rtp(0, n, a);
            // Keep peer B's receive queue from filling up.
            while peer_b.recv(&mut sink).is_ok() {}
        })
    });
    group.finish();
}

fn g711(c: &mut Criterion) {
    let samples: Vec<i16> = (0..160)
        .map(|i| ((i as f64 * 0.785).sin() * 6000.0) as i16)
        .collect();
    let mut out = [0u8; 160];
    let mut group = c.benchmark_group("g711");
    group.bench_function("encode_ulaw_160", |b| {
        b.iter(|| Law::Ulaw.encode_into(black_box(&samples), &mut out))
    });
    group.bench_function("encode_alaw_160", |b| {
        b.iter(|| Law::Alaw.encode_into(black_box(&samples), &mut out))
    });
    let mut frame = [0x55u8; 160];
    group.bench_function("transcode_ulaw_to_alaw_160", |b| {
        b.iter(|| Law::Ulaw.transcode_in_place(Law::Alaw, black_box(&mut frame)))
    });
    group.finish();
}

criterion_group!(benches, relay, g711);
criterion_main!(benches);
