//! Two real phones on IPv6 only (baresip `-6`, SIP and RTP on `[::1]`)
//! register with passwords and call each other through swbd + swrtp: both
//! legs get `c=IN IP6` media from the node, the caller sends a 1 kHz tone,
//! the callee a 440 Hz tone, and each side's recording must carry the
//! other's tone. (pjsua2's PyPI wheel has IPv4-only media, so baresip is
//! the real client that shows IPv6 audio; `pjsua2_dtmf6.rs` covers pjsua2
//! signalling over IPv6.)
//!
//! With `CI=true` a missing baresip fails the test; `scripts/test.sh`
//! installs it.
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Options, Proc, System, eventually, goertzel};
use switchboard_proto::admin::v1 as pb;

fn baresip_ready() -> bool {
    let ok = Command::new("baresip")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "a real peer this test needs is missing; in CI that is a failure (scripts/test.sh installs it)"
        );
        eprintln!(
            "SKIP: baresip is not installed (apt-get install baresip-core; scripts/test.sh does)"
        );
    }
    ok
}

/// 8 kHz mono 16-bit PCM sine.
fn write_tone(path: &Path, hz: f64, secs: u32) {
    let n = 8000 * secs;
    let mut data = Vec::with_capacity(n as usize * 2);
    for i in 0..n {
        let v = (f64::from(i) * 2.0 * std::f64::consts::PI * hz / 8000.0).sin() * 12000.0;
        data.extend_from_slice(&(v as i16).to_le_bytes());
    }
    let len = data.len() as u32;
    let mut wav = Vec::with_capacity(44 + data.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    for v in [1u16, 1] {
        wav.extend_from_slice(&v.to_le_bytes());
    }
    for v in [8000u32, 16000] {
        wav.extend_from_slice(&v.to_le_bytes());
    }
    for v in [2u16, 16] {
        wav.extend_from_slice(&v.to_le_bytes());
    }
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&len.to_le_bytes());
    wav.extend_from_slice(&data);
    std::fs::write(path, wav).expect("write wav");
}

/// Samples of a 16-bit PCM WAV (data chunk located by search).
fn read_wav(path: &Path) -> Vec<f64> {
    let bytes = std::fs::read(path).expect("read wav");
    let Some(pos) = bytes.windows(4).position(|w| w == b"data") else {
        return Vec::new();
    };
    bytes
        .get(pos + 8..)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|c| f64::from(i16::from_le_bytes([c[0], c[1]])))
        .collect()
}

/// A UDP port on `::1` whose successor is free too.
fn free_pair_v6() -> u16 {
    loop {
        let p = std::net::UdpSocket::bind("[::1]:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if p < 65000 && std::net::UdpSocket::bind(("::1", p + 1)).is_ok() {
            return p;
        }
    }
}

struct Phone {
    _proc: Proc,
    ctrl: TcpStream,
    buf: Vec<u8>,
    dir: PathBuf,
    user: String,
    token: u32,
}

impl Phone {
    fn start(
        dir: &Path,
        user: &str,
        password: &str,
        swbd: std::net::SocketAddr,
        tone_hz: f64,
        rtp_base: u16,
    ) -> Phone {
        let home = dir.join(format!("baresip6-{user}"));
        std::fs::create_dir_all(home.join("rec")).expect("dir");
        let tone = home.join("tone.wav");
        write_tone(&tone, tone_hz, 30);
        let sip = free_pair_v6();
        let ctrl = support::free_tcp_port();
        let config = format!(
            "poll_method epoll\nsip_listen [::1]:{sip}\nnet_interface ::1\ncall_local_timeout 120\n\
             audio_path /usr/share/baresip\naudio_player aubridge,{user}-null\naudio_source aufile,{tone}\n\
             audio_alert aubridge,{user}-alert\naudio_buffer 20-160\nausrc_format s16\nauplay_format s16\n\
             auenc_format s16\naudec_format s16\nrtp_ports {rtp_base}-{rtp_end}\nrtcp_mux no\njitter_buffer_delay 5-10\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule sndfile.so\nmodule aufile.so\nmodule aubridge.so\n\
             module_tmp uuid.so\nmodule_tmp account.so\nmodule_app contact.so\nmodule_app menu.so\nmodule_app ctrl_tcp.so\n\
             ctrl_tcp_listen 127.0.0.1:{ctrl}\nsnd_path {rec}\nringback_disabled yes\n",
            tone = tone.display(),
            rtp_end = rtp_base + 99,
            rec = home.join("rec").display(),
        );
        std::fs::write(home.join("config"), config).expect("config");
        std::fs::write(
            home.join("accounts"),
            format!(
                "<sip:{user}@[::1]:{port};transport=udp>;auth_pass={password};regint=600;answermode=auto;audio_codecs=pcmu,pcma;medianat=;mediaenc=\n",
                port = swbd.port()
            ),
        )
        .expect("accounts");
        std::fs::write(home.join("contacts"), "").expect("contacts");
        let log = std::fs::File::create(home.join("baresip.log")).expect("log");
        let child = Command::new("baresip")
            .args(["-6", "-n", "::1", "-f"])
            .arg(&home)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn baresip");
        let deadline = Instant::now() + Duration::from_secs(45);
        let stream = loop {
            match TcpStream::connect(("127.0.0.1", ctrl)) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(Instant::now() < deadline, "baresip ctrl_tcp not up: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        Phone {
            _proc: Proc { child },
            ctrl: stream,
            buf: Vec::new(),
            dir: home,
            user: user.to_string(),
            token: 0,
        }
    }

    fn command(&mut self, command: &str, params: &str) {
        self.token += 1;
        let msg = format!(
            "{{\"command\":\"{command}\",\"params\":\"{params}\",\"token\":\"t{}\"}}",
            self.token
        );
        let frame = format!("{}:{msg},", msg.len());
        self.ctrl.write_all(frame.as_bytes()).expect("ctrl write");
    }

    /// Wait for an event whose JSON contains `"type":"TYPE"` (netstrings).
    fn wait_event(&mut self, kind: &str, secs: u64) -> bool {
        let needle = format!("\"type\":\"{kind}\"");
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            while let Some(colon) = self.buf.iter().position(|b| *b == b':') {
                let Some(len) = std::str::from_utf8(&self.buf[..colon])
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                else {
                    self.buf.clear();
                    break;
                };
                if self.buf.len() < colon + 2 + len {
                    break;
                }
                let body =
                    String::from_utf8_lossy(&self.buf[colon + 1..colon + 1 + len]).into_owned();
                self.buf.drain(..colon + 2 + len);
                if body.contains(&needle) {
                    return true;
                }
            }
            if Instant::now() > deadline {
                return false;
            }
            let mut chunk = [0u8; 4096];
            match self.ctrl.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
    }

    fn recording(&self) -> Option<PathBuf> {
        std::fs::read_dir(self.dir.join("rec"))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    }
}

#[tokio::test]
async fn baresip_phones_on_ipv6_talk_through_swbd() {
    if !baresip_ready() {
        return;
    }
    let users = vec![
        ("1001".to_string(), "alice-v6-secret".to_string()),
        ("1002".to_string(), "bob-v6-secret".to_string()),
    ];
    let sys = System::start(Options {
        users: users.clone(),
        listen_v6: true,
        ..Default::default()
    })
    .await;
    let sip_v6 = sys.sip_v6.expect("swbd on [::1]");
    let base = 24_000 + (std::process::id() % 50) as u16 * 200 + 2000;
    let mut alice = Phone::start(&sys.dir, "1001", &users[0].1, sip_v6, 1000.0, base);
    let mut bob = Phone::start(&sys.dir, "1002", &users[1].1, sip_v6, 440.0, base + 100);

    let mut admin = sys.signaling().await.expect("admin");
    eventually(20, "both phones registered over IPv6", || {
        let mut admin = admin.clone();
        async move {
            let regs = admin
                .list_registrations(pb::ListRegistrationsRequest::default())
                .await
                .ok()?
                .into_inner()
                .registrations;
            (regs.len() >= 2 && format!("{regs:?}").matches("[::1]").count() >= 2).then_some(())
        }
    })
    .await;

    alice.command("dial", &format!("sip:1002@[::1]:{}", sip_v6.port()));
    assert!(
        alice.wait_event("CALL_ESTABLISHED", 15),
        "caller established"
    );
    assert!(bob.wait_event("CALL_ESTABLISHED", 5), "callee established");
    // Both legs' media on the node are IPv6.
    let mut media = sys.media_admin(0).await;
    let sessions = media
        .list_sessions(pb::ListMediaSessionsRequest::default())
        .await
        .expect("sessions")
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 2);
    for s in &sessions {
        let m = s.media.clone().unwrap_or_default();
        assert!(
            m.local_rtp_address.starts_with("[::1]:") && m.remote_rtp_address.starts_with("[::1]:"),
            "IPv6 media on both ends of leg {}: {m:?}",
            s.leg
        );
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    alice.command("hangup", "");
    assert!(alice.wait_event("CALL_CLOSED", 10), "caller closed");
    assert!(bob.wait_event("CALL_CLOSED", 10), "callee got BYE");
    sys.assert_clean().await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    for (phone, want, not) in [(&bob, 1000.0, 440.0), (&alice, 440.0, 1000.0)] {
        let rec = phone
            .recording()
            .unwrap_or_else(|| panic!("{} recorded nothing", phone.user));
        let samples = read_wav(&rec);
        assert!(
            samples.len() > 8000,
            "{}: at least a second of audio ({})",
            phone.user,
            samples.len()
        );
        let (hit, miss) = (goertzel(&samples, want), goertzel(&samples, not));
        assert!(
            hit > 10.0 * miss,
            "{} hears {want} Hz over IPv6: {hit:e} vs {not} Hz {miss:e}",
            phone.user
        );
    }
    let _ = &mut admin;
    let _ = &mut media;
}
