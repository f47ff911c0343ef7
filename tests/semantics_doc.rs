//! Keeps docs/semantics.md honest: runs every `console` block of the page,
//! in order, in one shell against a fresh Janus, and checks that each
//! command prints what the page shows under it.
//!
//! The format (described on the page itself): a line `$ cmd` is a command;
//! a command containing `<<'EOF'` takes the following lines up to `EOF` as
//! its here-document; the lines after it, up to the next `$ ` line or the
//! end of the block, are its expected output. Before comparing, the noise
//! of zkCli.sh and etcdctl (start-up lines, JSON log lines) and blank
//! lines are dropped from the actual output; in the expected output a
//! `<name>` stands for any text on that line and a line `...` for any
//! number of lines. zkCli prints watch events from its event thread, so
//! `WatchedEvent` lines are compared among themselves, apart from the rest.
//!
//! The page uses the default ports (127.0.0.1:2181 and :2379); the test
//! swaps in its own. Needs zkCli.sh (Debian's zookeeper package), etcdctl
//! and kazoo in target/zk-venv (scripts/deps/zk.sh and etcd.sh).

#[path = "zk_support.rs"]
mod zk_support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use janus_tests::{free_port, Janus};

const DOC_ZK: &str = "127.0.0.1:2181";
const DOC_ETCD: &str = "127.0.0.1:2379";
/// The page starts Janus with this, so that its container and TTL node
/// examples do not wait a minute for the reaper.
const REAPER_ENV: (&str, &str) = ("JANUS_CONTAINER_CHECK_MS", "1000");
/// Generous: a loaded small machine starts a JVM per zkCli.sh, and a
/// few steps sleep or wait for a background session.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
const DONE: &str = "__semantics_doc_step_done__";

/// One command of the page with the output the page shows for it.
struct Step {
    /// 1-based line of the `$ ` line in the page.
    line: usize,
    command: String,
    expected: Vec<String>,
}

fn parse(doc: &str) -> Vec<Step> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut steps = Vec::new();
    let mut in_block = false;
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if !in_block {
            in_block = l.trim() == "```console";
            i += 1;
            continue;
        }
        if l.trim() == "```" {
            in_block = false;
            i += 1;
            continue;
        }
        let Some(first) = l.strip_prefix("$ ") else {
            panic!(
                "docs/semantics.md:{}: output line before any command: {l}",
                i + 1
            );
        };
        let line = i + 1;
        let mut command = first.to_string();
        i += 1;
        if first.contains("<<'EOF'") {
            loop {
                let body = lines.get(i).unwrap_or_else(|| {
                    panic!("docs/semantics.md:{line}: here-document without EOF")
                });
                command.push('\n');
                command.push_str(body);
                i += 1;
                if *body == "EOF" {
                    break;
                }
            }
        }
        let mut expected = Vec::new();
        while i < lines.len() && !lines[i].starts_with("$ ") && lines[i].trim() != "```" {
            let e = lines[i].trim_end();
            if !e.is_empty() {
                expected.push(e.to_string());
            }
            i += 1;
        }
        steps.push(Step {
            line,
            command,
            expected,
        });
    }
    assert!(!in_block, "docs/semantics.md: unclosed console block");
    steps
}

/// The output lines that count: without the clients' noise and blank lines.
fn normalize(out: &str) -> Vec<String> {
    const NOISE: [&str; 6] = [
        "SLF4J:",
        "Connecting to ",
        "Welcome to ZooKeeper!",
        "JLine support",
        "WATCHER::",
        // etcdctl's client-side log lines (JSON, on stderr).
        "{\"level\":",
    ];
    out.lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !NOISE.iter().any(|n| l.starts_with(n)))
        // zkCli's own connection events (connected, closed).
        .filter(|l| !(l.starts_with("WatchedEvent ") && l.ends_with(" type:None path:null")))
        // A log4j line, should a logging backend be configured.
        .filter(|l| !is_log_line(l))
        .map(str::to_string)
        .collect()
}

/// `2026-01-31 12:00:00,000 [...]` and the like.
fn is_log_line(l: &str) -> bool {
    let b = l.as_bytes();
    b.len() > 13
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b' ' || b[10] == b'T')
}

/// One piece of an expected line: literal text or a `<placeholder>`.
enum Seg<'a> {
    Lit(&'a str),
    Any,
}

fn segments(pattern: &str) -> Vec<Seg<'_>> {
    let mut segs = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>').map(|c| open + c);
        let name_ok = close.is_some_and(|c| {
            c > open + 1
                && rest[open + 1..c]
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch == ' ')
        });
        match close {
            Some(c) if name_ok => {
                segs.push(Seg::Lit(&rest[..open]));
                segs.push(Seg::Any);
                rest = &rest[c + 1..];
            }
            _ => {
                segs.push(Seg::Lit(&rest[..open + 1]));
                rest = &rest[open + 1..];
            }
        }
    }
    segs.push(Seg::Lit(rest));
    segs
}

/// A placeholder matches one or more characters.
fn seg_match(segs: &[Seg], s: &str) -> bool {
    match segs.split_first() {
        None => s.is_empty(),
        Some((Seg::Lit(l), rest)) => s.strip_prefix(l).is_some_and(|t| seg_match(rest, t)),
        Some((Seg::Any, rest)) => s
            .char_indices()
            .skip(1)
            .map(|(i, _)| i)
            .chain(std::iter::once(s.len()))
            .filter(|&i| i > 0)
            .any(|i| seg_match(rest, &s[i..])),
    }
}

fn line_match(pattern: &str, line: &str) -> bool {
    seg_match(&segments(pattern), line)
}

/// Expected lines against actual ones; a `...` line matches any lines.
fn lines_match(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((e, rest)) if e == "..." => {
            (0..=actual.len()).any(|k| lines_match(rest, &actual[k..]))
        }
        Some((e, rest)) => actual
            .split_first()
            .is_some_and(|(a, arest)| line_match(e, a) && lines_match(rest, arest)),
    }
}

/// (events, the other lines).
fn split_events(lines: &[String]) -> (Vec<String>, Vec<String>) {
    lines
        .iter()
        .cloned()
        .partition(|l| l.starts_with("WatchedEvent "))
}

/// A long-lived `sh` that runs the page's commands one after another, so
/// that variables and background jobs carry over as in a reader's shell.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Shell {
    fn start(dir: &Path, path: &str) -> Shell {
        let mut child = Command::new("sh")
            .current_dir(dir)
            .env("PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group, so that Drop also ends background
            // jobs (zkCli.sh sessions) a failed step left behind.
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        let mut stdin = child.stdin.take().expect("sh stdin");
        let stdout = child.stdout.take().expect("sh stdout");
        writeln!(stdin, "exec 2>&1").expect("write to sh");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Shell {
            child,
            stdin,
            lines: rx,
        }
    }

    /// Run one command (stdin from /dev/null unless it has its own, stderr
    /// with stdout); its output, or `Err` with what came before a timeout.
    fn run(&mut self, command: &str) -> Result<String, String> {
        // `echo` first: etcdctl's JSON output has no final newline.
        write!(
            self.stdin,
            "{{ {command}\n}} </dev/null 2>&1\necho; echo {DONE}\n"
        )
        .map_err(|e| format!("writing to sh: {e}"))?;
        self.stdin
            .flush()
            .map_err(|e| format!("writing to sh: {e}"))?;
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut out = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l == DONE => return Ok(out),
                Ok(l) => {
                    out.push_str(&l);
                    out.push('\n');
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "timed out after {STEP_TIMEOUT:?}; output so far:\n{out}"
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("sh exited; output so far:\n{out}"))
                }
            }
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

fn indent(lines: &[String]) -> String {
    lines.iter().map(|l| format!("    {l}\n")).collect()
}

#[test]
fn semantics_doc_examples_run_as_shown() {
    let root = zk_support::root();
    let doc = std::fs::read_to_string(root.join("docs/semantics.md")).expect("docs/semantics.md");
    assert!(
        doc.contains(&format!("{}={}", REAPER_ENV.0, REAPER_ENV.1)),
        "docs/semantics.md should start Janus with {}={} as this test does",
        REAPER_ENV.0,
        REAPER_ENV.1
    );
    let steps = parse(&doc);
    assert!(
        steps.len() >= 40,
        "only {} commands found in docs/semantics.md",
        steps.len()
    );
    assert!(
        Path::new("/usr/share/zookeeper/bin/zkCli.sh").exists(),
        "zkCli.sh missing: scripts/deps/zk.sh installs Debian's zookeeper"
    );
    let python = zk_support::venv_python();
    let venv_bin = python.parent().expect("venv bin");

    let tmp = tempfile::tempdir().expect("tempdir");
    let janus = Janus::start_with_peer_env(
        &tmp.path().join("data"),
        &format!("127.0.0.1:{}", free_port()),
        &[],
        &[(REAPER_ENV.0.to_string(), REAPER_ENV.1.to_string())],
    );
    janus.wait_healthy(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(60);
    while zk_support::four_letter(&janus.zk, "ruok") != "imok" {
        assert!(
            Instant::now() < deadline,
            "janus's zookeeper port not answering"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    // kazoo's venv first: the page's `python3` is one with kazoo.
    let path = format!(
        "{}:{}",
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut sh = Shell::start(&work, &path);

    let mut failures = Vec::new();
    for step in &steps {
        let command = step
            .command
            .replace(DOC_ZK, &janus.zk)
            .replace(DOC_ETCD, &janus.etcd);
        let out = match sh.run(&command) {
            Ok(out) => out,
            Err(e) => {
                failures.push(format!(
                    "docs/semantics.md:{}: $ {}\n{e}",
                    step.line, step.command
                ));
                break;
            }
        };
        let out = out
            .replace(&janus.zk, DOC_ZK)
            .replace(&janus.etcd, DOC_ETCD);
        let actual = normalize(&out);
        let (want_events, want) = split_events(&step.expected);
        let (got_events, got) = split_events(&actual);
        let events_ok = want_events.len() == got_events.len()
            && want_events
                .iter()
                .zip(&got_events)
                .all(|(w, g)| line_match(w, g));
        if !events_ok || !lines_match(&want, &got) {
            failures.push(format!(
                "docs/semantics.md:{}: $ {}\n  the page shows:\n{}  Janus printed:\n{}",
                step.line,
                step.command,
                indent(&step.expected),
                indent(&actual)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} commands of docs/semantics.md did not print what the page shows \
         (later numbers shift after the first difference):\n\n{}",
        failures.len(),
        steps.len(),
        failures.join("\n")
    );
}

mod matcher {
    use super::*;

    #[test]
    fn placeholders_and_ellipsis() {
        assert!(line_match(
            "ctime = <time>",
            "ctime = Thu Dec 03 10:55:34 UTC 2026"
        ));
        assert!(!line_match("ctime = <time>", "ctime = "));
        assert!(line_match("lease <id> granted", "lease 01b2 granted"));
        assert!(line_match("a <b", "a <b"));
        assert!(line_match("[a, zookeeper]", "[a, zookeeper]"));
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(lines_match(
            &l(&["a", "...", "d"]),
            &l(&["a", "b", "c", "d"])
        ));
        assert!(lines_match(&l(&["a", "...", "d"]), &l(&["a", "d"])));
        assert!(!lines_match(&l(&["a", "d"]), &l(&["a", "b", "d"])));
        assert!(!lines_match(&l(&["a"]), &l(&["a", "b"])));
    }
}
