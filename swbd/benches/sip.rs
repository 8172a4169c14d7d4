//! SIP core benchmarks: parsing and printing a typical INVITE and
//! REGISTER, one digest check (SHA-256 and MD5), and URI parsing (swbd's
//! parser vs ezk-sip-types').
//!
//! CARGO_TARGET_DIR=... cargo bench -p swbd --bench sip
//! Numbers: docs/BENCHMARKS.md.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use swbd::auth::digest::{self, Algorithm};
use swbd::auth::users::Users;
use swbd::auth::{Authenticator, ChallengeKind};
use swbd::config::AuthConfig;
use swbd::sip::{Name, Request, SipMessage};
use swbd::transport::{SipCounters, Source, Transport};

const INVITE: &str = "INVITE sip:1002@pbx.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:1002@pbx.example.com>\r\n\
From: \"Alice\" <sip:1001@pbx.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:1001@10.0.0.5:5060>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
User-Agent: bench-phone/1.0\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 132\r\n\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 10.0.0.5\r\n\
s=-\r\n\
c=IN IP4 10.0.0.5\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8\r\n\
a=rtpmap:0 PCMU/8000\r\n";

const REGISTER: &str = "REGISTER sip:pbx.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKnashds7;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:1001@pbx.example.com>\r\n\
From: <sip:1001@pbx.example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:1001@10.0.0.5:5060>;expires=3600\r\n\
User-Agent: bench-phone/1.0\r\n\
Content-Length: 0\r\n\r\n";

fn parsing(c: &mut Criterion) {
    // The body of INVITE must match its Content-Length for the bench to be honest.
    assert!(SipMessage::parse(INVITE.as_bytes(), true).is_ok());
    for (name, text) in [("invite", INVITE), ("register", REGISTER)] {
        c.bench_function(&format!("parse_{name}"), |b| {
            b.iter(|| SipMessage::parse(black_box(text.as_bytes()), true))
        });
        let msg = SipMessage::parse(text.as_bytes(), true).expect("parses");
        c.bench_function(&format!("print_{name}"), |b| {
            b.iter(|| black_box(&msg).to_bytes())
        });
    }
}

fn digest_check(c: &mut Criterion) {
    let config = AuthConfig::default();
    let users = Users::from_yaml(
        "bench",
        "users:\n  - username: \"1001\"\n    password: secret\n",
        &config.realm,
    )
    .expect("users");
    let auth = Authenticator::new(&config, users, Arc::new(SipCounters::default()));
    let source = Source {
        transport: Transport::Udp,
        remote: "10.0.0.5:5060".parse().expect("addr"),
        local: "10.0.0.1:5060".parse().expect("addr"),
    };
    let SipMessage::Request(base) = SipMessage::parse(REGISTER.as_bytes(), true).expect("parses")
    else {
        panic!("not a request")
    };
    for alg in [Algorithm::Sha256, Algorithm::Md5] {
        let nonce = {
            let ch = auth.challenge_for(source.remote.ip(), ChallengeKind::Www, false);
            let v = &ch.headers[0].1;
            let start = v.find("nonce=\"").expect("nonce") + 7;
            v[start..start + v[start..].find('"').expect("quote")].to_string()
        };
        let mut nc = 0u32;
        c.bench_function(&format!("digest_check_{}", alg.as_str().to_lowercase()), |b| {
            b.iter_batched(
                || {
                    nc += 1;
                    let ha1 = alg.ha1("1001", &config.realm, "secret");
                    let ncs = format!("{nc:08x}");
                    let resp = digest::response(
                        alg, &ha1, &nonce, &ncs, "c0ffee", "auth", "REGISTER", "sip:pbx.example.com",
                    );
                    let mut r: Request = base.clone();
                    r.headers.insert(
                        Name::AUTHORIZATION,
                        format!(
                            "Digest username=\"1001\", realm=\"{}\", nonce=\"{nonce}\", uri=\"sip:pbx.example.com\", response=\"{resp}\", algorithm={}, qop=auth, nc={ncs}, cnonce=\"c0ffee\"",
                            config.realm,
                            alg.as_str()
                        ),
                    );
                    r
                },
                |r| {
                    let ok = auth.check(&r, &source, ChallengeKind::Www);
                    assert!(ok.is_ok());
                },
                BatchSize::SmallInput,
            )
        });
    }
}

/// Typical URIs of the REGISTER path, parsed by swbd's own parser and by
/// ezk-sip-types' (which it replaced).
const URIS: &[&str] = &[
    "sip:1001@127.0.0.1:5060",
    "sip:alice@[2001:db8::1]:5070;transport=tcp",
    "sip:bob@example.com;user=phone?subject=x",
    "sip:127.0.0.1",
];

fn uri_parse(c: &mut Criterion) {
    for (i, uri) in URIS.iter().enumerate() {
        assert!(swbd::sip::Uri::parse(uri).is_some_and(|u| u.as_sip().is_some()));
        assert!(uri.parse::<ezk_sip_types::uri::SipUri>().is_ok());
        c.bench_function(&format!("uri_parse_{i}_swbd"), |b| {
            b.iter(|| swbd::sip::Uri::parse(black_box(uri)))
        });
        c.bench_function(&format!("uri_parse_{i}_ezk"), |b| {
            b.iter(|| black_box(uri).parse::<ezk_sip_types::uri::SipUri>())
        });
    }
}

criterion_group!(benches, parsing, digest_check, uri_parse);
criterion_main!(benches);
