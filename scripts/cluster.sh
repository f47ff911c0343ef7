#!/usr/bin/env bash
# Start, stop and show a local three-member Janus cluster (config/node{1,2,3}.toml).
#
#   scripts/cluster.sh start    build if needed, start the three members
#   scripts/cluster.sh status   health, leader and revision of each member
#   scripts/cluster.sh stop     stop them (SIGTERM)
#
# Data and logs go to ./janus-cluster/ (data_dir in the configs is relative
# to the working directory, which is ./janus-cluster).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/janus-cluster"
bin="$root/target/release/janus"

etcd_port() { echo "${1}2379"; }

case "${1:-}" in
start)
    [ -x "$bin" ] || cargo build --release -p janus-server --manifest-path "$root/Cargo.toml"
    mkdir -p "$dir"
    for n in 1 2 3; do
        if [ -f "$dir/node$n.pid" ] && kill -0 "$(cat "$dir/node$n.pid")" 2>/dev/null; then
            echo "member $n already running (pid $(cat "$dir/node$n.pid"))"
            continue
        fi
        (
            cd "$dir"
            nohup "$bin" --config "$root/config/node$n.toml" >"node$n.log" 2>&1 &
            echo $! >"node$n.pid"
        )
        echo "member $n started (pid $(cat "$dir/node$n.pid")): zk 127.0.0.1:${n}2181, etcd 127.0.0.1:${n}2379"
    done
    ;;
status)
    for n in 1 2 3; do
        port=$(etcd_port "$n")
        health=$(curl -s -m 2 "http://127.0.0.1:$port/health" || echo "down")
        metrics=$(curl -s -m 2 "http://127.0.0.1:$port/metrics" || true)
        leader=$(echo "$metrics" | awk '/^janus_raft_leader_id /{print $2}')
        rev=$(echo "$metrics" | awk '/^janus_revision /{print $2}')
        echo "member $n: health=$health leader=${leader:-?} revision=${rev:-?}"
    done
    ;;
stop)
    for n in 1 2 3; do
        if [ -f "$dir/node$n.pid" ]; then
            kill "$(cat "$dir/node$n.pid")" 2>/dev/null && echo "member $n stopped" || true
            rm -f "$dir/node$n.pid"
        fi
    done
    ;;
*)
    echo "usage: $0 start|status|stop" >&2
    exit 2
    ;;
esac
