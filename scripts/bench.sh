#!/usr/bin/env bash
# Janus against real etcd (Debian's etcd-server) and real ZooKeeper
# (Debian's zookeeper), three-member and one-member clusters each, on
# loopback, fsync on everywhere, the same workloads through the same
# independent clients (crates/bench), in one run; prints the Janus/etcd and
# Janus/ZooKeeper ratio tables for each topology.
#
#   scripts/bench.sh            default (at most ~10 min): three members: every
#                               workload at 1,16,256 in flight, 1.5 s per row, and the
#                               1M-key load; one member: 16,256 in flight, 0.75 s per row
#   scripts/bench.sh --quick    smoke run (~3 min): three members at 1,16,256, 1 s
#                               per row, 100k-key load; one member at 16, 0.5 s per row
#   options: --topology 1|3|both   which cluster sizes to run (default both)
#            --keys N              bulk-load size (loaded on the three-member clusters;
#                                  on one member with --topology 1)
#            --duration-ms N, --concurrency LIST   per-row time and in-flight levels,
#                                  for every topology run (default: per topology, above)
#            --skip-load           no bulk load / RSS / disk / restart
#            --scale LIST          the scale part's data sets, KEYSxBYTES comma-separated
#                                  (default 400000x1024,2000000x256; --quick 50000x1024)
#            --skip-scale          no scale part
#            --failover-kills N    leader kills per system in the failover part
#                                  (three members; default 10, --quick 3)
#            --skip-failover       no failover part
#            --failover-only       only the failover part
#            --scale-only          only the scale part (no workload tables, no bulk load)
#            --rejoin KEYSxBYTES   the rejoin part's data set (three Janus members; default
#                                  1000000x1024, about 1 GB of incompressible values;
#                                  --quick 100000x1024)
#            --skip-rejoin         no rejoin part
#            --rejoin-only         only the rejoin part
#            --out DIR             results (default target/bench/latest)
#   ZK_HEAP=1g                     each ZooKeeper JVM's -Xmx (default 1g)
#   JANUS_BENCH_LOG=info           the Janus members' log level (default warn)
#
# Clients talk to one member per cluster: the leader, found from each
# system's own status (etcd /metrics etcd_server_is_leader, ZooKeeper
# `srvr` Mode, Janus /metrics janus_raft_leader_id), for all three alike.
#
# Results in DIR: m3/ and m1/ (per topology: etcd.json, zookeeper.json,
# janus.json rows, resources.tsv, server logs), report.md (all tables).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

quick=0
topology=both
keys=""
duration_ms=""
concurrency=""
skip_load=0
scale=""
skip_scale=0
scale_only=0
failover_kills=""
skip_failover=0
failover_only=0
rejoin=""
skip_rejoin=0
rejoin_only=0
out="$root/target/bench/latest"
usage="usage: $0 [--quick] [--topology 1|3|both] [--keys N] [--duration-ms N] [--concurrency LIST] [--skip-load] [--scale LIST] [--skip-scale] [--scale-only] [--failover-kills N] [--skip-failover] [--failover-only] [--rejoin KEYSxBYTES] [--skip-rejoin] [--rejoin-only] [--out DIR]"
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --topology) topology="$2"; shift ;;
    --keys) keys="$2"; shift ;;
    --duration-ms) duration_ms="$2"; shift ;;
    --concurrency) concurrency="$2"; shift ;;
    --skip-load) skip_load=1 ;;
    --scale) scale="$2"; shift ;;
    --skip-scale) skip_scale=1 ;;
    --scale-only) scale_only=1 skip_load=1 skip_failover=1 skip_rejoin=1 ;;
    --rejoin) rejoin="$2"; shift ;;
    --skip-rejoin) skip_rejoin=1 ;;
    --rejoin-only) rejoin_only=1 scale_only=1 skip_load=1 skip_scale=1 skip_failover=1 ;;
    --failover-kills) failover_kills="$2"; shift ;;
    --skip-failover) skip_failover=1 ;;
    --failover-only) failover_only=1 skip_load=1 skip_scale=1 skip_rejoin=1 ;;
    --out) out="$2"; shift ;;
    *) echo "$usage" >&2; exit 2 ;;
    esac
    shift
done
case "$topology" in
1) topos=(1) ;;
3) topos=(3) ;;
both) topos=(3 1) ;;
*) echo "$usage" >&2; exit 2 ;;
esac
# Per-topology defaults: the three-member clusters are the headline (the
# targets are judged on them), the one-member runs a shorter
# comparison at the targets' in-flight levels.
if [ "$quick" = 1 ]; then
    : "${keys:=100000}"
    : "${scale:=50000x1024}"
    : "${failover_kills:=3}"
    : "${rejoin:=100000x1024}"
    scale_secs=5
    dur3=1000 conc3=1,16,256 dur1=500 conc1=16 watchers=8
else
    : "${keys:=1000000}"
    : "${scale:=400000x1024,2000000x256}"
    : "${failover_kills:=10}"
    : "${rejoin:=1000000x1024}"
    scale_secs=20
    dur3=1500 conc3=1,16,256 dur1=750 conc1=16,256 watchers=16
fi
[ -n "$duration_ms" ] && dur3=$duration_ms dur1=$duration_ms
[ -n "$concurrency" ] && conc3=$concurrency conc1=$concurrency
# The bulk load runs once, on the largest topology of this run.
load_topo=${topos[0]}
zk_heap=${ZK_HEAP:-1g}

# Real servers from Debian, installed the way the tests install them.
if ! command -v etcd >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then source scripts/deps/etcd.sh; fi
if [ ! -e /usr/share/java/zookeeper.jar ] || ! command -v java >/dev/null 2>&1; then source scripts/deps/zk.sh; fi

# One build of the whole workspace: the same feature set as the test
# suite's (scripts/test.sh), so neither rebuilds the tree for the other.
cargo build --release --locked --workspace --all-targets
bench="$root/target/release/janus-bench"
janus_bin="$root/target/release/janus"

# Loopback ports in 10xxx (etcd, ZooKeeper) and 11xxx (Janus): below
# Linux's ephemeral range (32768-60999), so no client or peer connection
# can hold one as its local port when a member (re)starts, and below the
# tests' range (12000-31999). Member n of each system (n = 1..3); a
# one-member cluster is member 1 alone.
etcd_client() { echo "127.0.0.1:10$((n + 2))79"; }  # 10379 10479 10579
etcd_peer() { echo "127.0.0.1:10$((n + 2))80"; }    # 10380 10480 10580
zk_client() { echo "127.0.0.1:1018$n"; }             # 10181 10182 10183
zk_quorum() { echo "1028$n"; }                       # 10281 10282 10283
zk_election() { echo "1029$n"; }                     # 10291 10292 10293
janus_zk() { echo "127.0.0.1:1118$n"; }              # 11181 11182 11183
janus_etcd() { echo "127.0.0.1:11$((n + 2))79"; }   # 11379 11479 11579
janus_peer() { echo "127.0.0.1:11$((n + 2))80"; }   # 11380 11480 11580

all_ports() {
    local n
    for n in 1 2 3; do
        echo "$(etcd_client) $(etcd_peer) $(zk_client) $(zk_quorum) $(zk_election) $(janus_zk) $(janus_etcd) $(janus_peer)"
    done | tr ' ' '\n' | sed 's/.*://'
}
# A leftover server from an aborted run would be measured instead of ours.
busy=$(ss -Htln | awk '{print $4}' | sed 's/.*://' | sort -u | grep -Fxf <(all_ports) || true)
if [ -n "$busy" ]; then
    echo "ports already in use: $(echo "$busy" | tr '\n' ' ')- is another bench run going?" >&2
    exit 1
fi

# The ports a cluster's members listen on (ZooKeeper's quorum port only
# on the leader, so only its client and election ports are checked; a
# standalone ZooKeeper has no election port).
member_ports() { # system size
    local n
    for n in $(seq "$2"); do
        case "$1" in
        etcd) echo "$(etcd_client) $(etcd_peer)" ;;
        zk) if [ "$2" -gt 1 ]; then echo "$(zk_client) $(zk_election)"; else zk_client; fi ;;
        janus) echo "$(janus_zk) $(janus_etcd) $(janus_peer)" ;;
        esac
    done | tr ' ' '\n' | sed 's/.*://'
}
# A leftover of an earlier cluster (a member still shutting down) makes
# the next one's bind() fail. Wait until every port the next cluster needs
# can be bound (python3: bash cannot bind; zk.sh's python3-venv brings it).
unbindable() { # ports... -> prints those bind() refuses now
    python3 - "$@" <<'PY'
import socket, sys
for p in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", int(p)))
    except OSError:
        print(p, end=" ")
    finally:
        s.close()
PY
}
wait_ports_free() { # system size
    local clash=""
    for i in $(seq 900); do
        # shellcheck disable=SC2046
        clash=$(unbindable $(member_ports "$1" "$2"))
        [ -z "$clash" ] && return 0
        [ "$i" = 1 ] && echo "   waiting for ports ${clash}(held by earlier connections) to clear"
        sleep 0.1
    done
    echo "ports ${clash}still in use after 90 s" >&2
    return 1
}
# Every member listens on all its ports (a member that could not bind one
# would otherwise be measured half-working, or hang the run).
wait_listening() { # system size
    local p missing=""
    for _ in $(seq 600); do
        missing=""
        for p in $(member_ports "$1" "$2"); do
            ss -Htln "sport = :$p" | grep -q . || missing+="$p "
        done
        [ -z "$missing" ] && return 0
        sleep 0.1
    done
    echo "$1: nothing listening on port(s) ${missing}60 s after start; see the logs in $res" >&2
    return 1
}

tmp="$(mktemp -d "${TMPDIR:-/tmp}/janus-bench.XXXXXX")"
mkdir -p "$out"
rm -rf "$out"/m1 "$out"/m3 "$out"/report.md
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    # A server that ignores SIGTERM for 20 s gets SIGKILL.
    for _ in $(seq 200); do
        local alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { date +%s%3N; }
t_start=$(now_ms)
since() { echo "[+$((($(now_ms) - t_start) / 1000)) s]"; }

# --- Clusters ------------------------------------------------------------------
# start_<system> SIZE DIR: start members 1..SIZE with data under DIR/m<n>,
# append their pids to `members`, print nothing. logs go to $res.
members=()

# start_<system>_member N SIZE DIR: start (or restart) member N of a
# SIZE-member cluster in the background; its pid goes to `started`.
start_etcd_member() {
    local n=$1 size=$2 dir=$3 m initial=""
    for m in $(seq "$size"); do initial+="${initial:+,}m$m=http://$(n=$m etcd_peer)"; done
    etcd --name "m$n" --data-dir "$dir/m$n" \
        --listen-client-urls "http://$(etcd_client)" --advertise-client-urls "http://$(etcd_client)" \
        --listen-peer-urls "http://$(etcd_peer)" --initial-advertise-peer-urls "http://$(etcd_peer)" \
        --initial-cluster "$initial" --initial-cluster-token bench \
        --quota-backend-bytes 8589934592 --log-level warn \
        >>"$res/etcd-m$n.log" 2>&1 &
    started=$!
}

start_etcd() {
    local size=$1 dir=$2 n
    wait_ports_free etcd "$size"
    for n in $(seq "$size"); do
        start_etcd_member "$n" "$size" "$dir"
        members+=("$started")
        pids+=("$started")
    done
}

start_zk() {
    local size=$1 dir=$2 n
    wait_ports_free zk "$size"
    for n in $(seq "$size"); do
        start_zk_member "$n" "$size" "$dir"
        members+=("$started")
        pids+=("$started")
    done
}

start_zk_member() {
    local n=$1 size=$2 dir=$3 m
    mkdir -p "$dir/m$n"
    # forceSync defaults to yes: every transaction is fsynced, as etcd and
    # Janus do. No per-IP connection cap: the benchmark opens many.
    {
        echo "tickTime=2000"
        echo "initLimit=10"
        echo "syncLimit=5"
        echo "dataDir=$dir/m$n"
        echo "clientPort=$(zk_client | sed 's/.*://')"
        echo "clientPortAddress=127.0.0.1"
        echo "maxClientCnxns=0"
        echo "admin.enableServer=false"
        if [ "$size" -gt 1 ]; then
            echo "$n" >"$dir/m$n/myid"
            for m in $(seq "$size"); do
                echo "server.$m=127.0.0.1:$(n=$m zk_quorum):$(n=$m zk_election)"
            done
        fi
    } >"$dir/m$n.cfg"
    local main=org.apache.zookeeper.server.ZooKeeperServerMain
    [ "$size" -gt 1 ] && main=org.apache.zookeeper.server.quorum.QuorumPeerMain
    java "-Xmx$zk_heap" -Dzookeeper.4lw.commands.whitelist=ruok,srvr \
        -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar \
        "$main" "$dir/m$n.cfg" >>"$res/zookeeper-m$n.log" 2>&1 &
    started=$!
}

start_janus() {
    local size=$1 dir=$2 n
    wait_ports_free janus "$size"
    for n in $(seq "$size"); do
        start_janus_member "$n" "$size" "$dir"
        members+=("$started")
        pids+=("$started")
    done
}

start_janus_member() {
    local n=$1 size=$2 dir=$3 m initial=""
    mkdir -p "$dir"
    for m in $(seq "$size"); do initial+="${initial:+,}$m=$(n=$m janus_peer)"; done
    cat >"$dir/m$n.toml" <<EOF
node_id = $n
data_dir = "$dir/m$n"
zk_listen = "$(janus_zk)"
etcd_listen = "$(janus_etcd)"
peer_listen = "$(janus_peer)"
initial_cluster = "$initial"
heartbeat_ms = 100
election_timeout_ms = 1000
log = "${JANUS_BENCH_LOG:-warn}"
EOF
    "$janus_bin" --config "$dir/m$n.toml" >>"$res/janus-m$n.log" 2>&1 &
    started=$!
}

# Stop the current cluster's members (SIGTERM, then SIGKILL after 20 s).
stop_members() {
    local p
    for p in "${members[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${members[@]}"; do
        for _ in $(seq 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    local keep=()
    for p in "${pids[@]}"; do
        [[ " ${members[*]} " == *" $p "* ]] || keep+=("$p")
    done
    pids=("${keep[@]}")
    members=()
}

# Which member leads, by the system's own account (1-based; 0 = none yet).
etcd_is_leader() { curl -s -m 2 "http://$(etcd_client)/metrics" | grep -q '^etcd_server_is_leader 1'; }
zk_mode() {
    local addr
    addr=$(zk_client)
    timeout 3 bash -c "exec 3<>/dev/tcp/${addr%:*}/${addr##*:}; printf srvr >&3; cat <&3" 2>/dev/null |
        awk '/^Mode:/{print $2}'
}
zk_is_leader() { case "$(zk_mode)" in leader | standalone) return 0 ;; *) return 1 ;; esac; }
janus_is_leader() {
    [ "$(curl -s -m 2 "http://$(janus_etcd)/metrics" | awk '/^janus_raft_leader_id /{print $2}')" = "$n" ]
}
find_leader() { # system size -> prints the leader's member number
    local system=$1 size=$2 n
    wait_listening "$system" "$size" || return 1
    for _ in $(seq 600); do
        for n in $(seq "$size"); do
            if "${system}_is_leader"; then echo "$n"; return 0; fi
        done
        sleep 0.1
    done
    echo "no $system leader after 60 s" >&2
    return 1
}

# ready_all system size timeout-secs [--no-data]: every member answers a
# read through its API (without --no-data: reads a bulk-loaded key back),
# all within timeout-secs; fails otherwise.
ready_all() {
    local system=$1 size=$2 secs=$3 n t_end left
    shift 3
    t_end=$(($(now_ms) + secs * 1000))
    for n in $(seq "$size"); do
        left=$(((t_end - $(now_ms)) / 1000))
        [ "$left" -lt 1 ] && left=1
        case "$system" in
        etcd) "$bench" ready --etcd "$(etcd_client)" --timeout-secs "$left" "$@" || return 1 ;;
        zk) "$bench" ready --zk "$(zk_client)" --timeout-secs "$left" "$@" || return 1 ;;
        janus-etcd) "$bench" ready --etcd "$(janus_etcd)" --timeout-secs "$left" "$@" || return 1 ;;
        janus-zk) "$bench" ready --zk "$(janus_zk)" --timeout-secs "$left" "$@" || return 1 ;;
        esac
    done
}
# Bound on restart-to-ready with the bulk-loaded data: a cluster that does
# not get there is reported as "not ready in" this, and the run goes on.
restart_timeout=45

peak_rss_kib() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# --- 1. Workloads: a fresh cluster per system, one after the other. ------------
# A system that stops answering part-way keeps the rows it finished (the
# bench writes them after each row); the run goes on and says so.
run_failed() {
    echo "   $1 run failed part-way: $(grep -m1 '^Error' "$res/run-stderr.log" || echo '?'); its finished rows are kept (details in $res/run-stderr.log)"
    echo "$1" >>"$res/failed-runs"
}
run_workloads() { # size duration-ms concurrency
    local size=$1 dur=$2 conc=$3 n
    local run_args=(--duration-ms "$dur" --concurrency "$conc" --watchers "$watchers")
    echo "=== $(since) $size member(s) each: ${dur} ms per row, in flight $conc"

    start_etcd "$size" "$tmp/m$size-etcd-run"
    n=$(find_leader etcd "$size")
    ready_all etcd "$size" 120 --no-data
    echo "== $(since) etcd $(etcd --version | head -1), clients on member $n (leader)"
    "$bench" run --system etcd --etcd "$(etcd_client)" "${run_args[@]}" --json "$res/etcd.json" >/dev/null 2> >(tee -a "$res/run-stderr.log" >&2) ||
        run_failed etcd
    stop_members

    start_zk "$size" "$tmp/m$size-zk-run"
    n=$(find_leader zk "$size")
    ready_all zk "$size" 120 --no-data
    echo "== $(since) ZooKeeper $(dpkg-query -W -f='${Version}' zookeeper 2>/dev/null || echo '?'), clients on member $n (leader)"
    "$bench" run --system zookeeper --zk "$(zk_client)" "${run_args[@]}" --json "$res/zookeeper.json" >/dev/null 2> >(tee -a "$res/run-stderr.log" >&2) ||
        run_failed zookeeper
    stop_members

    start_janus "$size" "$tmp/m$size-janus-run"
    n=$(find_leader janus "$size")
    ready_all janus-etcd "$size" 120 --no-data
    echo "== $(since) Janus $(git -C "$root" rev-parse --short HEAD), clients on member $n (leader)"
    "$bench" run --system janus --etcd "$(janus_etcd)" --zk "$(janus_zk)" "${run_args[@]}" --json "$res/janus.json" >/dev/null 2> >(tee -a "$res/run-stderr.log" >&2) ||
        run_failed janus
    stop_members
}

set_load_args() { # ready-kind: the client flags for member $n of that API
    case "$1" in
    etcd) load_args=(--etcd "$(etcd_client)") ;;
    zk) load_args=(--zk "$(zk_client)") ;;
    janus-etcd) load_args=(--etcd "$(janus_etcd)") ;;
    janus-zk) load_args=(--zk "$(janus_zk)") ;;
    esac
}

# Peak RSS and on-disk size (KiB, the largest member), then stop the
# running cluster, start it again and time until every member reads a
# loaded key back: sets rss, disk and restart (ms; ">N" when not ready).
resources_and_restart() { # starter leader-kind ready-kind dir size
    local starter=$1 kind=$2 rkind=$3 dir=$4 size=$5 p r d t0
    rss=0 disk=0
    for p in "${members[@]}"; do
        r=$(peak_rss_kib "$p")
        [ "$r" -gt "$rss" ] && rss=$r
    done
    stop_members
    for d in "$dir"/m*/; do
        r=$(du -sk "$d" | awk '{print $1}')
        [ "$r" -gt "$disk" ] && disk=$r
    done
    wait_ports_free "$kind" "$size"
    t0=$(now_ms)
    $starter "$size" "$dir"
    if ready_all "$rkind" "$size" "$restart_timeout" 2>>"$res/ready-errors.log"; then
        restart=$(($(now_ms) - t0))
    else
        restart=">$((restart_timeout * 1000))"
        echo "   not every member ready ${restart_timeout} s after the restart (member logs in $res)"
    fi
    stop_members
}

# --- 2. Bulk load: peak RSS, on-disk size, restart-to-ready. -----------------
# A fresh cluster per (system, API) gets $keys keys through its leader; then
# peak RSS (VmHWM) of each member, SIGTERM all, on-disk size of each
# member's data directory, start all again and time until every member reads
# a loaded key back. RSS and disk are per member, the largest of the members.
measure() { # system api starter leader-kind ready-kind dir size
    local system=$1 api=$2 starter=$3 kind=$4 rkind=$5 dir=$6 size=$7
    local n line secs rss disk restart load_args
    echo "== $(since) bulk load: $system, $api API, $keys keys, $size member(s)"
    $starter "$size" "$dir"
    n=$(find_leader "$kind" "$size")
    ready_all "$rkind" "$size" 120 --no-data
    set_load_args "$rkind"
    line=$("$bench" load "${load_args[@]}" --keys "$keys")
    secs=$(echo "$line" | awk '{print $(NF-1)}')
    resources_and_restart "$starter" "$kind" "$rkind" "$dir" "$size"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$system" "$api" "$keys" "$secs" "$rss" "$disk" "$restart" >>"$res/resources.tsv"
    echo "   loaded through member $n in ${secs}s, peak RSS ${rss} KiB, disk ${disk} KiB (largest member), restart-to-ready ${restart} ms (all members)"
}

run_load() { # size
    local size=$1
    measure etcd etcd start_etcd etcd etcd "$tmp/m$size-etcd-load" "$size"
    measure janus etcd start_janus janus janus-etcd "$tmp/m$size-janus-load-etcd" "$size"
    measure zookeeper zookeeper start_zk zk zk "$tmp/m$size-zk-load" "$size"
    measure janus zookeeper start_janus janus janus-zk "$tmp/m$size-janus-load-zk" "$size"
}

# --- 3. Scale: does the cost of a write grow with the data held? ---------------
# Per system and API, a fresh cluster: 64 puts (setData) in flight for 5 s on
# the empty server, then KEYS values of BYTES bulk-loaded, then the same puts
# for $scale_secs s; peak RSS, on-disk size, restart to the first loaded key.
scale_one() { # system api starter leader-kind ready-kind dir size nkeys bytes
    local system=$1 api=$2 starter=$3 kind=$4 rkind=$5 dir=$6 size=$7 nkeys=$8 bytes=$9
    local n rss disk restart load_args run_args workload
    echo "== $(since) scale: $system, $api API, ${nkeys} x ${bytes} B, $size member(s)"
    $starter "$size" "$dir"
    n=$(find_leader "$kind" "$size")
    ready_all "$rkind" "$size" 120 --no-data
    set_load_args "$rkind"
    workload=put
    [ "$api" = zookeeper ] && workload=setData
    run_args=(--system "$system" "${load_args[@]}" --only "$workload" --concurrency 64 --value-size "$bytes")
    local tag="$system-$api-${nkeys}x$bytes"
    "$bench" run "${run_args[@]}" --duration-ms 5000 --json "$res/scale-$tag-empty.json" >/dev/null
    "$bench" load "${load_args[@]}" --keys "$nkeys" --value-size "$bytes" >/dev/null
    "$bench" run "${run_args[@]}" --duration-ms $((scale_secs * 1000)) --json "$res/scale-$tag-loaded.json" >/dev/null
    resources_and_restart "$starter" "$kind" "$rkind" "$dir" "$size"
    restart=${restart#>}
    rm -rf "$dir"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$system" "$api" "$nkeys" "$bytes" \
        "$res/scale-$tag-empty.json" "$res/scale-$tag-loaded.json" "$rss" "$disk" "$restart" >>"$res/scale.tsv"
}

run_scale() { # size
    local size=$1 set nkeys bytes
    for set in ${scale//,/ }; do
        nkeys=${set%x*} bytes=${set#*x}
        # Three members: the first data set only.
        if [ "$size" = 3 ] && [ "$set" != "${scale%%,*}" ]; then continue; fi
        scale_one etcd etcd start_etcd etcd etcd "$tmp/s$size-etcd" "$size" "$nkeys" "$bytes"
        scale_one janus etcd start_janus janus janus-etcd "$tmp/s$size-janus-etcd" "$size" "$nkeys" "$bytes"
        scale_one zookeeper zookeeper start_zk zk zk "$tmp/s$size-zk" "$size" "$nkeys" "$bytes"
        scale_one janus zookeeper start_janus janus janus-zk "$tmp/s$size-janus-zk" "$size" "$nkeys" "$bytes"
    done
}

# --- 4. Failover: kill -9 of the leader, again and again. ----------------------
# Per system, a fresh three-member cluster. Each round: the probe connects
# to the two survivors, SIGKILLs the leader and writes until a write is
# acknowledged (janus-bench failover); the killed member restarts and every
# member answers before the next round.
failover_one() { # system kind ready-kinds... (kind: etcd|zk|janus)
    local system=$1 kind=$2 round n m pid line
    shift 2
    local dir="$tmp/f-$system"
    echo "== $(since) failover: $system, $failover_kills kills of the leader, three members"
    "start_$kind" 3 "$dir"
    for round in $(seq "$failover_kills"); do
        n=$(find_leader "$kind" 3)
        for r in "$@"; do ready_all "$r" 3 60 --no-data; done
        pid=${members[$((n - 1))]}
        local etcd_eps="" zk_eps="" args=()
        for m in 1 2 3; do
            [ "$m" = "$n" ] && continue
            case "$kind" in
            etcd) etcd_eps+="${etcd_eps:+,}$(n=$m etcd_client)" ;;
            zk) zk_eps+="${zk_eps:+,}$(n=$m zk_client)" ;;
            janus)
                etcd_eps+="${etcd_eps:+,}$(n=$m janus_etcd)"
                zk_eps+="${zk_eps:+,}$(n=$m janus_zk)"
                ;;
            esac
        done
        [ -n "$etcd_eps" ] && args+=(--etcd "$etcd_eps")
        [ -n "$zk_eps" ] && args+=(--zk "$zk_eps")
        # The probe kills the member; bash reports the killed job on its
        # own stderr as soon as it notices, hence the braces' redirection.
        if ! { "$bench" failover --kill-pid "$pid" "${args[@]}" >"$res/failover-round.txt"; } 2>>"$res/failover-errors.log"; then
            echo "   round $round: no write acknowledged (see $res/failover-errors.log)"
        fi
        while read -r line; do
            printf '%s\t%s\n' "$system" "$line" >>"$res/failover.tsv"
        done <"$res/failover-round.txt"
        echo "   round $round: member $n killed; $(tr '\t\n' '= ' <"$res/failover-round.txt")ms"
        { wait "$pid"; } 2>>"$res/failover-errors.log" || true
        "start_${kind}_member" "$n" 3 "$dir"
        members[$((n - 1))]=$started
        pids+=("$started")
    done
    stop_members
    rm -rf "$dir"
}

run_failover() {
    failover_one etcd etcd etcd
    failover_one zookeeper zk zk
    failover_one janus janus janus-etcd janus-zk
}

# A follower (not member 1, which would start a new cluster from an empty
# directory) is SIGKILLed, wiped and started again while janus-bench puts
# at 64 in flight on the leader of a cluster holding $rejoin; the member
# catches up by a state transfer (its log is gone).
run_rejoin() {
    local nkeys=${rejoin%x*} bytes=${rejoin#*x} dir="$tmp/rejoin" leader f m cmd
    echo "== $(since) rejoin: janus, ${nkeys} x ${bytes} B (incompressible), three members"
    start_janus 3 "$dir"
    leader=$(find_leader janus 3)
    ready_all janus-etcd 3 120 --no-data
    n=$leader
    "$bench" load --etcd "$(janus_etcd)" --keys "$nkeys" --value-size "$bytes" --incompressible >/dev/null
    for m in 2 3; do [ "$m" != "$leader" ] && f=$m; done
    cmd="exec '$janus_bin' --config '$dir/m$f.toml' >>'$res/janus-m$f.log' 2>&1"
    if "$bench" rejoin --leader "$(n=$leader janus_etcd)" --leader-metrics "$(n=$leader janus_etcd)" \
        --member-metrics "$(n=$f janus_etcd)" --kill-pid "${members[$((f - 1))]}" --wipe "$dir/m$f" \
        --start "$cmd" --label "${nkeys} x ${bytes} B" >"$res/rejoin.txt" 2>>"$res/rejoin-errors.log"; then
        members[$((f - 1))]=$(sed -n 's/^started //p' "$res/rejoin.txt")
        pids+=("${members[$((f - 1))]}")
        du -sk "$dir/m$f" | cut -f1 >"$res/rejoin-disk.txt"
    else
        echo "   rejoin failed (see $res/rejoin-errors.log)"
        p=$(sed -n 's/^started //p' "$res/rejoin.txt")
        [ -n "$p" ] && members[$((f - 1))]=$p && pids+=("$p")
    fi
    stop_members
    rm -rf "$dir"
}

for size in "${topos[@]}"; do
    res="$out/m$size"
    mkdir -p "$res"
    if [ "$skip_rejoin" = 0 ] && [ "$size" = 3 ]; then run_rejoin; fi
    if [ "$scale_only" = 0 ] && [ "$failover_only" = 0 ]; then
        if [ "$size" = 3 ]; then run_workloads 3 "$dur3" "$conc3"; else run_workloads 1 "$dur1" "$conc1"; fi
    fi
    if [ "$skip_load" = 0 ] && [ "$size" = "$load_topo" ]; then run_load "$size"; fi
    if [ "$skip_scale" = 0 ]; then run_scale "$size"; fi
    if [ "$skip_failover" = 0 ] && [ "$size" = 3 ]; then run_failover; fi
done
elapsed_s=$((($(now_ms) - t_start) / 1000))

# --- 5. Report. ----------------------------------------------------------------
{
    echo "## Results ($(date -u '+%Y-%m-%d %H:%M UTC'), $( [ "$quick" = 1 ] && echo quick || echo default ) run, ${elapsed_s} s after the build)"
    echo
    echo "Janus $(git -C "$root" rev-parse --short HEAD); $(etcd --version | head -1); ZooKeeper $(dpkg-query -W -f='${Version}' zookeeper 2>/dev/null || echo '?') (-Xmx$zk_heap per member); $(nproc) CPUs; load average at the end $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Clients on each cluster's leader. Ratios are Janus/other: ops ratio >= 1.00 and p50/p99 ratio <= 1.00 mean Janus is at least as good."
    echo
    for size in "${topos[@]}"; do
        res="$out/m$size"
        if [ "$size" = 3 ]; then
            label="three members each"; d=$dur3; c=$conc3
        else
            label="one member each"; d=$dur1; c=$conc1
        fi
        echo "### $label: ${d} ms per row, in flight $c"
        echo
        if [ -s "$res/failed-runs" ]; then
            echo "**Failed part-way: $(sort -u "$res/failed-runs" | tr '\n' ' ')**(the server stopped answering; the rows after the failure are missing below, see $res/run-stderr.log)."
            echo
        fi
        res_arg=()
        [ -s "$res/resources.tsv" ] && res_arg=(--resources "$res/resources.tsv")
        targets=()
        [ "$size" = 3 ] && targets=(--targets)
        if [ -s "$res/janus.json" ]; then
            "$bench" compare --label "$label" --janus "$res/janus.json" --etcd "$res/etcd.json" --zk "$res/zookeeper.json" "${res_arg[@]}" "${targets[@]}"
        fi
        if [ -s "$res/scale.tsv" ]; then
            "$bench" scale --label "$label" --tsv "$res/scale.tsv"
        fi
        if [ -s "$res/failover.tsv" ]; then
            "$bench" failover-table --tsv "$res/failover.tsv"
        fi
        if [ -s "$res/rejoin.txt" ]; then
            echo "### Rejoin: a wiped follower catches up while the leader serves puts"
            echo
            echo "Three Janus members; puts on the leader before (steady, 15 s) and from the follower's SIGKILL, wipe and restart until it has applied what the leader had committed then. Member data dir after the catch-up: $(cat "$res/rejoin-disk.txt" 2>/dev/null || echo '?') KiB."
            sed -n '/^|/p' "$res/rejoin.txt"
            echo
        fi
    done
} >"$out/report.md"
cat "$out/report.md"
echo "(written to $out/report.md; ${elapsed_s} s after the build)"
