//! `swctl web` actions against a real swbd + swrtp, over raw HTTP/1.1:
//! hang up a call and drain/undrain nodes from the page; the CSRF token,
//! the Origin and Host checks (403), `--token` Basic auth (401), and the
//! refusal to listen beyond loopback without `--token` (exit 2).
#![allow(clippy::expect_used, clippy::panic, clippy::unreachable)] // test code: failing loudly is the point

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, hold_dialplan, place_call, start_pbx, swctl, tempdir};

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

fn swctl_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swctl"));
    cmd.args(args)
        .env_remove("SWCTL_HOST")
        .env_remove("SWCTL_CONTEXT")
        .env_remove("SWCTL_CONFIG")
        .env_remove("SWCTL_TOKEN")
        .env_remove("SWCTL_TOKEN_FILE")
        .stdin(Stdio::null());
    cmd
}

/// `swctl [hosts] web --listen IP:PORT [extra]`, once it accepts connections.
fn start_web(hosts: &[&str], ip: &str, extra: &[&str]) -> Web {
    let port = free_port();
    let mut args: Vec<String> = Vec::new();
    for h in hosts {
        args.extend(["--host".to_string(), h.to_string()]);
    }
    args.extend(["web".into(), "--listen".into(), format!("{ip}:{port}")]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = swctl_cmd(&argv).spawn().expect("start swctl web");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("swctl web exited: {st}");
        }
        assert!(Instant::now() < deadline, "swctl web did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Web { child, port }
}

/// Run swctl that must exit by itself; (code, stderr).
fn run_to_exit(args: &[&str]) -> (i32, String) {
    let mut child = swctl_cmd(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run swctl");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("swctl {args:?} kept running (it served instead of refusing)");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (status.code().unwrap_or(-1), err)
}

/// An HTTP response: status code, header block (lower-cased), body.
struct Resp {
    status: u16,
    head: String,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            l.strip_prefix(&format!("{name}:"))
                .map(|v| v.trim().to_string())
        })
    }
}

/// One raw HTTP/1.1 request on a fresh connection. `Host` defaults to
/// `127.0.0.1:PORT`; `headers` may override it.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    Resp {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

/// application/x-www-form-urlencoded.
fn form(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The CSRF token from the page's forms.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no form with a CSRF token:\n{page}"));
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').expect("closing quote")].to_string()
}

fn call_ids(swbd: &str) -> Vec<String> {
    let (code, out, err) = swctl(&["--host", swbd, "calls", "list", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("calls JSON");
    v.as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["call_id"].as_str().map(String::from))
        .collect()
}

/// (state, drained) of pool node `name`.
fn pool_node(swbd: &str, name: &str) -> String {
    let (code, out, err) = swctl(&["--host", swbd, "nodes", "list", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("nodes JSON");
    let n = v
        .as_array()
        .expect("array")
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name} in {out}"))
        .clone();
    n["state"].as_str().expect("state").to_string()
}

fn swrtp_draining(swrtp: &str) -> bool {
    let (code, out, err) = swctl(&["--host", swrtp, "status", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("status json");
    let s = v.as_array().and_then(|a| a.first()).cloned().unwrap_or(v);
    s["detail"].as_str().expect("detail").contains("draining")
}

/// Follow a POST-redirect-GET: the page the 303 points at.
fn follow(port: u16, r: &Resp) -> String {
    assert_eq!(r.status, 303, "{}{}", r.head, r.body);
    let to = r.header("location").expect("Location");
    assert!(to.starts_with("/?result="), "{to}");
    let page = http(port, "GET", &to, &[], "");
    assert_eq!(page.status, 200);
    page.body
}

#[test]
fn hangup_from_the_page_needs_the_csrf_token_and_the_same_origin() {
    let dir = tempdir("web-hangup");
    // Long enough that only the button ends the call.
    let plan = hold_dialplan(&dir, "300s");
    let pbx = start_pbx(&dir, &plan);
    let swbd = format!("unix://{}", pbx.swbd_socket.display());
    let swrtp = format!("unix://{}", pbx.swrtp_socket.display());
    let web = start_web(&[&swbd, &swrtp], "127.0.0.1", &[]);
    let _phone = place_call(pbx.sip_port, "7777");
    let ids = call_ids(&swbd);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids[0].clone();

    let page = http(web.port, "GET", "/", &[], "");
    assert_eq!(page.status, 200);
    assert!(page.body.contains(">Hang up</button>"), "{}", page.body);
    assert!(
        page.body.contains(&format!(
            "name=\"call\" value=\"{}\"",
            id.replace('"', "&quot;")
        )),
        "{}",
        page.body
    );
    let csrf = csrf_of(&page.body);
    assert_eq!(csrf.len(), 64);
    // Browsers' own headers for a page that frames or sniffs.
    assert!(
        page.header("content-security-policy")
            .is_some_and(|c| c.contains("frame-ancestors 'none'")),
        "{}",
        page.head
    );

    // GET never changes anything.
    let r = http(web.port, "GET", "/action/hangup", &[], "");
    assert_eq!(r.status, 405);

    // No token, a wrong token: 403, and the call is still up.
    let no_token = form(&[("backend", "0"), ("call", &id)]);
    let r = http(web.port, "POST", "/action/hangup", &[], &no_token);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("CSRF"), "{}", r.body);
    let wrong = form(&[("csrf", &"0".repeat(64)), ("backend", "0"), ("call", &id)]);
    let r = http(web.port, "POST", "/action/hangup", &[], &wrong);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        call_ids(&swbd),
        std::slice::from_ref(&id),
        "refused POSTs hung up"
    );

    // The right token from another site: 403.
    let right = form(&[("csrf", &csrf), ("backend", "0"), ("call", &id)]);
    let r = http(
        web.port,
        "POST",
        "/action/hangup",
        &[("Origin", "http://evil.example")],
        &right,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // Through a rebound DNS name: 403.
    let r = http(
        web.port,
        "POST",
        "/action/hangup",
        &[("Host", &format!("evil.example:{}", web.port))],
        &right,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        call_ids(&swbd),
        std::slice::from_ref(&id),
        "refused POSTs hung up"
    );

    // Same origin, right token: the call ends; the result page says so.
    let origin = format!("http://127.0.0.1:{}", web.port);
    let r = http(
        web.port,
        "POST",
        "/action/hangup",
        &[("Origin", &origin)],
        &right,
    );
    let shown = follow(web.port, &r);
    assert!(
        shown.contains(&format!("<p class=\"ok\">hung up {id} on ")),
        "{shown}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while call_ids(&swbd).contains(&id) {
        assert!(Instant::now() < deadline, "the call was not hung up");
        std::thread::sleep(Duration::from_millis(100));
    }

    // htmx: the result in place (escaped), and a refresh trigger.
    let r = http(
        web.port,
        "POST",
        "/action/hangup",
        &[("HX-Request", "true"), ("Origin", &origin)],
        &form(&[("csrf", &csrf), ("backend", "0"), ("call", "<b>gone</b>")]),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("hx-trigger").as_deref(), Some("sb-refresh"));
    assert!(
        r.body.starts_with("<p class=\"err\">swbd refused"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<b>"), "{}", r.body);
    // A backend that does not exist is an error too, not a panic.
    let r = http(
        web.port,
        "POST",
        "/action/hangup",
        &[],
        &form(&[("csrf", &csrf), ("backend", "9"), ("call", &id)]),
    );
    assert!(
        follow(web.port, &r).contains("<p class=\"err\">no backend &quot;9&quot;"),
        "unknown backend"
    );
}

#[test]
fn drain_and_undrain_a_pool_node_and_a_swrtp_from_the_page() {
    let dir = tempdir("web-drain");
    let plan = hold_dialplan(&dir, "1s");
    let pbx = start_pbx(&dir, &plan);
    let swbd = format!("unix://{}", pbx.swbd_socket.display());
    let swrtp = format!("unix://{}", pbx.swrtp_socket.display());
    let web = start_web(&[&swbd, &swrtp], "127.0.0.1", &[]);
    assert_eq!(pool_node(&swbd, "rtp-a"), "up");
    assert!(!swrtp_draining(&swrtp));

    let page = http(web.port, "GET", "/", &[], "").body;
    let csrf = csrf_of(&page);
    assert!(
        page.contains("name=\"backend\" value=\"0\"><input type=\"hidden\" name=\"target\" value=\"pool\"><input type=\"hidden\" name=\"node\" value=\"rtp-a\"><button type=\"submit\">Drain</button>"),
        "{page}"
    );
    assert!(
        page.contains("name=\"backend\" value=\"1\"><input type=\"hidden\" name=\"target\" value=\"swrtp\"><input type=\"hidden\" name=\"node\" value=\"rtp-a\"><button type=\"submit\">Drain</button>"),
        "{page}"
    );
    let pool = |action: &str| {
        http(
            web.port,
            "POST",
            action,
            &[],
            &form(&[
                ("csrf", &csrf),
                ("backend", "0"),
                ("target", "pool"),
                ("node", "rtp-a"),
            ]),
        )
    };

    // Pool drain: swbd's pool shows it, the page offers Undrain.
    let shown = follow(web.port, &pool("/action/drain"));
    assert!(
        shown.contains("<p class=\"ok\">media node rtp-a on swbd: draining"),
        "{shown}"
    );
    assert_eq!(pool_node(&swbd, "rtp-a"), "draining");
    assert!(shown.contains(">Undrain</button>"), "{shown}");
    let shown = follow(web.port, &pool("/action/undrain"));
    assert!(shown.contains("undrained, takes new calls"), "{shown}");
    assert_eq!(pool_node(&swbd, "rtp-a"), "up");

    // The swrtp's own flag (SetDraining).
    let node = |action: &str, name: &str| {
        http(
            web.port,
            "POST",
            action,
            &[],
            &form(&[
                ("csrf", &csrf),
                ("backend", "1"),
                ("target", "swrtp"),
                ("node", name),
            ]),
        )
    };
    let shown = follow(web.port, &node("/action/drain", "rtp-a"));
    assert!(shown.contains("swrtp rtp-a (swrtp): draining"), "{shown}");
    assert!(swrtp_draining(&swrtp));
    let shown = follow(web.port, &node("/action/undrain", "rtp-a"));
    assert!(shown.contains("accepting sessions"), "{shown}");
    assert!(!swrtp_draining(&swrtp));
    // A row that no longer matches the backend is refused, not applied.
    let shown = follow(web.port, &node("/action/drain", "rtp-zz"));
    assert!(
        shown.contains("<p class=\"err\">swrtp is node rtp-a, not rtp-zz"),
        "{shown}"
    );
    assert!(!swrtp_draining(&swrtp));
    // A pool node swbd does not have: the daemon's error, shown.
    let r = http(
        web.port,
        "POST",
        "/action/drain",
        &[],
        &form(&[
            ("csrf", &csrf),
            ("backend", "0"),
            ("target", "pool"),
            ("node", "<i>nope</i>"),
        ]),
    );
    let shown = follow(web.port, &r);
    assert!(shown.contains("<p class=\"err\">swbd refused"), "{shown}");
    assert!(!shown.contains("<i>"), "{shown}");
}

fn token_file(dir: &Path, secret: &str, mode: u32) -> String {
    let f = dir.join("web.token");
    std::fs::write(&f, format!("{secret}\n")).expect("token file");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).expect("chmod");
    f.to_str().expect("utf-8").to_string()
}

#[test]
fn beyond_loopback_only_with_a_token_and_then_basic_auth() {
    let dir = tempdir("web-token");
    let nowhere = format!("unix://{}", dir.join("none.sock").display());
    let any = format!("0.0.0.0:{}", free_port());

    let (code, err) = run_to_exit(&["--host", &nowhere, "web", "--listen", &any]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("refusing to listen on 0.0.0.0") && err.contains("--token FILE"),
        "{err}"
    );
    // A secret others can read is refused (exit 4), without showing it.
    let open = token_file(&dir, "s3cret-w3b", 0o644);
    let (code, err) = run_to_exit(&[
        "--host", &nowhere, "web", "--listen", &any, "--token", &open,
    ]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    let (code, err) = run_to_exit(&["--host", &nowhere, "web", "--allow-host", "pbx:80"]);
    assert_eq!(code, 2, "{err}");

    let file = token_file(&dir, "s3cret-w3b", 0o600);
    let web = start_web(&[&nowhere], "0.0.0.0", &["--token", &file]);
    let basic = |user_pass: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    };
    for path in ["/", "/fragment/calls", "/assets/htmx.min.js"] {
        let r = http(web.port, "GET", path, &[], "");
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("basic realm=")),
            "{}",
            r.head
        );
    }
    let r = http(
        web.port,
        "GET",
        "/",
        &[("Authorization", &basic("ops:s3cret-w3"))],
        "",
    );
    assert_eq!(r.status, 401);
    let r = http(
        web.port,
        "POST",
        "/action/hangup",
        &[],
        &form(&[("call", "x")]),
    );
    assert_eq!(r.status, 401);
    let r = http(
        web.port,
        "GET",
        "/",
        &[("Authorization", &basic("ops:s3cret-w3b"))],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("<h1>Switchboard</h1>"), "{}", r.body);
    // Listening on 0.0.0.0, any IP literal reaches it, a DNS name does not.
    let r = http(
        web.port,
        "GET",
        "/",
        &[
            ("Authorization", &basic("any:s3cret-w3b")),
            ("Host", &format!("evil.example:{}", web.port)),
        ],
        "",
    );
    assert_eq!(r.status, 403, "{}", r.body);
}

#[test]
fn dns_rebinding_is_refused_unless_the_name_is_allowed() {
    let dir = tempdir("web-host");
    let nowhere = format!("unix://{}", dir.join("none.sock").display());
    let web = start_web(&[&nowhere], "127.0.0.1", &["--allow-host", "pbx1.test"]);
    let with_host = |h: &str| http(web.port, "GET", "/fragment/status", &[("Host", h)], "").status;
    assert_eq!(with_host(&format!("127.0.0.1:{}", web.port)), 200);
    assert_eq!(with_host(&format!("localhost:{}", web.port)), 200);
    assert_eq!(with_host(&format!("pbx1.test:{}", web.port)), 200);
    assert_eq!(with_host(&format!("attacker.example:{}", web.port)), 403);
    assert_eq!(with_host(&format!("10.1.2.3:{}", web.port)), 403);
}
