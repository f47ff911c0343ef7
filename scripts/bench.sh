#!/usr/bin/env bash
# Janus against real etcd (Debian's etcd-server) and real ZooKeeper
# (Debian's zookeeper), one member each, on loopback, fsync on everywhere,
# the same workloads through the same independent clients (crates/bench),
# in one run; prints the Janus/etcd and Janus/ZooKeeper ratio tables.
#
#   scripts/bench.sh            full run: 2 s per row, 1..256 in flight, 1M-key load (~8 min)
#   scripts/bench.sh --quick    1 s per row, 1/16/256 in flight, 100k-key load (~3 min)
#   options: --keys N (bulk-load size), --duration-ms N, --concurrency 1,16,256,
#            --skip-load (no bulk load / RSS / restart), --out DIR
#
# Results: DIR (default target/bench/latest): etcd.json, zookeeper.json,
# janus.json (rows), resources.tsv, report.md (the tables), server logs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

quick=0
keys=""
duration_ms=""
concurrency=""
skip_load=0
out="$root/target/bench/latest"
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --keys) keys="$2"; shift ;;
    --duration-ms) duration_ms="$2"; shift ;;
    --concurrency) concurrency="$2"; shift ;;
    --skip-load) skip_load=1 ;;
    --out) out="$2"; shift ;;
    *) echo "usage: $0 [--quick] [--keys N] [--duration-ms N] [--concurrency LIST] [--skip-load] [--out DIR]" >&2; exit 2 ;;
    esac
    shift
done
if [ "$quick" = 1 ]; then
    : "${keys:=100000}" "${duration_ms:=1000}" "${concurrency:=1,16,256}"
    watchers=8
else
    : "${keys:=1000000}" "${duration_ms:=2000}" "${concurrency:=1,16,64,256}"
    watchers=16
fi

# Real servers from Debian, installed the way the tests install them.
if ! command -v etcd >/dev/null 2>&1; then source scripts/deps/etcd.sh; fi
if [ ! -e /usr/share/java/zookeeper.jar ] || ! command -v java >/dev/null 2>&1; then source scripts/deps/zk.sh; fi

# One build of the whole workspace: the same feature set as the test
# suite's (scripts/test.sh), so neither rebuilds the tree for the other.
cargo build --release --locked --workspace
bench="$root/target/release/janus-bench"
janus_bin="$root/target/release/janus"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/janus-bench.XXXXXX")"
mkdir -p "$out"
rm -f "$out"/*.json "$out"/resources.tsv "$out"/report.md
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

# Loopback ports clear of the defaults and of config/node*.toml.
ETCD_CLIENT=127.0.0.1:41379
ETCD_PEER=127.0.0.1:41380
ZK_CLIENT=127.0.0.1:41181
JANUS_ZK=127.0.0.1:42181
JANUS_ETCD=127.0.0.1:42379
JANUS_PEER=127.0.0.1:42380

now_ms() { date +%s%3N; }
pid=""

start_etcd() { # data dir
    etcd --name bench --data-dir "$1" \
        --listen-client-urls "http://$ETCD_CLIENT" --advertise-client-urls "http://$ETCD_CLIENT" \
        --listen-peer-urls "http://$ETCD_PEER" --initial-advertise-peer-urls "http://$ETCD_PEER" \
        --initial-cluster "bench=http://$ETCD_PEER" \
        --quota-backend-bytes 8589934592 --log-level warn \
        >>"$out/etcd.log" 2>&1 &
    pid=$!
    pids+=("$pid")
}

start_zk() { # data dir
    mkdir -p "$1"
    # forceSync defaults to yes: every transaction is fsynced, as etcd and
    # Janus do. No per-IP connection cap: the benchmark opens many.
    cat >"$1.cfg" <<EOF
tickTime=2000
dataDir=$1
clientPort=${ZK_CLIENT##*:}
clientPortAddress=${ZK_CLIENT%:*}
maxClientCnxns=0
admin.enableServer=false
EOF
    java -Xmx4g -Dzookeeper.4lw.commands.whitelist=ruok \
        -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar \
        org.apache.zookeeper.server.ZooKeeperServerMain "$1.cfg" >>"$out/zookeeper.log" 2>&1 &
    pid=$!
    pids+=("$pid")
}

start_janus() { # data dir
    cat >"$1.toml" <<EOF
node_id = 1
data_dir = "$1"
zk_listen = "$JANUS_ZK"
etcd_listen = "$JANUS_ETCD"
peer_listen = "$JANUS_PEER"
heartbeat_ms = 100
election_timeout_ms = 1000
log = "warn"
EOF
    "$janus_bin" --config "$1.toml" >>"$out/janus.log" 2>&1 &
    pid=$!
    pids+=("$pid")
}

stop() { # pid
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

peak_rss_kib() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# --- 1. Workloads: a fresh server each, one after the other. -----------------
run_args=(--duration-ms "$duration_ms" --concurrency "$concurrency" --watchers "$watchers")

echo "== etcd $(etcd --version | head -1)"
start_etcd "$tmp/etcd-run"
"$bench" ready --etcd "$ETCD_CLIENT" --timeout-secs 60 --no-data
"$bench" run --system etcd --etcd "$ETCD_CLIENT" "${run_args[@]}" --json "$out/etcd.json" >/dev/null
stop "$pid"

echo "== ZooKeeper (Debian's zookeeper $(dpkg-query -W -f='${Version}' zookeeper 2>/dev/null || echo '?'))"
start_zk "$tmp/zk-run"
"$bench" ready --zk "$ZK_CLIENT" --timeout-secs 60 --no-data
"$bench" run --system zookeeper --zk "$ZK_CLIENT" "${run_args[@]}" --json "$out/zookeeper.json" >/dev/null
stop "$pid"

echo "== Janus $(git -C "$root" rev-parse --short HEAD)"
start_janus "$tmp/janus-run"
"$bench" ready --etcd "$JANUS_ETCD" --zk "$JANUS_ZK" --timeout-secs 60 --no-data
"$bench" run --system janus --etcd "$JANUS_ETCD" --zk "$JANUS_ZK" "${run_args[@]}" --json "$out/janus.json" >/dev/null
stop "$pid"

# --- 2. Bulk load: peak RSS, on-disk size, restart-to-ready. -----------------
# One fresh server per (system, API): load, read peak RSS, stop, measure the
# data directory, start again and time until a loaded key reads back.
measure() { # system api starter dir load-args ready-args
    local system=$1 api=$2 starter=$3 dir=$4 load_args=$5 ready_args=$6 line secs rss disk t0 restart
    echo "== bulk load: $system, $api API, $keys keys"
    $starter "$dir"
    # shellcheck disable=SC2086
    "$bench" ready $ready_args --timeout-secs 60 --no-data
    # shellcheck disable=SC2086
    line=$("$bench" load $load_args --keys "$keys")
    secs=$(echo "$line" | awk '{print $(NF-1)}')
    rss=$(peak_rss_kib "$pid")
    stop "$pid"
    disk=$(du -sk "$dir" | awk '{print $1}')
    t0=$(now_ms)
    $starter "$dir"
    # shellcheck disable=SC2086
    "$bench" ready $ready_args --timeout-secs 300
    restart=$(($(now_ms) - t0))
    stop "$pid"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$system" "$api" "$keys" "$secs" "$rss" "$disk" "$restart" >>"$out/resources.tsv"
    echo "   loaded in ${secs}s, peak RSS ${rss} KiB, disk ${disk} KiB, restart-to-ready ${restart} ms"
}
if [ "$skip_load" = 0 ]; then
    measure etcd etcd start_etcd "$tmp/etcd-load" "--etcd $ETCD_CLIENT" "--etcd $ETCD_CLIENT"
    measure janus etcd start_janus "$tmp/janus-load-etcd" "--etcd $JANUS_ETCD" "--etcd $JANUS_ETCD"
    measure zookeeper zookeeper start_zk "$tmp/zk-load" "--zk $ZK_CLIENT" "--zk $ZK_CLIENT"
    measure janus zookeeper start_janus "$tmp/janus-load-zk" "--zk $JANUS_ZK" "--zk $JANUS_ZK"
fi

# --- 3. Report. ----------------------------------------------------------------
{
    echo "## Results ($(date -u '+%Y-%m-%d %H:%M UTC'), $( [ "$quick" = 1 ] && echo quick || echo full ) run: ${duration_ms} ms per row, bulk load ${keys} keys)"
    echo
    echo "Janus $(git -C "$root" rev-parse --short HEAD); $(etcd --version | head -1); ZooKeeper $(dpkg-query -W -f='${Version}' zookeeper 2>/dev/null || echo '?'); $(nproc) CPUs."
    echo "Ratios are Janus/other: ops ratio >= 1.00 and p99 ratio <= 1.00 mean Janus is at least as good."
    echo
    res_arg=()
    [ -s "$out/resources.tsv" ] && res_arg=(--resources "$out/resources.tsv")
    "$bench" compare --janus "$out/janus.json" --etcd "$out/etcd.json" --zk "$out/zookeeper.json" "${res_arg[@]}"
} >"$out/report.md"
cat "$out/report.md"
echo "(written to $out/report.md)"
