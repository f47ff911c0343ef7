//! A three-member Janus started from a three-server ensemble's zoo.cfg
//! files and myid files (`janus zookeeper PATH/zoo.cfg`), as a ZooKeeper
//! ensemble on one host would have them (one dataDir and clientPort per
//! server), then driven by real zkCli.sh (Debian's): a write through one
//! server read through the others, `config` listing the ensemble, and the
//! four-letter-word whitelist and AdminServer port of the files.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use janus_tests::tools::{zk_cli, Proc};
use janus_tests::{free_port, http_get, janus_bin};

/// A four-letter word's answer.
fn four(addr: &str, word: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(word.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn three_server_zoo_cfg_with_myid_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    // (client, quorum, election, admin) ports per server.
    let ports: Vec<[u16; 4]> = (0..3)
        .map(|_| [free_port(), free_port(), free_port(), free_port()])
        .collect();
    let servers: String = ports
        .iter()
        .enumerate()
        .map(|(i, [c, q, e, _])| {
            format!(
                "server.{}=127.0.0.1:{q}:{e}:participant;127.0.0.1:{c}\n",
                i + 1
            )
        })
        .collect();
    let procs: Vec<Proc> = ports
        .iter()
        .enumerate()
        .map(|(i, [c, _, _, admin])| {
            let id = i + 1;
            let data = dir.path().join(format!("zk{id}/data"));
            std::fs::create_dir_all(&data).expect("dataDir");
            std::fs::write(data.join("myid"), format!("{id}\n")).expect("myid");
            let cfg = dir.path().join(format!("zk{id}/zoo.cfg"));
            std::fs::write(
                &cfg,
                format!(
                    "# The number of milliseconds of each tick\n\
                     tickTime=2000\n\
                     initLimit=10\n\
                     syncLimit=5\n\
                     dataDir={}\n\
                     clientPort={c}\n\
                     clientPortAddress=127.0.0.1\n\
                     maxClientCnxns=60\n\
                     autopurge.snapRetainCount=3\n\
                     autopurge.purgeInterval=1\n\
                     4lw.commands.whitelist=srvr, ruok, stat\n\
                     admin.enableServer=true\n\
                     admin.serverAddress=127.0.0.1\n\
                     admin.serverPort={admin}\n\
                     reconfigEnabled=true\n\
                     extendedTypesEnabled=true\n\
                     jute.maxbuffer=4194304\n\
                     {servers}",
                    data.display()
                ),
            )
            .expect("zoo.cfg");
            let log = dir.path().join(format!("zk{id}.log"));
            let f = std::fs::File::create(&log).expect("log");
            let child = Command::new(janus_bin())
                .arg("zookeeper")
                .arg(&cfg)
                // zoo.cfg has no word for the etcd personality's port.
                .env("JANUS_ETCD_LISTEN", format!("127.0.0.1:{}", free_port()))
                .stdout(Stdio::from(f.try_clone().expect("log")))
                .stderr(Stdio::from(f))
                .spawn()
                .expect("spawn janus");
            Proc { child, log }
        })
        .collect();

    // Every server says it serves (srvr, whitelisted), one of them leads.
    let mut modes = Vec::new();
    for ([c, ..], p) in ports.iter().zip(&procs) {
        let addr = format!("127.0.0.1:{c}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let srvr = loop {
            let out = four(&addr, "srvr");
            if out.contains("Mode: leader") || out.contains("Mode: follower") {
                break out;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&p.log).unwrap_or_default();
                panic!("{addr} not serving: {out:?}; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        modes.push(srvr.contains("Mode: leader"));
        assert_eq!(four(&addr, "ruok"), "imok");
        // Not on the whitelist of this zoo.cfg.
        assert!(four(&addr, "conf").contains("is not executed because it is not in the whitelist"));
    }
    assert_eq!(
        modes.iter().filter(|l| **l).count(),
        1,
        "one leader: {modes:?}"
    );
    // The AdminServer of admin.serverPort.
    let (code, body) =
        http_get(&format!("127.0.0.1:{}", ports[0][3]), "/commands/ruok").expect("admin");
    assert_eq!(code, 200, "{body}");
    // Ignored keys are logged, not refused.
    let log = std::fs::read_to_string(&procs[1].log).unwrap_or_default();
    assert!(log.contains("initLimit"), "{log}");

    let a = format!("127.0.0.1:{}", ports[0][0]);
    let b = format!("127.0.0.1:{}", ports[1][0]);
    let c = format!("127.0.0.1:{}", ports[2][0]);
    let out = zk_cli(
        &a,
        "create /moved from-zoo-cfg\ncreate -t 60000 /ttl t\nls /",
    );
    assert!(out.contains("Created /moved"), "{out}");
    assert!(
        out.contains("Created /ttl"),
        "extendedTypesEnabled=true: {out}"
    );
    assert!(out.contains("[moved, ttl, zookeeper]"), "{out}");
    for addr in [&b, &c] {
        let out = zk_cli(addr, "sync /\nget /moved\nconfig");
        assert!(out.contains("from-zoo-cfg"), "{addr}: {out}");
        // The ensemble of the files: each server's quorum address (Janus's
        // peer port) and client address.
        for (i, [cp, q, ..]) in ports.iter().enumerate() {
            let line = format!("server.{}=127.0.0.1:{q}:", i + 1);
            let client = format!(":participant;127.0.0.1:{cp}");
            let found = out
                .lines()
                .any(|l| l.trim().starts_with(&line) && l.trim().ends_with(&client));
            assert!(found, "{addr}: no {line}...{client} in {out}");
        }
    }
}
