//! etcd's start-up lines. Run with etcd's command line, Janus also prints,
//! on stderr and in etcd 3.5's zap JSON format, the lines scripts and test
//! harnesses wait for: `published local member to cluster through raft`
//! once this member's attributes are in the applied membership and a leader
//! is known, then, per client listener, `ready to serve client requests`
//! and `serving client traffic [in]securely`. Janus's own log is unchanged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use janus_raft::RaftNode;
use tokio::sync::oneshot;

/// What this member publishes, as etcd logs it.
pub struct Publish {
    pub name: String,
    pub client_urls: Vec<String>,
    pub cluster_token: String,
}

/// Print the lines when etcd would: `bound` resolves once the client
/// listeners are bound (dropped: the listeners failed, and nothing more
/// is printed).
pub async fn announce(
    node: Arc<RaftNode>,
    me: Publish,
    bound: oneshot::Receiver<Vec<(SocketAddr, bool)>>,
) {
    let cluster_id = janus_etcd::cluster_id(&me.cluster_token);
    let member_id = janus_etcd::member_id(node.id, cluster_id);
    // Publishing is the membership change janus_raft makes once the member
    // runs; its result shows in the applied membership.
    loop {
        if node.is_removed() {
            return;
        }
        let published = node.leader().is_some()
            && node.members().iter().any(|(id, m, _)| {
                *id == node.id && m.name == me.name && m.client_urls == me.client_urls
            });
        if published {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "{}",
        line(
            "etcdserver/server.go:2068",
            "published local member to cluster through raft",
            &[
                ("local-member-id", format!("{member_id:x}")),
                (
                    "local-member-attributes",
                    format!(
                        "{{Name:{} ClientURLs:[{}]}}",
                        me.name,
                        me.client_urls.join(" ")
                    ),
                ),
                (
                    "request-path",
                    format!("/0/members/{member_id:x}/attributes")
                ),
                ("cluster-id", format!("{cluster_id:x}")),
                ("publish-timeout", "7s".into()),
            ],
        )
    );
    let Ok(listeners) = bound.await else {
        return;
    };
    for (addr, secure) in listeners {
        eprintln!(
            "{}",
            line("embed/serve.go:103", "ready to serve client requests", &[])
        );
        let fields = [
            ("traffic", "grpc+http".to_string()),
            ("address", addr.to_string()),
        ];
        let l = if secure {
            line(
                "embed/serve.go:250",
                "serving client traffic securely",
                &fields,
            )
        } else {
            line(
                "embed/serve.go:187",
                "serving client traffic insecurely; this is strongly discouraged!",
                &fields,
            )
        };
        eprintln!("{l}");
    }
}

/// One zap JSON line at level info, fields in the order given.
fn line(caller: &str, msg: &str, fields: &[(&str, String)]) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let mut out = format!(
        "{{\"level\":\"info\",\"ts\":{},\"caller\":{},\"msg\":{}",
        q(&timestamp(SystemTime::now())),
        q(caller),
        q(msg)
    );
    for (k, v) in fields {
        out.push_str(&format!(",{}:{}", q(k), q(v)));
    }
    out.push('}');
    out
}

/// etcd 3.5's log timestamp: RFC 3339 in UTC with microseconds.
fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_796_692_459_426_312);
        assert_eq!(timestamp(t), "2026-12-08T01:14:19.426312Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn lines_are_zap_json() {
        let l = line(
            "embed/serve.go:103",
            "ready to serve client requests",
            &[("address", "127.0.0.1:2379".into()), ("q", "a\"b".into())],
        );
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["level"], "info");
        assert_eq!(v["msg"], "ready to serve client requests");
        assert_eq!(v["q"], "a\"b");
        assert!(l.starts_with("{\"level\":\"info\",\"ts\":\""), "{l}");
        assert!(
            l.ends_with(",\"address\":\"127.0.0.1:2379\",\"q\":\"a\\\"b\"}"),
            "{l}"
        );
    }
}
