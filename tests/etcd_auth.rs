//! etcd auth, differentially: the same etcdctl session (users, roles,
//! permissions, `--user` as different users, denials, password change,
//! revocations, auth disable) and the same gRPC and JSON-gateway requests
//! run against a real etcd (Debian's etcd-server, on free loopback ports)
//! and against Janus; normalized outputs, gRPC codes and messages must
//! agree. A last test checks the rules etcd 3.5 added after the 3.4 oracle
//! (admin-only compaction, credentials for Status and leases) on Janus.
//!
//! Skipped (with a message) when etcd or etcdctl is not installed: run
//! scripts/deps/etcd.sh.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use janus_etcd::pb::authpb;
use janus_etcd::pb::etcdserverpb as pb;
use janus_tests::{free_port, Janus};
use serde_json::Value;
use tonic::transport::Channel;
use tonic::{Code, Request};

fn have(bin: &str, arg: &str) -> bool {
    Command::new(bin)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn installed() -> bool {
    let ok = have("etcd", "--version") && have("etcdctl", "version") && have("curl", "--version");
    if !ok {
        eprintln!("SKIPPED: etcd/etcdctl/curl not installed (scripts/deps/etcd.sh installs them)");
    }
    ok
}

/// A real etcd on free loopback ports; killed on drop.
struct Etcd {
    child: Child,
    endpoint: String,
}

impl Etcd {
    fn start(dir: &Path) -> Etcd {
        let client = format!("127.0.0.1:{}", free_port());
        let peer = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.join("etcd.log")).expect("etcd log");
        let child = Command::new("etcd")
            .args(["--name", "default", "--data-dir"])
            .arg(dir.join("etcd-data"))
            .arg(format!("--listen-client-urls=http://{client}"))
            .arg(format!("--advertise-client-urls=http://{client}"))
            .arg(format!("--listen-peer-urls=http://{peer}"))
            .arg(format!("--initial-advertise-peer-urls=http://{peer}"))
            .arg(format!("--initial-cluster=default=http://{peer}"))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn etcd");
        let e = Etcd {
            child,
            endpoint: client,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(&e.endpoint).is_ok()
                && ctl(&e.endpoint, &["endpoint", "health"], None).0 == 0
            {
                return e;
            }
            assert!(Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_janus(dir: &Path) -> Janus {
    let j = Janus::start(&dir.join("janus"), &[]);
    j.wait_healthy(Duration::from_secs(30));
    j
}

/// etcdctl against `endpoint`: (exit code, stdout, stderr), bounded.
fn ctl(endpoint: &str, args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut cmd = Command::new("timeout");
    let short = args.contains(&"watch");
    cmd.arg("-s").arg("INT").arg(if short { "3" } else { "20" });
    cmd.arg("etcdctl")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .env("ETCDCTL_API", "3")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn etcdctl");
    if let Some(input) = stdin {
        let mut si = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = si.write_all(&input);
        });
    }
    let out = child.wait_with_output().expect("etcdctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mask_ports(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("127.0.0.1:") {
        out.push_str(&rest[..i + 10]);
        rest = &rest[i + 10..];
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        out.push_str("PORT");
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// Server-chosen ids and terms masked, revisions relative to `base`.
fn norm_json(v: &Value, key: &str, base: i64) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), norm_json(x, k, base)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| norm_json(x, key, base)).collect()),
        _ => match key {
            "cluster_id" | "member_id" | "raft_term" => Value::String("<masked>".into()),
            "revision" | "create_revision" | "mod_revision" => {
                let n = v
                    .as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()));
                match n {
                    Some(r) => Value::String(format!("rev{:+}", r - base)),
                    None => v.clone(),
                }
            }
            _ => v.clone(),
        },
    }
}

fn norm_text(s: &str, base: i64) -> String {
    s.lines()
        .map(|l| {
            let l = mask_ports(l.trim_end());
            match serde_json::from_str::<Value>(&l) {
                Ok(v @ Value::Object(_)) => norm_json(&v, "", base).to_string(),
                _ => l,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const R: &str = "--user=root:rootpw";
const A: &str = "--user=alice:apw";

/// (arguments, stdin). The first step is a put whose revision is the base.
fn script() -> Vec<(Vec<&'static str>, Option<&'static str>)> {
    let s = |a: &'static str| (a.split(' ').collect::<Vec<_>>(), None);
    let as_ = |who: &'static str, a: &'static str| {
        let mut v = vec![who];
        v.extend(a.split(' '));
        (v, None)
    };
    vec![
        s("put foo bar -w json"),
        s("user add root:rootpw"),
        s("user add root:x"),
        s("user get root"),
        s("user get nosuch"),
        s("role add r1"),
        s("role add r1"),
        s("role grant-permission r1 readwrite /a --prefix"),
        s("role grant-permission r1 read /b"),
        s("role grant-permission r1 write /c /d"),
        s("role grant-permission r1 read --from-key /z"),
        s("role grant-permission r1 readwrite /b"),
        s("role grant-permission r1 read /b"),
        s("role grant-permission nosuch read /z"),
        s("role get r1"),
        s("role get r1 -w json"),
        s("role get nosuch"),
        s("user add alice:apw"),
        s("user add bob --no-password"),
        s("user grant-role alice r1"),
        s("user grant-role alice r1"),
        s("user grant-role alice nosuch"),
        s("user grant-role nosuch r1"),
        s("user get alice"),
        s("user get alice --detail"),
        s("user get alice -w json"),
        s("user list"),
        s("role list"),
        // etcdctl adds the root role and grants it when enable says it is missing.
        s("auth enable"),
        s("auth enable"),
        s("get foo"),
        s("put foo bar"),
        as_(R, "put foo baz -w json"),
        s("--user=root:bad get foo"),
        s("--user=nosuch:x get foo"),
        s("--user=bob:x get foo"),
        as_(A, "put /a/1 x"),
        as_(A, "get /a --prefix -w json"),
        as_(A, "get /b"),
        as_(A, "put /b x"),
        as_(A, "put /c1 x"),
        as_(A, "get /c1"),
        as_(A, "get --prefix /"),
        as_(A, "get --from-key /z9"),
        as_(A, "get --from-key /y"),
        as_(A, "del /a/1"),
        as_(A, "del /a /c"),
        (
            vec![A, "txn"],
            Some("value(\"/c1\") = \"x\"\n\nput /a/2 y\n\n\n"),
        ),
        (
            vec![A, "txn"],
            Some("value(\"/a/1\") = \"x\"\n\nput /a/2 y\n\nget /a/2\n\n"),
        ),
        (vec![A, "txn"], Some("\nput /a/3 y\nget /c1\n\n\n")),
        as_(A, "user list"),
        as_(A, "role list"),
        as_(A, "role get r1"),
        as_(A, "role get root"),
        as_(A, "user get alice"),
        as_(A, "user get root"),
        as_(A, "user add eve:x"),
        as_(A, "role add eve"),
        as_(A, "auth disable"),
        as_(A, "watch /c1"),
        as_(A, "watch /a/1"),
        as_(A, "defrag"),
        (
            vec![R, "user", "passwd", "alice", "--interactive=false"],
            Some("newpw\n"),
        ),
        as_(A, "get /b"),
        s("--user=alice:newpw get /a --prefix --keys-only"),
        as_(R, "role revoke-permission r1 /b"),
        as_(R, "role revoke-permission r1 /b"),
        as_(R, "role revoke-permission r1 /a --prefix"),
        as_(R, "role revoke-permission nosuch /a"),
        s("--user=alice:newpw get /a/2"),
        s("--user=alice:newpw role get r1"),
        as_(R, "user revoke-role alice r1"),
        as_(R, "user revoke-role alice r1"),
        as_(R, "user revoke-role root root"),
        as_(R, "user delete root"),
        as_(R, "role delete root"),
        as_(R, "user delete alice"),
        as_(R, "user delete alice"),
        s("--user=alice:newpw get foo"),
        as_(R, "role delete r1"),
        as_(R, "role delete r1"),
        as_(R, "user list"),
        as_(R, "role list"),
        as_(R, "user get bob"),
        s("auth disable"),
        as_(R, "auth disable"),
        s("get foo -w json"),
        s("--user=root:bad get foo"),
        s("user delete root"),
        s("role delete root"),
        s("user list"),
        s("auth enable"),
    ]
}

fn run_script(endpoint: &str) -> Vec<String> {
    let mut base = None;
    let mut out = Vec::new();
    for (args, stdin) in script() {
        let (code, stdout, stderr) = ctl(endpoint, &args, stdin.map(str::as_bytes));
        let b = *base.get_or_insert_with(|| {
            let v: Value = serde_json::from_str(stdout.trim()).expect("first put's json");
            v["header"]["revision"].as_i64().expect("revision") - 1
        });
        let errors: Vec<String> = stderr
            .lines()
            .filter(|l| l.starts_with("Error"))
            .map(mask_ports)
            .collect();
        out.push(format!(
            "$ etcdctl {}\nexit {code}\n{}\n{}",
            args.join(" "),
            norm_text(&stdout, b),
            errors.join("\n")
        ));
    }
    out
}

fn compare(what: &str, want: &[String], got: &[String]) {
    assert_eq!(want.len(), got.len());
    let diffs: Vec<String> = want
        .iter()
        .zip(got)
        .filter(|(w, g)| w != g)
        .map(|(w, g)| format!("--- etcd\n{w}\n+++ janus\n{g}\n"))
        .collect();
    assert!(
        diffs.is_empty(),
        "{what}: {} of {} steps differ:\n{}",
        diffs.len(),
        want.len(),
        diffs.join("\n")
    );
}

#[test]
fn etcdctl_auth_session_matches_real_etcd() {
    if !installed() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = Etcd::start(dir.path());
    let want = run_script(&etcd.endpoint);
    drop(etcd);
    let mut janus = start_janus(dir.path());
    let got = run_script(&janus.etcd);
    janus.kill9();
    compare("etcdctl", &want, &got);
}

// ------------------------------------------------------------- gRPC level

struct Clients {
    ch: Channel,
}

fn with_token<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("token", t.parse().expect("token metadata"));
    }
    r
}

/// "ok" or "<code> <message>".
fn outcome<T>(r: Result<tonic::Response<T>, tonic::Status>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(s) => format!("{:?} {}", s.code(), s.message()),
    }
}

impl Clients {
    async fn connect(endpoint: &str) -> Clients {
        let ch = Channel::from_shared(format!("http://{endpoint}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        Clients { ch }
    }
    fn auth(&self) -> pb::auth_client::AuthClient<Channel> {
        pb::auth_client::AuthClient::new(self.ch.clone())
    }
    fn kv(&self) -> pb::kv_client::KvClient<Channel> {
        pb::kv_client::KvClient::new(self.ch.clone())
    }
    fn lease(&self) -> pb::lease_client::LeaseClient<Channel> {
        pb::lease_client::LeaseClient::new(self.ch.clone())
    }
    fn maint(&self) -> pb::maintenance_client::MaintenanceClient<Channel> {
        pb::maintenance_client::MaintenanceClient::new(self.ch.clone())
    }

    async fn token(&self, name: &str, password: &str) -> Result<String, tonic::Status> {
        let r = self
            .auth()
            .authenticate(pb::AuthenticateRequest {
                name: name.into(),
                password: password.into(),
            })
            .await?;
        Ok(r.into_inner().token)
    }

    /// One watch create on a fresh stream: its first response, summarized.
    async fn watch(&self, key: &str, token: Option<&str>) -> String {
        let mut w = pb::watch_client::WatchClient::new(self.ch.clone());
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: key.into(),
                    ..Default::default()
                },
            )),
        };
        tx.send(create).await.expect("send");
        let req = with_token(tokio_stream::wrappers::ReceiverStream::new(rx), token);
        let mut s = match w.watch(req).await {
            Ok(s) => s.into_inner(),
            Err(e) => return format!("{:?} {}", e.code(), e.message()),
        };
        match tokio::time::timeout(Duration::from_secs(5), s.message()).await {
            Ok(Ok(Some(m))) => format!(
                "created={} canceled={} reason={:?} id={}",
                m.created, m.canceled, m.cancel_reason, m.watch_id
            ),
            other => format!("{other:?}"),
        }
    }
}

fn put(k: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: k.into(),
        value: b"v".to_vec(),
        ..Default::default()
    }
}

fn get(k: &str, end: &str) -> pb::RangeRequest {
    pb::RangeRequest {
        key: k.into(),
        range_end: end.into(),
        ..Default::default()
    }
}

fn grant(
    role: &str,
    t: authpb::permission::Type,
    key: &str,
    end: &str,
) -> pb::AuthRoleGrantPermissionRequest {
    pb::AuthRoleGrantPermissionRequest {
        name: role.into(),
        perm: Some(authpb::Permission {
            perm_type: t as i32,
            key: key.into(),
            range_end: end.into(),
        }),
    }
}

/// The same requests against any etcd: one line per request.
async fn grpc_script(endpoint: &str) -> Vec<String> {
    use authpb::permission::Type;
    let c = Clients::connect(endpoint).await;
    let mut out = Vec::new();
    let mut log = |name: &str, r: String| out.push(format!("{name}: {r}"));
    let au = || c.auth();

    // Set up as etcdctl would, with auth still off.
    for (name, pw, np) in [
        ("root", "rootpw", false),
        ("alice", "apw", false),
        ("bob", "", true),
    ] {
        let r = au()
            .user_add(pb::AuthUserAddRequest {
                name: name.into(),
                password: pw.into(),
                options: Some(authpb::UserAddOptions { no_password: np }),
                hashed_password: String::new(),
            })
            .await;
        log(&format!("user_add {name}"), outcome(r));
    }
    log(
        "user_add empty",
        outcome(au().user_add(pb::AuthUserAddRequest::default()).await),
    );
    log(
        "role_add empty",
        outcome(au().role_add(pb::AuthRoleAddRequest::default()).await),
    );
    log(
        "authenticate while off",
        outcome(
            au().authenticate(pb::AuthenticateRequest {
                name: "root".into(),
                password: "rootpw".into(),
            })
            .await,
        ),
    );
    log(
        "enable without root role",
        outcome(au().auth_enable(pb::AuthEnableRequest {}).await),
    );
    for (u, r) in [("root", "root"), ("alice", "r1")] {
        if r != "root" {
            log(
                "role_add r1",
                outcome(
                    au().role_add(pb::AuthRoleAddRequest { name: r.into() })
                        .await,
                ),
            );
        }
        log(
            &format!("grant {r} to {u}"),
            outcome(
                au().user_grant_role(pb::AuthUserGrantRoleRequest {
                    user: u.into(),
                    role: r.into(),
                })
                .await,
            ),
        );
    }
    log(
        "grant rw /a prefix",
        outcome(
            au().role_grant_permission(grant("r1", Type::Readwrite, "/a", "/b"))
                .await,
        ),
    );
    log(
        "grant w /c",
        outcome(
            au().role_grant_permission(grant("r1", Type::Write, "/c", "/d"))
                .await,
        ),
    );
    log(
        "revoke not granted",
        outcome(
            au().role_revoke_permission(pb::AuthRoleRevokePermissionRequest {
                role: "r1".into(),
                key: b"/x".to_vec(),
                range_end: vec![],
            })
            .await,
        ),
    );
    // A key on a lease, written by root before auth goes on.
    let lease = c
        .lease()
        .lease_grant(pb::LeaseGrantRequest { ttl: 600, id: 0 })
        .await
        .map(|r| r.into_inner().id)
        .unwrap_or(0);
    let mut leased = put("/q");
    leased.lease = lease;
    log("put leased /q", outcome(c.kv().put(leased).await));
    log(
        "enable",
        outcome(au().auth_enable(pb::AuthEnableRequest {}).await),
    );
    log(
        "enable again, anonymous",
        outcome(au().auth_enable(pb::AuthEnableRequest {}).await),
    );

    // Logging in.
    log(
        "login bad password",
        outcome(
            au().authenticate(pb::AuthenticateRequest {
                name: "root".into(),
                password: "x".into(),
            })
            .await,
        ),
    );
    log(
        "login unknown user",
        outcome(
            au().authenticate(pb::AuthenticateRequest {
                name: "zed".into(),
                password: "x".into(),
            })
            .await,
        ),
    );
    log(
        "login no-password user",
        outcome(
            au().authenticate(pb::AuthenticateRequest {
                name: "bob".into(),
                password: "x".into(),
            })
            .await,
        ),
    );
    let root = c.token("root", "rootpw").await.expect("root token");
    let alice = c.token("alice", "apw").await.expect("alice token");
    let (r, al) = (Some(root.as_str()), Some(alice.as_str()));

    // The permission check on KV.
    log(
        "range anonymous",
        outcome(c.kv().range(get("/a/1", "")).await),
    );
    log(
        "range bad token",
        outcome(
            c.kv()
                .range(with_token(get("/a/1", ""), Some("garbage")))
                .await,
        ),
    );
    log(
        "range alice /a/1",
        outcome(c.kv().range(with_token(get("/a/1", ""), al)).await),
    );
    log(
        "range alice /a prefix",
        outcome(c.kv().range(with_token(get("/a", "/b"), al)).await),
    );
    log(
        "range alice /a../c",
        outcome(c.kv().range(with_token(get("/a", "/c"), al)).await),
    );
    log(
        "range alice all",
        outcome(c.kv().range(with_token(get("\0", "\0"), al)).await),
    );
    log(
        "range alice /c1",
        outcome(c.kv().range(with_token(get("/c1", ""), al)).await),
    );
    log(
        "range root all",
        outcome(c.kv().range(with_token(get("\0", "\0"), r)).await),
    );
    log(
        "put alice /a/1",
        outcome(c.kv().put(with_token(put("/a/1"), al)).await),
    );
    log(
        "put alice /c1",
        outcome(c.kv().put(with_token(put("/c1"), al)).await),
    );
    let mut pkv = put("/c1");
    pkv.prev_kv = true;
    log(
        "put alice /c1 prev_kv",
        outcome(c.kv().put(with_token(pkv, al)).await),
    );
    log(
        "put alice /b",
        outcome(c.kv().put(with_token(put("/b"), al)).await),
    );
    log("put anonymous", outcome(c.kv().put(put("/a/1")).await));
    let mut pl = put("/a/9");
    pl.lease = lease;
    log(
        "put alice on root's lease",
        outcome(c.kv().put(with_token(pl, al)).await),
    );
    log(
        "delete alice /a..",
        outcome(
            c.kv()
                .delete_range(with_token(
                    pb::DeleteRangeRequest {
                        key: b"/a".to_vec(),
                        range_end: b"/b".to_vec(),
                        prev_kv: false,
                    },
                    al,
                ))
                .await,
        ),
    );
    log(
        "delete alice /c.. prev_kv",
        outcome(
            c.kv()
                .delete_range(with_token(
                    pb::DeleteRangeRequest {
                        key: b"/c".to_vec(),
                        range_end: b"/d".to_vec(),
                        prev_kv: true,
                    },
                    al,
                ))
                .await,
        ),
    );
    let op_put = |k: &str| pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(put(k))),
    };
    let op_get = |k: &str| pb::RequestOp {
        request: Some(pb::request_op::Request::RequestRange(get(k, ""))),
    };
    let cmp = |k: &str| pb::Compare {
        key: k.into(),
        target: pb::compare::CompareTarget::Version as i32,
        result: pb::compare::CompareResult::Equal as i32,
        target_union: Some(pb::compare::TargetUnion::Version(0)),
        range_end: vec![],
    };
    let txn = |compare: Vec<pb::Compare>,
               success: Vec<pb::RequestOp>,
               failure: Vec<pb::RequestOp>| pb::TxnRequest {
        compare,
        success,
        failure,
    };
    log(
        "txn alice ok",
        outcome(
            c.kv()
                .txn(with_token(
                    txn(
                        vec![cmp("/a/5")],
                        vec![op_put("/a/5")],
                        vec![op_get("/a/5")],
                    ),
                    al,
                ))
                .await,
        ),
    );
    log(
        "txn alice compare /c1",
        outcome(
            c.kv()
                .txn(with_token(
                    txn(vec![cmp("/c1")], vec![op_put("/a/6")], vec![]),
                    al,
                ))
                .await,
        ),
    );
    log(
        "txn alice failure get /b",
        outcome(
            c.kv()
                .txn(with_token(
                    txn(vec![], vec![op_put("/a/7")], vec![op_get("/b")]),
                    al,
                ))
                .await,
        ),
    );
    log(
        "lease revoke alice, root's key",
        outcome(
            c.lease()
                .lease_revoke(with_token(pb::LeaseRevokeRequest { id: lease }, al))
                .await,
        ),
    );

    // Watch.
    log("watch alice /a/1", c.watch("/a/1", al).await);
    log("watch alice /c1", c.watch("/c1", al).await);
    log("watch anonymous", c.watch("/a/1", None).await);
    log("watch bad token", c.watch("/a/1", Some("garbage")).await);

    // Admin-only RPCs.
    log(
        "user_add alice",
        outcome(
            au().user_add(with_token(
                pb::AuthUserAddRequest {
                    name: "eve".into(),
                    password: "x".into(),
                    ..Default::default()
                },
                al,
            ))
            .await,
        ),
    );
    log(
        "user_list alice",
        outcome(
            au().user_list(with_token(pb::AuthUserListRequest {}, al))
                .await,
        ),
    );
    log(
        "role_list anonymous",
        outcome(au().role_list(pb::AuthRoleListRequest {}).await),
    );
    log(
        "auth_disable anonymous",
        outcome(au().auth_disable(pb::AuthDisableRequest {}).await),
    );
    log(
        "user_get alice self",
        outcome(
            au().user_get(with_token(
                pb::AuthUserGetRequest {
                    name: "alice".into(),
                },
                al,
            ))
            .await,
        ),
    );
    log(
        "user_get alice root",
        outcome(
            au().user_get(with_token(
                pb::AuthUserGetRequest {
                    name: "root".into(),
                },
                al,
            ))
            .await,
        ),
    );
    log(
        "user_get anonymous",
        outcome(
            au().user_get(pb::AuthUserGetRequest {
                name: "alice".into(),
            })
            .await,
        ),
    );
    log(
        "role_get alice r1",
        outcome(
            au().role_get(with_token(pb::AuthRoleGetRequest { role: "r1".into() }, al))
                .await,
        ),
    );
    log(
        "role_get alice root",
        outcome(
            au().role_get(with_token(
                pb::AuthRoleGetRequest {
                    role: "root".into(),
                },
                al,
            ))
            .await,
        ),
    );
    log(
        "defragment alice",
        outcome(
            c.maint()
                .defragment(with_token(pb::DefragmentRequest {}, al))
                .await,
        ),
    );
    log(
        "hash anonymous",
        outcome(c.maint().hash(pb::HashRequest {}).await),
    );
    log(
        "hashkv alice",
        outcome(
            c.maint()
                .hash_kv(with_token(pb::HashKvRequest { revision: 0 }, al))
                .await,
        ),
    );
    log(
        "delete root",
        outcome(
            au().user_delete(with_token(
                pb::AuthUserDeleteRequest {
                    name: "root".into(),
                },
                r,
            ))
            .await,
        ),
    );
    log(
        "revoke root role",
        outcome(
            au().user_revoke_role(with_token(
                pb::AuthUserRevokeRoleRequest {
                    name: "root".into(),
                    role: "root".into(),
                },
                r,
            ))
            .await,
        ),
    );
    log(
        "delete root role",
        outcome(
            au().role_delete(with_token(
                pb::AuthRoleDeleteRequest {
                    role: "root".into(),
                },
                r,
            ))
            .await,
        ),
    );
    log(
        "change password unknown",
        outcome(
            au().user_change_password(with_token(
                pb::AuthUserChangePasswordRequest {
                    name: "zed".into(),
                    password: "x".into(),
                    ..Default::default()
                },
                r,
            ))
            .await,
        ),
    );
    log(
        "grant unknown role",
        outcome(
            au().user_grant_role(with_token(
                pb::AuthUserGrantRoleRequest {
                    user: "alice".into(),
                    role: "zz".into(),
                },
                r,
            ))
            .await,
        ),
    );
    log(
        "add existing user",
        outcome(
            au().user_add(with_token(
                pb::AuthUserAddRequest {
                    name: "alice".into(),
                    password: "x".into(),
                    ..Default::default()
                },
                r,
            ))
            .await,
        ),
    );
    log(
        "add existing role",
        outcome(
            au().role_add(with_token(pb::AuthRoleAddRequest { name: "r1".into() }, r))
                .await,
        ),
    );
    log(
        "enable as root",
        outcome(
            au().auth_enable(with_token(pb::AuthEnableRequest {}, r))
                .await,
        ),
    );

    // Role changes keep alice's token; a password change voids it.
    log(
        "revoke r1 /a",
        outcome(
            au().role_revoke_permission(with_token(
                pb::AuthRoleRevokePermissionRequest {
                    role: "r1".into(),
                    key: b"/a".to_vec(),
                    range_end: b"/b".to_vec(),
                },
                r,
            ))
            .await,
        ),
    );
    log(
        "range alice /a/1 after revoke",
        outcome(c.kv().range(with_token(get("/a/1", ""), al)).await),
    );
    log(
        "change alice's password",
        outcome(
            au().user_change_password(with_token(
                pb::AuthUserChangePasswordRequest {
                    name: "alice".into(),
                    password: "new".into(),
                    ..Default::default()
                },
                r,
            ))
            .await,
        ),
    );
    log(
        "range alice old token",
        outcome(c.kv().range(with_token(get("/a/1", ""), al)).await),
    );
    log(
        "login alice old password",
        outcome(
            au().authenticate(pb::AuthenticateRequest {
                name: "alice".into(),
                password: "apw".into(),
            })
            .await,
        ),
    );
    let alice2 = c.token("alice", "new").await.expect("new alice token");
    log(
        "grant root to alice",
        outcome(
            au().user_grant_role(with_token(
                pb::AuthUserGrantRoleRequest {
                    user: "alice".into(),
                    role: "root".into(),
                },
                r,
            ))
            .await,
        ),
    );
    log(
        "range alice as root",
        outcome(
            c.kv()
                .range(with_token(get("\0", "\0"), Some(&alice2)))
                .await,
        ),
    );
    log(
        "user_list alice as root",
        outcome(
            au().user_list(with_token(pb::AuthUserListRequest {}, Some(&alice2)))
                .await,
        ),
    );
    log(
        "delete alice",
        outcome(
            au().user_delete(with_token(
                pb::AuthUserDeleteRequest {
                    name: "alice".into(),
                },
                r,
            ))
            .await,
        ),
    );
    log(
        "range deleted alice",
        outcome(
            c.kv()
                .range(with_token(get("/a/1", ""), Some(&alice2)))
                .await,
        ),
    );

    // Disable: every token is gone, anonymous requests work again.
    log(
        "disable as root",
        outcome(
            au().auth_disable(with_token(pb::AuthDisableRequest {}, r))
                .await,
        ),
    );
    log(
        "range anonymous after disable",
        outcome(c.kv().range(get("/a/1", "")).await),
    );
    log(
        "authenticate after disable",
        outcome(
            au().authenticate(pb::AuthenticateRequest {
                name: "root".into(),
                password: "rootpw".into(),
            })
            .await,
        ),
    );
    log(
        "enable again",
        outcome(au().auth_enable(pb::AuthEnableRequest {}).await),
    );
    log(
        "range old root token after re-enable",
        outcome(c.kv().range(with_token(get("/a/1", ""), r)).await),
    );
    let root2 = c.token("root", "rootpw").await.expect("root token");
    log(
        "disable with new token",
        outcome(
            au().auth_disable(with_token(pb::AuthDisableRequest {}, Some(&root2)))
                .await,
        ),
    );
    out
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn grpc_auth_codes_and_messages_match_real_etcd() {
    if !installed() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = Etcd::start(dir.path());
    let want = block_on(grpc_script(&etcd.endpoint));
    drop(etcd);
    let mut janus = start_janus(dir.path());
    let got = block_on(grpc_script(&janus.etcd));
    janus.kill9();
    compare("grpc", &want, &got);
}

// ---------------------------------------------------------- JSON gateway

fn curl(endpoint: &str, path: &str, body: &str, token: Option<&str>) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "10", "-X", "POST"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: {t}")]);
    }
    let out = cmd
        .arg(format!("http://{endpoint}{path}"))
        .args(["-d", body, "-w", "\nHTTP %{http_code}"])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn gateway_script(endpoint: &str) -> Vec<String> {
    let mut out = Vec::new();
    let steps: &[(&str, &str, bool)] = &[
        (
            "/v3/auth/user/add",
            r#"{"name":"root","password":"pw"}"#,
            false,
        ),
        (
            "/v3/auth/user/grant",
            r#"{"user":"root","role":"root"}"#,
            false,
        ),
        ("/v3/auth/enable", r#"{}"#, false),
        ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#, false),
        (
            "/v3/auth/authenticate",
            r#"{"name":"root","password":"nope"}"#,
            false,
        ),
        ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#, true),
        ("/v3/kv/range", r#"{"key":"Zm9v"}"#, true),
        ("/v3/auth/user/list", r#"{}"#, true),
        ("/v3/auth/disable", r#"{}"#, true),
        ("/v3/kv/range", r#"{"key":"Zm9v"}"#, false),
    ];
    let mut token = None;
    let mut base = None;
    for (path, body, with_token) in steps {
        if *with_token && token.is_none() {
            let r = curl(
                endpoint,
                "/v3/auth/authenticate",
                r#"{"name":"root","password":"pw"}"#,
                None,
            );
            let v: Value =
                serde_json::from_str(r.lines().next().unwrap_or_default()).expect("token json");
            token = v["token"].as_str().map(String::from);
            assert!(token.is_some(), "{r}");
        }
        let r = curl(
            endpoint,
            path,
            body,
            if *with_token { token.as_deref() } else { None },
        );
        let mut lines = Vec::new();
        for l in r.lines() {
            match serde_json::from_str::<Value>(l) {
                Ok(v @ Value::Object(_)) => {
                    if base.is_none() {
                        base = v["header"]["revision"]
                            .as_str()
                            .and_then(|s| s.parse::<i64>().ok());
                    }
                    let mut v = norm_json(&v, "", base.unwrap_or(0));
                    if v.get("token").is_some() {
                        v["token"] = Value::String("<token>".into());
                    }
                    lines.push(v.to_string());
                }
                _ => lines.push(l.to_string()),
            }
        }
        out.push(format!(
            "POST {path} {body} token={with_token}\n{}",
            lines.join("\n")
        ));
    }
    out
}

#[test]
fn json_gateway_auth_matches_real_etcd() {
    if !installed() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = Etcd::start(dir.path());
    let want = gateway_script(&etcd.endpoint);
    drop(etcd);
    let mut janus = start_janus(dir.path());
    let got = gateway_script(&janus.etcd);
    janus.kill9();
    compare("gateway", &want, &got);
}

// ------------------------------------------- etcd 3.5 rules past the oracle

/// etcd 3.5.2x checks more than the 3.4 oracle: compaction needs root
/// (kvServer.Compact → isPermitted), Status, lease grant/revoke and
/// time-to-live need credentials (requireAuthInfo), and listing leases or
/// a lease's keys needs read access to those keys. Checked on Janus alone,
/// against etcd 3.5's codes and texts.
#[test]
fn etcd_3_5_admin_and_lease_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut janus = start_janus(dir.path());
    let got = block_on(async {
        use authpb::permission::Type;
        let c = Clients::connect(&janus.etcd).await;
        let au = || c.auth();
        for (n, pw) in [("root", "r"), ("alice", "a")] {
            au().user_add(pb::AuthUserAddRequest {
                name: n.into(),
                password: pw.into(),
                ..Default::default()
            })
            .await
            .expect("user add");
        }
        au().user_grant_role(pb::AuthUserGrantRoleRequest {
            user: "root".into(),
            role: "root".into(),
        })
        .await
        .expect("grant");
        au().role_add(pb::AuthRoleAddRequest { name: "r1".into() })
            .await
            .expect("role");
        au().role_grant_permission(grant("r1", Type::Readwrite, "/a", "/b"))
            .await
            .expect("perm");
        au().user_grant_role(pb::AuthUserGrantRoleRequest {
            user: "alice".into(),
            role: "r1".into(),
        })
        .await
        .expect("grant");
        let lease = c
            .lease()
            .lease_grant(pb::LeaseGrantRequest { ttl: 600, id: 0 })
            .await
            .expect("lease")
            .into_inner()
            .id;
        let mut p = put("/secret");
        p.lease = lease;
        c.kv().put(p).await.expect("put");
        au().auth_enable(pb::AuthEnableRequest {})
            .await
            .expect("enable");
        let alice = c.token("alice", "a").await.expect("token");
        let root = c.token("root", "r").await.expect("token");
        let (al, r) = (Some(alice.as_str()), Some(root.as_str()));
        let mut v = Vec::new();
        v.push(outcome(
            c.kv()
                .compact(with_token(
                    pb::CompactionRequest {
                        revision: 1,
                        physical: false,
                    },
                    al,
                ))
                .await,
        ));
        v.push(outcome(
            c.kv()
                .compact(with_token(
                    pb::CompactionRequest {
                        revision: 1,
                        physical: false,
                    },
                    r,
                ))
                .await,
        ));
        v.push(outcome(c.maint().status(pb::StatusRequest {}).await));
        v.push(outcome(
            c.maint().status(with_token(pb::StatusRequest {}, al)).await,
        ));
        v.push(outcome(
            c.lease()
                .lease_grant(pb::LeaseGrantRequest { ttl: 60, id: 0 })
                .await,
        ));
        v.push(outcome(
            c.lease()
                .lease_time_to_live(with_token(
                    pb::LeaseTimeToLiveRequest {
                        id: lease,
                        keys: true,
                    },
                    al,
                ))
                .await,
        ));
        v.push(outcome(
            c.lease()
                .lease_time_to_live(with_token(
                    pb::LeaseTimeToLiveRequest {
                        id: lease,
                        keys: false,
                    },
                    al,
                ))
                .await,
        ));
        v.push(outcome(
            c.lease()
                .lease_leases(with_token(pb::LeaseLeasesRequest {}, al))
                .await,
        ));
        v.push(outcome(
            c.lease()
                .lease_leases(with_token(pb::LeaseLeasesRequest {}, r))
                .await,
        ));
        v.push(outcome(
            c.lease()
                .lease_revoke(pb::LeaseRevokeRequest { id: lease })
                .await,
        ));
        // 3.4 does not look into nested txns.
        let nested = pb::RequestOp {
            request: Some(pb::request_op::Request::RequestTxn(pb::TxnRequest {
                success: vec![pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestPut(put("/zz"))),
                }],
                ..Default::default()
            })),
        };
        v.push(outcome(
            c.kv()
                .txn(with_token(
                    pb::TxnRequest {
                        success: vec![nested],
                        ..Default::default()
                    },
                    al,
                ))
                .await,
        ));
        // 3.4 checks no permission range (and crashes on a missing one).
        v.push(outcome(
            au().role_grant_permission(with_token(
                pb::AuthRoleGrantPermissionRequest {
                    name: "r1".into(),
                    perm: None,
                },
                r,
            ))
            .await,
        ));
        for (k, e) in [("/b", "/a"), ("", "")] {
            v.push(outcome(
                au().role_grant_permission(with_token(grant("r1", Type::Read, k, e), r))
                    .await,
            ));
        }
        // AuthStatus is new in 3.5.
        v.push(outcome(
            au().auth_status(with_token(pb::AuthStatusRequest {}, al))
                .await,
        ));
        v.push(
            match au()
                .auth_status(with_token(pb::AuthStatusRequest {}, r))
                .await
            {
                Ok(s) => format!("enabled={}", s.get_ref().enabled),
                Err(s) => format!("{s:?}"),
            },
        );
        // 3.4 still reads a token while auth is off; 3.5 ignores it.
        au().auth_disable(with_token(pb::AuthDisableRequest {}, r))
            .await
            .expect("disable");
        v.push(outcome(c.kv().range(with_token(get("/a", ""), r)).await));
        v
    });
    janus.kill9();
    let denied = format!("{:?} etcdserver: permission denied", Code::PermissionDenied);
    let empty = format!("{:?} etcdserver: user name is empty", Code::InvalidArgument);
    let want = vec![
        denied.clone(),
        "ok".to_string(),
        empty.clone(),
        "ok".to_string(),
        empty.clone(),
        denied.clone(),
        "ok".to_string(),
        denied.clone(),
        "ok".to_string(),
        empty,
        denied.clone(),
        format!(
            "{:?} etcdserver: permission not given",
            Code::InvalidArgument
        ),
        format!(
            "{:?} etcdserver: invalid auth management",
            Code::InvalidArgument
        ),
        format!(
            "{:?} etcdserver: invalid auth management",
            Code::InvalidArgument
        ),
        denied,
        "enabled=true".to_string(),
        "ok".to_string(),
    ];
    assert_eq!(got, want);
}
