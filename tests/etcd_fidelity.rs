//! Small etcd behaviours compared with a real etcd (Debian's etcd-server,
//! 3.4, started here on free loopback ports) on fresh servers, so that
//! revisions agree without translation: HashKV's header, watches with a
//! negative start revision, the JSON gateway's unknown paths, `/health`
//! under the NOSPACE alarm, `etcdctl defrag`'s line and `etcdctl -w
//! protobuf`'s bytes.
//!
//! Needs etcd, etcdctl and curl (scripts/deps/etcd.sh); the watch scenarios
//! also the Python venv. A missing tool fails the test.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use janus_tests::{free_port, Janus};
use serde_json::Value;

/// A real etcd on free loopback ports; killed on drop.
struct Etcd {
    child: Child,
    endpoint: String,
}

impl Etcd {
    fn start(dir: &Path, extra: &[&str]) -> Etcd {
        let client = format!("127.0.0.1:{}", free_port());
        let peer = format!("127.0.0.1:{}", free_port());
        std::fs::create_dir_all(dir).expect("etcd dir");
        let log = std::fs::File::create(dir.join("etcd.log")).expect("etcd log");
        let child = Command::new("etcd")
            .args(["--name", "default", "--data-dir"])
            .arg(dir.join("etcd-data"))
            .arg(format!("--listen-client-urls=http://{client}"))
            .arg(format!("--advertise-client-urls=http://{client}"))
            .arg(format!("--listen-peer-urls=http://{peer}"))
            .arg(format!("--initial-advertise-peer-urls=http://{peer}"))
            .arg(format!("--initial-cluster=default=http://{peer}"))
            .args(extra)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn etcd (scripts/deps/etcd.sh installs it)");
        let e = Etcd {
            child,
            endpoint: client,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(TcpStream::connect(&e.endpoint).is_ok()
            && ctl(&e.endpoint, &["endpoint", "health"], None).0 == 0)
        {
            assert!(Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        e
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn janus(dir: &Path, extra: &[&str]) -> Janus {
    let j = Janus::start(&dir.join("janus"), extra);
    j.wait_healthy(Duration::from_secs(30));
    j
}

/// etcdctl (API 3) against `endpoint` (as given: with or without a
/// scheme): (exit code, stdout bytes, stderr).
fn ctl_bytes(endpoint: &str, args: &[&str], stdin: Option<&str>) -> (i32, Vec<u8>, String) {
    let mut child = Command::new("timeout")
        .args(["-s", "INT", "20", "etcdctl"])
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .env("ETCDCTL_API", "3")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn etcdctl (scripts/deps/etcd.sh installs it)");
    if let Some(input) = stdin {
        let mut si = child.stdin.take().expect("stdin");
        si.write_all(input.as_bytes()).expect("etcdctl stdin");
    }
    let out = child.wait_with_output().expect("etcdctl");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let (code, out, err) = ctl_bytes(endpoint, args, stdin);
    (code, String::from_utf8_lossy(&out).into_owned(), err)
}

/// etcdctl's own error lines (its gRPC retry logging carries times).
fn errors_of(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| l.starts_with("Error") || l.starts_with("Failed"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `s` with every server-chosen id, term, hash and the endpoint masked.
fn mask_json(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let masked = matches!(
                        k.as_str(),
                        "cluster_id" | "member_id" | "raft_term" | "hash" | "Endpoint"
                    );
                    let x = if masked {
                        Value::String("<masked>".into())
                    } else {
                        mask_json(x)
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(mask_json).collect()),
        x => x.clone(),
    }
}

fn assert_same(what: &str, want: &[String], got: &[String]) {
    let diffs: Vec<String> = want
        .iter()
        .zip(got)
        .filter(|(w, g)| w != g)
        .map(|(w, g)| format!("--- etcd\n{w}\n+++ janus\n{g}"))
        .collect();
    assert_eq!(want.len(), got.len(), "{what}: step counts differ");
    assert!(
        diffs.is_empty(),
        "{what}: {} of {} differ:\n{}",
        diffs.len(),
        want.len(),
        diffs.join("\n")
    );
}

fn hashkv_session(ep: &str) -> Vec<String> {
    for v in ["1", "2", "3"] {
        assert_eq!(ctl(ep, &["put", "k", v], None).0, 0);
    }
    let mut out = Vec::new();
    for args in [
        &["endpoint", "hashkv", "-w", "json"][..],
        &["endpoint", "hashkv", "--rev=2", "-w", "json"],
        &["endpoint", "hashkv", "--rev=3", "-w", "json"],
    ] {
        let (code, stdout, stderr) = ctl(ep, args, None);
        let v: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout} {stderr}"));
        out.push(format!("{args:?}: exit {code} {}", mask_json(&v)));
    }
    out
}

/// HashKV's header carries the current revision, whichever revision is
/// hashed; compact_revision is -1 before the first compaction.
#[test]
fn hashkv_header_matches_real_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = Etcd::start(&dir.path().join("etcd"), &[]);
    let want = hashkv_session(&etcd.endpoint);
    drop(etcd);
    let j = janus(dir.path(), &[]);
    let got = hashkv_session(&j.etcd);
    assert!(want[1].contains("\"revision\":4"), "{want:?}");
    assert_same("hashkv", &want, &got);
}

const VENV_PYTHON: &str = "/opt/janus-etcd-venv/bin/python";

fn python_stubs(out: &Path) {
    let protos = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/etcd");
    let st = Command::new(VENV_PYTHON)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&protos)
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .args([
            "mvccpb/kv.proto",
            "authpb/auth.proto",
            "etcdserverpb/rpc.proto",
            "v3lockpb/v3lock.proto",
            "v3electionpb/v3election.proto",
        ])
        .status()
        .expect("the Python venv (scripts/deps/etcd.sh installs it)");
    assert!(st.success(), "generating Python stubs");
}

/// Scenarios of crates/etcd/testdata/etcd_grpc_diff.py run on a fresh
/// server (never compacted: etcd's compacted revision is then -1).
fn scenarios(stubs: &Path, endpoint: &str, names: &[&str]) -> Vec<String> {
    let script: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/etcd/testdata/etcd_grpc_diff.py");
    let out = Command::new(VENV_PYTHON)
        .arg(script)
        .arg(stubs)
        .arg(endpoint)
        .args(names)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "scenarios against {endpoint}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A watch whose start revision is negative: at etcd's compacted revision
/// (-1 on a fresh server) it watches from now on; below it, it is created
/// and then canceled with compact_revision.
#[test]
fn negative_watch_start_matches_real_etcd_on_fresh_servers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stubs = dir.path().join("stubs");
    std::fs::create_dir_all(&stubs).expect("stubs dir");
    python_stubs(&stubs);
    let names = [
        "watch_negative_start_revision",
        "hashkv_past_revision_header",
    ];
    let etcd = Etcd::start(&dir.path().join("etcd"), &[]);
    let want = scenarios(&stubs, &etcd.endpoint, &names);
    drop(etcd);
    let j = janus(dir.path(), &[]);
    let got = scenarios(&stubs, &j.etcd, &names);
    assert_eq!(want.len(), names.len(), "{want:?}");
    // On a fresh server -1 is a live watch: it sees the next put.
    let watch = want
        .iter()
        .find(|l| l.contains("\"watch_negative_start_revision\""))
        .expect("the watch scenario ran");
    assert!(watch.contains("\"after a put, -1\", [{"), "{watch}");
    assert_same("scenarios", &want, &got);
}

/// curl: "status content-type\nbody" (header names differ in case only).
fn http(endpoint: &str, method: &str, path: &str, body: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "10", "-X", method])
        .arg(format!("http://{endpoint}{path}"))
        .args(["-d", body])
        .output()
        .expect("curl (scripts/deps/etcd.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("none");
    let ctype = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map_or("", |(_, v)| v.trim());
    format!("{status} {ctype}\n{body:?}")
}

const GATEWAY_MISSES: &[(&str, &str)] = &[
    ("POST", "/v3/kv/nosuch"),
    ("POST", "/v3/nosuch"),
    ("POST", "/v3/"),
    ("POST", "/v3/kv/range/x"),
    ("GET", "/v3/kv/nosuch"),
    ("PUT", "/v3/maintenance/nosuch"),
    ("GET", "/v3/kv/range"),
    ("GET", "/v3/watch"),
];

/// Paths under /v3/ the gateway has no method for: grpc-gateway's 404
/// ("Not Found" as plain text); a known path with another method: 405.
#[test]
fn gateway_unknown_paths_match_real_etcd() {
    let run = |ep: &str| -> Vec<String> {
        GATEWAY_MISSES
            .iter()
            .map(|(m, p)| format!("{m} {p}: {}", http(ep, m, p, "{}")))
            .collect()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = Etcd::start(&dir.path().join("etcd"), &[]);
    let want = run(&etcd.endpoint);
    drop(etcd);
    let j = janus(dir.path(), &[]);
    let got = run(&j.etcd);
    assert!(want[0].contains("404"), "{want:?}");
    assert_same("gateway", &want, &got);
}

/// `/health` for a few queries: "status content-type\nbody". etcd 3.5
/// (which Janus answers as) adds a `reason` field that 3.4 lacks: it is
/// checked, then dropped.
fn health_session(ep: &str, janus: bool) -> Vec<String> {
    [
        "/health",
        "/health?exclude=NOSPACE",
        "/health?serializable=true",
    ]
    .iter()
    .map(|p| {
        let r = http(ep, "GET", p, "");
        if !janus {
            return format!("{p}: {r}");
        }
        let reason = if r.starts_with("503") && !p.contains("exclude") {
            "ALARM NOSPACE"
        } else {
            ""
        };
        let field = format!(r#",\"reason\":\"{reason}\""#);
        assert!(r.contains(&field), "{p}: {r} lacks {field}");
        format!("{p}: {}", r.replace(&field, ""))
    })
    .collect()
}

/// Put 5 KB values until the quota refuses one (NOSPACE raised).
fn fill_quota(ep: &str) {
    let big = "a".repeat(5000);
    for _ in 0..200 {
        let (code, _, err) = ctl(ep, &["put", "big", &big], None);
        if code != 0 {
            assert!(err.contains("database space exceeded"), "{err}");
            return;
        }
    }
    panic!("the quota never refused a write");
}

/// `/health` is 503 `{"health":"false",...}` while NOSPACE is raised,
/// healthy again with `?exclude=NOSPACE`.
#[test]
fn health_under_nospace_matches_real_etcd() {
    let quota = "--quota-backend-bytes=200000";
    let run = |ep: &str, janus: bool| {
        let mut out = health_session(ep, janus);
        fill_quota(ep);
        out.extend(health_session(ep, janus));
        out
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = Etcd::start(&dir.path().join("etcd"), &[quota]);
    let want = run(&etcd.endpoint, false);
    drop(etcd);
    let j = janus(dir.path(), &[quota]);
    let got = run(&j.etcd, true);
    assert!(
        want[3].starts_with("/health: 503") && want[3].contains(r#"\"health\":\"false\""#),
        "{want:?}"
    );
    assert_same("health", &want, &got);
}

/// `etcdctl defrag` names the endpoint as given.
#[test]
fn defrag_line_matches_real_etcd() {
    let run = |ep: &str| {
        let (code, out, err) = ctl(ep, &["defrag"], None);
        format!(
            "exit {code}\n{}\n{}",
            out.replace(ep, "EP"),
            errors_of(&err)
        )
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = Etcd::start(&dir.path().join("etcd"), &[]);
    let want = vec![run(&etcd.endpoint)];
    drop(etcd);
    let j = janus(dir.path(), &[]);
    let got = vec![run(&j.etcd)];
    assert_eq!(
        want[0], "exit 0\nFinished defragmenting etcd member[EP]\n\n",
        "{want:?}"
    );
    assert_same("defrag", &want, &got);
}

fn varint(b: &[u8], i: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = *b.get(*i).expect("truncated varint");
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A response message (as etcdctl -w protobuf prints it) with its header's
/// cluster_id, member_id and raft_term (fields 1, 2 and 4, server-chosen)
/// set to 1; every other byte as it was.
fn normalize_pb(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let tag = varint(b, &mut i);
        let end = match tag & 7 {
            0 => {
                varint(b, &mut i);
                i
            }
            2 => {
                let len = varint(b, &mut i) as usize;
                i + len
            }
            w => panic!("unexpected wire type {w} in {b:?}"),
        };
        if tag != (1 << 3 | 2) {
            out.extend_from_slice(&b[start..end]);
            i = end;
            continue;
        }
        // The header: varint fields only.
        let mut h = Vec::new();
        while i < end {
            let t = varint(b, &mut i);
            assert_eq!(t & 7, 0, "header field wire type");
            let v = varint(b, &mut i);
            put_varint(&mut h, t);
            put_varint(&mut h, if matches!(t >> 3, 1 | 2 | 4) { 1 } else { v });
        }
        put_varint(&mut out, tag);
        put_varint(&mut out, h.len() as u64);
        out.extend_from_slice(&h);
    }
    out
}

fn protobuf_session(ep: &str) -> Vec<String> {
    let steps: &[(&[&str], Option<&str>)] = &[
        (&["put", "foo", "bar", "-w", "protobuf"], None),
        (&["put", "foo2", "bar2", "-w", "protobuf"], None),
        (&["put", "foo", "bar3", "--prev-kv", "-w", "protobuf"], None),
        (&["get", "foo", "-w", "protobuf"], None),
        (&["get", "foo", "--prefix", "-w", "protobuf"], None),
        (
            &["get", "foo", "--prefix", "--limit=1", "-w", "protobuf"],
            None,
        ),
        (
            &["get", "foo", "--prefix", "--keys-only", "-w", "protobuf"],
            None,
        ),
        (
            &[
                "get",
                "foo",
                "--prefix",
                "--order=DESCEND",
                "--sort-by=MODIFY",
                "-w",
                "protobuf",
            ],
            None,
        ),
        (&["get", "foo", "--rev=2", "-w", "protobuf"], None),
        (&["get", "nosuch", "-w", "protobuf"], None),
        (
            &["txn", "-w", "protobuf"],
            Some("value(\"foo\") = \"bar3\"\n\nput foo bar4\nget foo2\n\nget foo\n\n"),
        ),
        (
            &["del", "foo", "--prefix", "--prev-kv", "-w", "protobuf"],
            None,
        ),
        (&["get", "", "--prefix", "-w", "protobuf"], None),
    ];
    steps
        .iter()
        .map(|(args, stdin)| {
            let (code, out, err) = ctl_bytes(ep, args, *stdin);
            assert_eq!(code, 0, "{args:?}: {err}");
            format!("{args:?}: {:02x?}", normalize_pb(&out))
        })
        .collect()
}

/// `etcdctl -w protobuf` prints the response message's bytes: the same
/// bytes as etcd's for the same operations on a fresh server, but for the
/// header's ids and term.
#[test]
fn protobuf_output_matches_real_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = Etcd::start(&dir.path().join("etcd"), &[]);
    let want = protobuf_session(&etcd.endpoint);
    drop(etcd);
    let j = janus(dir.path(), &[]);
    let got = protobuf_session(&j.etcd);
    assert_same("protobuf", &want, &got);
}
