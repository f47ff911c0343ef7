//! Differential test: one scripted etcdctl session (ETCDCTL_API=3, mostly
//! `-w json`) against a real etcd (Debian's etcd-server, started here on
//! free loopback ports) and against Janus; normalized outputs must agree.
//!
//! Normalization: cluster/member ids, raft terms and lease ids become
//! placeholders numbered by first appearance; revisions become offsets from
//! the revision before the script's first write; ports, timings, versions,
//! database sizes and raft indexes are masked; of stderr only etcdctl's
//! `Error:` lines count.
//!
//! Skipped (with a message) when etcd or etcdctl is not installed: run
//! scripts/deps/etcd.sh.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use janus_tests::{free_port, Janus};
use serde_json::Value;

fn have(bin: &str, arg: &str) -> bool {
    Command::new(bin)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A real etcd on free loopback ports; killed on drop.
struct Etcd {
    child: Child,
    endpoint: String,
}

impl Etcd {
    fn start(dir: &Path) -> Etcd {
        let client = format!("127.0.0.1:{}", free_port());
        let peer = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.join("etcd.log")).expect("etcd log");
        let child = Command::new("etcd")
            .args(["--name", "default", "--data-dir"])
            .arg(dir.join("etcd-data"))
            .arg(format!("--listen-client-urls=http://{client}"))
            .arg(format!("--advertise-client-urls=http://{client}"))
            .arg(format!("--listen-peer-urls=http://{peer}"))
            .arg(format!("--initial-advertise-peer-urls=http://{peer}"))
            .arg(format!("--initial-cluster=default=http://{peer}"))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn etcd");
        let e = Etcd {
            child,
            endpoint: client,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = TcpStream::connect(&e.endpoint).is_ok()
                && ctl(&e.endpoint, &["endpoint", "health"], None).0 == 0;
            if ok {
                return e;
            }
            assert!(Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run etcdctl against `endpoint`: (exit code, stdout, stderr). Bounded:
/// `timeout` stops long-running commands (watch) and anything that hangs.
fn ctl(endpoint: &str, args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut cmd = Command::new("timeout");
    // Commands that never end by themselves get a short, fixed lifetime.
    let short = matches!(args.first(), Some(&"watch") | Some(&"elect"));
    cmd.arg("-s").arg("INT").arg(if short { "3" } else { "20" });
    cmd.arg("etcdctl")
        .arg(format!("--endpoints={endpoint}"))
        .args(args);
    cmd.env("ETCDCTL_API", "3");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn etcdctl");
    if let Some(input) = stdin {
        let mut si = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = si.write_all(&input);
        });
    }
    let out = child.wait_with_output().expect("etcdctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One step of the script. `{rev+N}` in arguments is the revision before
/// the first write plus N; `{lease}` the last granted lease id (hex).
struct Step {
    args: &'static str,
    stdin: Option<Vec<u8>>,
    /// Remaining TTLs drift with time: compare only their sign.
    fuzzy_ttl: bool,
}

fn step(args: &'static str) -> Step {
    Step {
        args,
        stdin: None,
        fuzzy_ttl: false,
    }
}

fn with_stdin(args: &'static str, input: &str) -> Step {
    Step {
        args,
        stdin: Some(input.as_bytes().to_vec()),
        fuzzy_ttl: false,
    }
}

fn ttl_step(args: &'static str) -> Step {
    Step {
        args,
        stdin: None,
        fuzzy_ttl: true,
    }
}

fn script() -> Vec<Step> {
    vec![
        // KV basics.
        step("put foo bar -w json"),
        step("put foo2 bar2 -w json"),
        step("put foo3 bar3 -w json"),
        step("put zoo z -w json"),
        step("get foo -w json"),
        step("get foo --prefix -w json"),
        step("get foo --prefix --limit 2 -w json"),
        step("get foo --prefix --sort-by=MODIFY --order=DESCEND -w json"),
        step("get foo --prefix --sort-by=VALUE --order=ASCEND -w json"),
        step("get foo --prefix --keys-only -w json"),
        step("get foo --prefix --count-only -w json"),
        step("get --from-key a -w json"),
        step("get foo zoo -w json"),
        step("put foo bar-v2 --prev-kv -w json"),
        step("get foo --rev={rev+1} -w json"),
        step("get foo --prefix --rev={rev+2} -w json"),
        step("get nosuch -w json"),
        step("get foo"),
        step("del foo3 --prev-kv -w json"),
        step("del nosuch -w json"),
        step("put foo --ignore-value -w json"),
        step("put nosuch --ignore-value -w json"),
        step("put foo x --ignore-value -w json"),
        // Transactions (stdin form: compares, blank, success, blank, failure).
        with_stdin("txn -w json", "value(\"foo\") = \"bar-v2\"\n\nput foo bar-v3\nget foo2\n\nget zoo\n\n"),
        with_stdin("txn -w json", "mod(\"foo\") < \"2\"\n\nput foo never\n\nget zoo\nget foo --prefix\n\n"),
        with_stdin("txn -w json", "version(\"foo\") = \"3\"\ncreate(\"zoo\") > \"0\"\n\ndel foo2 --prev-kv\n\n\n"),
        with_stdin("txn -w json", "value(\"nosuch\") = \"x\"\n\n\nput nosuch y\n\n"),
        with_stdin("txn -w json", "\nput a 1\nput a 2\n\n\n"),
        with_stdin("txn", "version(\"zoo\") > \"0\"\n\nput zoo z2\n\n\n"),
        // Revisions: future, compaction, compacted.
        step("get foo --rev={rev+100} -w json"),
        step("compaction {rev+3}"),
        step("get foo --rev={rev+2} -w json"),
        step("get foo --rev={rev+3} -w json"),
        step("compaction {rev+3}"),
        step("compaction {rev+100}"),
        // Leases.
        step("lease grant 60 -w json"),
        step("put leased v --lease={lease} -w json"),
        step("put leased2 v --lease={lease} -w json"),
        ttl_step("lease timetolive {lease} --keys -w json"),
        ttl_step("lease keep-alive --once {lease} -w json"),
        step("lease list -w json"),
        step("lease revoke {lease} -w json"),
        step("get leased --prefix -w json"),
        step("lease timetolive {lease} -w json"),
        step("lease revoke {lease}"),
        step("put x y --lease=1234"),
        step("lease grant 1 -w json"),
        step("lease revoke {lease}"),
        step("lease grant 9000000001"),
        // Watch: replay from history with prev_kv, a compacted start.
        step("watch foo --prefix --rev={rev+4} --prev-kv -w json"),
        step("watch zoo --rev={rev+4} -w json"),
        step("watch foo --rev={rev+1}"),
        step("watch foo --rev={rev+1} -w json"),
        Step { args: "watch -i -w json", stdin: Some(b"watch zoo\nprogress\n".to_vec()), fuzzy_ttl: false },
        // Cluster and maintenance.
        step("member list -w json"),
        step("endpoint status -w json"),
        step("endpoint health -w json"),
        step("alarm list"),
        step("snapshot save {dir}/snap.db"),
        step("alarm disarm"),
        step("defrag"),
        step("member remove 1234"),
        step("member promote 1234"),
        step("member update 1234 --peer-urls=http://127.0.0.1:1"),
        step("auth enable"),
        step("auth disable"),
        // Serializable reads, ranges from a key.
        step("get foo --consistency=s -w json"),
        step("get a --from-key --limit 1 -w json"),
        step("get foo --prefix --limit 1 --sort-by=CREATE --order=DESCEND -w json"),
        step("get foo --prefix --sort-by=VERSION -w json"),
        // More compares: missing keys, lease and create targets.
        with_stdin("txn -w json", "mod(\"nosuch\") = \"0\"\ncreate(\"nosuch\") = \"0\"\n\nput made 1\n\n\n"),
        with_stdin("txn -w json", "lease(\"made\") = \"0\"\nversion(\"made\") != \"1\"\n\n\nget made\n\n"),
        with_stdin("txn -w json", "value(\"made\") > \"0\"\nvalue(\"made\") < \"2\"\n\ndel made --prev-kv\nput made2 x\n\n\n"),
        // Client-side recipes built on KV, Lease and Watch.
        step("lock mylock -- echo locked"),
        step("elect myelection proposal"),
        step("elect myelection --listen"),
        // Too large a request (value from stdin: arguments cannot be 2 MiB).
        Step { args: "put big", stdin: Some(vec![b'x'; 1_700_000]), fuzzy_ttl: false },
        step("del foo --prefix --prev-kv -w json"),
        step("get --prefix \"\" -w json"),
    ]
}

/// Placeholders for server-chosen ids, numbered in order of appearance.
#[derive(Default)]
struct Norm {
    base: Option<i64>,
    ids: HashMap<String, usize>,
    last_lease: Option<i64>,
}

impl Norm {
    fn id(&mut self, raw: String) -> Value {
        let n = self.ids.len();
        let k = *self.ids.entry(raw).or_insert(n);
        Value::String(format!("<id{k}>"))
    }

    fn rev(&self, v: &Value) -> Value {
        let n = v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()));
        match (n, self.base) {
            (Some(0), _) => Value::from(0),
            (Some(r), Some(b)) => Value::String(format!("rev{:+}", r - b)),
            _ => v.clone(),
        }
    }

    fn value(&mut self, key: &str, v: &Value, fuzzy_ttl: bool) -> Value {
        match v {
            Value::Object(m) => {
                let mut out = serde_json::Map::new();
                for (k, x) in m {
                    out.insert(k.clone(), self.value(k, x, fuzzy_ttl));
                }
                Value::Object(out)
            }
            Value::Array(a) => {
                Value::Array(a.iter().map(|x| self.value(key, x, fuzzy_ttl)).collect())
            }
            _ => match key {
                "revision" | "create_revision" | "mod_revision" | "compact_revision"
                | "CompactRevision" => self.rev(v),
                "cluster_id" | "member_id" | "ID" | "id" | "leader" => {
                    if key == "ID" {
                        if let Some(n) = v
                            .as_i64()
                            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                        {
                            self.last_lease = Some(n);
                        }
                    }
                    self.id(v.to_string())
                }
                "raft_term" | "raftTerm" | "raftIndex" | "raftAppliedIndex" | "dbSize"
                | "dbSizeInUse" | "took" | "version" => Value::String("<masked>".into()),
                "TTL" if fuzzy_ttl => Value::String(
                    if v.as_i64().unwrap_or(0) > 0 {
                        "+"
                    } else {
                        "<=0"
                    }
                    .into(),
                ),
                _ => v.clone(),
            },
        }
    }

    fn text(&mut self, s: &str, fuzzy_ttl: bool) -> String {
        let mut out = Vec::new();
        for line in s.lines() {
            let line = mask_ports(line.trim_end());
            match serde_json::from_str::<Value>(&line) {
                Ok(v @ (Value::Object(_) | Value::Array(_))) => {
                    out.push(self.value("", &v, fuzzy_ttl).to_string());
                }
                _ => out.push(self.words(&line)),
            }
        }
        out.join("\n")
    }

    /// Plain-text output: revisions in "compacted revision N" and hex lease
    /// ids become placeholders too.
    fn words(&mut self, line: &str) -> String {
        let words: Vec<String> = line
            .split(' ')
            .map(|w| {
                if let (Some(n), Some(_)) = (w.parse::<i64>().ok(), self.base) {
                    if line.starts_with("compacted revision")
                        || line.starts_with("progress notify:")
                    {
                        return self.rev(&Value::from(n)).to_string();
                    }
                }
                // Lease ids appear alone or as the last part of a key
                // ("election/<lease>").
                let parts: Vec<String> = w
                    .split('/')
                    .map(|p| {
                        let hex = p.trim_matches(|c: char| !c.is_ascii_hexdigit());
                        if hex.len() >= 12 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                            if let Ok(n) = i64::from_str_radix(hex, 16) {
                                return p.replace(hex, &self.id(n.to_string()).to_string());
                            }
                        }
                        p.to_string()
                    })
                    .collect();
                parts.join("/")
            })
            .collect();
        words.join(" ")
    }
}

fn mask_ports(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("127.0.0.1:") {
        out.push_str(&rest[..i + 10]);
        rest = &rest[i + 10..];
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        out.push_str("PORT");
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// Only etcdctl's own error lines: its gRPC retry logging carries times.
fn errors_of(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| l.starts_with("Error"))
        .map(mask_ports)
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_script(endpoint: &str) -> Vec<String> {
    let mut norm = Norm::default();
    let mut results = Vec::new();
    for st in script() {
        let mut args = st.args.to_string();
        while let Some(i) = args.find("{rev+") {
            let j = i + args[i..].find('}').expect("template");
            let n: i64 = args[i + 5..j].parse().expect("offset");
            let abs = norm.base.expect("base revision known") + n;
            args.replace_range(i..=j, &abs.to_string());
        }
        let snap_dir = std::env::temp_dir().join(format!("etcd-diff-{}", std::process::id()));
        std::fs::create_dir_all(&snap_dir).expect("snapshot dir");
        args = args.replace("{dir}", &snap_dir.display().to_string());
        if let Some(l) = norm.last_lease {
            args = args.replace("{lease}", &format!("{l:x}"));
        }
        let argv: Vec<String> = split_args(&args);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let (code, out, err) = ctl(endpoint, &argv, st.stdin.as_deref());
        if norm.base.is_none() {
            // The first step is a put: its header revision minus one.
            let v: Value = serde_json::from_str(out.trim()).expect("first put's json");
            norm.base = v["header"]["revision"].as_i64().map(|r| r - 1);
        }
        let out = norm.text(&out, st.fuzzy_ttl);
        results.push(format!(
            "$ etcdctl {}\nexit {code}\n{out}\n{}",
            st.args,
            errors_of(&err)
        ));
    }
    results
}

/// Split on spaces, keeping "double quoted" words together.
fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[test]
fn etcdctl_session_matches_real_etcd() {
    if !have("etcd", "--version") || !have("etcdctl", "version") {
        eprintln!("SKIPPED: etcd/etcdctl not installed (scripts/deps/etcd.sh installs them)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = Etcd::start(dir.path());
    let want = run_script(&etcd.endpoint);
    drop(etcd);

    let mut janus = Janus::start(&dir.path().join("janus"), &[]);
    janus.wait_healthy(Duration::from_secs(30));
    let got = run_script(&janus.etcd);
    janus.kill9();

    let mut diffs = Vec::new();
    for (w, g) in want.iter().zip(&got) {
        if w != g {
            diffs.push(format!("--- etcd\n{w}\n+++ janus\n{g}\n"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} of {} steps differ:\n{}",
        diffs.len(),
        want.len(),
        diffs.join("\n")
    );
}

/// The JSON gateway with curl: (path, body). `{rev+N}` as in the etcdctl
/// script.
const GATEWAY: &[(&str, &str)] = &[
    ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#),
    (
        "/v3/kv/put",
        r#"{"key":"Zm9vMg==","value":"YmFyMg==","prev_kv":true}"#,
    ),
    (
        "/v3/kv/put",
        r#"{"key":"Zm9vMg==","value":"YmFyMw==","prev_kv":true}"#,
    ),
    ("/v3/kv/range", r#"{"key":"Zm9v"}"#),
    (
        "/v3/kv/range",
        r#"{"key":"Zm9v","range_end":"Zm9w","sort_order":"DESCEND","sort_target":"MOD"}"#,
    ),
    (
        "/v3/kv/range",
        r#"{"key":"Zm9v","range_end":"Zm9w","count_only":true}"#,
    ),
    ("/v3/kv/range", r#"{"key":"Zm9v","revision":"{rev+1}"}"#),
    ("/v3/kv/range", r#"{"key":"Zm9v","revision":"{rev+100}"}"#),
    ("/v3/kv/range", r#"{}"#),
    (
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmFy"}],"success":[{"request_put":{"key":"Zm9v","value":"YmF6"}},{"request_range":{"key":"Zm9vMg=="}}],"failure":[]}"#,
    ),
    (
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","result":"GREATER","target":"MOD","mod_revision":"100"}],"success":[],"failure":[{"request_delete_range":{"key":"Zm9vMg==","prev_kv":true}}]}"#,
    ),
    ("/v3/kv/deleterange", r#"{"key":"Zm9v","prev_kv":true}"#),
    ("/v3/lease/grant", r#"{"TTL":"60","ID":"12345"}"#),
    (
        "/v3/kv/put",
        r#"{"key":"bGVhc2Vk","value":"eA==","lease":"12345"}"#,
    ),
    ("/v3/lease/timetolive", r#"{"ID":"12345","keys":true}"#),
    ("/v3/lease/leases", r#"{}"#),
    ("/v3/lease/revoke", r#"{"ID":"12345"}"#),
    ("/v3/lease/revoke", r#"{"ID":"12345"}"#),
    ("/v3/kv/range", r#"{"key":"bGVhc2Vk"}"#),
    ("/v3/kv/compaction", r#"{"revision":"{rev+100}"}"#),
    ("/v3/kv/compaction", r#"{"revision":"{rev+2}"}"#),
    ("/v3/kv/range", r#"{"key":"Zm9v","revision":"{rev+1}"}"#),
    ("/v3/cluster/member/list", r#"{}"#),
    ("/v3/maintenance/status", r#"{}"#),
    (
        "/v3/watch",
        r#"{"create_request":{"key":"Zm9v","range_end":"Zm9w","start_revision":"{rev+2}","prev_kv":true}}"#,
    ),
];

fn curl(endpoint: &str, path: &str, body: &str) -> (i32, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            if path == "/v3/watch" { "2" } else { "10" },
            "-X",
            "POST",
        ])
        .arg(format!("http://{endpoint}{path}"))
        .args(["-d", body, "-w", "\nHTTP %{http_code}"])
        .output()
        .expect("curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn run_gateway(endpoint: &str) -> Vec<String> {
    let mut norm = Norm::default();
    let mut results = Vec::new();
    for (path, body) in GATEWAY {
        let mut body = body.to_string();
        while let Some(i) = body.find("{rev+") {
            let j = i + body[i..].find('}').expect("template");
            let n: i64 = body[i + 5..j].parse().expect("offset");
            let abs = norm.base.expect("base revision known") + n;
            body.replace_range(i..=j, &abs.to_string());
        }
        let (code, out) = curl(endpoint, path, &body);
        if norm.base.is_none() {
            let first = out.lines().next().unwrap_or_default();
            let v: Value = serde_json::from_str(first).expect("first put's json");
            norm.base = v["header"]["revision"]
                .as_str()
                .and_then(|r| r.parse::<i64>().ok())
                .map(|r| r - 1);
        }
        results.push(format!(
            "POST {path} {body}\nexit {code}\n{}",
            norm.text(&out, false)
        ));
    }
    results
}

#[test]
fn json_gateway_matches_real_etcd() {
    if !have("etcd", "--version") || !have("etcdctl", "version") || !have("curl", "--version") {
        eprintln!("SKIPPED: etcd/etcdctl/curl not installed (scripts/deps/etcd.sh installs them)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = Etcd::start(dir.path());
    let want = run_gateway(&etcd.endpoint);
    drop(etcd);

    let mut janus = Janus::start(&dir.path().join("janus"), &[]);
    janus.wait_healthy(Duration::from_secs(30));
    let got = run_gateway(&janus.etcd);
    let livez = curl(&janus.etcd, "/livez", "");
    janus.kill9();

    let mut diffs = Vec::new();
    for (w, g) in want.iter().zip(&got) {
        if w != g {
            diffs.push(format!("--- etcd\n{w}\n+++ janus\n{g}\n"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} of {} requests differ:\n{}",
        diffs.len(),
        want.len(),
        diffs.join("\n")
    );
    assert!(
        livez.1.contains("HTTP 405") || livez.1.contains("ok"),
        "{livez:?}"
    );
}
