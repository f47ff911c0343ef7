#!/usr/bin/env bash
# Runs Janus's whole test suite, installing what it needs first.
#
# Everything builds and runs in the release profile: RocksDB takes ~10
# minutes to compile, so the binary the tests start, the tests themselves
# and `cargo run --release` share one build.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Debian packages the build needs.
# shellcheck source=lib/build-packages.sh
. scripts/lib/build-packages.sh

# What the real-client and differential tests need (real ZooKeeper, etcd,
# client libraries): one script per part of the suite.
for dep in scripts/deps/*.sh; do
    [ -e "$dep" ] || continue
    echo "== $dep"
    # shellcheck source=/dev/null
    . "$dep"
done

# The integration tests start the real `janus` binary. Built with the
# whole workspace, as the tests are: `-p janus-server` alone unifies the
# dependencies' features differently and would build RocksDB a second time.
cargo build --release --locked --workspace --all-targets
cargo test --release --locked --workspace "$@"
