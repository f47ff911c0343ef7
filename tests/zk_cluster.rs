//! ZooKeeper clients on a three-member cluster: sessions move between
//! members by id and password, writes from any member, a session reads its
//! own writes at a follower, sync, watches fire at every member, pings at a
//! follower keep a session alive, and closing it anywhere removes its
//! ephemerals.

#[path = "zk_support.rs"]
mod zk_support;

use std::time::Duration;

use janus_tests::Janus;
use zk_support::{be_i32, four_letter, string, Raw};

fn get_data(path: &str, watch: bool) -> Vec<u8> {
    let mut b = string(path);
    b.push(watch as u8);
    b
}

fn set_data(path: &str, data: &[u8]) -> Vec<u8> {
    let mut b = string(path);
    b.extend_from_slice(&be_i32(data.len() as i32));
    b.extend_from_slice(data);
    b.extend_from_slice(&be_i32(-1));
    b
}

/// The data in a GetDataResponse body.
fn data_of(body: &[u8]) -> Vec<u8> {
    let n = i32::from_be_bytes(body[0..4].try_into().expect("len"));
    body[4..4 + n.max(0) as usize].to_vec()
}

fn start_zk_cluster(tmp: &std::path::Path) -> Vec<Janus> {
    let members = janus_tests::start_cluster(
        tmp,
        3,
        "heartbeat_ms = 50\nelection_timeout_ms = 300\n[zookeeper]\ntick_ms = 100\nfour_letter_words = [\"*\"]\n",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while members.iter().any(|m| four_letter(&m.zk, "ruok") != "imok") {
        assert!(
            std::time::Instant::now() < deadline,
            "zookeeper ports not up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    members
}

#[test]
fn sessions_and_watches_across_members() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let members = start_zk_cluster(tmp.path());
    let modes: Vec<String> = members
        .iter()
        .map(|m| {
            four_letter(&m.zk, "srvr")
                .lines()
                .find(|l| l.starts_with("Mode:"))
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(
        modes.iter().filter(|m| m.contains("leader")).count(),
        1,
        "{modes:?}"
    );

    // Sessions on every member; a write at each is seen everywhere after sync.
    let mut c: Vec<Raw> = members.iter().map(|m| Raw::connect(&m.zk)).collect();
    for (i, cl) in c.iter_mut().enumerate() {
        assert_eq!(
            cl.create(&format!("/m{i}"), 0),
            0,
            "create through member {i}"
        );
    }
    for cl in c.iter_mut() {
        assert_eq!(cl.call(9, &string("/")).0, 0, "sync");
        for i in 0..3 {
            assert_eq!(cl.call(3, &get_data(&format!("/m{i}"), false)).0, 0);
        }
    }

    // Watches fire at other members.
    let (err, _, _) = c[2].call(4, &get_data("/m0", true));
    assert_eq!(err, 0);
    let (err, _, _) = c[0].call(5, &set_data("/m0", b"new"));
    assert_eq!(err, 0);
    let (_, _, events) = c[2].call(9, &string("/"));
    assert_eq!(events, vec![(3, "/m0".to_string())]);

    // An ephemeral owned by the session of member 0's client; the session
    // moves to member 1 by id and password and keeps working there.
    let (sid, pw) = (c[0].session, c[0].passwd.clone());
    assert_eq!(c[0].create("/eph", 1), 0);
    let mut s = Raw::tcp(&members[1].zk);
    let (t, sid2, pw2) = Raw::handshake(&mut s, 0, 2000, sid, &pw).expect("re-establish");
    assert_eq!((sid2, pw2), (sid, pw.clone()));
    assert!(t > 0);
    let mut moved = Raw {
        s,
        session: sid,
        passwd: pw.clone(),
        timeout: t,
        xid: 0,
    };
    // Read-your-writes at once, wherever the write was committed.
    let (err, _, _) = moved.call(5, &set_data("/m1", b"mine"));
    assert_eq!(err, 0);
    let (err, body, _) = moved.call(4, &get_data("/m1", false));
    assert_eq!((err, data_of(&body)), (0, b"mine".to_vec()));
    // Pings through member 1 keep the session alive well past its timeout.
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        for cl in [&mut moved, &mut c[2]] {
            cl.send(11, &[]);
            let (xid, _, err, _) = cl.recv().expect("ping reply");
            assert_eq!((xid, err), (-2, 0));
        }
    }
    let (err, _, _) = c[2].call(3, &get_data("/eph", true));
    assert_eq!(err, 0, "the ephemeral outlived the session timeout");
    // Wrong password at member 2: expired answer.
    let mut s = Raw::tcp(&members[2].zk);
    let (t, sid3, _) = Raw::handshake(&mut s, 0, 2000, sid, &[9; 16]).expect("answer");
    assert_eq!((t, sid3), (0, 0));
    // Close the session at member 1: the ephemeral goes, member 2's watcher hears it.
    let (err, _, _) = moved.call(-11, &[]);
    assert_eq!(err, 0);
    let (_, _, events) = c[2].call(9, &string("/"));
    assert_eq!(events, vec![(2, "/eph".to_string())]);
    let mut s = Raw::tcp(&members[0].zk);
    let (t, _, _) = Raw::handshake(&mut s, 0, 2000, sid, &pw).expect("answer");
    assert_eq!(t, 0, "a closed session is expired everywhere");
}

#[test]
fn read_only_mode_without_quorum() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut members = start_zk_cluster(tmp.path());
    let mut w = Raw::connect(&members[0].zk);
    assert_eq!(w.create("/ro-data", 0), 0);
    let mut r = Raw::connect(&members[2].zk);
    assert_eq!(r.call(9, &string("/")).0, 0);
    assert_eq!(r.call(3, &get_data("/ro-data", false)).0, 0);
    drop((w, r));

    // Members 0 and 1 go: member 2 has no quorum and turns read-only.
    members[0].kill9();
    members[1].kill9();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while four_letter(&members[2].zk, "isro") != "ro" {
        assert!(
            std::time::Instant::now() < deadline,
            "member 2 never went read-only"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A client that wants read-write is refused; a read-only one is served.
    let mut s = Raw::tcp(&members[2].zk);
    assert!(
        Raw::handshake(&mut s, 0, 2000, 0, &[0; 16]).is_none(),
        "read-write client refused"
    );
    let mut s = Raw::tcp(&members[2].zk);
    let (t, sid, ro) = Raw::connect_read_only(&mut s, 2000).expect("read-only session");
    assert!(t > 0 && sid != 0);
    assert_eq!(ro, 1, "ConnectResponse.readOnly");
    let mut ro_client = Raw {
        s,
        session: sid,
        passwd: vec![],
        timeout: t,
        xid: 0,
    };
    let (err, body, _) = ro_client.call(4, &get_data("/ro-data", false));
    assert_eq!((err, body.len()), (0, 4 + 68));
    assert_eq!(ro_client.create("/nope", 0), -119, "NOTREADONLY");
    assert_eq!(ro_client.call(5, &set_data("/ro-data", b"x")).0, -119);

    // Quorum back: the read-only connection is dropped, read-write works.
    members[0].spawn();
    members[1].spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while four_letter(&members[2].zk, "isro") != "rw" {
        assert!(
            std::time::Instant::now() < deadline,
            "member 2 never went back to read-write"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        ro_client.recv().is_none(),
        "read-only connection closed once quorum is back"
    );
    let mut rw = Raw::connect(&members[2].zk);
    assert_eq!(rw.create("/after", 0), 0);
}

/// A client whose member is killed moves to another member with its
/// session id and password: its ephemeral stays, setWatches re-registers its
/// watches (a change it missed fires at once, later ones fire too).
#[test]
fn session_moves_after_its_member_is_killed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut members = start_zk_cluster(tmp.path());
    let mode = |m: &Janus| four_letter(&m.zk, "srvr").contains("Mode: leader");
    let leader = (0..3).find(|i| mode(&members[*i])).expect("a leader");
    let (w, r) = match leader {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    let mut other = Raw::connect(&members[leader].zk);
    assert_eq!(other.create("/d", 0), 0);
    assert_eq!(other.create("/later-gone", 0), 0);

    let mut c = Raw::connect(&members[w].zk);
    assert_eq!(
        c.create("/eph", 1),
        0,
        "ephemeral through the doomed member"
    );
    let (err, _, _) = c.call(4, &get_data("/d", true));
    assert_eq!(err, 0);
    let (err, _, _) = c.call(3, &get_data("/later-gone", true));
    assert_eq!(err, 0);
    // The last zxid this client saw: a sync's reply header carries it.
    c.send(9, &string("/"));
    let (_, last_zxid, err, _) = c.recv().expect("sync reply");
    assert_eq!(err, 0);
    let (sid, pw) = (c.session, c.passwd.clone());

    members[w].kill9();
    // Missed while disconnected.
    let (err, _, _) = other.call(5, &set_data("/d", b"missed"));
    assert_eq!(err, 0);

    let mut s = Raw::tcp(&members[r].zk);
    let (t, sid2, _) = Raw::handshake(&mut s, last_zxid, 4000, sid, &pw).expect("re-establish");
    assert!(t > 0, "session refused at the other member");
    assert_eq!(sid2, sid);
    let mut moved = Raw {
        s,
        session: sid,
        passwd: pw,
        timeout: t,
        xid: 0,
    };
    // The change may not have reached this member yet (ZooKeeper's
    // followers race the same way): a sync makes it local first.
    assert_eq!(moved.call(9, &string("/")).0, 0);
    // setWatches(relativeZxid, data, exist, child) as the Java client sends
    // it after a reconnect.
    let mut body = last_zxid.to_be_bytes().to_vec();
    for list in [&["/d", "/later-gone"][..], &[][..], &[][..]] {
        body.extend_from_slice(&be_i32(list.len() as i32));
        for p in list {
            body.extend_from_slice(&string(p));
        }
    }
    let (err, _, events) = moved.call(101, &body);
    assert_eq!(err, 0);
    assert_eq!(
        events,
        vec![(3, "/d".to_string())],
        "the missed change fires at once"
    );

    // Later changes reach the re-registered watch.
    let mut b = string("/later-gone");
    b.extend_from_slice(&be_i32(-1));
    assert_eq!(other.call(2, &b).0, 0);
    let (_, _, events) = moved.call(9, &string("/"));
    assert_eq!(events, vec![(2, "/later-gone".to_string())]);

    // Kept alive through the new member past its timeout, the ephemeral
    // stays; closing the session removes it.
    let until = std::time::Instant::now() + Duration::from_millis(t as u64 + 1000);
    while std::time::Instant::now() < until {
        for cl in [&mut moved, &mut other] {
            cl.send(11, &[]);
            let (xid, _, err, _) = cl.recv().expect("ping reply");
            assert_eq!((xid, err), (-2, 0));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        other.call(3, &get_data("/eph", false)).0,
        0,
        "ephemeral kept"
    );
    assert_eq!(moved.call(-11, &[]).0, 0);
    assert_eq!(other.call(9, &string("/")).0, 0);
    assert_eq!(
        other.call(3, &get_data("/eph", false)).0,
        -101,
        "ephemeral gone with the session"
    );
}

/// A session closed through another member: a write on its first
/// connection, sent after the close, is not answered; the connection is
/// closed, as ZooKeeper closes a closed session's connections on every
/// server (a client never gets SESSIONEXPIRED on a live connection; it
/// learns `Expired` when it reconnects).
#[test]
fn write_after_the_session_closed_elsewhere_closes_the_connection() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let members = start_zk_cluster(tmp.path());
    let mut a = Raw::connect(&members[0].zk);
    assert_eq!(a.create("/closed-elsewhere", 0), 0);
    let (sid, pw) = (a.session, a.passwd.clone());
    let mut b = Raw::reattach(&members[1].zk, sid, &pw);
    assert_eq!(b.call(-11, &[]).0, 0, "closeSession through member 1");
    // Proposed after the close, so member 0 applies the close first.
    a.send(5, &set_data("/closed-elsewhere", b"late"));
    a.assert_closed_unanswered("a write of the closed session");
    let mut s = Raw::tcp(&members[0].zk);
    let (t, _, _) = Raw::handshake(&mut s, 0, 2000, sid, &pw).expect("answer");
    assert_eq!(t, 0, "the session is expired everywhere");
}

/// A session made through one member and re-established at once through
/// another (before that member may have applied its creation, and with no
/// zxid seen yet) is valid there: ZooKeeper validates a re-established
/// session with the leader, never answering "expired" for a live one.
#[test]
fn a_new_session_is_valid_at_once_on_every_member() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let members = start_zk_cluster(tmp.path());
    for i in 0..60 {
        let mut s = Raw::tcp(&members[i % 3].zk);
        let (_, sid, pw) = Raw::handshake(&mut s, 0, 2000, 0, &[0; 16]).expect("new session");
        let mut s2 = Raw::tcp(&members[(i + 1) % 3].zk);
        let (t, sid2, _) = Raw::handshake(&mut s2, 0, 2000, sid, &pw).expect("re-establish");
        assert!(
            t > 0 && sid2 == sid,
            "attempt {i}: session {sid:#x} made at member {} answered expired at member {}",
            i % 3,
            (i + 1) % 3
        );
    }
}

/// A session re-established on another member fences its old connection:
/// the old connection's next write is not applied and the connection
/// closes without an answer (ZooKeeper's leader refuses it with
/// SESSIONMOVED and the old server drops the connection), while the new
/// connection goes on writing.
#[test]
fn a_moved_session_fences_its_old_connection() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let members = start_zk_cluster(tmp.path());
    let mut a = Raw::connect(&members[0].zk);
    assert_eq!(a.create("/moved", 0), 0);
    assert_eq!(a.call(5, &set_data("/moved", b"from a")).0, 0);
    let (sid, pw) = (a.session, a.passwd.clone());
    let mut b = Raw::reattach(&members[1].zk, sid, &pw);
    a.send(5, &set_data("/moved", b"stale"));
    a.assert_closed_unanswered("a write from the connection the session moved away from");
    assert_eq!(b.call(5, &set_data("/moved", b"from b")).0, 0);
    let (err, body, _) = b.call(4, &get_data("/moved", false));
    assert_eq!(err, 0);
    assert_eq!(data_of(&body), b"from b");
}
