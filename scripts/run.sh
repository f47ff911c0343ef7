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

# protoc for the gRPC code generation; clang and libclang for the rocksdb
# crate's bindgen; g++ (and with it gcc, the `cc` linker) for RocksDB
# itself.
if command -v dpkg >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    missing=()
    for pkg in protobuf-compiler clang libclang-dev g++; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "installing ${missing[*]}"
        sudo_cmd=""
        [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
        $sudo_cmd apt-get update -q
        $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    fi
else
    echo "run.sh: not a Debian system; the build needs protoc, clang, libclang and a C++ compiler" >&2
fi

# Relative paths in the arguments (--config, --data-dir) stay relative to
# the directory run.sh was started from.
exec cargo run --release --locked --manifest-path "$root/Cargo.toml" -- "$@"
