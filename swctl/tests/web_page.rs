//! `swctl web` loaded in a real headless Chromium against a running swbd:
//! the page renders, htmx is served from the binary and really swaps the
//! fragments in (the DOM after JavaScript carries `data-gen="fragment"`).
//! A screenshot lands in `target/test-output/web.png`. The Hang up button
//! is clicked with a real mouse event over the DevTools protocol
//! ([`cdp`]), with htmx and with the page's scripts disabled.
//! Skipped (with a message) when `chromium` is not installed (Debian package
//! `chromium`).
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod cdp;
mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, start_swbd, tempdir};

fn chromium() -> Option<PathBuf> {
    for p in [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ] {
        if Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "a real peer this test needs is missing; in CI that is a failure (scripts/test.sh installs it)"
    );
    eprintln!("SKIP: chromium not installed (apt-get install chromium)");
    None
}

struct Web {
    child: Child,
    port: u16,
}

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_web(hosts: &[String]) -> Web {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swctl"));
    for h in hosts {
        cmd.args(["--host", h]);
    }
    let child = cmd
        .args(["web", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("SWCTL_HOST")
        .stdin(Stdio::null())
        .spawn()
        .expect("start swctl web");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "swctl web did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Web { child, port }
}

/// A plain HTTP/1.1 GET: (status line, headers+body).
fn get(port: u16, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.lines().next().unwrap_or_default().to_string();
    (status, text)
}

fn chromium_args(dir: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--virtual-time-budget=5000",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", dir.display())])
    .collect()
}

fn dump_dom(chrome: &Path, dir: &Path, url: &str) -> String {
    let out = Command::new(chrome)
        .args(chromium_args(dir))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {:?}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn output_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    // target/<profile>/deps/<test> -> target/test-output
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target dir");
    let dir = target.join("test-output");
    std::fs::create_dir_all(&dir).expect("test-output");
    dir
}

#[test]
fn page_renders_in_chromium_and_htmx_swaps_fragments() {
    let Some(chrome) = chromium() else { return };
    let dir = tempdir("web");
    let sock = dir.join("swbd.sock");
    let _swbd = start_swbd(&dir, &sock, "pbx-web");
    let web = start_web(&[format!("unix://{}", sock.display())]);

    // htmx comes from the binary, not a CDN.
    let (status, js) = get(web.port, "/assets/htmx.min.js");
    assert!(status.contains("200"), "{status}");
    assert!(js.to_lowercase().contains("content-type: text/javascript"));
    assert!(js.len() > 40_000);
    let (status, page) = get(web.port, "/");
    assert!(status.contains("200"), "{status}");
    assert!(page.contains("<script src=\"/assets/htmx.min.js\"></script>"));
    assert!(!page.contains("https://"), "no external resources");
    let (status, _) = get(web.port, "/fragment/nope");
    assert!(status.contains("404"), "{status}");

    let url = format!("http://127.0.0.1:{}/", web.port);
    let dom = dump_dom(&chrome, &dir.join("chrome"), &url);
    for id in ["status", "calls", "registrations", "nodes"] {
        assert!(
            dom.contains(&format!("<section id=\"{id}\"")),
            "{id} missing:\n{dom}"
        );
    }
    assert!(
        dom.contains("pbx-web"),
        "status shows the swbd node:\n{dom}"
    );
    assert!(dom.contains("<h2>Media nodes</h2>"), "{dom}");
    // Every section was replaced by a fragment fetched by htmx.
    assert_eq!(
        dom.matches("data-gen=\"fragment\"").count(),
        4,
        "htmx did not swap every section:\n{dom}"
    );
    assert!(!dom.contains("data-gen=\"page\""), "{dom}");

    let png = output_dir().join("web.png");
    let _ = std::fs::remove_file(&png);
    let st = Command::new(&chrome)
        .args(chromium_args(&dir.join("chrome-shot")))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1200,800")
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("screenshot");
    assert!(st.success());
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
}

#[test]
fn escapes_html_from_daemons() {
    // Node ids come from the daemon's config: make one hostile.
    let Some(chrome) = chromium() else { return };
    let dir = tempdir("web-esc");
    let sock = dir.join("swbd.sock");
    let _swbd = start_swbd(&dir, &sock, "<img src=x onerror=alert(1)>");
    let web = start_web(&[format!("unix://{}", sock.display())]);
    let (_, page) = get(web.port, "/fragment/status");
    assert!(
        page.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{page}"
    );
    assert!(!page.contains("<img"), "{page}");
    let dom = dump_dom(
        &chrome,
        &dir.join("chrome"),
        &format!("http://127.0.0.1:{}/", web.port),
    );
    assert!(!dom.contains("<img"), "{dom}");
}

/// A live call appears on the page and disappears when it ends. Needs the
/// B2BUA: swbd must list calls (ListCalls) and route an INVITE.
#[test]
fn live_call_appears_and_disappears() {
    let Some(chrome) = chromium() else { return };
    let dir = tempdir("web-call");
    // Long enough to be seen by a chromium slowed by a loaded machine.
    let plan = common::hold_dialplan(&dir, "10s");
    let pbx = common::start_pbx(&dir, &plan);
    let web = start_web(&[
        format!("unix://{}", pbx.swbd_socket.display()),
        format!("unix://{}", pbx.swrtp_socket.display()),
    ]);
    let url = format!("http://127.0.0.1:{}/", web.port);
    let _phone = common::place_call(pbx.sip_port, "7777");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dom = dump_dom(&chrome, &dir.join("chrome"), &url);
        if dom.contains("<td>4321</td>") && dom.contains("<td>7777</td>") {
            break;
        }
        assert!(Instant::now() < deadline, "the call never showed:\n{dom}");
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let dom = dump_dom(&chrome, &dir.join("chrome"), &url);
        if !dom.contains("<td>4321</td>") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the call never went away:\n{dom}"
        );
    }
}

fn call_ids(swbd: &str) -> Vec<String> {
    let (code, out, err) = common::swctl(&["--host", swbd, "calls", "list", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("calls JSON");
    v.as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["call_id"].as_str().map(String::from))
        .collect()
}

fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The Hang up button, clicked with a real mouse event: with htmx the call
/// ends and the result is put in `#result` in place (no navigation); with
/// the page's scripts disabled the plain form posts (the browser's own
/// `Origin` passes the check) and the browser follows the 303 to
/// `/?result=N`, which shows the result.
#[test]
fn hang_up_button_works_with_and_without_javascript() {
    let Some(chrome) = chromium() else { return };
    let dir = tempdir("web-click");
    // Long enough that only the button ends the calls.
    let plan = common::hold_dialplan(&dir, "300s");
    let pbx = common::start_pbx(&dir, &plan);
    let swbd = format!("unix://{}", pbx.swbd_socket.display());
    let web = start_web(&[
        swbd.clone(),
        format!("unix://{}", pbx.swrtp_socket.display()),
    ]);
    let url = format!("http://127.0.0.1:{}/", web.port);
    let mut browser = cdp::Browser::start(&chrome, &dir.join("cdp"));
    let form = "#calls form[action=\"/action/hangup\"]";
    let button = "#calls form[action=\"/action/hangup\"] button";

    // With htmx.
    let _a = common::place_call(pbx.sip_port, "7777");
    let ids = call_ids(&swbd);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let a = ids[0].clone();
    let page = browser.new_page();
    browser.navigate(&page, &url);
    wait_until(30, "the page with htmx and the call's button", || {
        browser.eval(
            &page,
            "typeof htmx === 'object' && document.readyState === 'complete'",
        ) == serde_json::json!(true)
            && browser.query(&page, button).is_some()
    });
    browser.click(&page, button);
    wait_until(30, "the result in #result", || {
        browser
            .eval(&page, "document.querySelector('#result').textContent")
            .as_str()
            .is_some_and(|t| t.contains(&format!("hung up {a} on swbd")))
    });
    assert_eq!(
        browser.eval(&page, "location.search"),
        serde_json::json!(""),
        "htmx posted in place, the page did not navigate"
    );
    wait_until(20, "the call to end", || !call_ids(&swbd).contains(&a));

    // Without JavaScript.
    let _b = common::place_call(pbx.sip_port, "7777");
    let ids = call_ids(&swbd);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let b = ids[0].clone();
    let page = browser.new_page();
    browser.call(
        Some(&page),
        "Emulation.setScriptExecutionDisabled",
        serde_json::json!({ "value": true }),
    );
    browser.navigate(&page, &url);
    wait_until(30, "the page with the second call's button", || {
        browser
            .outer_html(&page, form)
            .is_some_and(|f| f.contains(&format!("value=\"{b}\"")))
    });
    browser.click(&page, button);
    wait_until(30, "the redirect to the result", || {
        browser.url(&page).contains("/?result=")
    });
    let shown = browser
        .outer_html(&page, "#result")
        .expect("#result on the result page");
    assert!(
        shown.contains(&format!("<p class=\"ok\">hung up {b} on swbd")),
        "{shown}"
    );
    wait_until(20, "the second call to end", || {
        !call_ids(&swbd).contains(&b)
    });
}
