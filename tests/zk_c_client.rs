//! ZooKeeper's C client (`cli_mt` from Debian's `zookeeper-bin`) runs the
//! same commands against real ZooKeeper and against Janus; the normalized
//! outputs must match.

#[path = "zk_support.rs"]
mod zk_support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use zk_support::{start_janus, RealZk};

const CLI: &str = "/usr/lib/zookeeper/bin/cli_mt";

const COMMANDS: &[&str] = &[
    "create /c",
    "create +e /c/e",
    "create +s /c/s-",
    "create +es /c/es-",
    "create /c",
    "create /missing/child",
    "set /c world",
    "get /c",
    "ls /c",
    "ls2 /c",
    "exists /c",
    "exists /nope",
    "delete /c",
    "delete /c/e",
    "get /nope",
    "set /nope x",
    "ls /c",
    "quit",
];

fn run(addr: &str) -> Vec<String> {
    let mut child = Command::new("sh")
        .args(["-c", &format!("exec {CLI} \"$0\" 2>&1"), addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cli_mt (Debian's zookeeper-bin)");
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1000));
        for c in COMMANDS {
            let _ = writeln!(stdin, "{c}");
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("cli_mt timed out")
        .expect("cli_mt output");
    let _ = feeder.join();
    normalize(&String::from_utf8_lossy(&out.stdout))
}

/// Drop times, zxids and session ids; child lists (tab-indented runs) are
/// sorted, since ZooKeeper lists children in no particular order.
fn normalize(out: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut run: Vec<String> = Vec::new();
    let flush = |run: &mut Vec<String>, lines: &mut Vec<String>| {
        run.sort();
        lines.append(run);
    };
    for l in out.lines() {
        let t = l.trim();
        let skip = [
            "time =",
            "Got a new session id",
            "ctime",
            "mtime",
            "czxid",
            "mzxid",
        ];
        // The C client's own log lines (connection retries) carry a timestamp.
        if t.is_empty() || skip.iter().any(|s| t.starts_with(s)) || t.contains("ZOO_") {
            continue;
        }
        let t = if let Some(owner) = t.strip_prefix("ephemeralOwner = ") {
            format!(
                "ephemeralOwner = {}",
                if owner == "0" { "0" } else { "session" }
            )
        } else {
            t.to_string()
        };
        if l.starts_with('\t') && !t.contains('=') {
            run.push(t);
        } else {
            flush(&mut run, &mut lines);
            lines.push(t);
        }
    }
    flush(&mut run, &mut lines);
    // When the session event prints relative to the first command depends
    // on how fast the server set the session up (a cold JVM takes over the
    // feeder's 1 s head start under load): compare it first.
    const CONNECTED: &str = "Watcher SESSION_EVENT state = CONNECTED_STATE";
    if let Some(i) = lines.iter().position(|l| l == CONNECTED) {
        let l = lines.remove(i);
        lines.insert(0, l);
    }
    lines
}

#[test]
fn c_client_agrees_with_real_zookeeper() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let janus = start_janus(tmp.path(), "");
    let real = RealZk::start();
    let (ja, za) = (janus.zk.clone(), real.addr.clone());
    let j = std::thread::spawn(move || run(&ja));
    let z = std::thread::spawn(move || run(&za));
    let (j, z) = (j.join().expect("janus run"), z.join().expect("zk run"));
    assert!(
        z.iter().any(|l| l.contains("name = /c/s-0000000001")),
        "cli_mt did not run: {z:#?}"
    );
    assert_eq!(
        z,
        j,
        "cli_mt output differs:\nzookeeper:\n{}\n\njanus:\n{}",
        z.join("\n"),
        j.join("\n")
    );
}
