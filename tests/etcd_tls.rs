//! TLS, quota and metrics of the etcd personality, against real etcd
//! (Debian's 3.4.23) where etcd has the same behaviour:
//!
//! - client TLS with `--client-cert-auth`: the same etcdctl steps (with
//!   `--cacert/--cert/--key`) against both, a client without a certificate
//!   and one with a certificate of another CA refused by both;
//! - the backend quota: writes until NOSPACE, the alarm, refused writes,
//!   allowed deletes, compaction + defrag + alarm disarm, writes again;
//! - etcd's metric names on /metrics, checked against real etcd's;
//! - three Janus members with TLS between peers (client certificates
//!   required) elect a leader and replicate a write.
//!
//! Certificates come from the openssl CLI (scripts/deps/etcd.sh installs
//! it with etcd).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use janus_tests::tls::{
    etcdctl as ctl, openssl, wait_etcdctl_healthy as wait_ctl_healthy, RealEtcd as Etcd,
};
use janus_tests::{free_port, Janus};

/// A CA and, signed by it, certificates for the server (also used by the
/// peers, both ways) and a client "root"; plus a client of another CA.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn new(dir: &Path) -> Certs {
        let dir = dir.join("certs");
        std::fs::create_dir_all(&dir).expect("certs dir");
        for ca in ["ca", "other-ca"] {
            openssl(
                &dir,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.crt"),
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=janus-test-{ca}"),
                ],
            );
        }
        std::fs::write(
            dir.join("leaf.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("ext");
        for (name, cn, ca) in [
            ("server", "server", "ca"),
            ("client", "root", "ca"),
            ("stranger", "root", "other-ca"),
        ] {
            openssl(
                &dir,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                    "-subj",
                    &format!("/CN={cn}"),
                ],
            );
            openssl(
                &dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    &format!("{ca}.crt"),
                    "-CAkey",
                    &format!("{ca}.key"),
                    "-CAcreateserial",
                    "-out",
                    &format!("{name}.crt"),
                    "-days",
                    "2",
                    "-extfile",
                    "leaf.ext",
                ],
            );
        }
        Certs { dir }
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).to_string_lossy().into_owned()
    }

    /// The server side's flags, for etcd and Janus alike.
    fn server_flags(&self) -> Vec<String> {
        vec![
            format!("--cert-file={}", self.path("server.crt")),
            format!("--key-file={}", self.path("server.key")),
            format!("--trusted-ca-file={}", self.path("ca.crt")),
            "--client-cert-auth".into(),
        ]
    }

    /// etcdctl's flags for a client: `who` is "client", "stranger" or ""
    /// (no certificate).
    fn client_flags(&self, who: &str) -> Vec<String> {
        let mut f = vec![format!("--cacert={}", self.path("ca.crt"))];
        if !who.is_empty() {
            f.push(format!("--cert={}", self.path(&format!("{who}.crt"))));
            f.push(format!("--key={}", self.path(&format!("{who}.key"))));
        }
        f
    }
}

/// What a step printed, normalized: the endpoint, member ids, timings;
/// of stderr only etcdctl's `Error:` lines.
fn normalize(endpoint: &str, (code, out, err): (i32, String, String)) -> String {
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("Error:")).collect();
    let mut s = format!("exit {}\n{}{}", code != 0, out, errors.join("\n"));
    s = s.replace(endpoint, "ENDPOINT");
    // Member ids: "memberID:<digits>".
    let mut from = 0;
    while let Some(i) = s[from..].find("memberID:").map(|i| from + i + 9) {
        let end = s[i..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(s.len(), |e| i + e);
        s.replace_range(i..end, "ID");
        from = i;
    }
    // "took = 2.1ms" in endpoint health.
    if let Some(i) = s.find("took = ") {
        let end = s[i..].find('\n').map_or(s.len(), |e| i + e);
        s.replace_range(i..end, "took = T");
    }
    s
}

fn janus_tls(dir: &Path, extra: &[String]) -> Janus {
    let args: Vec<&str> = extra.iter().map(String::as_str).collect();
    Janus::start(&dir.join("janus"), &args)
}

#[test]
fn client_cert_auth_matches_real_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = Certs::new(dir.path());
    let good = certs.client_flags("client");
    let etcd_dir = dir.path().join("etcd");
    std::fs::create_dir_all(&etcd_dir).expect("dir");
    let etcd = Etcd::start_with(&etcd_dir, "https", &certs.server_flags(), &good);
    let janus = janus_tls(dir.path(), &certs.server_flags());
    let janus_ep = format!("https://{}", janus.etcd);
    wait_ctl_healthy(&janus_ep, &good);

    let steps: Vec<(&str, Vec<&str>)> = vec![
        ("client", vec!["put", "foo", "bar"]),
        ("client", vec!["get", "foo"]),
        ("client", vec!["put", "foo", "baz", "--prev-kv"]),
        ("client", vec!["get", "foo", "--print-value-only"]),
        ("client", vec!["endpoint", "health"]),
        ("client", vec!["del", "foo"]),
        ("client", vec!["get", "foo", "--count-only", "-w", "simple"]),
        // Refused at the handshake: no certificate, another CA's.
        ("", vec!["--command-timeout=2s", "get", "foo"]),
        ("stranger", vec!["--command-timeout=2s", "get", "foo"]),
        ("client", vec!["put", "after", "refusals"]),
        ("client", vec!["get", "after", "--print-value-only"]),
    ];
    let mut diffs = Vec::new();
    for (who, args) in &steps {
        let flags = certs.client_flags(who);
        let want = normalize(&etcd.url, ctl(&etcd.url, &flags, args));
        let got = normalize(&janus_ep, ctl(&janus_ep, &flags, args));
        if want != got {
            diffs.push(format!("{who} {args:?}\n etcd:  {want:?}\n janus: {got:?}"));
        }
        if who.is_empty() || *who == "stranger" {
            assert!(got.starts_with("exit true"), "{who} was let in: {got}");
        }
    }
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));

    // The JSON gateway and /health share the port: with a certificate
    // they answer, without one the handshake fails.
    let curl = |with_cert: bool, path: &str| {
        let mut c = Command::new("curl");
        c.args(["-s", "-m", "10", "--cacert", &certs.path("ca.crt")]);
        if with_cert {
            c.args([
                "--cert",
                &certs.path("client.crt"),
                "--key",
                &certs.path("client.key"),
            ]);
        }
        let out = c.arg(format!("{janus_ep}{path}")).output().expect("curl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, body) = curl(true, "/health");
    assert!(ok && body.contains("\"health\":\"true\""), "{body}");
    assert!(
        !curl(false, "/health").0,
        "curl without a certificate was let in"
    );

    // The common name handlers see (ClientCertCn) is the certificate's.
    let der = dir.path().join("client.der");
    openssl(
        dir.path(),
        &[
            "x509",
            "-in",
            &certs.path("client.crt"),
            "-outform",
            "der",
            "-out",
            &der.to_string_lossy(),
        ],
    );
    let der = std::fs::read(&der).expect("der");
    assert_eq!(janus_etcd::tls::common_name(&der).as_deref(), Some("root"));
}

/// The header revision etcd reports now.
fn revision(endpoint: &str) -> i64 {
    let (_, out, _) = ctl(endpoint, &[], &["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("status json");
    v[0]["Status"]["header"]["revision"]
        .as_i64()
        .expect("revision")
}

/// Overwrite one key with 5000-byte values until the quota refuses; then
/// the alarm, refused and allowed requests, compaction, defrag, disarm.
fn quota_session(endpoint: &str) -> Vec<String> {
    let mut out = Vec::new();
    let big = "a".repeat(5000);
    let mut refused = None;
    for i in 1..=200 {
        let r = ctl(endpoint, &[], &["put", "big", &big]);
        if r.0 != 0 {
            refused = Some((i, normalize(endpoint, r)));
            break;
        }
    }
    let (n, why) = refused.expect("the quota never refused a write");
    // 200 KB of quota: both refuse after some tens of 5 KB writes.
    assert!((10..=100).contains(&n), "refused after {n} writes");
    out.push(why);
    let step = |out: &mut Vec<String>, args: &[&str]| {
        out.push(format!(
            "{args:?}: {}",
            normalize(endpoint, ctl(endpoint, &[], args))
        ));
    };
    step(&mut out, &["alarm", "list"]);
    step(&mut out, &["put", "small", "v"]);
    step(&mut out, &["lease", "grant", "10"]);
    step(&mut out, &["txn"]);
    step(&mut out, &["get", "big", "--count-only", "-w", "simple"]);
    step(&mut out, &["del", "big"]);
    let rev = revision(endpoint).to_string();
    let r = normalize(endpoint, ctl(endpoint, &[], &["compaction", &rev]));
    out.push(format!(
        "compaction at the current revision: {}",
        r.replace(&rev, "REV")
    ));
    step(&mut out, &["defrag"]);
    step(&mut out, &["put", "small", "v"]);
    step(&mut out, &["alarm", "disarm"]);
    step(&mut out, &["alarm", "list"]);
    step(&mut out, &["put", "small", "v"]);
    step(&mut out, &["get", "small", "--print-value-only"]);
    out
}

#[test]
fn quota_nospace_alarm_matches_real_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let quota = "--quota-backend-bytes=200000".to_string();
    let etcd_dir = dir.path().join("etcd");
    std::fs::create_dir_all(&etcd_dir).expect("dir");
    let etcd = Etcd::start_with(&etcd_dir, "http", std::slice::from_ref(&quota), &[]);
    let janus = janus_tls(dir.path(), std::slice::from_ref(&quota));
    let janus_ep = janus.etcd.clone();
    wait_ctl_healthy(&janus_ep, &[]);
    let want = quota_session(&etcd.url);
    let got = quota_session(&janus_ep);
    let diffs: Vec<String> = want
        .iter()
        .zip(&got)
        .filter(|(w, g)| w != g)
        .map(|(w, g)| {
            format!(
                " etcd:  {w:?}
 janus: {g:?}"
            )
        })
        .collect();
    assert_eq!(want.len(), got.len());
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
    assert!(
        got[0].contains("Error: etcdserver: mvcc: database space exceeded"),
        "{got:?}"
    );
    let (_, metrics) = janus.http_get("/metrics").expect("metrics");
    assert!(
        metrics.contains("etcd_server_quota_backend_bytes 200000"),
        "{metrics}"
    );
}

/// Every metric name this test expects, as etcd 3.4 exports them.
const METRICS: &[&str] = &[
    "etcd_server_has_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_server_proposals_pending",
    "etcd_server_proposals_failed_total",
    "etcd_server_quota_backend_bytes",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_debugging_mvcc_keys_total",
    "etcd_mvcc_put_total",
    "etcd_mvcc_delete_total",
    "etcd_disk_wal_fsync_duration_seconds_bucket",
    "etcd_disk_wal_fsync_duration_seconds_count",
    "etcd_network_client_grpc_received_bytes_total",
    "etcd_network_client_grpc_sent_bytes_total",
    "grpc_server_started_total",
    "grpc_server_handled_total",
];

/// name → the sample lines of it (labels included).
fn samples(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let name_end = l.find(['{', ' ']).unwrap_or(l.len());
            Some((l[..name_end].to_string(), l.to_string()))
        })
        .collect()
}

fn scrape(addr: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-m", "10", &format!("http://{addr}/metrics")])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn metric_value(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {line_prefix} in:\n{text}"))
}

#[test]
fn metrics_use_etcds_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd_dir = dir.path().join("etcd");
    std::fs::create_dir_all(&etcd_dir).expect("dir");
    let etcd = Etcd::start_with(&etcd_dir, "http", &[], &[]);
    let janus = janus_tls(dir.path(), &[]);
    wait_ctl_healthy(&janus.etcd, &[]);
    for ep in [&etcd.url, &janus.etcd] {
        for args in [
            &["put", "m1", "v"][..],
            &["put", "m2", "v"],
            &["get", "m1"],
            &["del", "m2"],
            &["get", "nothing", "--rev=999"],
        ] {
            ctl(ep, &[], args);
        }
    }
    let etcd_text = scrape(etcd.url.trim_start_matches("http://"));
    let janus_text = scrape(&janus.etcd);
    let etcd_names: Vec<String> = samples(&etcd_text).into_iter().map(|s| s.0).collect();
    let janus_names: Vec<String> = samples(&janus_text).into_iter().map(|s| s.0).collect();
    for name in METRICS {
        assert!(
            etcd_names.iter().any(|n| n == name),
            "real etcd has no {name}"
        );
        assert!(
            janus_names.iter().any(|n| n == name),
            "janus has no {name}:\n{janus_text}"
        );
    }
    assert_eq!(metric_value(&janus_text, "etcd_server_has_leader "), 1.0);
    assert!(metric_value(&janus_text, "etcd_server_leader_changes_seen_total ") >= 1.0);
    assert_eq!(metric_value(&janus_text, "etcd_mvcc_put_total "), 2.0);
    assert_eq!(metric_value(&janus_text, "etcd_mvcc_delete_total "), 1.0);
    assert_eq!(
        metric_value(&janus_text, "etcd_debugging_mvcc_keys_total "),
        1.0
    );
    assert!(
        metric_value(
            &janus_text,
            "etcd_network_client_grpc_received_bytes_total "
        ) > 0.0
    );
    assert!(metric_value(&janus_text, "etcd_network_client_grpc_sent_bytes_total ") > 0.0);
    // The same label sets as go-grpc-prometheus, for the same calls.
    for line in [
        "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}",
        "grpc_server_handled_total{grpc_code=\"OutOfRange\",grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}",
        "grpc_server_started_total{grpc_method=\"DeleteRange\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}",
    ] {
        assert!(etcd_text.contains(line), "real etcd has no {line}");
        assert!(janus_text.contains(line), "janus has no {line}:\n{janus_text}");
    }
    assert_eq!(
        metric_value(
            &janus_text,
            "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\""
        ),
        2.0
    );
}

#[test]
fn three_members_over_tls_peers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = Certs::new(dir.path());
    let peers: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let cluster = peers
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=https://{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let members: Vec<Janus> = (0..3)
        .map(|i| {
            let args = [
                "--node-id".to_string(),
                (i + 1).to_string(),
                "--initial-cluster".into(),
                cluster.clone(),
                format!("--peer-cert-file={}", certs.path("server.crt")),
                format!("--peer-key-file={}", certs.path("server.key")),
                format!("--peer-trusted-ca-file={}", certs.path("ca.crt")),
                "--peer-client-cert-auth".into(),
            ];
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Janus::start_with_peer(&dir.path().join(format!("m{}", i + 1)), &peers[i], &args)
        })
        .collect();
    for m in &members {
        m.wait_healthy(Duration::from_secs(30));
    }
    let (code, out, err) = ctl(&members[0].etcd, &[], &["put", "over", "tls"]);
    assert_eq!(code, 0, "{out}{err}");
    for m in &members {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, out, _) = ctl(
                &m.etcd,
                &[],
                &["get", "over", "--print-value-only", "--consistency=s"],
            );
            if out.trim() == "tls" {
                break;
            }
            assert!(Instant::now() < deadline, "{} never saw the write", m.etcd);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // MemberList shows https peer URLs.
    let (_, out, _) = ctl(&members[1].etcd, &[], &["member", "list"]);
    assert_eq!(out.matches("https://127.0.0.1:").count(), 3, "{out}");
    // A peer without a certificate is refused at the handshake: a plain
    // TLS connection to the peer port with no client certificate fails.
    let probe = Command::new("curl")
        .args([
            "-s",
            "-m",
            "5",
            "--http2-prior-knowledge",
            "--cacert",
            &certs.path("ca.crt"),
            &format!("https://{}/", peers[0]),
        ])
        .output()
        .expect("curl");
    assert!(
        !probe.status.success(),
        "peer port let a client without a certificate in"
    );
    let probe = Command::new("curl")
        .args([
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            &certs.path("ca.crt"),
            "--cert",
            &certs.path("client.crt"),
            "--key",
            &certs.path("client.key"),
            &format!("https://{}/", peers[0]),
        ])
        .output()
        .expect("curl");
    assert!(
        probe.status.success(),
        "peer port refused a valid certificate"
    );
}
