//! ZooKeeper 3.8 behaviours compared answer by answer with a real
//! ZooKeeper (Debian's package, started here; missing means failure): the
//! permissions each read op needs, createContainer's and create's flags,
//! which ops reject which path characters, and the keys of `mntr`, `conf`
//! and `envi`. Both servers get the same raw requests.

#[path = "zk_support.rs"]
mod zk_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use janus_tests::Janus;
use zk_support::{be_i32, four_letter, start_janus, Raw, RealZk};

/// A jute ustring; `None` is null (length -1).
fn nstring(s: Option<&str>) -> Vec<u8> {
    match s {
        None => be_i32(-1).to_vec(),
        Some(s) => {
            let mut v = be_i32(s.len() as i32).to_vec();
            v.extend_from_slice(s.as_bytes());
            v
        }
    }
}

fn bytes_string(b: &[u8]) -> Vec<u8> {
    let mut v = be_i32(b.len() as i32).to_vec();
    v.extend_from_slice(b);
    v
}

fn acl_world() -> Vec<u8> {
    let mut b = be_i32(1).to_vec();
    b.extend_from_slice(&be_i32(31));
    b.extend_from_slice(&nstring(Some("world")));
    b.extend_from_slice(&nstring(Some("anyone")));
    b
}

/// Nobody this test authenticates as.
fn acl_digest() -> Vec<u8> {
    let mut b = be_i32(1).to_vec();
    b.extend_from_slice(&be_i32(31));
    b.extend_from_slice(&nstring(Some("digest")));
    b.extend_from_slice(&nstring(Some("someone:AAAAAAAAAAAAAAAAAAAAAAAAAAA=")));
    b
}

fn create_body(path: &[u8], flags: i32, acl: &[u8], ttl: Option<i64>) -> Vec<u8> {
    let mut b = path.to_vec();
    b.extend_from_slice(&bytes_string(b"x"));
    b.extend_from_slice(acl);
    b.extend_from_slice(&be_i32(flags));
    if let Some(t) = ttl {
        b.extend_from_slice(&t.to_be_bytes());
    }
    b
}

fn multi_header(op: i32, done: bool) -> Vec<u8> {
    let mut b = be_i32(op).to_vec();
    b.push(done as u8);
    b.extend_from_slice(&be_i32(-1));
    b
}

/// A multi (or multiRead) of one op with `body`.
fn multi_of(op: i32, body: &[u8]) -> Vec<u8> {
    let mut b = multi_header(op, false);
    b.extend_from_slice(body);
    b.extend_from_slice(&multi_header(-1, true));
    b
}

/// Send and return the error, or `None` if the server closed instead.
fn try_call(c: &mut Raw, op: i32, body: &[u8]) -> Option<(i32, Vec<u8>)> {
    let xid = c.send(op, body);
    loop {
        let (rx, _, err, body) = c.recv()?;
        if rx == -1 {
            continue;
        }
        assert_eq!(rx, xid, "replies in order");
        return Some((err, body));
    }
}

/// The error and, for a multi (`op` 14 or 22) answered OK, its first
/// result's (type, err).
fn summary(op: i32, r: &Option<(i32, Vec<u8>)>) -> String {
    match r {
        None => "closed".into(),
        Some((err, b)) if *err == 0 && (op == 14 || op == 22) && b.len() >= 9 => {
            let t = i32::from_be_bytes(b[0..4].try_into().expect("4"));
            let e = i32::from_be_bytes(b[5..9].try_into().expect("4"));
            format!("{err}[{t}/{e}]")
        }
        Some((err, _)) => err.to_string(),
    }
}

/// The path a create answers with (its first field).
fn created_path(b: &[u8]) -> String {
    let n = i32::from_be_bytes(b[0..4].try_into().expect("len")) as usize;
    String::from_utf8_lossy(&b[4..4 + n]).into_owned()
}

/// Janus with top-level settings as well as `[zookeeper]` ones.
fn start_janus_with(dir: &std::path::Path, top: &str) -> Janus {
    std::fs::create_dir_all(dir).expect("dir");
    let cfg = dir.join("janus.toml");
    std::fs::write(
        &cfg,
        format!("{top}[zookeeper]\nfour_letter_words = [\"*\"]\n"),
    )
    .expect("config");
    let j = Janus::start(
        &dir.join("data"),
        &["--config", cfg.to_str().expect("utf-8 path")],
    );
    j.wait_healthy(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    while four_letter(&j.zk, "ruok") != "imok" {
        assert!(
            Instant::now() < deadline,
            "janus zookeeper port not answering"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    j
}

/// Every read op on a node whose ACL denies the caller everything:
/// `exists` (with and without a watch), `sync`, `getEphemerals`, the watch
/// ops need no permission; getData, getChildren(2), getACL,
/// getAllChildrenNumber and multiRead's ops need READ (getACL: READ or
/// ADMIN). The exists watch is set, though its event stays unsent.
#[test]
fn read_permissions_match_zookeeper() {
    let real = RealZk::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let j = start_janus(tmp.path(), "");
    let run = |addr: &str| -> Vec<(String, String)> {
        let mut c = Raw::connect(addr);
        let p = nstring(Some("/secret"));
        let with = |extra: &[u8]| {
            let mut b = p.clone();
            b.extend_from_slice(extra);
            b
        };
        let mut get_data = p.clone();
        get_data.push(0);
        let script: Vec<(&str, i32, Vec<u8>)> = vec![
            ("create", 1, create_body(&p, 0, &acl_digest(), None)),
            ("exists", 3, with(&[0])),
            ("exists watch", 3, with(&[1])),
            ("checkWatches data", 17, with(&be_i32(2))),
            ("getData", 4, with(&[1])),
            ("getChildren", 8, with(&[1])),
            ("getChildren2", 12, with(&[0])),
            ("getACL", 6, p.clone()),
            ("getAllChildrenNumber", 104, p.clone()),
            ("sync", 9, p.clone()),
            ("getEphemerals", 103, p.clone()),
            ("checkWatches child", 17, with(&be_i32(1))),
            ("addWatch", 106, with(&be_i32(0))),
            ("checkWatches any", 17, with(&be_i32(3))),
            ("removeWatches any", 18, with(&be_i32(3))),
            ("multiRead getData", 22, multi_of(4, &get_data)),
            ("multiRead getChildren", 22, multi_of(8, &get_data)),
            ("multi check", 14, multi_of(13, &with(&be_i32(-1)))),
        ];
        script
            .into_iter()
            .map(|(label, op, body)| (label.to_string(), summary(op, &try_call(&mut c, op, &body))))
            .collect()
    };
    let want = run(&real.addr);
    let got = run(&j.zk);
    assert_eq!(got, want, "janus (left) vs ZooKeeper (right)");
    assert!(got.contains(&("exists".to_string(), "0".to_string())));
}

/// Each create op with every flag value: the error, the name (sequential
/// or not) and, after a child came and went, whether the node was reaped
/// as a container. createContainer makes a container whatever the
/// ephemeral bit says and honours the sequential bit; create/create2 with
/// the container flag make a plain node; TTL flags need createTTL.
#[test]
fn create_flags_match_zookeeper() {
    let real = RealZk::start_with(&["-Dznode.container.checkIntervalMs=300"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let j = start_janus_with(tmp.path(), "container_check_ms = 300\n");
    let run = |addr: &str| -> (Vec<String>, Vec<String>) {
        let mut c = Raw::connect(addr);
        assert_eq!(c.create("/d", 0), 0);
        let mut answers = Vec::new();
        let mut made = Vec::new();
        for (op, ttl) in [(19, None), (21, Some(60_000i64)), (15, None), (1, None)] {
            for flags in [-1, 0, 1, 2, 3, 4, 5, 6, 7, 99] {
                let p = nstring(Some(&format!("/d/n{op}_{flags}-")));
                let r = try_call(&mut c, op, &create_body(&p, flags, &acl_world(), ttl));
                match r {
                    Some((0, body)) => {
                        let path = created_path(&body);
                        answers.push(format!("op {op} flags {flags}: {path}"));
                        // Ephemerals cannot have children.
                        if flags != 1 && flags != 3 || op == 19 {
                            made.push(path);
                        }
                    }
                    other => {
                        answers.push(format!("op {op} flags {flags}: {}", summary(op, &other)))
                    }
                }
            }
        }
        for path in &made {
            let child = format!("{path}/c");
            assert_eq!(c.create(&child, 0), 0, "{child}");
            let mut b = nstring(Some(&child));
            b.extend_from_slice(&be_i32(-1));
            assert_eq!(c.call(2, &b).0, 0, "delete {child}");
        }
        // Containers that had a child and are empty go within a few checks.
        std::thread::sleep(Duration::from_secs(3));
        let mut left = Vec::new();
        for path in &made {
            let mut b = nstring(Some(path));
            b.push(0);
            let (err, _, _) = c.call(3, &b);
            left.push(format!(
                "{path}: {}",
                if err == 0 { "kept" } else { "reaped" }
            ));
        }
        (answers, left)
    };
    let want = run(&real.addr);
    let got = run(&j.zk);
    assert_eq!(got.0, want.0, "answers: janus (left) vs ZooKeeper (right)");
    assert_eq!(got.1, want.1, "reaping: janus (left) vs ZooKeeper (right)");
    assert!(
        got.0
            .contains(&"op 19 flags 2: /d/n19_2-0000000002".to_string()),
        "{:?}",
        got.0
    );
}

/// Paths with characters `PathUtils.validatePath` refuses (controls,
/// C1, the private-use and surrogate range — so characters beyond the BMP
/// — and U+FFF0..U+FFFF, which includes what invalid UTF-8 decodes to),
/// plus "", null and malformed paths, through every op: the writes that
/// validate answer BADARGUMENTS, the reads NONODE; "" reads the root;
/// null is MARSHALLINGERROR where ZooKeeper's handler trips over it.
#[test]
fn path_validation_matches_zookeeper() {
    let real = RealZk::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let j = start_janus(tmp.path(), "");
    let paths: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("U+0001", Some("/v/a\u{1}".into())),
        ("U+001F", Some("/v/a\u{1f}".into())),
        ("U+007F", Some("/v/a\u{7f}".into())),
        ("U+0085", Some("/v/a\u{85}".into())),
        ("U+009F", Some("/v/a\u{9f}".into())),
        ("U+00A0", Some("/v/a\u{a0}".into())),
        ("U+E000", Some("/v/a\u{e000}".into())),
        ("U+F8FF", Some("/v/a\u{f8ff}".into())),
        ("U+F900", Some("/v/a\u{f900}".into())),
        ("U+FFF0", Some("/v/a\u{fff0}".into())),
        ("U+FFFD", Some("/v/a\u{fffd}".into())),
        ("emoji", Some("/v/a\u{1F600}".into())),
        ("NUL", Some("/v/a\0".into())),
        ("bad UTF-8", Some(b"/v/a\xff".to_vec())),
        ("empty", Some(Vec::new())),
        ("null", None),
        ("no slash", Some("v".into())),
        ("dot", Some("/v/.".into())),
        ("trailing slash", Some("/v/".into())),
    ];
    let run = |addr: &str| -> Vec<String> {
        let mut c = Raw::connect(addr);
        assert_eq!(c.create("/v", 0), 0);
        let mut out = Vec::new();
        for (name, p) in &paths {
            let s = match p {
                Some(b) => bytes_string(b),
                None => be_i32(-1).to_vec(),
            };
            let with = |extra: &[u8]| {
                let mut b = s.clone();
                b.extend_from_slice(extra);
                b
            };
            let mut set_data = s.clone();
            set_data.extend_from_slice(&bytes_string(b"y"));
            set_data.extend_from_slice(&be_i32(-1));
            let mut set_acl = s.clone();
            set_acl.extend_from_slice(&acl_world());
            set_acl.extend_from_slice(&be_i32(-1));
            let ops: Vec<(&str, i32, Vec<u8>)> = vec![
                ("create", 1, create_body(&s, 0, &acl_world(), None)),
                ("create seq", 1, create_body(&s, 2, &acl_world(), None)),
                ("delete", 2, with(&be_i32(-1))),
                ("exists", 3, with(&[0])),
                ("exists watch", 3, with(&[1])),
                ("getData", 4, with(&[0])),
                ("setData", 5, set_data),
                ("getACL", 6, s.clone()),
                ("setACL", 7, set_acl),
                ("getChildren", 8, with(&[0])),
                ("sync", 9, s.clone()),
                ("getChildren2", 12, with(&[0])),
                ("check", 13, with(&be_i32(-1))),
                ("multi check", 14, multi_of(13, &with(&be_i32(-1)))),
                (
                    "multi create",
                    14,
                    multi_of(1, &create_body(&s, 0, &acl_world(), None)),
                ),
                ("multiRead", 22, multi_of(4, &with(&[0]))),
                ("getEphemerals", 103, s.clone()),
                ("getAllChildrenNumber", 104, s.clone()),
                ("addWatch", 106, with(&be_i32(0))),
                (
                    "createContainer",
                    19,
                    create_body(&s, 0, &acl_world(), None),
                ),
                (
                    "createTTL",
                    21,
                    create_body(&s, 5, &acl_world(), Some(1000)),
                ),
            ];
            for (label, op, body) in ops {
                let r = try_call(&mut c, op, &body);
                let text = summary(op, &r);
                out.push(format!("{name} {label}: {text}"));
                if r.is_none() {
                    c = Raw::connect(addr);
                }
            }
        }
        out
    };
    let want = run(&real.addr);
    let got = run(&j.zk);
    let diff: Vec<_> = got
        .iter()
        .zip(&want)
        .filter(|(g, w)| g != w)
        .map(|(g, w)| format!("janus {g} | zookeeper {w}"))
        .collect();
    assert!(diff.is_empty(), "{diff:#?}");
    assert_eq!(got.len(), want.len());
    assert!(got.contains(&"emoji create: -8".to_string()));
    assert!(got.contains(&"empty exists: 0".to_string()));
    assert!(got.contains(&"null exists: -5".to_string()));
}

fn keys(text: &str, sep: char) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.split_once(sep).map(|(k, _)| k.to_string()))
        .collect()
}

/// `mntr`, `conf` and `envi` print the keys a standalone ZooKeeper 3.8
/// prints (values differ). `mntr`'s per-namespace summaries
/// (`zk_*_<top-level node>_{read,write}_per_namespace`) are left out: they
/// appear as requests touch top-level nodes.
#[test]
fn four_letter_word_keys_match_zookeeper() {
    let real = RealZk::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let j = start_janus(tmp.path(), "");
    // Some traffic first, so that nothing is printed only once used.
    for addr in [&real.addr, &j.zk] {
        let mut c = Raw::connect(addr);
        assert_eq!(c.create("/k", 0), 0);
    }
    let mntr = |addr: &str| -> BTreeSet<String> {
        keys(&four_letter(addr, "mntr"), '\t')
            .into_iter()
            .filter(|k| !k.ends_with("_per_namespace"))
            .collect()
    };
    let want = mntr(&real.addr);
    let got = mntr(&j.zk);
    assert!(want.len() > 400, "{want:?}");
    assert_eq!(
        got.symmetric_difference(&want).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "mntr keys only one side has"
    );
    for (w, sep) in [("conf", '='), ("envi", '=')] {
        let want = keys(&four_letter(&real.addr, w), sep);
        let got = keys(&four_letter(&j.zk, w), sep);
        assert_eq!(got, want, "{w}: janus (left) vs ZooKeeper (right)");
    }
    let conf = four_letter(&j.zk, "conf");
    let port = j.zk.rsplit(':').next().unwrap_or_default();
    assert!(conf.contains(&format!("clientPort={port}\n")), "{conf}");
    let data = std::fs::canonicalize(tmp.path().join("data")).expect("data dir");
    assert!(
        conf.contains(&format!("dataDir={}\n", data.display())),
        "{conf}"
    );
    let mntr = four_letter(&j.zk, "mntr");
    for k in [
        "zk_approximate_data_size",
        "zk_open_file_descriptor_count",
        "zk_max_file_descriptor_count",
    ] {
        let v = mntr
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}\t")))
            .unwrap_or_default();
        assert!(v.parse::<u64>().is_ok_and(|n| n > 0), "{k}: {mntr}");
    }
}
