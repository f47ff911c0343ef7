//! etcd's auto-compaction (`--auto-compaction-mode`/`-retention`), run by
//! the member that is the Raft leader: "periodic" keeps the history of the
//! last retention period, "revision" the last retention revisions.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use janus_core::Command;

use crate::Ctx;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    Periodic(Duration),
    Revision(i64),
}

/// Parse etcd's retention: periodic takes a duration ("1h", "30m", "90s",
/// or a bare number of hours), revision a count.
pub(crate) fn policy(mode: &str, retention: &str) -> Result<Option<Policy>, String> {
    let r = retention.trim();
    if r.is_empty() || r == "0" {
        return Ok(None);
    }
    match mode {
        "periodic" => parse_duration(r).map(|d| Some(Policy::Periodic(d))),
        "revision" => r
            .parse::<i64>()
            .map(|n| Some(Policy::Revision(n)))
            .map_err(|e| format!("{retention}: {e}")),
        other => Err(format!(
            "auto_compaction_mode {other:?}: expected \"periodic\" or \"revision\""
        )),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(hours) = s.parse::<u64>() {
        return Ok(Duration::from_secs(hours.saturating_mul(3600)));
    }
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num.parse().map_err(|_| format!("bad retention {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad retention unit in {s:?}")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("bad retention {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn is_leader(ctx: &Ctx) -> bool {
    ctx.node.leader().is_some_and(|(id, _)| id == ctx.node.id)
}

async fn compact(ctx: &Ctx, revision: i64) {
    let (current, compacted) = {
        let st = ctx.node.state();
        (st.revision(), st.compacted_revision())
    };
    if revision <= compacted || revision > current {
        return;
    }
    match ctx.write(Command::Compact { revision }).await {
        Ok(_) => tracing::info!(revision, "auto-compaction"),
        Err(e) => tracing::debug!(revision, "auto-compaction: {e}"),
    }
}

pub(crate) async fn run(ctx: Arc<Ctx>, policy: Policy) {
    match policy {
        Policy::Revision(keep) => {
            // etcd's revision compactor looks every 5 minutes.
            let mut tick = tokio::time::interval(Duration::from_secs(300));
            loop {
                tick.tick().await;
                if is_leader(&ctx) {
                    let current = ctx.node.state().revision();
                    compact(&ctx, current - keep).await;
                }
            }
        }
        Policy::Periodic(retention) => {
            // Sample the revision every tenth of the period (at most hourly,
            // as etcd), compact to the newest sample at least a period old.
            let every =
                (retention / 10).clamp(Duration::from_millis(100), Duration::from_secs(3600));
            let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let now = Instant::now();
                samples.push_back((now, ctx.node.state().revision()));
                let mut target = None;
                while let Some(&(at, rev)) = samples.front() {
                    if now.duration_since(at) >= retention {
                        target = Some(rev);
                        samples.pop_front();
                    } else {
                        break;
                    }
                }
                if let (Some(rev), true) = (target, is_leader(&ctx)) {
                    compact(&ctx, rev).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_parses_as_etcd() {
        assert_eq!(
            policy("periodic", "1h"),
            Ok(Some(Policy::Periodic(Duration::from_secs(3600))))
        );
        assert_eq!(
            policy("periodic", "2"),
            Ok(Some(Policy::Periodic(Duration::from_secs(7200))))
        );
        assert_eq!(
            policy("periodic", "90s"),
            Ok(Some(Policy::Periodic(Duration::from_secs(90))))
        );
        assert_eq!(policy("revision", "1000"), Ok(Some(Policy::Revision(1000))));
        assert_eq!(policy("periodic", "0"), Ok(None));
        assert!(policy("weekly", "1").is_err());
        assert!(policy("periodic", "5x").is_err());
    }
}
