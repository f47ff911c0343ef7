//! Start-up failures are one line on stderr and exit status 1, as etcd and
//! ZooKeeper report them: a taken peer, etcd or ZooKeeper port stops Janus
//! (no backtrace, even with `RUST_BACKTRACE` set).

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use janus_tests::{free_port, janus_bin};

#[test]
fn a_taken_port_stops_janus_with_one_line() {
    for which in ["--peer-listen", "--etcd-listen", "--zk-listen"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let taken_addr = taken.local_addr().expect("addr").to_string();
        let mut addrs = [
            ("--peer-listen", format!("127.0.0.1:{}", free_port())),
            ("--etcd-listen", format!("127.0.0.1:{}", free_port())),
            ("--zk-listen", format!("127.0.0.1:{}", free_port())),
        ];
        for (flag, addr) in addrs.iter_mut() {
            if *flag == which {
                *addr = taken_addr.clone();
            }
        }
        let peer = addrs[0].1.clone();
        let started = Instant::now();
        let out = Command::new(janus_bin())
            .arg("--data-dir")
            .arg(dir.path())
            .args(addrs.iter().flat_map(|(f, a)| [f.to_string(), a.clone()]))
            .args(["--initial-cluster", &format!("1={peer}")])
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("run janus");
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(1), "{which}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("Error:")).collect();
        assert_eq!(errors.len(), 1, "{which}: {stderr}");
        assert!(
            errors[0].contains(&taken_addr) && errors[0].contains("in use"),
            "{which}: {}",
            errors[0]
        );
        assert!(!stderr.contains("backtrace"), "{which}: {stderr}");
        drop(taken);
    }
}
