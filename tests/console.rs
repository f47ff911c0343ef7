//! The web console (`/console`) in headless Chromium: Debian's `chromium`
//! driven through Debian's `chromedriver` over plain W3C WebDriver (JSON
//! over HTTP, spoken here by hand). The page loads and shows the cluster
//! and the timeline; then a key is put with etcdctl and a znode created
//! with zkCli.sh, one after the other; both must appear on the page's
//! timeline in revision order, at the revisions the tools reported, and in
//! the key and tree panels. A screenshot goes to `target/console.png`.
//!
//! A second test reads the JSON API directly on the client port: bounds,
//! bad parameters, ACL-hidden znodes; the metrics listener serves no
//! console (metrics and health only, as etcd's), and `--console false`
//! turns it off on the client port too.
//!
//! Needs scripts/deps/console.sh (chromium, chromium-driver), etcd.sh
//! (etcdctl) and zk.sh (zkCli.sh).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::PutOptions;
use janus_tests::{free_port, Janus};
use serde_json::{json, Value};
use zookeeper_client as zk;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ZKCLI: &str = "/usr/share/zookeeper/bin/zkCli.sh";
const ETCDCTL: &str = "/usr/bin/etcdctl";

/// The key etcdctl puts and the znode zkCli.sh creates.
const KEY: &str = "/console/etcdctl-key";
const ZNODE: &str = "/console-zkcli";

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn require(tools: &[&str]) {
    for t in tools {
        assert!(
            Path::new(t).exists(),
            "{t} missing: scripts/deps/console.sh installs chromium and chromium-driver, \
             etcd.sh etcdctl, zk.sh zkCli.sh (scripts/test.sh runs them all)"
        );
    }
}

// ---- a small HTTP/1.1 client (WebDriver and the console's API)

struct HttpResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One request on a fresh connection. The answer is read by its
/// Content-Length (chromedriver keeps connections open), chunk by chunk, or
/// to the end.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect(addr)?;
    // Starting a browser session on a busy small machine takes a while.
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if body.is_some() {
        req.push_str("Content-Type: application/json; charset=utf-8\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
    s.write_all(req.as_bytes())?;
    s.write_all(payload.as_bytes())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let split = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other("closed before the end of headers"));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut resp = HttpResponse {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    };
    let length: Option<usize> = resp.header("content-length").and_then(|v| v.parse().ok());
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    loop {
        let done = match length {
            Some(n) => resp.body.len() >= n,
            None if chunked => resp.body.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        resp.body.extend_from_slice(&buf[..n]);
    }
    if chunked {
        resp.body = dechunk(&resp.body);
    }
    Ok(resp)
}

/// A chunked body's data.
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(&b[..eol]);
        let size =
            usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let end = (start + size).min(b.len());
        out.extend_from_slice(&b[start..end]);
        b = &b[(end + 2).min(b.len())..];
    }
    out
}

/// Standard base64 (WebDriver's screenshots).
fn base64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\r' | b'\n' => continue,
            _ => panic!("not base64: {c:#x}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

// ---- WebDriver

/// chromedriver (in a process group of its own, with the browser it
/// starts) and one browser session.
struct Browser {
    driver: Child,
    addr: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(log: &Path) -> Browser {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(log).expect("chromedriver log");
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut b = Browser {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http(&b.addr, "GET", "/status", None) {
                if r.status == 200 && r.json()["value"]["ready"] == json!(true) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver not ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        let args = [
            "--headless".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-quic".to_string(),
            "--no-first-run".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--hide-scrollbars".to_string(),
            "--window-size=1440,1000".to_string(),
            format!("--user-data-dir={}", b._profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let r = http(&b.addr, "POST", "/session", Some(&caps)).expect("new session");
        let v = r.json();
        assert_eq!(r.status, 200, "new session: {v}");
        b.session = v["value"]["sessionId"]
            .as_str()
            .expect("session id")
            .to_string();
        b
    }

    /// A command on the session; its `value`.
    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let url = format!("/session/{}{path}", self.session);
        let r = http(&self.addr, method, &url, body).expect("webdriver request");
        let v = r.json();
        assert_eq!(r.status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(&json!({ "url": url })));
    }

    /// Run `script` (a function body; `arguments[i]` are `args`) in the page.
    fn eval(&self, script: &str, args: &[&str]) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Evaluate `script` until it returns something other than null or
    /// false; that value.
    fn wait_for(&self, what: &str, script: &str, args: &[&str], timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(script, args);
            if !v.is_null() && v != json!(false) {
                return v;
            }
            if Instant::now() > deadline {
                let text = self.eval("return document.body.innerText;", &[]);
                let text = text.as_str().unwrap_or_default().to_string();
                panic!("waited {timeout:?} for {what}; the page reads:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn screenshot(&self, path: &Path) {
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().expect("base64 screenshot"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the session quits the browser; then chromedriver and
        // anything left in its process group go.
        if !self.session.is_empty() {
            let _ = http(
                &self.addr,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        // SAFETY: kill(2) on the process group of our own child.
        unsafe {
            libc::kill(-(self.driver.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}

// ---- the real tools

/// Run a command with a time bound: (exit code, stdout + stderr).
fn run(cmd: &mut Command, what: &str) -> (i32, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// `etcdctl put -w json`: the revision of the put from the reply header.
fn etcdctl_put(endpoint: &str, key: &str, value: &str) -> i64 {
    let (code, out) = run(
        Command::new("timeout")
            .args(["-s", "KILL", "60", ETCDCTL])
            .arg(format!("--endpoints=http://{endpoint}"))
            .args(["put", "-w", "json", key, value])
            .env("ETCDCTL_API", "3"),
        "etcdctl",
    );
    assert_eq!(code, 0, "etcdctl put: {out}");
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("etcdctl put -w json printed no JSON: {out}"));
    let v: Value = serde_json::from_str(line).expect("etcdctl JSON");
    v["header"]["revision"]
        .as_i64()
        .unwrap_or_else(|| panic!("no header.revision in {v}"))
}

/// zkCli.sh in command mode (one command, then it exits).
fn zkcli(addr: &str, args: &[&str]) -> String {
    let (code, out) = run(
        Command::new("timeout")
            .args([
                "-s",
                "KILL",
                "90",
                ZKCLI,
                "-waitforconnection",
                "-server",
                addr,
            ])
            .args(args)
            .env("ZOO_LOG4J_PROP", "ERROR,CONSOLE"),
        "zkCli.sh",
    );
    assert_eq!(code, 0, "zkCli.sh {args:?}: {out}");
    out
}

/// `zkCli.sh create`, then `stat` for the new node's cZxid (its revision).
fn zkcli_create(addr: &str, path: &str, data: &str) -> i64 {
    let out = zkcli(addr, &["create", path, data]);
    assert!(
        out.contains(&format!("Created {path}")),
        "zkCli.sh create: {out}"
    );
    let out = zkcli(addr, &["stat", path]);
    let czxid = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("cZxid = 0x"))
        .unwrap_or_else(|| panic!("no cZxid in zkCli.sh stat: {out}"));
    i64::from_str_radix(czxid.trim(), 16).expect("hex cZxid")
}

// ---- something to look at

/// A ZooKeeper session with ephemeral znodes, an etcd lease with keys,
/// and plain znodes and keys, interleaved on the revision clock. The
/// session lives as long as the returned client.
async fn seed(j: &Janus) -> (zk::Client, i64) {
    let zk = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(30))
        .connect(&j.zk)
        .await
        .expect("zookeeper connect");
    let mut etcd = etcd_client::Client::connect([j.etcd.as_str()], None)
        .await
        .expect("etcd connect");
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let lease = etcd.lease_grant(300, None).await.expect("lease").id();
    for p in ["/brokers", "/brokers/ids", "/brokers/topics", "/config"] {
        zk.create(p, b"", &open).await.expect("create");
    }
    etcd.put(
        "/registry/namespaces/default",
        r#"{"kind":"Namespace"}"#,
        None,
    )
    .await
    .expect("put");
    zk.create("/brokers/ids/1", br#"{"host":"kafka-1","port":9092}"#, &eph)
        .await
        .expect("ephemeral");
    etcd.put(
        "/registry/leases/kube-node-lease/node-1",
        "renewTime",
        Some(PutOptions::new().with_lease(lease)),
    )
    .await
    .expect("put leased");
    zk.create("/brokers/topics/orders", br#"{"partitions":3}"#, &open)
        .await
        .expect("create");
    for pod in ["web-0", "web-1"] {
        etcd.put(
            format!("/registry/pods/default/{pod}"),
            format!(r#"{{"kind":"Pod","name":"{pod}"}}"#),
            None,
        )
        .await
        .expect("put");
    }
    zk.create("/controller", br#"{"brokerid":1}"#, &eph)
        .await
        .expect("ephemeral");
    zk.set_data("/brokers/topics/orders", br#"{"partitions":6}"#, None)
        .await
        .expect("set");
    etcd.delete("/registry/pods/default/web-1", None)
        .await
        .expect("delete");
    (zk, lease)
}

/// Click the tree's expand toggle of `path`, then wait for `child`.
fn expand(b: &Browser, path: &str, child: &str) {
    let clicked = b.eval(
        "for (const li of document.querySelectorAll('#tree li[data-path]')) {
           if (li.dataset.path === arguments[0]) { li.querySelector('.toggle').click(); return true; }
         }
         return false;",
        &[path],
    );
    assert_eq!(clicked, json!(true), "{path} in the tree");
    b.wait_for(
        &format!("{child} in the tree"),
        "return Array.from(document.querySelectorAll('#tree li[data-path]'))
                    .some((li) => li.dataset.path === arguments[0]);",
        &[child],
        Duration::from_secs(20),
    );
}

#[test]
fn console_shows_both_personalities_on_one_revision_clock() {
    require(&[CHROMIUM, CHROMEDRIVER, ZKCLI, ETCDCTL]);
    let dir = tempfile::tempdir().expect("tempdir");
    let j = Janus::start(&dir.path().join("data"), &[]);
    j.wait_healthy(Duration::from_secs(30));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (_session, lease) = rt.block_on(seed(&j));

    let b = Browser::start(&dir.path().join("chromedriver.log"));
    b.goto(&format!("http://{}/console", j.etcd));
    let ready = b.wait_for(
        "the cluster's leader and a first timeline poll",
        "const c = document.getElementById('cluster').dataset;
         const t = document.getElementById('timeline').dataset;
         return c.leader && t.revision ? { leader: c.leader, revision: Number(t.revision) } : null;",
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(
        ready["leader"],
        json!("1"),
        "a one-member cluster: member 1 leads"
    );

    // One change through each personality, in this order, with the real tools.
    let etcd_rev = etcdctl_put(&j.etcd, KEY, "hello-from-etcdctl");
    let zk_rev = zkcli_create(&j.zk, ZNODE, "hello-from-zkCli");
    assert!(
        etcd_rev < zk_rev,
        "one clock: the later change has the higher revision ({etcd_rev}, {zk_rev})"
    );

    let rows = b.wait_for(
        "both changes on the timeline",
        "const rows = Array.from(document.querySelectorAll('#timeline li.row')).map((r) => ({
           rev: Number(r.dataset.rev),
           personality: r.dataset.personality,
           kind: r.dataset.kind,
           name: r.dataset.name,
           badge: r.querySelector('.badge').textContent,
           shown: r.querySelector('.rev').textContent,
         }));
         const names = rows.map((r) => r.name);
         return names.includes(arguments[0]) && names.includes(arguments[1]) ? rows : null;",
        &[KEY, ZNODE],
        Duration::from_secs(30),
    );
    let rows = rows.as_array().expect("rows").clone();
    let revs: Vec<i64> = rows.iter().filter_map(|r| r["rev"].as_i64()).collect();
    assert_eq!(revs.len(), rows.len());
    assert!(
        revs.windows(2).all(|w| w[0] <= w[1]),
        "the timeline is in revision order: {revs:?}"
    );
    let find = |name: &str| {
        rows.iter()
            .position(|r| r["name"] == json!(name))
            .unwrap_or_else(|| panic!("{name} on the timeline"))
    };
    let (e, z) = (find(KEY), find(ZNODE));
    assert!(e < z, "the etcd change is above the ZooKeeper one");
    assert_eq!(
        rows[e],
        json!({"rev": etcd_rev, "personality": "etcd", "kind": "put", "name": KEY,
               "badge": "etcd", "shown": etcd_rev.to_string()})
    );
    assert_eq!(
        rows[z],
        json!({"rev": zk_rev, "personality": "zookeeper", "kind": "created", "name": ZNODE,
               "badge": "ZooKeeper", "shown": zk_rev.to_string()})
    );
    // The seeded changes came before, from both personalities.
    assert!(rows[..e]
        .iter()
        .any(|r| r["personality"] == json!("zookeeper")));
    assert!(rows[..e].iter().any(|r| r["personality"] == json!("etcd")));

    // The key panel lists the key at etcdctl's revision.
    let key_rev = b.wait_for(
        "the key in the key panel",
        "for (const tr of document.querySelectorAll('#keys tr[data-key]')) {
           if (tr.dataset.key === arguments[0]) return Number(tr.dataset.rev);
         }
         return null;",
        &[KEY],
        Duration::from_secs(20),
    );
    assert_eq!(key_rev, json!(etcd_rev));
    // The tree shows the znode; opening it shows its data and cZxid.
    b.wait_for(
        "the znode in the tree",
        "return Array.from(document.querySelectorAll('#tree li[data-path]'))
                    .some((li) => li.dataset.path === arguments[0]);",
        &[ZNODE],
        Duration::from_secs(20),
    );
    b.eval(
        "for (const li of document.querySelectorAll('#tree li[data-path]')) {
           if (li.dataset.path === arguments[0]) li.querySelector('.name').click();
         }",
        &[ZNODE],
    );
    let czxid = format!("0x{zk_rev:x} (rev {zk_rev})");
    b.wait_for(
        "the znode's data and stat",
        "const d = document.getElementById('znode');
         return d.dataset.path === arguments[0]
           && document.getElementById('znode-data').textContent === arguments[1]
           && document.getElementById('znode-stat').textContent.includes(arguments[2]);",
        &[ZNODE, "hello-from-zkCli", &czxid],
        Duration::from_secs(20),
    );
    // Lazy expansion, down to the ephemeral broker.
    expand(&b, "/brokers", "/brokers/ids");
    expand(&b, "/brokers/ids", "/brokers/ids/1");

    // Sessions and leases: the seeding client's session (with its two
    // ephemerals) and the lease with its key.
    let lease_hex = format!("{lease:016x}");
    let found = b.wait_for(
        "the session and the lease",
        "const s = Array.from(document.querySelectorAll('#sessions tr[data-session]'))
                        .map((tr) => tr.cells[2].textContent);
         const l = Array.from(document.querySelectorAll('#leases tr[data-lease]'))
                        .find((tr) => tr.dataset.lease === arguments[0]);
         return s.includes('2') && l ? l.cells[2].textContent : null;",
        &[&lease_hex],
        Duration::from_secs(20),
    );
    assert_eq!(found, json!("1"), "one key on the lease");
    // The cluster strip: one member, the leader, this member.
    let member = b.eval(
        "const tr = document.querySelector('#members tr[data-id]');
         return tr ? tr.textContent : null;",
        &[],
    );
    let member = member.as_str().expect("a member row").to_string();
    assert!(
        member.contains("leader") && member.contains("this member") && member.contains(&j.zk),
        "{member}"
    );
    let status = b.eval("return document.getElementById('status').textContent;", &[]);
    assert_eq!(status, json!("live"));

    let shot = root().join("target/console.png");
    b.screenshot(&shot);
    eprintln!("screenshot: {}", shot.display());
}

/// GET on the console's JSON API: (status, JSON).
fn api(addr: &str, path: &str) -> (u16, Value) {
    let r = http(addr, "GET", path, None).expect("GET");
    (r.status, r.json())
}

#[test]
fn console_api_on_the_client_port_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = format!("127.0.0.1:{}", free_port());
    let j = Janus::start_with_peer_env(
        &dir.path().join("data"),
        &format!("127.0.0.1:{}", free_port()),
        &[],
        &[("JANUS_METRICS_LISTEN".to_string(), metrics.clone())],
    );
    j.wait_healthy(Duration::from_secs(30));

    // The page and its assets, on both ports.
    for addr in [&j.etcd] {
        for path in ["/console", "/console/"] {
            let r = http(addr, "GET", path, None).expect("GET /console");
            assert_eq!(r.status, 200, "{addr}{path}");
            assert!(r
                .header("content-type")
                .is_some_and(|v| v.starts_with("text/html")));
            assert!(r
                .header("content-security-policy")
                .is_some_and(|v| v.contains("script-src 'self'")));
            assert!(String::from_utf8_lossy(&r.body).contains("/console/console.js"));
        }
        for (path, ty) in [
            ("/console/console.js", "text/javascript"),
            ("/console/console.css", "text/css"),
        ] {
            let r = http(addr, "GET", path, None).expect("GET asset");
            assert_eq!(r.status, 200, "{addr}{path}");
            assert!(r.header("content-type").is_some_and(|v| v.starts_with(ty)));
        }
        let (st, c) = api(addr, "/console/api/cluster");
        assert_eq!(st, 200);
        assert_eq!(c["memberId"], json!("1"));
        assert_eq!(c["leader"], json!("1"));
        assert_eq!(c["members"][0]["self"], json!(true));
        assert_eq!(c["members"][0]["zkClient"], json!(j.zk));
    }

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (first, last, secret_rev) = rt.block_on(async {
        let mut etcd = etcd_client::Client::connect([j.etcd.as_str()], None)
            .await
            .expect("etcd connect");
        // More keys than one answer lists.
        let mut first = 0;
        let mut last = 0;
        for i in 0..510 {
            let r = etcd
                .put(format!("bulk/{i:04}"), "x".repeat(300), None)
                .await
                .expect("put");
            let rev = r.header().expect("header").revision();
            if i == 0 {
                first = rev;
            }
            last = rev;
        }
        let zk = zk::Client::connect(&j.zk).await.expect("zookeeper connect");
        let acl = [zk::Acl::new(
            zk::Permission::ALL,
            zk::AuthId::new("digest", "alice:AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        )];
        let locked = zk::CreateMode::Persistent.with_acls(zk::Acls::new(&acl));
        let (stat, _) = zk
            .create("/locked", b"secret", &locked)
            .await
            .expect("create /locked");
        (first, last, stat.czxid)
    });

    // The timeline: every put, in order, paged by revision.
    let wait = Instant::now() + Duration::from_secs(10);
    let mut rows = Vec::new();
    let mut after = 0;
    while Instant::now() < wait {
        let (st, page) = api(
            &j.etcd,
            &format!("/console/api/timeline?after={after}&limit=100"),
        );
        assert_eq!(st, 200);
        let got = page["rows"].as_array().expect("rows").clone();
        assert!(got.len() <= 100 + 35, "a page is bounded: {}", got.len());
        if let Some(r) = got.last() {
            after = r["revision"].as_i64().expect("revision");
        }
        rows.extend(got);
        if after >= secret_rev {
            break;
        }
        if page["more"] != json!(true) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let puts: Vec<i64> = rows
        .iter()
        .filter(|r| r["personality"] == json!("etcd"))
        .filter_map(|r| r["revision"].as_i64())
        .collect();
    assert_eq!(
        puts,
        (first..=last).collect::<Vec<_>>(),
        "every put once, in order"
    );
    let put = rows
        .iter()
        .find(|r| r["personality"] == json!("etcd"))
        .expect("a put");
    assert_eq!(put["name"], json!("bulk/0000"));
    assert_eq!(put["size"], json!(300));
    let secret = rows.last().expect("the znode's row");
    assert_eq!(
        secret,
        &json!({"revision": secret_rev, "personality": "zookeeper", "kind": "created", "name": null}),
        "no world READ: the path is not shown"
    );

    // Keys: bounded, prefix-filtered, previews cut.
    let (_, k) = api(&j.etcd, "/console/api/keys?prefix=bulk/&limit=100000");
    assert_eq!(k["keys"].as_array().map(Vec::len), Some(500));
    assert_eq!(k["more"], json!(true));
    assert_eq!(k["keys"][0]["key"], json!("bulk/0000"));
    assert_eq!(k["keys"][0]["value"]["size"], json!(300));
    assert_eq!(k["keys"][0]["value"]["truncated"], json!(true));
    assert_eq!(k["keys"][0]["modRevision"], json!(first));
    let (_, k) = api(&j.etcd, "/console/api/keys?prefix=bulk/050");
    let names: Vec<&str> = k["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["key"].as_str())
        .collect();
    assert_eq!(
        names,
        (500..510)
            .map(|i| format!("bulk/{i:04}"))
            .collect::<Vec<_>>()
    );

    // ZNodes: the root lists the new node; its data stays hidden.
    let (st, r) = api(&j.etcd, "/console/api/znode?path=/");
    assert_eq!(st, 200);
    assert!(r["children"]
        .as_array()
        .expect("children")
        .iter()
        .any(|c| c["path"] == json!("/locked")));
    let (st, n) = api(&j.etcd, "/console/api/znode?path=/locked");
    assert_eq!(st, 200);
    assert_eq!(n["readable"], json!(false));
    assert_eq!(n["data"], Value::Null);
    assert_eq!(n["stat"]["czxid"], json!(secret_rev));
    let (st, n) = api(&j.etcd, "/console/api/znode?path=/zookeeper/config");
    assert_eq!(st, 200);
    assert_eq!(n["readable"], json!(true));

    // Bad requests are refused, not crashed on.
    for (path, want) in [
        ("/console/api/znode?path=/nope", 404),
        ("/console/api/znode?path=nope", 400),
        ("/console/api/znode?path=/a/", 400),
        ("/console/api/timeline?after=abc", 400),
        ("/console/api/timeline?limit=-1", 400),
        ("/console/api/keys?limit=x", 400),
    ] {
        let r = http(&j.etcd, "GET", path, None).expect("GET");
        assert_eq!(r.status, want, "{path}");
    }
    let (st, s) = api(&j.etcd, "/console/api/sessions");
    assert_eq!(st, 200);
    assert!(s["sessions"].is_array() && s["leases"].is_array());
    // The plain-HTTP metrics listener has metrics and health, no console.
    for path in [
        "/console",
        "/console/api/keys",
        "/console/api/znode?path=/",
        "/console/api/sessions",
    ] {
        let r = http(&metrics, "GET", path, None).expect("GET");
        assert_eq!(r.status, 404, "metrics listener {path}");
    }
    for path in ["/metrics", "/health", "/livez", "/readyz", "/version"] {
        let r = http(&metrics, "GET", path, None).expect("GET");
        assert_eq!(r.status, 200, "metrics listener {path}");
    }
    assert_eq!(
        j.http_get("/health").expect("health").0,
        200,
        "still serving"
    );
}

#[test]
fn console_can_be_turned_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = Janus::start(&dir.path().join("data"), &["--console", "false"]);
    j.wait_healthy(Duration::from_secs(30));
    for path in ["/console", "/console/api/keys", "/console/api/cluster"] {
        let r = http(&j.etcd, "GET", path, None).expect("GET");
        assert_eq!(r.status, 404, "{path} with the console off");
    }
    assert_eq!(j.http_get("/health").expect("health").0, 200);
}
