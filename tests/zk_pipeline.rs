//! Pipelined writes on one connection, sent without waiting for answers,
//! against real ZooKeeper and against Janus (one member, and a follower of
//! three members, whose writes are forwarded to the leader): the same
//! answers, errors, zxid steps and watch events, in the same order.
//!
//! What it pins down: a session's writes apply in the order sent (sequential
//! suffixes and a child created under a parent created just before it);
//! ACLs are checked against what earlier writes left; every write, even one
//! refused before it reaches the tree, takes a zxid; a read waits for the
//! writes before it; a watch event comes before the answer that reflects it.

#[path = "zk_support.rs"]
mod zk_support;

use std::time::Duration;

use janus_tests::{leader_index, start_cluster};
use zk_support::{be_i32, start_janus, string, Raw, RealZk};

const AUTH_XID: i32 = -4;
const NOTIFICATION_XID: i32 = -1;

fn open_acl() -> Vec<u8> {
    let mut b = be_i32(1).to_vec();
    b.extend_from_slice(&be_i32(31));
    b.extend_from_slice(&string("world"));
    b.extend_from_slice(&string("anyone"));
    b
}

fn acl(scheme: &str, id: &str) -> Vec<u8> {
    let mut b = be_i32(1).to_vec();
    b.extend_from_slice(&be_i32(31));
    b.extend_from_slice(&string(scheme));
    b.extend_from_slice(&string(id));
    b
}

fn create(path: &str, data: &[u8], acl: &[u8], flags: i32) -> Vec<u8> {
    let mut b = string(path);
    b.extend_from_slice(&be_i32(data.len() as i32));
    b.extend_from_slice(data);
    b.extend_from_slice(acl);
    b.extend_from_slice(&be_i32(flags));
    b
}

fn path_version(path: &str, version: i32) -> Vec<u8> {
    let mut b = string(path);
    b.extend_from_slice(&be_i32(version));
    b
}

fn set_data(path: &str, data: &[u8], version: i32) -> Vec<u8> {
    let mut b = string(path);
    b.extend_from_slice(&be_i32(data.len() as i32));
    b.extend_from_slice(data);
    b.extend_from_slice(&be_i32(version));
    b
}

fn path_watch(path: &str, watch: bool) -> Vec<u8> {
    let mut b = string(path);
    b.push(u8::from(watch));
    b
}

/// multi [create `c`, check `p` at version `v`].
fn multi_create_check(c: &str, p: &str, v: i32) -> Vec<u8> {
    let mut b = Vec::new();
    for (op, body) in [
        (1, create(c, b"", &open_acl(), 0)),
        (13, path_version(p, v)),
    ] {
        b.extend_from_slice(&be_i32(op));
        b.push(0);
        b.extend_from_slice(&be_i32(-1));
        b.extend_from_slice(&body);
    }
    b.extend_from_slice(&be_i32(-1));
    b.push(1);
    b.extend_from_slice(&be_i32(-1));
    b
}

fn read_string(b: &[u8], at: &mut usize) -> String {
    let n = i32::from_be_bytes(b[*at..*at + 4].try_into().expect("len"));
    *at += 4;
    if n < 0 {
        return String::new();
    }
    let s = String::from_utf8_lossy(&b[*at..*at + n as usize]).into_owned();
    *at += n as usize;
    s
}

/// What a reply's body says, without stats (their times differ).
fn summary(op: i32, body: &[u8]) -> String {
    match op {
        // create: the path.
        1 => read_string(body, &mut 0),
        // getChildren: the names, sorted (ZooKeeper keeps a hash set).
        8 => {
            let n = i32::from_be_bytes(body[0..4].try_into().expect("count"));
            let mut at = 4;
            let mut names: Vec<String> = (0..n).map(|_| read_string(body, &mut at)).collect();
            names.sort();
            names.join(",")
        }
        // getData: the data.
        4 => read_string(body, &mut 0),
        // multi: each result's (type, err).
        14 => {
            let mut at = 0;
            let mut out = Vec::new();
            loop {
                let ty = i32::from_be_bytes(body[at..at + 4].try_into().expect("type"));
                let done = body[at + 4] != 0;
                let err = i32::from_be_bytes(body[at + 5..at + 9].try_into().expect("err"));
                at += 9;
                if done {
                    break;
                }
                out.push(format!("{ty}:{err}"));
                match ty {
                    -1 => at += 4,
                    1 => {
                        read_string(body, &mut at);
                    }
                    _ => {}
                }
            }
            out.join(" ")
        }
        _ => String::new(),
    }
}

/// Send `reqs` back to back on `c`, then read every frame until each is
/// answered: one line per reply (its request, error, zxid step from
/// `base`, body summary) or notification.
fn pipeline(c: &mut Raw, reqs: &[(i32, Vec<u8>)], base: i64) -> Vec<String> {
    let first = c.xid + 1;
    for (op, body) in reqs {
        c.send(*op, body);
    }
    let mut out = Vec::new();
    let mut answered = 0;
    while answered < reqs.len() {
        let (xid, zxid, err, body) = c.recv().expect("reply");
        if xid == NOTIFICATION_XID {
            let (ty, path) = zk_support::parse_event(&body);
            out.push(format!("event {ty} {path}"));
            continue;
        }
        let i = (xid - first) as usize;
        assert_eq!(i, answered, "answers come in request order");
        let (op, _) = &reqs[i];
        let body = if err == 0 {
            summary(*op, &body)
        } else {
            String::new()
        };
        out.push(format!(
            "#{i} op {op} err {err} zxid +{} {body}",
            zxid - base
        ));
        answered += 1;
    }
    out
}

/// The whole script against a server's client address.
fn script(addr: &str) -> Vec<String> {
    let mut a = Raw::connect(addr);
    // Digest auth as alice (xid -4).
    let mut p = be_i32(AUTH_XID).to_vec();
    p.extend_from_slice(&be_i32(100));
    p.extend_from_slice(&be_i32(0));
    p.extend_from_slice(&string("digest"));
    p.extend_from_slice(&string("alice:secret"));
    Raw::send_frame(&mut a.s, &p).expect("auth");
    let (xid, _, err, _) = a.recv().expect("auth reply");
    assert_eq!((xid, err), (AUTH_XID, 0));
    let xid = a.send(1, &create("/pl", b"", &open_acl(), 0));
    let (rx, base, err, _) = a.recv().expect("create /pl");
    assert_eq!((rx, err), (xid, 0));
    let (err, _, _) = a.call(8, &path_watch("/pl", true));
    assert_eq!(err, 0);

    let mut reqs = vec![
        (1, create("/pl/a", b"", &acl("auth", ""), 0)),
        // The parent only lets alice create: checked against the write
        // just before, not yet answered.
        (1, create("/pl/a/b", b"", &open_acl(), 0)),
        (5, set_data("/pl/a/b", b"v1", 0)),
        (5, set_data("/pl/a/b", b"v2", 0)),
    ];
    for i in 0..20 {
        reqs.push((
            1,
            create("/pl/s-", i.to_string().as_bytes(), &open_acl(), 2),
        ));
    }
    reqs.extend([
        (8, path_watch("/pl", false)),
        (2, path_version("/pl/a/b", -1)),
        (14, multi_create_check("/pl/m", "/pl/a", 5)),
        // Refused before the tree: bad flags, an invalid ACL.
        (1, create("/pl/x", b"", &open_acl(), 99)),
        (1, create("/pl/y", b"", &acl("world", "bob"), 0)),
        (3, path_watch("/pl/y", false)),
        // Sequential suffixes follow the order sent: s-0000000006 holds "5".
        (4, path_watch("/pl/s-0000000006", false)),
        (5, set_data("/pl/s-0000000006", b"w", -1)),
    ]);
    let mut out = pipeline(&mut a, &reqs, base);

    // Another session without alice's id.
    let mut b = Raw::connect(addr);
    out.extend(pipeline(
        &mut b,
        &[
            (5, set_data("/pl/a", b"no", -1)),
            (1, create("/pl/a/c", b"", &open_acl(), 0)),
            // DELETE on the parent is checked before the node is looked up.
            (2, path_version("/pl/a/none", -1)),
            (2, path_version("/pl/none/x", -1)),
            (2, path_version("/pl/a", -1)),
            (8, path_watch("/pl", false)),
        ],
        base,
    ));
    out
}

#[test]
fn pipelined_writes_agree_with_real_zookeeper() {
    let zk = RealZk::start();
    let expected = script(&zk.addr);

    let tmp = tempfile::tempdir().expect("tempdir");
    let j = start_janus(&tmp.path().join("one"), "");
    let one = script(&j.zk);
    assert_eq!(
        one,
        expected,
        "one member vs real ZooKeeper:\n{}",
        one.join("\n")
    );

    // Through a follower: its writes go to the leader as ForwardBatch RPCs.
    let dir = tmp.path().join("three");
    std::fs::create_dir_all(&dir).expect("dir");
    let members = start_cluster(&dir, 3, "[zookeeper]\nfour_letter_words = [\"*\"]\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let leader = loop {
        if let Some(l) = leader_index(&members) {
            break l;
        }
        assert!(std::time::Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(100));
    };
    let follower = &members[(leader + 1) % members.len()];
    let three = script(&follower.zk);
    assert_eq!(
        three,
        expected,
        "a follower of three vs real ZooKeeper:\n{}",
        three.join("\n")
    );
}
