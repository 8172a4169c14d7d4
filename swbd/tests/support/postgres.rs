//! A real PostgreSQL server for tests: Debian's `postgresql` package,
//! a cluster made with `initdb` in a temp directory, listening on a free
//! loopback port, stopped (fast shutdown) on drop.
//!
//! PostgreSQL refuses to run as root: as root, the data directory is
//! given to the `postgres` user (the Debian package creates it) and the
//! server runs under its uid (`CommandExt::uid`, no helper process in
//! between, so the pid we hold is the postmaster's). Missing binaries fail
//! the test under `CI=true` (scripts/test.sh installs the package) and
//! skip it elsewhere with a note.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server; stopped on drop.
pub struct Postgres {
    pub url: String,
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

/// `initdb`'s directory: `/usr/lib/postgresql/<newest>/bin`, else `$PATH`.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

/// The uid and gid of `postgres` (`id -u`, `id -g`).
fn postgres_user() -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn is_root() -> bool {
    switchboard_proto::support::paths::euid().is_ok_and(|u| u == 0)
}

fn command(bin: &Path, name: &str, user: Option<(u32, u32)>) -> Command {
    let mut c = Command::new(bin.join(name));
    c.env("LC_ALL", "C").env("LANG", "C");
    if let Some((uid, gid)) = user {
        c.uid(uid).gid(gid);
    }
    c
}

impl Postgres {
    /// A fresh server with database `switchboard` and trusted user `swbd`,
    /// or `None` (with a note) when PostgreSQL is not installed and this
    /// is not CI.
    pub fn start(dir: &Path) -> Option<Postgres> {
        let Some(bin) = bin_dir() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "PostgreSQL (Debian's postgresql package, /usr/lib/postgresql/*/bin/initdb) is missing; in CI that is a failure (scripts/test.sh installs it)"
            );
            eprintln!("SKIP: PostgreSQL is not installed (apt-get install postgresql)");
            return None;
        };
        let user = if is_root() {
            Some(postgres_user().expect(
                "running as root needs the postgres user (Debian's postgresql package creates it)",
            ))
        } else {
            None
        };
        let data = dir.join("pgdata");
        std::fs::create_dir_all(&data).expect("pgdata");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&data, Some(uid), Some(gid)).expect("chown pgdata");
        }
        let out = command(&bin, "initdb", user)
            .args(["-D", data.to_str().expect("utf-8")])
            .args([
                "-U",
                "swbd",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = super::free_tcp_port();
        let log = std::fs::File::create(dir.join("postgres.log")).expect("log");
        if let Some((uid, gid)) = user {
            let _ = std::os::unix::fs::chown(dir.join("postgres.log"), Some(uid), Some(gid));
        }
        let child = command(&bin, "postgres", user)
            .args(["-D", data.to_str().expect("utf-8")])
            .args(["-p", &port.to_string()])
            .args(["-k", data.to_str().expect("utf-8")])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let mut pg = Postgres {
            url: format!("postgresql://swbd@127.0.0.1:{port}/postgres"),
            port,
            dir: dir.to_path_buf(),
            child,
        };
        pg.wait_ready(&bin, user);
        let out = command(&bin, "createdb", None)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "swbd",
                "switchboard",
            ])
            .output()
            .expect("createdb");
        assert!(
            out.status.success(),
            "createdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.url = format!("postgresql://swbd@127.0.0.1:{port}/switchboard");
        Some(pg)
    }

    fn wait_ready(&mut self, bin: &Path, _user: Option<(u32, u32)>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log =
                    std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
                panic!("postgres exited ({status}):\n{log}");
            }
            assert!(Instant::now() < deadline, "postgres not ready in 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A client of the test database.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: fast shutdown (the postmaster ends its children).
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
