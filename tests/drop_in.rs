//! Drop-in details that scripts and tools depend on:
//!
//! - host names in addresses: a three-server zoo.cfg ensemble whose
//!   servers are `localhost:PORT` (driven by real zkCli.sh), and three
//!   `janus etcd` members whose every URL flag is `http://localhost:PORT`
//!   (driven by real etcdctl);
//! - etcd's start-up lines on stderr (`published local member to cluster
//!   through raft`, `ready to serve client requests`), which harnesses wait
//!   for;
//! - etcdctl with `--endpoints=http://HOST:PORT` for the commands that
//!   dial one endpoint directly (`endpoint status`, `endpoint hashkv`,
//!   `defrag`, `snapshot save`, `move-leader`): etcdctl 3.4 sends that URL
//!   as the HTTP/2 `:authority`; compared with real etcd.

#[path = "zk_support.rs"]
mod zk_support;

use std::process::Command;
use std::time::{Duration, Instant};

use janus_tests::tools::{etcdctl, zk_cli, Proc, RealEtcd};
use janus_tests::{free_port, janus_bin, start_cluster};
use serde_json::Value;
use zk_support::four_letter;

#[test]
fn zoo_cfg_servers_named_localhost() {
    let dir = tempfile::tempdir().expect("tempdir");
    // (client, quorum, election) ports per server.
    let ports: Vec<[u16; 3]> = (0..3)
        .map(|_| [free_port(), free_port(), free_port()])
        .collect();
    let servers: String = ports
        .iter()
        .enumerate()
        .map(|(i, [c, q, e])| {
            format!(
                "server.{}=localhost:{q}:{e}:participant;localhost:{c}\n",
                i + 1
            )
        })
        .collect();
    let procs: Vec<Proc> = ports
        .iter()
        .enumerate()
        .map(|(i, [c, ..])| {
            let id = i + 1;
            let data = dir.path().join(format!("zk{id}/data"));
            std::fs::create_dir_all(&data).expect("dataDir");
            std::fs::write(data.join("myid"), format!("{id}\n")).expect("myid");
            let cfg = dir.path().join(format!("zk{id}/zoo.cfg"));
            std::fs::write(
                &cfg,
                format!(
                    "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={}\n\
                     clientPort={c}\nclientPortAddress=localhost\n\
                     4lw.commands.whitelist=srvr\nadmin.enableServer=false\n{servers}",
                    data.display()
                ),
            )
            .expect("zoo.cfg");
            let mut cmd = Command::new(janus_bin());
            cmd.arg("zookeeper")
                .arg(&cfg)
                // zoo.cfg has no word for the etcd personality's port.
                .env("JANUS_ETCD_LISTEN", format!("localhost:{}", free_port()));
            Proc::spawn(cmd, dir.path().join(format!("zk{id}.log")))
        })
        .collect();

    // The ensemble forms and elects over the named peer addresses.
    let mut leaders = 0;
    for ([c, ..], p) in ports.iter().zip(&procs) {
        let addr = format!("localhost:{c}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let srvr = loop {
            let out = four_letter(&addr, "srvr");
            if out.contains("Mode: leader") || out.contains("Mode: follower") {
                break out;
            }
            assert!(
                Instant::now() < deadline,
                "{addr} not serving: {out:?}; log:\n{}",
                p.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        leaders += usize::from(srvr.contains("Mode: leader"));
    }
    assert_eq!(leaders, 1, "one leader");

    let addr = |i: usize| format!("localhost:{}", ports[i][0]);
    let out = zk_cli(&addr(0), "create /named via-localhost\nls /");
    assert!(out.contains("Created /named"), "{out}");
    for i in [1, 2] {
        let out = zk_cli(&addr(i), "sync /\nget /named\nconfig");
        assert!(out.contains("via-localhost"), "{}: {out}", addr(i));
        // Addresses are advertised as the files name them.
        for (n, [c, q, _]) in ports.iter().enumerate() {
            let line = format!("server.{}=localhost:{q}:", n + 1);
            let client = format!(";localhost:{c}");
            assert!(
                out.lines()
                    .any(|l| l.trim().starts_with(&line) && l.trim().ends_with(&client)),
                "{line}...{client} missing: {out}"
            );
        }
    }
}

/// The member id etcdctl prints for a member (hex), from `endpoint status
/// -w json`: (member id, leader id) per endpoint.
fn status_ids(endpoints: &str) -> Vec<(u64, u64)> {
    let (code, out, err) = etcdctl(endpoints, &["endpoint", "status", "-w", "json"]);
    assert_eq!(code, 0, "endpoint status: {err}");
    let v: Value = serde_json::from_str(&out).expect("status json");
    v.as_array()
        .expect("array")
        .iter()
        .map(|e| {
            let s = &e["Status"];
            (
                s["header"]["member_id"].as_u64().expect("member_id"),
                s["leader"].as_u64().expect("leader"),
            )
        })
        .collect()
}

#[test]
fn etcd_command_line_with_localhost_urls_and_start_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    // (client, peer, metrics) ports per member.
    let ports: Vec<[u16; 3]> = (0..3)
        .map(|_| [free_port(), free_port(), free_port()])
        .collect();
    let cluster: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, [_, p, _])| format!("n{}=http://localhost:{p}", i + 1))
        .collect();
    let cluster = cluster.join(",");
    let procs: Vec<Proc> = ports
        .iter()
        .enumerate()
        .map(|(i, [c, p, m])| {
            let mut cmd = Command::new(janus_bin());
            cmd.arg("etcd")
                .arg(format!("--name=n{}", i + 1))
                .arg(format!(
                    "--data-dir={}",
                    dir.path().join(format!("n{}", i + 1)).display()
                ))
                .arg(format!("--listen-client-urls=http://localhost:{c}"))
                .arg(format!("--advertise-client-urls=http://localhost:{c}"))
                .arg(format!("--listen-peer-urls=http://localhost:{p}"))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://localhost:{p}"
                ))
                .arg(format!("--initial-cluster={cluster}"))
                .arg(format!("--listen-metrics-urls=http://localhost:{m}"))
                .arg("--initial-cluster-token=drop-in")
                .env("JANUS_ZK_LISTEN", format!("localhost:{}", free_port()));
            Proc::spawn(cmd, dir.path().join(format!("n{}.log", i + 1)))
        })
        .collect();

    // Each member prints etcd's lines once it has published itself and
    // serves clients: publish first, then one "ready" per client listener.
    for (i, p) in procs.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(60);
        let out = loop {
            let out = p.output();
            if out.contains("ready to serve client requests") {
                break out;
            }
            assert!(
                Instant::now() < deadline,
                "n{}: no ready line: {out}",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let lines: Vec<&str> = out.lines().collect();
        let find = |s: &str| lines.iter().position(|l| l.contains(s));
        let published = find("published local member to cluster").expect("published line");
        let ready = find("ready to serve client requests").expect("ready line");
        assert!(published < ready, "publish before ready: {out}");
        let v: Value = serde_json::from_str(lines[published]).expect("zap JSON");
        assert_eq!(v["level"], "info");
        assert_eq!(
            v["local-member-attributes"],
            format!(
                "{{Name:n{} ClientURLs:[http://localhost:{}]}}",
                i + 1,
                ports[i][0]
            )
        );
        let v: Value = serde_json::from_str(lines[ready]).expect("zap JSON");
        assert_eq!(v["msg"], "ready to serve client requests");
        let serving = find("serving client traffic insecurely").expect("serving line");
        let v: Value = serde_json::from_str(lines[serving]).expect("zap JSON");
        assert_eq!(v["address"], format!("127.0.0.1:{}", ports[i][0]));
        // Printed once.
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.contains("published local member"))
                .count(),
            1
        );
    }

    // Clients reach every member by name; the members advertise names.
    let eps: Vec<String> = ports
        .iter()
        .map(|[c, ..]| format!("http://localhost:{c}"))
        .collect();
    let eps = eps.join(",");
    let (code, _, err) = etcdctl(&eps, &["put", "named", "yes"]);
    assert_eq!(code, 0, "put: {err}");
    for [c, ..] in &ports {
        let ep = format!("http://localhost:{c}");
        let (code, out, err) = etcdctl(&ep, &["get", "named", "--print-value-only"]);
        assert_eq!((code, out.trim()), (0, "yes"), "{ep}: {err}");
    }
    let (code, out, err) = etcdctl(&eps, &["member", "list"]);
    assert_eq!(code, 0, "member list: {err}");
    for (i, [c, p, _]) in ports.iter().enumerate() {
        let line = format!(
            "started, n{}, http://localhost:{p}, http://localhost:{c}, false",
            i + 1
        );
        assert!(out.contains(&line), "{line} missing: {out}");
    }
    let ids = status_ids(&eps);
    assert!(
        ids.iter().all(|(_, l)| *l == ids[0].1 && *l != 0),
        "{ids:?}"
    );
    // The metrics listener of --listen-metrics-urls.
    let (code, body) =
        janus_tests::http_get(&format!("localhost:{}", ports[0][2]), "/health").expect("health");
    assert_eq!(code, 200, "{body}");
}

/// Ports in etcdctl's output masked, so Janus's and etcd's compare.
fn mask(s: &str, ports: &[&str]) -> String {
    let mut s = s.to_string();
    for p in ports {
        s = s.replace(p, "PORT");
    }
    s
}

/// `cmd` against `http://ENDPOINT`: it must succeed.
fn ok(endpoints: &str, args: &[&str]) -> String {
    let (code, out, err) = etcdctl(endpoints, args);
    assert_eq!(code, 0, "etcdctl --endpoints={endpoints} {args:?}: {err}");
    out
}

#[test]
fn etcdctl_endpoints_with_scheme() {
    let dir = tempfile::tempdir().expect("tempdir");
    let real = RealEtcd::start(&dir.path().join("etcd"));
    // etcd's start-up line that harnesses wait for (capnslog text in 3.4).
    assert!(
        real.proc
            .output()
            .contains("ready to serve client requests"),
        "{}",
        real.proc.output()
    );
    std::fs::create_dir_all(dir.path().join("janus")).expect("dir");
    let members = start_cluster(&dir.path().join("janus"), 3, "");
    let janus = format!("http://{}", members[0].etcd);
    let etcd = format!("http://{}", real.endpoint);
    let port = |ep: &str| ep.rsplit(':').next().unwrap_or_default().to_string();
    let (jp, ep) = (port(&janus), port(&etcd));
    for target in [&janus, &etcd] {
        ok(target, &["put", "k", "v"]);
    }

    // endpoint status: one row, the same columns.
    let rows: Vec<Vec<String>> = [&janus, &etcd]
        .iter()
        .map(|t| {
            let out = ok(t, &["endpoint", "status"]);
            let row: Vec<String> = out.trim().split(", ").map(str::to_string).collect();
            assert_eq!(row[0], **t, "{out}");
            row
        })
        .collect();
    assert_eq!(rows[0].len(), rows[1].len(), "{rows:?}");

    // endpoint hashkv: `URL, HASH`; every Janus member has the same hash.
    for t in [&janus, &etcd] {
        let out = ok(t, &["endpoint", "hashkv"]);
        let (url, hash) = out.trim().split_once(", ").expect("URL, HASH");
        assert_eq!(url, t.as_str());
        hash.parse::<u32>().expect("a hash");
    }
    let all: Vec<String> = members
        .iter()
        .map(|m| format!("http://{}", m.etcd))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ok(&all.join(","), &["endpoint", "hashkv"]);
        let hashes: Vec<&str> = out
            .lines()
            .filter_map(|l| l.split_once(", ").map(|(_, h)| h))
            .collect();
        assert_eq!(hashes.len(), 3, "{out}");
        if hashes.iter().all(|h| *h == hashes[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "members' hashes differ: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // defrag and snapshot save: the same answers.
    assert_eq!(
        mask(&ok(&janus, &["defrag"]), &[&jp]),
        mask(&ok(&etcd, &["defrag"]), &[&ep])
    );
    for (t, name) in [(&janus, "janus.db"), (&etcd, "etcd.db")] {
        let file = dir.path().join(name);
        let out = ok(t, &["snapshot", "save", &file.display().to_string()]);
        assert!(
            out.contains(&format!("Snapshot saved at {}", file.display())),
            "{out}"
        );
        let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{name} empty");
    }

    // move-leader: etcdctl asks each endpoint for its status to find the
    // leader, then moves leadership to the member given.
    let ids = status_ids(&all.join(","));
    let leader = ids[0].1;
    let target = ids
        .iter()
        .map(|(m, _)| *m)
        .find(|m| *m != leader)
        .expect("a follower");
    let out = ok(&all.join(","), &["move-leader", &format!("{target:x}")]);
    assert_eq!(
        out.trim(),
        format!("Leadership transferred from {leader:x} to {target:x}")
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_ids(&all.join(",")).iter().any(|(_, l)| *l != target) {
        assert!(Instant::now() < deadline, "leadership did not move");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Real etcd (one member) takes the same command line.
    let own = status_ids(&etcd)[0].0;
    let out = ok(&etcd, &["move-leader", &format!("{own:x}")]);
    assert!(out.starts_with("Leadership transferred"), "{out}");
}

#[test]
fn toml_listen_addresses_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [zk, etcd, peer, metrics] = [free_port(), free_port(), free_port(), free_port()];
    let cfg = dir.path().join("janus.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\nzk_listen = \"localhost:{zk}\"\n\
             etcd_listen = \"http://localhost:{etcd}\"\npeer_listen = \"localhost:{peer}\"\n\
             metrics_listen = \"localhost:{metrics}\"\n",
            dir.path().join("data").display()
        ),
    )
    .expect("config");
    let mut cmd = Command::new(janus_bin());
    cmd.arg("--config").arg(&cfg);
    let p = Proc::spawn(cmd, dir.path().join("janus.log"));
    let ep = format!("http://localhost:{etcd}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while etcdctl(&ep, &["put", "k", "v"]).0 != 0 {
        assert!(Instant::now() < deadline, "not serving: {}", p.output());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Advertised as configured, bound resolved.
    let out = ok(&ep, &["member", "list"]);
    assert!(
        out.contains(&format!("http://localhost:{peer}, http://localhost:{etcd}")),
        "{out}"
    );
    assert!(four_letter(&format!("localhost:{zk}"), "srvr").contains("Mode: standalone"));
    let (code, _) =
        janus_tests::http_get(&format!("127.0.0.1:{metrics}"), "/health").expect("metrics");
    assert_eq!(code, 200);
}

#[test]
fn listen_name_that_does_not_resolve_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(janus_bin())
        .args(["--data-dir"])
        .arg(dir.path().join("d"))
        .args([
            "--peer-listen",
            "no-such-host.invalid:2380",
            "--zk-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--etcd-listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .output()
        .expect("run janus");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Error: peer_listen \"no-such-host.invalid:2380\": resolving"),
        "{err}"
    );
    // etcd's own rule for listen URLs: an IP or localhost.
    let out = Command::new(janus_bin())
        .args(["etcd", "--data-dir"])
        .arg(dir.path().join("e"))
        .arg("--listen-peer-urls=http://no-such-host.invalid:2380")
        .output()
        .expect("run janus etcd");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("expected IP in URL for binding (http://no-such-host.invalid:2380)"),
        "{err}"
    );
}
