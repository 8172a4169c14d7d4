//! Real phones for tests: baresip (Debian package `baresip-core`) driven
//! over its `ctrl_tcp` interface, one process per phone, each sending a
//! tone from a WAV file and recording what it hears. The same harness as
//! `baresip_call.rs`, shared by the tests that need real phones.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Proc;

/// Whether baresip is installed; when it is not, a test fails in CI
/// (`CI=true`) and is skipped with a note elsewhere.
pub fn require_baresip() -> bool {
    if baresip_installed() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "a real peer this test needs is missing; in CI that is a failure (scripts/test.sh installs it)"
    );
    eprintln!(
        "SKIP: baresip is not installed (apt-get install baresip-core; scripts/test.sh does)"
    );
    false
}

pub fn baresip_installed() -> bool {
    Command::new("baresip")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// 8 kHz mono 16-bit PCM sine.
pub fn write_tone(path: &Path, hz: f64, secs: u32) {
    let n = 8000 * secs;
    let mut data = Vec::with_capacity(n as usize * 2);
    for i in 0..n {
        let v = (f64::from(i) * 2.0 * std::f64::consts::PI * hz / 8000.0).sin() * 12000.0;
        data.extend_from_slice(&(v as i16).to_le_bytes());
    }
    let mut f = std::fs::File::create(path).expect("create wav");
    let len = data.len() as u32;
    f.write_all(b"RIFF")
        .and_then(|_| f.write_all(&(36 + len).to_le_bytes()))
        .and_then(|_| f.write_all(b"WAVEfmt "))
        .and_then(|_| f.write_all(&16u32.to_le_bytes()))
        .and_then(|_| f.write_all(&1u16.to_le_bytes()))
        .and_then(|_| f.write_all(&1u16.to_le_bytes()))
        .and_then(|_| f.write_all(&8000u32.to_le_bytes()))
        .and_then(|_| f.write_all(&16000u32.to_le_bytes()))
        .and_then(|_| f.write_all(&2u16.to_le_bytes()))
        .and_then(|_| f.write_all(&16u16.to_le_bytes()))
        .and_then(|_| f.write_all(b"data"))
        .and_then(|_| f.write_all(&len.to_le_bytes()))
        .and_then(|_| f.write_all(&data))
        .expect("write wav");
}

/// Samples of a 16-bit PCM WAV (data chunk located by search).
pub fn read_wav(path: &Path) -> Vec<f64> {
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

/// A UDP port whose successor is free too (baresip binds both).
pub fn free_pair() -> u16 {
    loop {
        let p = super::free_udp_port();
        if p < 65000 && std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

pub struct Phone {
    _proc: Proc,
    ctrl: TcpStream,
    buf: Vec<u8>,
    dir: PathBuf,
    pub user: String,
    token: u32,
}

impl Phone {
    pub fn start(
        dir: &Path,
        user: &str,
        password: &str,
        swbd: std::net::SocketAddr,
        tone_hz: f64,
        rtp_base: u16,
    ) -> Phone {
        let home = dir.join(format!("baresip-{user}"));
        std::fs::create_dir_all(home.join("rec")).expect("dir");
        let tone = home.join("tone.wav");
        write_tone(&tone, tone_hz, 30);
        let sip = free_pair();
        let ctrl = super::free_tcp_port();
        let config = format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{sip}\nnet_interface 127.0.0.1\ncall_local_timeout 120\n\
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
                "<sip:{user}@127.0.0.1:{port};transport=udp>;auth_pass={password};regint=600;answermode=auto;audio_codecs=pcmu,pcma;medianat=;mediaenc=\n",
                port = swbd.port()
            ),
        )
        .expect("accounts");
        std::fs::write(home.join("contacts"), "").expect("contacts");
        let log = std::fs::File::create(home.join("baresip.log")).expect("log");
        let child = Command::new("baresip")
            .args(["-4", "-n", "127.0.0.1", "-f"])
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

    pub fn command(&mut self, command: &str, params: &str) {
        self.token += 1;
        let msg = format!(
            "{{\"command\":\"{command}\",\"params\":\"{params}\",\"token\":\"t{}\"}}",
            self.token
        );
        let frame = format!("{}:{msg},", msg.len());
        self.ctrl.write_all(frame.as_bytes()).expect("ctrl write");
    }

    /// Wait for an event whose JSON contains `"type":"TYPE"`.
    pub fn wait_event(&mut self, kind: &str, secs: u64) -> bool {
        let needle = format!("\"type\":\"{kind}\"");
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            while let Some(colon) = self.buf.iter().position(|b| *b == b':') {
                let len: usize = match std::str::from_utf8(&self.buf[..colon])
                    .ok()
                    .and_then(|s| s.parse().ok())
                {
                    Some(l) => l,
                    None => {
                        self.buf.clear();
                        break;
                    }
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

    pub fn recording(&self) -> Option<PathBuf> {
        std::fs::read_dir(self.dir.join("rec"))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    }
}

/// Energy at `want` against `not` in the last `secs` seconds of a
/// recording (8 kHz).
pub fn tail_tone(path: &Path, secs: usize, want: f64, not: f64) -> (f64, f64) {
    let samples = read_wav(path);
    let tail = samples
        .get(samples.len().saturating_sub(secs * 8000)..)
        .unwrap_or_default();
    (super::goertzel(tail, want), super::goertzel(tail, not))
}

/// Once both phones are registered with `sys`, `caller` dials 1002 there;
/// returns when both report the call established and swbd has it bridged
/// (the one call up).
pub async fn dial_and_bridge(sys: &super::System, caller: &mut Phone, callee: &mut Phone) {
    use switchboard_proto::admin::v1 as pb;
    super::eventually(20, "both phones registered", || async {
        let regs = sys
            .signaling()
            .await
            .ok()?
            .list_registrations(pb::ListRegistrationsRequest::default())
            .await
            .ok()?
            .into_inner()
            .registrations;
        (regs.len() >= 2).then_some(())
    })
    .await;
    caller.command("dial", &format!("sip:1002@127.0.0.1:{}", sys.sip.port()));
    assert!(
        caller.wait_event("CALL_ESTABLISHED", 15),
        "caller established"
    );
    assert!(
        callee.wait_event("CALL_ESTABLISHED", 5),
        "callee established"
    );
    super::eventually(10, "the call bridged", || async {
        let calls = sys.active_calls().await;
        (calls.len() == 1 && calls[0].state == pb::CallState::Bridged as i32).then_some(())
    })
    .await;
}
