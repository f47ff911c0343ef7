//! Latency histograms, result rows, and the tables printed from them.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Latencies in microseconds, 1 µs .. 10 min, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Constant bounds, valid for hdrhistogram: no input can make this fail.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds")
}

/// Records one latency; values beyond the range are clamped, never dropped.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).max(1);
    h.saturating_record(us);
}

/// One (system, API, workload, concurrency) measurement.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub system: String,
    pub api: String,
    pub workload: String,
    pub concurrency: usize,
    pub ops: u64,
    pub errors: u64,
    pub secs: f64,
    pub ops_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// First error message seen, to tell a broken workload from a slow one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl Row {
    #[allow(clippy::too_many_arguments)]
    pub fn from_histogram(
        system: &str,
        api: &str,
        workload: &str,
        concurrency: usize,
        h: &Histogram<u64>,
        errors: u64,
        elapsed: Duration,
        first_error: Option<String>,
    ) -> Row {
        let ops = h.len();
        let secs = elapsed.as_secs_f64();
        let empty = ops == 0;
        let q = |v: f64| if empty { 0 } else { h.value_at_quantile(v) };
        Row {
            system: system.to_string(),
            api: api.to_string(),
            workload: workload.to_string(),
            concurrency,
            ops,
            errors,
            secs,
            ops_per_sec: if secs > 0.0 { ops as f64 / secs } else { 0.0 },
            p50_us: q(0.5),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if empty { 0 } else { h.max() },
            first_error,
        }
    }

    pub fn key(&self) -> (String, String, usize) {
        (self.api.clone(), self.workload.clone(), self.concurrency)
    }
}

/// "0.46 ms" / "12.3 ms" / "1.20 s": short and comparable in a table.
pub fn fmt_us(us: u64) -> String {
    if us < 10_000 {
        format!("{:.2} ms", us as f64 / 1000.0)
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{:.2} s", us as f64 / 1_000_000.0)
    }
}

/// 1234567.8 -> "1,234,568".
pub fn fmt_count(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The per-system results table (markdown).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| system | api | workload | in flight | ops/s | p50 | p99 | p99.9 | max | errors |\n",
    );
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.system,
            r.api,
            r.workload,
            r.concurrency,
            fmt_count(r.ops_per_sec),
            fmt_us(r.p50_us),
            fmt_us(r.p99_us),
            fmt_us(r.p999_us),
            fmt_us(r.max_us),
            r.errors
        );
    }
    out
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "n/a".to_string()
    }
}

/// Janus against one other system: ops/s and latency quantiles side by
/// side, with Janus/other ratios (ops ratio >= 1 and p50/p99 ratio <= 1
/// mean Janus is at least as good). Rows only where both systems ran the
/// same measurement.
pub fn ratio_table(janus: &[Row], other: &[Row], other_name: &str) -> String {
    let theirs: BTreeMap<_, &Row> = other.iter().map(|r| (r.key(), r)).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| workload | in flight | Janus ops/s | {o} ops/s | ops ratio | Janus p50 | {o} p50 | p50 ratio | Janus p99 | {o} p99 | p99 ratio | Janus p99.9 | {o} p99.9 | Janus max | {o} max | errors (J/{o}) |",
        o = other_name
    );
    out.push_str(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for j in janus {
        let Some(t) = theirs.get(&j.key()) else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} |",
            j.workload,
            j.concurrency,
            fmt_count(j.ops_per_sec),
            fmt_count(t.ops_per_sec),
            ratio(j.ops_per_sec, t.ops_per_sec),
            fmt_us(j.p50_us),
            fmt_us(t.p50_us),
            ratio(j.p50_us as f64, t.p50_us as f64),
            fmt_us(j.p99_us),
            fmt_us(t.p99_us),
            ratio(j.p99_us as f64, t.p99_us as f64),
            fmt_us(j.p999_us),
            fmt_us(t.p999_us),
            fmt_us(j.max_us),
            fmt_us(t.max_us),
            j.errors,
            t.errors
        );
    }
    out
}

/// The performance targets, one line each, met or not: write and read
/// throughput at 16 and 256 in flight at least the other system's with p99
/// no higher, watch-event p99 no higher, peak RSS with the bulk load no
/// higher than etcd's. `others` pairs a display name with that system's rows.
pub fn targets_table(janus: &[Row], others: &[(&str, &[Row])], res: &[Resources]) -> String {
    let mut out = String::new();
    out.push_str("| target | vs | Janus | other | ratio | met |\n");
    out.push_str("|---|---|---:|---:|---:|---|\n");
    let find = |rows: &[Row], api: &str, w: &str, c: usize| -> Option<Row> {
        rows.iter()
            .find(|r| r.api == api && r.workload == w && r.concurrency == c)
            .cloned()
    };
    let mut line =
        |target: String, vs: &str, j: String, o: String, ratio: Option<f64>, ok: Option<bool>| {
            let ratio = ratio
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "n/a".into());
            let met = match ok {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "n/a",
            };
            let _ = writeln!(out, "| {target} | {vs} | {j} | {o} | {ratio} | {met} |");
        };
    for (name, rows) in others {
        let api = if *name == "etcd" { "etcd" } else { "zookeeper" };
        let workloads: &[&str] = if api == "etcd" {
            &["put", "range-linearizable", "range-serializable"]
        } else {
            &["setData", "create", "getData"]
        };
        for w in workloads {
            for c in [16, 256] {
                let (Some(j), Some(o)) = (find(janus, api, w, c), find(rows, api, w, c)) else {
                    continue;
                };
                let ops = (o.ops_per_sec > 0.0).then(|| j.ops_per_sec / o.ops_per_sec);
                line(
                    format!("{w} ops/s, {c} in flight"),
                    name,
                    fmt_count(j.ops_per_sec),
                    fmt_count(o.ops_per_sec),
                    ops,
                    ops.map(|r| r >= 1.0 && j.errors == 0),
                );
                let p99 = (o.p99_us > 0).then(|| j.p99_us as f64 / o.p99_us as f64);
                line(
                    format!("{w} p99, {c} in flight"),
                    name,
                    fmt_us(j.p99_us),
                    fmt_us(o.p99_us),
                    p99,
                    p99.map(|r| r <= 1.0),
                );
            }
        }
        let watch = |rows: &[Row]| {
            rows.iter()
                .find(|r| r.api == api && r.workload.starts_with("watch-"))
                .cloned()
        };
        if let (Some(j), Some(o)) = (watch(janus), watch(rows)) {
            let p99 = (o.p99_us > 0).then(|| j.p99_us as f64 / o.p99_us as f64);
            line(
                format!("{} event p99", j.workload),
                name,
                fmt_us(j.p99_us),
                fmt_us(o.p99_us),
                p99,
                p99.map(|r| r <= 1.0 && j.errors == 0),
            );
        }
    }
    let rss = |system: &str| res.iter().find(|r| r.system == system && r.api == "etcd");
    if let (Some(j), Some(e)) = (rss("janus"), rss("etcd")) {
        let ratio = (e.peak_rss_kib > 0).then(|| j.peak_rss_kib as f64 / e.peak_rss_kib as f64);
        line(
            format!("peak RSS, {} keys", fmt_count(j.keys as f64)),
            "etcd",
            mib(j.peak_rss_kib),
            mib(e.peak_rss_kib),
            ratio,
            ratio.map(|r| r <= 1.0),
        );
    }
    out
}

/// Resource figures after the bulk load, one line per (system, API).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Resources {
    pub system: String,
    pub api: String,
    pub keys: u64,
    pub load_secs: f64,
    pub peak_rss_kib: u64,
    pub disk_kib: u64,
    pub restart_ms: u64,
    /// Not every member was ready within `restart_ms` (the script's bound).
    #[serde(default)]
    pub restart_timed_out: bool,
}

/// Parses the script's tab-separated resource lines:
/// system, api, keys, load seconds, peak RSS KiB, disk KiB, restart ms
/// (">N" when the members were not all ready after N ms).
pub fn parse_resources(text: &str) -> Vec<Resources> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() != 7 {
                return None;
            }
            Some(Resources {
                system: f[0].to_string(),
                api: f[1].to_string(),
                keys: f[2].trim().parse().ok()?,
                load_secs: f[3].trim().parse().ok()?,
                peak_rss_kib: f[4].trim().parse().ok()?,
                disk_kib: f[5].trim().parse().ok()?,
                restart_ms: f[6].trim().trim_start_matches('>').parse().ok()?,
                restart_timed_out: f[6].trim().starts_with('>'),
            })
        })
        .collect()
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// Janus's restart time over the other's; a bound (">") when Janus timed
/// out, "n/a" when only the other did.
fn restart_ratio(j: &Resources, o: &Resources) -> String {
    match (j.restart_timed_out, o.restart_timed_out) {
        (false, false) => ratio(j.restart_ms as f64, o.restart_ms as f64),
        (true, false) => format!(">{}", ratio(j.restart_ms as f64, o.restart_ms as f64)),
        _ => "n/a".to_string(),
    }
}

/// Peak RSS, disk and restart time, Janus beside the other system on the
/// same API and data set.
pub fn resources_table(res: &[Resources]) -> String {
    let mut out = String::new();
    out.push_str("| api | keys | system | load keys/s | peak RSS | on disk | restart to ready | RSS ratio | disk ratio | restart ratio |\n");
    out.push_str("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in res {
        let janus = res
            .iter()
            .find(|j| j.system == "janus" && j.api == r.api && j.keys == r.keys);
        let (rss, disk, restart) = match janus {
            Some(j) if r.system != "janus" => (
                ratio(j.peak_rss_kib as f64, r.peak_rss_kib as f64),
                ratio(j.disk_kib as f64, r.disk_kib as f64),
                restart_ratio(j, r),
            ),
            _ => ("".into(), "".into(), "".into()),
        };
        let rate = if r.load_secs > 0.0 {
            fmt_count(r.keys as f64 / r.load_secs)
        } else {
            "n/a".into()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {}{} ms | {} | {} | {} |",
            r.api,
            fmt_count(r.keys as f64),
            r.system,
            rate,
            mib(r.peak_rss_kib),
            mib(r.disk_kib),
            if r.restart_timed_out {
                "not ready in "
            } else {
                ""
            },
            r.restart_ms,
            rss,
            disk,
            restart
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_and_row() {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            record(&mut h, Duration::from_micros(us));
        }
        // Beyond the histogram's range: clamped, still counted.
        record(&mut h, Duration::from_secs(100_000));
        let r = Row::from_histogram(
            "janus",
            "etcd",
            "put",
            16,
            &h,
            2,
            Duration::from_secs(2),
            None,
        );
        assert_eq!(r.ops, 1001);
        assert!((r.ops_per_sec - 500.5).abs() < 1e-9);
        assert!((499..=501).contains(&r.p50_us), "p50 {}", r.p50_us);
        assert!((989..=992).contains(&r.p99_us), "p99 {}", r.p99_us);
        assert!(r.max_us >= 599_000_000);
        let empty = Row::from_histogram(
            "etcd",
            "etcd",
            "put",
            1,
            &new_histogram(),
            5,
            Duration::ZERO,
            Some("x".into()),
        );
        assert_eq!((empty.ops, empty.p99_us, empty.ops_per_sec), (0, 0, 0.0));
        let json = serde_json::to_string(&r).unwrap_or_default();
        let back: Row = serde_json::from_str(&json).unwrap_or(empty);
        assert_eq!(back, r);
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_us(460), "0.46 ms");
        assert_eq!(fmt_us(12_345), "12.3 ms");
        assert_eq!(fmt_us(1_200_000), "1.20 s");
        assert_eq!(fmt_count(1_234_567.6), "1,234,568");
        assert_eq!(fmt_count(999.0), "999");
        let mut h = new_histogram();
        record(&mut h, Duration::from_micros(2000));
        let j = Row::from_histogram(
            "janus",
            "etcd",
            "put",
            16,
            &h,
            0,
            Duration::from_secs(1),
            None,
        );
        let mut h2 = new_histogram();
        record(&mut h2, Duration::from_micros(1000));
        record(&mut h2, Duration::from_micros(1000));
        let e = Row::from_histogram(
            "etcd",
            "etcd",
            "put",
            16,
            &h2,
            1,
            Duration::from_secs(1),
            None,
        );
        let t = ratio_table(&[j.clone()], &[e], "etcd");
        let line = t.lines().nth(2).unwrap_or_default();
        assert_eq!(
            line,
            "| put | 16 | 1 | 2 | 0.50 | 2.00 ms | 1.00 ms | 2.00 | 2.00 ms | 1.00 ms | 2.00 | 2.00 ms | 1.00 ms | 2.00 ms | 1.00 ms | 0/1 |"
        );
        assert!(table(&[j]).contains("| janus | etcd | put | 16 | 1 | 2.00 ms |"));
        let res = parse_resources("janus\tetcd\t1000\t2.0\t102400\t2048\t150\netcd\tetcd\t1000\t1.0\t51200\t4096\t300\nbad line\n");
        assert_eq!(res.len(), 2);
        let t = resources_table(&res);
        assert!(
            t.contains(
                "| etcd | 1,000 | etcd | 1,000 | 50 MiB | 4 MiB | 300 ms | 2.00 | 0.50 | 0.50 |"
            ),
            "{t}"
        );
    }

    #[test]
    fn targets() {
        let row = |system: &str, w: &str, c: usize, us: u64, n: u64| {
            let mut h = new_histogram();
            for _ in 0..n {
                record(&mut h, Duration::from_micros(us));
            }
            Row::from_histogram(system, "etcd", w, c, &h, 0, Duration::from_secs(1), None)
        };
        // Janus: twice etcd's ops at 16 in flight, but twice the p99.
        let janus = vec![
            row("janus", "put", 16, 2000, 20),
            row("janus", "watch-8-watchers", 1, 100, 5),
        ];
        let etcd = vec![
            row("etcd", "put", 16, 1000, 10),
            row("etcd", "watch-8-watchers", 1, 200, 5),
        ];
        let res = parse_resources(
            "janus\tetcd\t1000\t2.0\t51200\t2048\t150\netcd\tetcd\t1000\t1.0\t102400\t4096\t300\n",
        );
        let t = targets_table(&janus, &[("etcd", &etcd)], &res);
        assert!(
            t.contains("| put ops/s, 16 in flight | etcd | 20 | 10 | 2.00 | yes |"),
            "{t}"
        );
        assert!(
            t.contains("| put p99, 16 in flight | etcd | 2.00 ms | 1.00 ms | 2.00 | **no** |"),
            "{t}"
        );
        assert!(
            t.contains("| watch-8-watchers event p99 | etcd | 0.10 ms | 0.20 ms | 0.50 | yes |"),
            "{t}"
        );
        assert!(
            t.contains("| peak RSS, 1,000 keys | etcd | 50 MiB | 100 MiB | 0.50 | yes |"),
            "{t}"
        );
        // No 256-in-flight rows: no line for them.
        assert!(!t.contains("256 in flight"), "{t}");
        let res = parse_resources("janus\tetcd\t1000\t2.0\t51200\t2048\t>60000\netcd\tetcd\t1000\t1.0\t102400\t4096\t300\n");
        assert!(res[0].restart_timed_out && res[0].restart_ms == 60000);
        let t = resources_table(&res);
        assert!(t.contains("| not ready in 60000 ms |"), "{t}");
        assert!(t.contains("| 0.50 | 0.50 | >200.00 |"), "{t}");
    }
}

/// One line of the scale part (scripts/bench.sh writes them): a system
/// and API, the data set, its put rows on the empty and on the loaded
/// server, peak RSS and disk (KiB), restart to the first loaded key (ms).
pub struct ScaleRun {
    pub system: String,
    pub api: String,
    pub keys: u64,
    pub bytes: u64,
    pub empty: Option<Row>,
    pub loaded: Option<Row>,
    pub rss_kib: u64,
    pub disk_kib: u64,
    pub restart_ms: u64,
}

/// The scale table, then Janus's ratios against its own empty figure and
/// against the other system of each API and data set.
pub fn scale_table(runs: &[ScaleRun]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| system | API | data | empty: ops/s | loaded: ops/s | loaded max | peak RSS | disk | restart |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|---:|");
    let ops = |r: &Option<Row>| r.as_ref().map_or(0.0, |r| r.ops_per_sec);
    for r in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {} x {} B | {} | {} | {} | {} | {} | {} ms |",
            r.system,
            r.api,
            fmt_count(r.keys as f64),
            r.bytes,
            fmt_count(ops(&r.empty)),
            fmt_count(ops(&r.loaded)),
            r.loaded.as_ref().map_or("n/a".into(), |l| fmt_us(l.max_us)),
            mib(r.rss_kib),
            mib(r.disk_kib),
            r.restart_ms
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| Janus vs | API | data | loaded/own empty | loaded ops ratio | max latency ratio | RSS ratio | restart ratio |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|");
    for j in runs.iter().filter(|r| r.system == "janus") {
        for o in runs.iter().filter(|o| {
            o.system != "janus" && o.api == j.api && o.keys == j.keys && o.bytes == j.bytes
        }) {
            let max = |r: &Option<Row>| r.as_ref().map_or(0.0, |r| r.max_us as f64);
            let _ = writeln!(
                out,
                "| {} | {} | {} x {} B | {} | {} | {} | {} | {} |",
                o.system,
                j.api,
                fmt_count(j.keys as f64),
                j.bytes,
                ratio(ops(&j.loaded), ops(&j.empty)),
                ratio(ops(&j.loaded), ops(&o.loaded)),
                ratio(max(&j.loaded), max(&o.loaded)),
                ratio(j.rss_kib as f64, o.rss_kib as f64),
                ratio(j.restart_ms as f64, o.restart_ms as f64),
            );
        }
    }
    out
}
