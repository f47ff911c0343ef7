# Sourced by scripts/run.sh and scripts/test.sh: installs the Debian
# packages the build needs, when missing: protoc for the gRPC code
# generation, clang and libclang for the rocksdb crate's bindgen, g++ (and
# with it gcc, the `cc` linker) for RocksDB itself.
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
    echo "not a Debian system: the build needs protoc, clang, libclang and a C++ compiler" >&2
fi
