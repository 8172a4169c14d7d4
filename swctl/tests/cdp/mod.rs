//! A headless Chromium driven over the Chrome DevTools Protocol, for tests
//! that click: `--remote-debugging-pipe` (fd 3 in, fd 4 out, messages are
//! JSON ended by a NUL byte), wired to two FIFOs by `sh` so the test needs
//! neither a WebSocket client nor `unsafe` fd plumbing.
#![allow(clippy::expect_used, clippy::panic, dead_code)] // test code: failing loudly is the point

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long one protocol call may take.
const CALL_DEADLINE: Duration = Duration::from_secs(60);

/// A running Chromium; killed (its whole process group) on drop.
pub struct Browser {
    child: Child,
    to_browser: std::fs::File,
    from_browser: mpsc::Receiver<Value>,
    next_id: u64,
}

impl Browser {
    /// Start `chrome` headless with a profile in `dir`.
    pub fn start(chrome: &Path, dir: &Path) -> Browser {
        std::fs::create_dir_all(dir).expect("browser dir");
        let fifo_in = dir.join("cdp-in");
        let fifo_out = dir.join("cdp-out");
        for f in [&fifo_in, &fifo_out] {
            let _ = std::fs::remove_file(f);
            let st = Command::new("mkfifo").arg(f).status().expect("mkfifo");
            assert!(st.success(), "mkfifo {}", f.display());
        }
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$@" 3<"$CDP_IN" 4>"$CDP_OUT""#)
            .arg("sh")
            .arg(chrome)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--window-size=1200,800",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg("about:blank")
            .env("CDP_IN", &fifo_in)
            .env("CDP_OUT", &fifo_out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group, so drop can end chromium's helpers too.
            .process_group(0)
            .spawn()
            .expect("start chromium");
        // The shell opens fd 3 (reading cdp-in) first, then fd 4.
        let to_browser = std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo_in)
            .expect("open cdp-in");
        let mut out = std::fs::File::open(&fifo_out).expect("open cdp-out");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut buf = [0u8; 65536];
            loop {
                let n = match out.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.iter().position(|b| *b == 0) {
                    let msg: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg[..msg.len() - 1])
                        && tx.send(v).is_err()
                    {
                        return;
                    }
                }
            }
        });
        Browser {
            child,
            to_browser,
            from_browser: rx,
            next_id: 0,
        }
    }

    /// Call `method`, on a page `session` or the browser; its `result`.
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.try_call(session, method, params)
            .unwrap_or_else(|err| panic!("{method} failed: {err}"))
    }

    /// [`Browser::call`], with the protocol's error as `Err`.
    pub fn try_call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).expect("json");
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("chromium went away before {method}: {e}"));
        let deadline = Instant::now() + CALL_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from_browser
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no answer from chromium to {method}: {e}"));
            if v["id"] == json!(id) {
                if let Some(err) = v.get("error") {
                    return Err(err.clone());
                }
                return Ok(v["result"].clone());
            }
        }
    }

    /// A new tab attached in flat mode; returns its session id.
    pub fn new_page(&mut self) -> String {
        let t = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let target = t["targetId"].as_str().expect("targetId").to_string();
        let s = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        );
        s["sessionId"].as_str().expect("sessionId").to_string()
    }

    /// Go to `url` in `page`.
    pub fn navigate(&mut self, page: &str, url: &str) {
        self.call(Some(page), "Page.navigate", json!({ "url": url }));
    }

    /// A JavaScript expression's value in `page`.
    pub fn eval(&mut self, page: &str, expression: &str) -> Value {
        let r = self.call(
            Some(page),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        r["result"]["value"].clone()
    }

    /// The node of `selector` in the current document, if any (DOM
    /// methods: they work with the page's scripts disabled too). `None`
    /// also while the document is being replaced (its node ids go stale).
    pub fn query(&mut self, page: &str, selector: &str) -> Option<i64> {
        let doc = self
            .try_call(Some(page), "DOM.getDocument", json!({}))
            .ok()?;
        let root = doc["root"]["nodeId"].as_i64()?;
        let n = self
            .try_call(
                Some(page),
                "DOM.querySelector",
                json!({ "nodeId": root, "selector": selector }),
            )
            .ok()?;
        n["nodeId"].as_i64().filter(|id| *id != 0)
    }

    /// The outer HTML of `selector`, if present.
    pub fn outer_html(&mut self, page: &str, selector: &str) -> Option<String> {
        let node = self.query(page, selector)?;
        let h = self
            .try_call(Some(page), "DOM.getOuterHTML", json!({ "nodeId": node }))
            .ok()?;
        h["outerHTML"].as_str().map(String::from)
    }

    /// A real mouse click (press and release) in the middle of `selector`.
    pub fn click(&mut self, page: &str, selector: &str) {
        let node = self
            .query(page, selector)
            .unwrap_or_else(|| panic!("nothing to click at {selector}"));
        self.call(
            Some(page),
            "DOM.scrollIntoViewIfNeeded",
            json!({ "nodeId": node }),
        );
        let m = self.call(Some(page), "DOM.getBoxModel", json!({ "nodeId": node }));
        let q = m["model"]["content"].as_array().expect("content quad");
        let at = |i: usize| q[i].as_f64().expect("coordinate");
        let (x, y) = ((at(0) + at(4)) / 2.0, (at(1) + at(5)) / 2.0);
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                Some(page),
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            );
        }
    }

    /// The tab's current URL (from its history: no page script needed).
    pub fn url(&mut self, page: &str) -> String {
        let h = self.call(Some(page), "Page.getNavigationHistory", json!({}));
        let i = h["currentIndex"].as_u64().expect("currentIndex") as usize;
        h["entries"][i]["url"].as_str().expect("url").to_string()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let pgid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
