//! Tools for TLS tests: openssl and keytool as users run them, real etcd
//! and etcdctl, and zkCli.sh over TLS.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `openssl ARGS` in `dir`; panics with its stderr when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    run_tool("openssl", "Debian's openssl package", dir, args);
}

/// `keytool ARGS` in `dir` (the JRE's, as ZooKeeper's documentation
/// makes key and trust stores).
pub fn keytool(dir: &Path, args: &[&str]) {
    run_tool("keytool", "the JRE scripts/deps/zk.sh installs", dir, args);
}

fn run_tool(tool: &str, from: &str, dir: &Path, args: &[&str]) {
    let out = Command::new(tool)
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{tool} ({from}): {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub use crate::tools::{etcdctl_with as etcdctl, wait_etcdctl_healthy, RealEtcd};

/// The classpath of ZooKeeper's Java client and server with Netty, which
/// TLS needs: Debian's zookeeper.jar manifest and zkEnv.sh's CLASSPATH
/// leave out netty-codec and netty-resolver.
pub const ZK_NETTY_CLASSPATH: &str = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/netty-codec.jar:/usr/share/java/netty-resolver.jar";

/// zkCli.sh over TLS: `jvm_flags` (the `-Dzookeeper.ssl.*` properties)
/// go in CLIENT_JVMFLAGS, after the client-secure and Netty-socket
/// properties and a `-cp` with Netty (java takes the last `-cp`);
/// `commands` are fed one by one. Returns the output.
pub fn zk_cli_tls(addr: &str, jvm_flags: &[String], commands: &[&str]) -> String {
    let mut flags = vec![
        "-cp".to_string(),
        ZK_NETTY_CLASSPATH.to_string(),
        "-Dzookeeper.client.secure=true".to_string(),
        "-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty".to_string(),
    ];
    flags.extend(jvm_flags.iter().cloned());
    let mut child = Command::new("/usr/share/zookeeper/bin/zkCli.sh")
        .args(["-server", addr])
        .env("CLIENT_JVMFLAGS", flags.join(" "))
        .env("ZOO_LOG4J_PROP", "ERROR,CONSOLE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("zkCli.sh (Debian's zookeeper package; scripts/deps/zk.sh)");
    let mut stdin = child.stdin.take().expect("stdin");
    let cmds: Vec<String> = commands.iter().map(|c| c.to_string()).collect();
    let feeder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(3000));
        for c in cmds {
            let _ = writeln!(stdin, "{c}");
            std::thread::sleep(Duration::from_millis(700));
        }
        let _ = writeln!(stdin, "quit");
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
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A `janus` started with other tools' configuration (`janus etcd ...`,
/// `janus zookeeper zoo.cfg`); killed on drop.
pub struct JanusProc(crate::tools::Proc);

impl JanusProc {
    /// `janus ARGS` with `env`, output in `log`.
    pub fn spawn(args: &[String], env: &[(&str, String)], log: &Path) -> JanusProc {
        let mut cmd = Command::new(crate::janus_bin());
        cmd.args(args).envs(env.iter().map(|(k, v)| (k, v)));
        JanusProc(crate::tools::Proc::spawn(cmd, log.to_path_buf()))
    }

    pub fn log(&self) -> String {
        self.0.output()
    }

    /// Waits (60 s at most) for a TCP listener on `addr`; panics with the
    /// log if the process exits or the time runs out.
    pub fn wait_port(&mut self, addr: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(addr).is_err() {
            if let Ok(Some(st)) = self.0.child.try_wait() {
                panic!("janus exited ({st}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "janus not listening on {addr}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The exit status within `timeout`, if it exited.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.0.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}
