//! A real third-party SIP user agent for interop tests: PJSIP's pjsua2
//! (PyPI `pjsua2-python`) driven by `swbd/tests/peers/pjsua2_ua.py`, which
//! prints what happens as lines (`rx | SIP/2.0 183 ... | RSeq=1`, see the
//! script's docs). `scripts/test.sh` installs the module when missing.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// Whether `python3` can import pjsua2. Missing with `CI=true`: panics
/// (a real-peer test must fail in CI, not pass unseen); missing
/// elsewhere: `false`, with a note, so the caller can return early.
pub fn required() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import pjsua2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "pjsua2 is not installed (python3 -m pip install pjsua2-python; scripts/test.sh does) and CI=true: a real-peer test must not be skipped"
    );
    eprintln!("SKIP: pjsua2 is not installed (python3 -m pip install pjsua2-python)");
    false
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/pjsua2_ua.py")
}

/// One pjsua2 UA process, killed on drop.
pub struct Pjsua {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every event line seen so far, in order.
    pub seen: Vec<String>,
}

impl Pjsua {
    /// Start the driver with `args` (see the script); `name` prefixes its
    /// lines in failure messages.
    pub fn start(name: &str, args: &[String]) -> Pjsua {
        let mut child = Command::new("python3")
            .arg(script())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn python3 pjsua2_ua.py");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::unbounded_channel();
        let tag = name.to_string();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                // pjsip prints its start-up banner before its log config
                // applies: only the driver's own lines are events.
                if line.contains(" | ") {
                    if std::env::var("PJSUA_TEST_ECHO").is_ok() {
                        eprintln!("[{tag}] {line}");
                    }
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            }
        });
        Pjsua {
            name: name.to_string(),
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line for which `pred` holds (earlier ones are kept in
    /// [`Pjsua::seen`]), or a panic after `secs` naming `what` and the
    /// lines seen.
    pub async fn wait_for(&mut self, secs: u64, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Ok(None) => panic!(
                    "{}: pjsua2 exited waiting for {what}; seen:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
                Err(_) => panic!(
                    "{}: timed out waiting for {what}; seen:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Whether a line seen so far satisfies `pred`.
    pub fn saw(&self, pred: impl Fn(&str) -> bool) -> bool {
        self.seen.iter().any(|l| pred(l))
    }

    /// Send a command (`hangup`, `quit`).
    pub async fn command(&mut self, cmd: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(format!("{cmd}\n").as_bytes()).await;
            let _ = stdin.flush().await;
        }
    }

    /// Ask it to quit, and wait (bounded) for it to exit.
    pub async fn quit(mut self) {
        self.command("quit").await;
        self.stdin = None;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// A line `kind | start...` (kind `rx`/`tx`) whose start line begins with
/// `start` and which shows `header` (e.g. `RSeq=`), if given.
pub fn is_msg(line: &str, kind: &str, start: &str, header: Option<&str>) -> bool {
    let mut fields = line.split(" | ");
    fields.next() == Some(kind)
        && fields.next().is_some_and(|s| s.starts_with(start))
        && header.is_none_or(|h| line.split(" | ").any(|f| f.starts_with(h)))
}

/// The value of `header` (`RSeq`) in an `rx`/`tx` line.
pub fn field<'a>(line: &'a str, header: &str) -> Option<&'a str> {
    line.split(" | ")
        .find_map(|f| f.strip_prefix(header).and_then(|r| r.strip_prefix('=')))
}
