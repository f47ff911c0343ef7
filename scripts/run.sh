#!/usr/bin/env bash
# Builds and runs Janus, installing first the Debian packages the build
# needs. Arguments go to `janus`:
#
#   ./scripts/run.sh                              # a one-member cluster, data in ./janus-data
#   ./scripts/run.sh --config config/single.toml
#
# Once the packages are installed, `cargo run --release` (from the
# repository root) does the same. The build is the release profile, as
# scripts/test.sh's: RocksDB compiles from source once, keep `target/`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

# The Debian packages the build needs.
# shellcheck source=lib/build-packages.sh
. "$root/scripts/lib/build-packages.sh"

# Relative paths in the arguments (--config, --data-dir) stay relative to
# the directory run.sh was started from.
exec cargo run --release --locked --manifest-path "$root/Cargo.toml" -- "$@"
