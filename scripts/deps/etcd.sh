# etcd personality tests: real etcd (the differential oracle) and etcdctl,
# curl (JSON gateway tests) and openssl (test certificates), from Debian packages. Sourced by scripts/test.sh as root or via sudo.
etcd_missing=()
for pkg in etcd-server etcd-client curl openssl; do
    dpkg -s "$pkg" >/dev/null 2>&1 || etcd_missing+=("$pkg")
done
if [ "${#etcd_missing[@]}" -gt 0 ]; then
    etcd_sudo=""
    [ "$(id -u)" -eq 0 ] || etcd_sudo="sudo"
    # Keep the package's own etcd service from starting and holding 2379:
    # the tests start their own etcd on free ports. policy-rc.d exit 101
    # forbids service starts during installation; restore any existing one.
    etcd_policy_backup=""
    if [ -e /usr/sbin/policy-rc.d ]; then
        etcd_policy_backup="$(mktemp)"
        $etcd_sudo cp -p /usr/sbin/policy-rc.d "$etcd_policy_backup"
    fi
    printf '#!/bin/sh\nexit 101\n' | $etcd_sudo tee /usr/sbin/policy-rc.d >/dev/null
    $etcd_sudo chmod 755 /usr/sbin/policy-rc.d
    $etcd_sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $etcd_sudo apt-get install -y -q --no-install-recommends "${etcd_missing[@]}"
    if [ -n "$etcd_policy_backup" ]; then
        $etcd_sudo cp -p "$etcd_policy_backup" /usr/sbin/policy-rc.d
        rm -f "$etcd_policy_backup"
    else
        $etcd_sudo rm -f /usr/sbin/policy-rc.d
    fi
    # Where systemd runs, make sure the unit stays off.
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $etcd_sudo systemctl disable --now etcd >/dev/null 2>&1 || true
    fi
fi
unset etcd_missing etcd_sudo etcd_policy_backup

# An independent client library for tests/etcd_python.rs: Python's grpcio
# and grpcio-tools (stubs are generated from proto/etcd by the test), from
# PyPI into a venv of their own.
ETCD_VENV=/opt/janus-etcd-venv
if ! "$ETCD_VENV/bin/python" -c 'import grpc, grpc_tools' >/dev/null 2>&1; then
    etcd_sudo=""
    [ "$(id -u)" -eq 0 ] || etcd_sudo="sudo"
    dpkg -s python3-venv >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive $etcd_sudo apt-get install -y -q python3-venv
    $etcd_sudo python3 -m venv "$ETCD_VENV"
    $etcd_sudo "$ETCD_VENV/bin/pip" install -q 'grpcio==1.84.0' 'grpcio-tools==1.84.0'
    unset etcd_sudo
fi
