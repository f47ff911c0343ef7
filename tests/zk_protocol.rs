//! Janus's ZooKeeper port at the wire level, with a raw client: handshake
//! rules, session re-establishment, pipelining, persistent watches,
//! four-letter words, and robustness against bad input (oversized and
//! truncated frames, garbage, unknown op codes) while other clients work.

#[path = "zk_support.rs"]
mod zk_support;

use std::io::Write;
use std::time::Duration;

use zk_support::{be_i32, four_letter, start_janus, string, Raw};

const NONODE: i32 = -101;

fn get_data(path: &str, watch: bool) -> Vec<u8> {
    let mut b = string(path);
    b.push(watch as u8);
    b
}

#[test]
fn handshake_sessions_and_limits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let admin = format!("127.0.0.1:{}", janus_tests::free_port());
    let j = start_janus(
        tmp.path(),
        &format!("tick_ms = 100\nmax_buffer = 4096\nadmin_listen = \"{admin}\"\n"),
    );

    // Timeout negotiation: clamped to [2, 20] ticks.
    let a = Raw::connect(&j.zk);
    assert_eq!(a.timeout, 2000);
    assert_ne!(a.session, 0);
    assert_ne!((a.session as u64) >> 56, 0xff);
    assert_eq!(a.passwd.len(), 16);
    let mut s = Raw::tcp(&j.zk);
    let (t, _, _) = Raw::handshake(&mut s, 0, 10, 0, &[0; 16]).expect("handshake");
    assert_eq!(t, 200);

    // Re-establish by id and password; a wrong password reads as expired.
    let mut s = Raw::tcp(&j.zk);
    let (t, sid, pw) = Raw::handshake(&mut s, 0, 1000, a.session, &a.passwd).expect("reconnect");
    assert_eq!((t, sid, pw), (1000, a.session, a.passwd.clone()));
    let mut s = Raw::tcp(&j.zk);
    let (t, sid, pw) = Raw::handshake(&mut s, 0, 1000, a.session, &[7; 16]).expect("answer");
    assert_eq!((t, sid, pw), (0, 0, vec![0; 16]));
    assert!(
        Raw::read_frame(&mut s).is_none(),
        "closed after the expired answer"
    );

    // A client that has seen a newer zxid than this member is refused.
    let mut s = Raw::tcp(&j.zk);
    assert!(Raw::handshake(&mut s, i64::MAX / 2, 1000, 0, &[0; 16]).is_none());

    // Oversized frame: that connection closes, others are unaffected.
    let mut ok = Raw::connect(&j.zk);
    assert_eq!(ok.create("/keep", 0), 0);
    let mut big = Raw::connect(&j.zk);
    let mut body = string("/big");
    body.extend_from_slice(&be_i32(8000));
    body.extend(vec![b'x'; 8000]);
    body.extend_from_slice(&be_i32(-1));
    let _ = big.send(5, &body);
    assert!(
        big.recv().is_none(),
        "oversized frame closes the connection"
    );
    // Garbage as a first frame, a truncated frame, a huge length prefix.
    let mut g = Raw::tcp(&j.zk);
    let _ = g.write_all(&[0, 0, 0, 3, 1, 2, 3]);
    assert!(Raw::read_frame(&mut g).is_none());
    let mut g = Raw::tcp(&j.zk);
    let _ = g.write_all(&[0x7f, 0xff, 0xff, 0xff, 1]);
    assert!(Raw::read_frame(&mut g).is_none());
    let mut t = Raw::connect(&j.zk);
    let _ = t.s.write_all(&[0, 0, 0, 40, 0, 0]);
    drop(t);
    // Malformed body: MARSHALLINGERROR, connection stays usable.
    let mut m = Raw::connect(&j.zk);
    let (err, _, _) = m.call(4, &[0, 0, 0, 50, b'/']);
    assert_eq!(err, -5);
    let (err, _, _) = m.call(4, &get_data("/keep", false));
    assert_eq!(err, 0);
    // Unknown op code: UNIMPLEMENTED, then closed.
    let (err, _, _) = m.call(999, &[]);
    assert_eq!(err, -6);
    assert!(m.recv().is_none());
    // The well-behaved client saw nothing.
    let (err, body, events) = ok.call(4, &get_data("/keep", false));
    assert_eq!((err, events.len()), (0, 0));
    assert_eq!(&body[0..4], &be_i32(0), "empty data");
    assert_eq!(ok.create("/keep2", 0), 0);

    // Session expiry: no pings for longer than the timeout (200 ms here):
    // the leader expires the session, its ephemerals go, the connection is
    // closed and re-establishing it answers "expired".
    let mut s = Raw::tcp(&j.zk);
    let (t, sid, pw) = Raw::handshake(&mut s, 0, 200, 0, &[0; 16]).expect("handshake");
    assert_eq!(t, 200);
    let mut idle = Raw {
        s,
        session: sid,
        passwd: pw.clone(),
        timeout: t,
        xid: 0,
    };
    assert_eq!(idle.create("/idle-eph", 1), 0);
    // `ok` pings meanwhile and stays.
    for _ in 0..15 {
        std::thread::sleep(Duration::from_millis(100));
        ok.send(11, &[]);
        let (xid, _, err, _) = ok.recv().expect("ping reply");
        assert_eq!((xid, err), (-2, 0));
    }
    assert!(
        idle.recv().is_none(),
        "an expired session's connection is closed"
    );
    let mut s = Raw::tcp(&j.zk);
    let (t, sid2, _) = Raw::handshake(&mut s, 0, 200, sid, &pw).expect("answer");
    assert_eq!((t, sid2), (0, 0), "expired");
    let (err, _, _) = ok.call(3, &get_data("/idle-eph", false));
    assert_eq!(err, NONODE, "the expired session's ephemeral is gone");
    assert_eq!(ok.create("/still-here", 0), 0);

    // AdminServer (JSON over HTTP).
    let (code, body) = janus_tests::http_get(&admin, "/commands/ruok").expect("admin ruok");
    assert_eq!(code, 200);
    assert!(
        body.contains("\"command\":\"ruok\"") && body.contains("\"error\":null"),
        "{body}"
    );
    let (_, body) = janus_tests::http_get(&admin, "/commands/mntr").expect("admin mntr");
    assert!(
        body.contains("\"server_state\":\"standalone\"")
            && body.contains("\"command\":\"monitor\""),
        "{body}"
    );
    let (_, body) = janus_tests::http_get(&admin, "/commands/is_read_only").expect("admin isro");
    assert!(body.contains("\"read_only\":false"), "{body}");
    let (_, body) = janus_tests::http_get(&admin, "/commands").expect("admin list");
    assert!(body.contains("watch_summary"), "{body}");

    // 4lw.
    assert_eq!(four_letter(&j.zk, "ruok"), "imok");
    assert_eq!(four_letter(&j.zk, "isro"), "rw");
    assert!(four_letter(&j.zk, "srvr").contains("Mode: standalone"));
    assert!(four_letter(&j.zk, "mntr").contains("zk_server_state\tstandalone"));
    assert!(four_letter(&j.zk, "conf").contains("tickTime=100"));
}

#[test]
fn pipelining_and_watches() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let j = start_janus(
        tmp.path(),
        "four_letter_words = [\"ruok\"]\nextended_types = false\n",
    );
    assert!(
        four_letter(&j.zk, "srvr").contains("is not executed because it is not in the whitelist")
    );

    let mut c = Raw::connect(&j.zk);
    // An auth is answered with its own xid, as ZooKeeper does (not the
    // -4 the Java client happens to use): zookeeper-client pipelines
    // auths under ordinary xids and matches replies by them.
    let mut auth = be_i32(0).to_vec();
    auth.extend_from_slice(&string("digest"));
    auth.extend_from_slice(&string("u:p"));
    let (err, _, _) = c.call(100, &auth);
    assert_eq!(err, 0);
    // 50 pipelined requests (writes and reads mixed) come back in order.
    let mut xids = Vec::new();
    for i in 0..25 {
        let mut b = string(&format!("/p{i}"));
        b.extend_from_slice(&be_i32(1));
        b.push(b'v');
        b.extend_from_slice(&be_i32(1));
        b.extend_from_slice(&be_i32(31));
        b.extend_from_slice(&string("world"));
        b.extend_from_slice(&string("anyone"));
        b.extend_from_slice(&be_i32(0));
        xids.push(c.send(1, &b));
        xids.push(c.send(4, &get_data(&format!("/p{i}"), false)));
    }
    let mut last_zxid = 0;
    for x in xids {
        let (rx, zxid, err, _) = c.recv().expect("reply");
        assert_eq!((rx, err), (x, 0));
        assert!(zxid >= last_zxid, "reply zxids never go back");
        last_zxid = zxid;
    }

    // Persistent recursive watch: events for the subtree, not removed.
    let mut w = Raw::connect(&j.zk);
    let mut b = string("/r");
    b.extend_from_slice(&be_i32(1));
    assert_eq!(w.call(106, &b).0, 0);
    let mut b = string("/p0");
    b.extend_from_slice(&be_i32(0));
    assert_eq!(w.call(106, &b).0, 0);
    assert_eq!(c.create("/r", 0), 0);
    assert_eq!(c.create("/r/a", 0), 0);
    assert_eq!(c.create("/p0/x", 0), 0);
    // A sync from the watcher: every event comes before its reply.
    let (err, _, events) = w.call(9, &string("/"));
    assert_eq!(err, 0);
    assert_eq!(
        events,
        vec![
            (1, "/r".to_string()),
            (1, "/r/a".to_string()),
            (4, "/p0".to_string())
        ]
    );
    // checkWatches / removeWatches.
    let mut b = string("/r");
    b.extend_from_slice(&be_i32(5));
    assert_eq!(w.call(17, &b).0, 0);
    assert_eq!(w.call(18, &b).0, 0);
    assert_eq!(w.call(18, &b).0, -121, "NOWATCHER once removed");
    assert_eq!(c.create("/r/b", 0), 0);
    let (_, _, events) = w.call(9, &string("/"));
    assert!(events.is_empty(), "{events:?}");

    // exists-watch on a missing node, then a one-shot data watch.
    let (err, _, _) = w.call(3, &get_data("/later", true));
    assert_eq!(err, NONODE);
    assert_eq!(c.create("/later", 0), 0);
    let (_, _, events) = w.call(9, &string("/"));
    assert_eq!(events, vec![(1, "/later".to_string())]);

    // Closing a session deletes its ephemerals.
    let mut e = Raw::connect(&j.zk);
    assert_eq!(e.create("/eph", 1), 0);
    let (err, _, _) = e.call(-11, &[]);
    assert_eq!(err, 0);
    assert!(e.recv().is_none(), "closed after closeSession");
    let (err, _, _) = w.call(3, &get_data("/eph", false));
    assert_eq!(err, NONODE);

    // setWatches after a reconnect: changes since relativeZxid are
    // reported at once (before the -8 reply), the rest re-registered.
    assert_eq!(c.create("/sw", 0), 0);
    let set_watches = |r: &mut Raw, rel: i64, data: &[&str], exist: &[&str], child: &[&str]| {
        let mut p = be_i32(-8).to_vec();
        p.extend_from_slice(&be_i32(101));
        p.extend_from_slice(&rel.to_be_bytes());
        for list in [data, exist, child] {
            p.extend_from_slice(&be_i32(list.len() as i32));
            for path in list {
                p.extend_from_slice(&string(path));
            }
        }
        Raw::send_frame(&mut r.s, &p).expect("send");
        let mut events = Vec::new();
        loop {
            let (xid, _, err, body) = r.recv().expect("reply");
            if xid == -1 {
                events.push(zk_support::parse_event(&body));
            } else {
                assert_eq!((xid, err), (-8, 0));
                return events;
            }
        }
    };
    let mut r = Raw::connect(&j.zk);
    let events = set_watches(&mut r, 0, &["/sw", "/sw-gone"], &["/sw"], &["/sw"]);
    assert_eq!(
        events,
        vec![
            (3, "/sw".to_string()),
            (2, "/sw-gone".to_string()),
            (1, "/sw".to_string()),
            (4, "/sw".to_string())
        ]
    );
    let events = set_watches(&mut r, i64::MAX / 2, &["/sw"], &["/sw-later"], &["/sw"]);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(c.create("/sw-later", 0), 0);
    assert_eq!(c.create("/sw/k", 0), 0);
    let (_, _, events) = r.call(9, &string("/"));
    assert_eq!(
        events,
        vec![(1, "/sw-later".to_string()), (4, "/sw".to_string())]
    );

    // A bare check (ZooKeeper 3.8 never answers one) gets a proper answer.
    let mut b = string("/sw");
    b.extend_from_slice(&be_i32(0));
    assert_eq!(c.call(13, &b).0, 0);
    let mut b = string("/sw");
    b.extend_from_slice(&be_i32(7));
    assert_eq!(c.call(13, &b).0, -103, "BADVERSION");
    let mut b = string("/none");
    b.extend_from_slice(&be_i32(-1));
    assert_eq!(c.call(13, &b).0, NONODE);
    // reconfig: RECONFIGDISABLED, as ZooKeeper with reconfig off.
    let mut b = string("");
    b.extend_from_slice(&string(""));
    b.extend_from_slice(&string(""));
    b.extend_from_slice(&(-1i64).to_be_bytes());
    assert_eq!(c.call(16, &b).0, -123);

    // TTL nodes are refused with extended types off.
    let mut b = string("/ttl");
    b.extend_from_slice(&be_i32(0));
    b.extend_from_slice(&be_i32(1));
    b.extend_from_slice(&be_i32(31));
    b.extend_from_slice(&string("world"));
    b.extend_from_slice(&string("anyone"));
    b.extend_from_slice(&be_i32(5));
    b.extend_from_slice(&60_000i64.to_be_bytes());
    assert_eq!(c.call(21, &b).0, -6, "UNIMPLEMENTED");

    // whoAmI: the ip id; a bad auth scheme fails and closes.
    let (err, body, _) = w.call(107, &[]);
    assert_eq!(err, 0);
    assert!(String::from_utf8_lossy(&body).contains("127.0.0.1"));
    let mut b = be_i32(0).to_vec();
    b.extend_from_slice(&string("kerberos"));
    b.extend_from_slice(&be_i32(0));
    let sent = w.send(100, &b);
    let (xid, zxid, err, _) = w.recv().expect("auth reply");
    // Real ZooKeeper 3.8 echoes the xid and sends zxid 0.
    assert_eq!((xid, zxid, err), (sent, 0, -115));
    assert!(w.recv().is_none());
    let _ = Duration::from_secs(0);
}

/// A watcher only hears about nodes it may READ (ZooKeeper 3.8.4+,
/// CVE-2024-23944): a persistent recursive watch above a node whose ACL
/// shuts the watcher out stays silent about it.
#[test]
fn watch_events_need_read_permission() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let j = start_janus(tmp.path(), "");
    let mut w = Raw::connect(&j.zk);
    let mut c = Raw::connect(&j.zk);
    let mut b = string("/acl");
    b.extend_from_slice(&be_i32(1));
    assert_eq!(w.call(106, &b).0, 0, "addWatch recursive");
    assert_eq!(c.create("/acl", 0), 0);
    assert_eq!(c.create("/acl/open", 0), 0);
    let mut b = string("/acl/secret");
    b.extend_from_slice(&be_i32(1));
    b.push(b'x');
    b.extend_from_slice(&be_i32(1));
    b.extend_from_slice(&be_i32(31));
    b.extend_from_slice(&string("digest"));
    b.extend_from_slice(&string("someone:AAAAAAAAAAAAAAAAAAAAAAAAAAA="));
    b.extend_from_slice(&be_i32(0));
    assert_eq!(c.call(1, &b).0, 0, "create with a digest ACL");
    let (err, _, events) = w.call(9, &string("/"));
    assert_eq!(err, 0);
    assert_eq!(
        events,
        vec![(1, "/acl".to_string()), (1, "/acl/open".to_string())]
    );
    // Deleting it is not told either; a readable sibling still is.
    let mut b = string("/acl/secret");
    b.extend_from_slice(&be_i32(-1));
    assert_eq!(c.call(2, &b).0, 0);
    let mut b = string("/acl/open");
    b.extend_from_slice(&be_i32(-1));
    assert_eq!(c.call(2, &b).0, 0);
    let (_, _, events) = w.call(9, &string("/"));
    assert_eq!(events, vec![(2, "/acl/open".to_string())]);
}
