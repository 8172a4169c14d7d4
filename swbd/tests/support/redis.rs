//! A real Redis server for tests: Debian's `redis-server` on a free
//! loopback port with a temp directory, no persistence (`--save ""
//! --appendonly no`), killed on drop. Missing binary: the test fails under
//! `CI=true` (scripts/test.sh installs it) and is skipped elsewhere with a
//! note.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server (or a stopped one that [`Redis::start_again`] brings
/// back on the same port).
pub struct Redis {
    pub port: u16,
    pub url: String,
    dir: PathBuf,
    child: Option<Child>,
}

fn binary() -> Option<PathBuf> {
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Redis {
    /// A fresh server, or `None` (with a note) when redis-server is not
    /// installed and this is not CI.
    pub fn start(dir: &Path) -> Option<Redis> {
        if binary().is_none() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "redis-server (Debian's redis-server package) is missing; in CI that is a failure (scripts/test.sh installs it)"
            );
            eprintln!("SKIP: redis-server is not installed (apt-get install redis-server)");
            return None;
        }
        let port = super::free_tcp_port();
        let dir = dir.join("redis");
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut r = Redis {
            port,
            url: format!("redis://127.0.0.1:{port}"),
            dir,
            child: None,
        };
        r.start_again();
        Some(r)
    }

    /// Start the server (after [`Redis::stop`]) on the same port, empty,
    /// and wait until it answers PING.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis already running");
        let bin = binary().expect("redis-server");
        let child = Command::new(bin)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--dir",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.pings() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kill the server (a crash: nothing is saved).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn pings(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(n) if buf.get(..n).is_some_and(|b| b.starts_with(b"+PONG")))
    }

    /// The swbd config section for this server with key prefix `prefix`.
    pub fn state_config(&self, prefix: &str) -> String {
        format!(
            "state:\n  backend: redis\n  redis: {{ url: \"{}\", prefix: \"{prefix}\", timeout_ms: 500 }}\n",
            self.url
        )
    }

    /// A store handle on this server (the test reads what swbd wrote).
    pub fn store(&self, prefix: &str) -> swbd::state::StateStore {
        let cfg = swbd::state::StateConfig {
            backend: swbd::state::BackendKind::Redis,
            instance_id: Some("test-reader".into()),
            redis: swbd::state::config::RedisConfig {
                url: self.url.clone(),
                prefix: prefix.into(),
                timeout_ms: 1000,
            },
        };
        swbd::state::StateStore::from_config(&cfg, "test").expect("store")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
