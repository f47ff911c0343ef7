//! A ZooKeeper connection that falls behind the change events (its client
//! stopped reading while others wrote) is closed rather than left to miss
//! notifications: the client re-establishes the session, sends its watches
//! back with setWatches, and the missed change fires.

#[path = "zk_support.rs"]
mod zk_support;

use std::time::Duration;

use zk_support::{be_i32, start_janus, string, Raw};

const OP_CREATE: i32 = 1;
const OP_EXISTS: i32 = 3;
const OP_GET_DATA: i32 = 4;
const OP_SET_DATA: i32 = 5;
const OP_SET_WATCHES: i32 = 101;
const NODE_CREATED: i32 = 1;

fn create_body(path: &str, data: &[u8]) -> Vec<u8> {
    let mut b = string(path);
    b.extend_from_slice(&be_i32(data.len() as i32));
    b.extend_from_slice(data);
    b.extend_from_slice(&be_i32(1));
    b.extend_from_slice(&be_i32(31));
    b.extend_from_slice(&string("world"));
    b.extend_from_slice(&string("anyone"));
    b.extend_from_slice(&be_i32(0));
    b
}

fn path_and_watch(path: &str, watch: bool) -> Vec<u8> {
    let mut b = string(path);
    b.push(u8::from(watch));
    b
}

#[test]
fn a_connection_behind_the_events_closes_and_its_watch_fires_after_reconnect() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let j = start_janus(tmp.path(), "");
    let mut writer = Raw::connect(&j.zk);
    let (err, _, _) = writer.call(OP_CREATE, &create_body("/big", &vec![b'x'; 900_000]));
    assert_eq!(err, 0);
    let (err, _, _) = writer.call(OP_CREATE, &create_body("/x", b"0"));
    assert_eq!(err, 0);

    // The slow client watches for /w, then asks for far more than the
    // socket buffers hold and stops reading.
    let mut slow = Raw::connect(&j.zk);
    let (err, _, _) = slow.call(OP_EXISTS, &path_and_watch("/w", true));
    assert_eq!(err, -101, "NONODE");
    let (session, passwd) = (slow.session, slow.passwd.clone());
    for _ in 0..40 {
        slow.send(OP_GET_DATA, &path_and_watch("/big", false));
    }
    std::thread::sleep(Duration::from_millis(500));

    // More change events than a connection may fall behind by (each write
    // is one batch), pipelined in windows.
    let writes = 70_000;
    let window = 500;
    let mut done = 0;
    while done < writes {
        let n = window.min(writes - done);
        for i in 0..n {
            let mut b = string("/x");
            b.extend_from_slice(&be_i32(1));
            b.push(b'0' + ((done + i) % 10) as u8);
            b.extend_from_slice(&be_i32(-1));
            writer.send(OP_SET_DATA, &b);
        }
        for _ in 0..n {
            let (_, _, err, _) = writer.recv().expect("setData reply");
            assert_eq!(err, 0);
        }
        done += n;
    }
    let (err, _, _) = writer.call(OP_CREATE, &create_body("/w", b"w"));
    assert_eq!(err, 0);

    // The slow client reads on: what was queued for it, then the close.
    // Never the notification without the connection closing first.
    slow.s
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut replies = 0;
    let mut events = 0;
    let closed = loop {
        match slow.recv() {
            None => break true,
            Some((-1, _, _, _)) => events += 1,
            Some(_) => replies += 1,
        }
        if replies > 41 {
            break false;
        }
    };
    assert!(
        closed,
        "the lagging connection was not closed ({replies} replies)"
    );
    assert!(
        replies < 40,
        "it was closed with answers held back ({replies} sent)"
    );
    assert_eq!(events, 0, "no notification reached it before the close");
    let log = j.log_tail(200);
    assert!(
        log.contains("fell behind the change events"),
        "closed for another reason:\n{log}"
    );

    // Re-established with its watch sent back (as clients do after a
    // disconnect), the missed creation fires.
    let mut again = Raw::reattach(&j.zk, session, &passwd);
    let mut b = 0i64.to_be_bytes().to_vec();
    b.extend_from_slice(&be_i32(0)); // data watches
    b.extend_from_slice(&be_i32(1)); // exist watches
    b.extend_from_slice(&string("/w"));
    b.extend_from_slice(&be_i32(0)); // child watches
    let (err, _, mut fired) = again.call(OP_SET_WATCHES, &b);
    assert_eq!(err, 0);
    if fired.is_empty() {
        let (xid, _, _, body) = again.recv().expect("the notification");
        assert_eq!(xid, -1);
        fired.push(zk_support::parse_event(&body));
    }
    assert_eq!(fired, vec![(NODE_CREATED, "/w".to_string())]);
}
