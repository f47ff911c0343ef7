//! Java's own client: a scripted zkCli.sh session (Debian's `zookeeper`
//! package) against real ZooKeeper and against Janus; the normalized
//! outputs (zxids as ranks, times and session ids dropped, watch events
//! compared as a sequence of their own) must be the same.

#[path = "zk_support.rs"]
mod zk_support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use zk_support::{start_janus, RealZk};

const SCRIPT: &str = "\
create /cli hello
create -e /cli/eph e
create -s /cli/seq- s
create -s -e /cli/eseq- x
create -c /cli/container
create -t 60000 /cli/ttl t
create /cli/eph/child nope
create /cli hello-again
ls /cli
ls -s /cli
get -s /cli
get -w /cli
set /cli changed
set -v 5 /cli stale
set -v 1 /cli v2
stat /cli
stat /cli/nope
ls -w /cli
create /cli/new n
create /cli/nodata
get -s /cli/nodata
set /cli/nodata \"\"
get /cli/nodata
addWatch -m PERSISTENT_RECURSIVE /cli
create /cli/new/deep d
delete /cli/new/deep
getAcl /cli
setAcl /cli world:anyone:cdrwa
setAcl -v 7 /cli world:anyone:cdrwa
getAcl -s /cli
addauth digest alice:secret
create /cli/private p auth:alice:secret:cdrwa
getAcl /cli/private
setAcl /cli/locked world:anyone:r
create /cli/locked l
setAcl /cli/locked world:anyone:r
set /cli/locked x
delete /cli
delete -v 9 /cli/new
delete /cli/new
ls /cli
deleteall /cli
ls /
get /cli
quit
";

fn run_cli(addr: &str) -> (Vec<String>, Vec<String>) {
    // One pipe for stdout and stderr (zkCli prints some results on each),
    // so lines keep their order.
    let mut child = Command::new("sh")
        .args([
            "-c",
            "exec /usr/share/zookeeper/bin/zkCli.sh -server \"$0\" 2>&1",
            addr,
        ])
        .env("ZOO_LOG4J_PROP", "ERROR,CONSOLE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("zkCli.sh (Debian's zookeeper package)");
    // Feed the commands one by one with a pause, so each one's output
    // (and its watch events) land before the next command runs.
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        for line in SCRIPT.lines() {
            let _ = writeln!(stdin, "{line}");
            std::thread::sleep(Duration::from_millis(150));
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("zkCli.sh timed out")
        .expect("zkCli.sh output");
    let _ = feeder.join();
    normalize(&String::from_utf8_lossy(&out.stdout))
}

/// (command output lines, watch event lines), normalized.
fn normalize(out: &str) -> (Vec<String>, Vec<String>) {
    let mut zxids: Vec<i64> = Vec::new();
    let mut lines = Vec::new();
    let mut events = Vec::new();
    for l in out.lines() {
        let l = l.trim();
        let noise = ["Connecting to", "Welcome", "JLine", "SLF4J", "log4j"];
        if l.is_empty()
            || noise.iter().any(|n| l.starts_with(n))
            || l == "WATCHER::"
            || l.starts_with("20")
        {
            continue;
        }
        if l.starts_with("WatchedEvent") {
            if !l.contains("type:None") {
                events.push(l.to_string());
            }
            continue;
        }
        if l.starts_with("ctime") || l.starts_with("mtime") {
            continue;
        }
        if let Some((k @ ("cZxid" | "mZxid" | "pZxid"), v)) =
            l.split_once(" = ").map(|(k, v)| (k.trim(), v.trim()))
        {
            let z = i64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap_or(-1);
            zxids.push(z);
            lines.push(format!("{k} = Z{z}"));
            continue;
        }
        if let Some(v) = l.strip_prefix("ephemeralOwner = ") {
            lines.push(format!(
                "ephemeralOwner = {}",
                if v == "0x0" { "0" } else { "session" }
            ));
            continue;
        }
        lines.push(l.to_string());
    }
    zxids.sort();
    zxids.dedup();
    let lines = lines
        .into_iter()
        .map(|l| match l.split_once(" = Z") {
            Some((k, z)) => {
                let z: i64 = z.parse().unwrap_or(-1);
                format!("{k} = z{}", zxids.binary_search(&z).unwrap_or(usize::MAX))
            }
            None => l,
        })
        .collect();
    (lines, events)
}

#[test]
fn zkcli_session_agrees_with_real_zookeeper() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let janus = start_janus(tmp.path(), "");
    let real = RealZk::start();
    let (ja, za) = (janus.zk.clone(), real.addr.clone());
    let j = std::thread::spawn(move || run_cli(&ja));
    let z = std::thread::spawn(move || run_cli(&za));
    let (jl, je) = j.join().expect("janus run");
    let (zl, ze) = z.join().expect("zk run");
    assert!(
        zl.iter().any(|l| l.contains("Created /cli")),
        "zkCli.sh did not run: {zl:#?}"
    );
    let diff: Vec<String> = zl
        .iter()
        .zip(jl.iter().chain(std::iter::repeat(&String::new())))
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!(" zookeeper: {a}\n janus:     {b}"))
        .collect();
    assert!(
        diff.is_empty() && zl.len() == jl.len(),
        "zkCli.sh output differs:\n{}\n\nzookeeper:\n{}\n\njanus:\n{}",
        diff.join("\n"),
        zl.join("\n"),
        jl.join("\n")
    );
    // `deleteall` deletes in the order getChildren lists children, which
    // ZooKeeper leaves unspecified (it returns hash order, Janus sorted
    // order): compare the events before it in order, and all as a set.
    let before_deleteall = ze
        .iter()
        .position(|e| e.contains("NodeDeleted path:/cli/new"))
        .map_or(0, |i| i + 1);
    assert_eq!(
        ze[..before_deleteall],
        je[..before_deleteall.min(je.len())],
        "watch events differ"
    );
    let (mut zs, mut js) = (ze.clone(), je.clone());
    zs.sort();
    js.sort();
    assert_eq!(zs, js, "watch events differ");
}
