//! A ZooKeeper client that reads its answers slowly keeps its connection
//! and session, on real ZooKeeper and on Janus alike: twelve pipelined
//! getData of a 900 KB znode through a 16 KiB receive buffer, read at about
//! 500 KB/s, pinging every third of the session timeout as the Java client
//! does. That is more than the socket buffers hold, so the server waits on
//! the client for each later answer, longer than the session timeout on
//! Janus (which runs with a short one here); the pings sent meanwhile must
//! keep the session. Every answer and every ping reply must arrive, in
//! order, on the same connection.

#[path = "zk_support.rs"]
mod zk_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use zk_support::{be_i32, start_janus, string, Raw, RealZk};

const SIZE: usize = 900 * 1024;
const REQUESTS: i32 = 12;
/// Requested session timeouts: the least real ZooKeeper grants with its
/// tickTime of 2000 ms, and Janus's with `tick_ms = 250`.
const ZK_SESSION_MS: i32 = 4000;
const JANUS_SESSION_MS: i32 = 500;

fn create_big(addr: &str) {
    let mut c = Raw::connect(addr);
    let mut b = string("/big");
    b.extend_from_slice(&be_i32(SIZE as i32));
    b.extend(std::iter::repeat_n(b'x', SIZE));
    b.extend_from_slice(&be_i32(1));
    b.extend_from_slice(&be_i32(31));
    b.extend_from_slice(&string("world"));
    b.extend_from_slice(&string("anyone"));
    b.extend_from_slice(&be_i32(0));
    let (err, _, _) = c.call(1, &b);
    assert_eq!(err, 0, "create /big");
}

fn small_receive_buffer(s: &TcpStream) {
    let size: libc::c_int = 16 * 1024;
    // SAFETY: setsockopt(2) on a socket we own, with a c_int option value.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF");
}

/// Read `n` bytes in small pieces, pinging when a third of the session
/// timeout has passed since the last ping. Returns false if the server
/// closed the connection.
struct Pinger {
    every: Duration,
    sent: u32,
    last: Instant,
}

fn read_slowly(s: &mut TcpStream, mut n: usize, p: &mut Pinger) -> bool {
    let mut buf = [0u8; 16 * 1024];
    while n > 0 {
        if p.last.elapsed() >= p.every {
            let mut ping = be_i32(-2).to_vec();
            ping.extend_from_slice(&be_i32(11));
            if Raw::send_frame(s, &ping).is_err() {
                return false;
            }
            p.sent += 1;
            p.last = Instant::now();
        }
        let want = n.min(buf.len());
        match s.read(&mut buf[..want]) {
            Ok(0) | Err(_) => return false,
            Ok(k) => n -= k,
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    true
}

/// Run the slow reader against `addr`; returns (answers, ping replies,
/// seconds taken) or the reason it stopped.
fn slow_reader(addr: &str, session_ms: i32) -> Result<(i32, u32, f64), String> {
    create_big(addr);
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    small_receive_buffer(&s);
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let (t, _, _) = Raw::handshake(&mut s, 0, session_ms, 0, &[0; 16]).ok_or("handshake")?;
    assert_eq!(t, session_ms, "the session timeout granted");
    for xid in 1..=REQUESTS {
        let mut b = be_i32(xid).to_vec();
        b.extend_from_slice(&be_i32(4));
        b.extend_from_slice(&string("/big"));
        b.push(0);
        Raw::send_frame(&mut s, &b).map_err(|e| e.to_string())?;
    }
    s.flush().map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let (mut answers, mut ping_replies) = (0, 0u32);
    let mut pinger = Pinger {
        every: Duration::from_millis(session_ms as u64 / 3),
        sent: 0,
        last: Instant::now(),
    };
    while answers < REQUESTS || ping_replies < pinger.sent {
        let mut hdr = [0u8; 4];
        s.read_exact(&mut hdr).map_err(|e| {
            format!(
                "closed after {answers} answers, {ping_replies} ping replies, {:.1} s: {e}",
                t0.elapsed().as_secs_f64()
            )
        })?;
        let len = i32::from_be_bytes(hdr) as usize;
        let mut head = [0u8; 16];
        s.read_exact(&mut head).map_err(|e| e.to_string())?;
        let xid = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let err = i32::from_be_bytes([head[12], head[13], head[14], head[15]]);
        assert_eq!(err, 0, "xid {xid}");
        if !read_slowly(&mut s, len - 16, &mut pinger) {
            return Err(format!(
                "closed while reading answer {} after {:.1} s",
                answers + 1,
                t0.elapsed().as_secs_f64()
            ));
        }
        if xid == -2 {
            ping_replies += 1;
        } else {
            answers += 1;
            assert_eq!(xid, answers, "answers in request order");
            assert_eq!(len - 16, 4 + SIZE + 68, "a whole GetDataResponse");
        }
    }
    Ok((answers, ping_replies, t0.elapsed().as_secs_f64()))
}

#[test]
fn a_slow_reader_keeps_its_connection_as_on_zookeeper() {
    let zk = RealZk::start();
    let real = slow_reader(&zk.addr, ZK_SESSION_MS).expect("real ZooKeeper serves the slow reader");
    println!("real ZooKeeper: {real:?}");
    drop(zk);

    let tmp = tempfile::tempdir().expect("tempdir");
    let janus = start_janus(tmp.path(), "tick_ms = 250\n");
    let ours = slow_reader(&janus.zk, JANUS_SESSION_MS)
        .unwrap_or_else(|e| panic!("Janus dropped the slow reader: {e}\n{}", janus.log_tail(40)));
    println!("Janus: {ours:?}");
    assert_eq!(ours.0, real.0);
    assert!(ours.1 > 0, "pings were answered");
    // Meaningful only if an answer took longer to read than the session
    // timeout (the data beyond the socket buffers came at that pace).
    let per_answer = ours.2 / f64::from(REQUESTS);
    assert!(
        per_answer > 2.0 * JANUS_SESSION_MS as f64 / 1000.0,
        "{per_answer:.2} s per answer"
    );
}
