# Sourced by scripts/test.sh (as root or with sudo) before the build.
# The ZooKeeper personality's real-client tests need:
#  - Debian's `zookeeper` package (the differential tests start their own
#    server on a free loopback port; we never install `zookeeperd`, so no
#    system ZooKeeper runs on 2181);
#  - Debian's `zookeeper-bin` (the C client cli_mt);
#  - Debian's `openssl` (tests/zk_security.rs makes its certificates with it);
#  - a JRE (`default-jre-headless`): ZooKeeper itself, and keytool, which
#    tests/tls_dropin.rs makes JKS and PKCS12 stores with;
#  - kazoo and pure-sasl (kazoo's SASL DIGEST-MD5) from PyPI in a venv
#    under target/zk-venv (git-ignored via /target).
# Idempotent and quiet when everything is already there.
_zk_sudo=""
[ "$(id -u)" -eq 0 ] || _zk_sudo="sudo"
_zk_missing=()
for _zk_pkg in zookeeper zookeeper-bin python3-venv default-jre-headless openssl libnetty-java; do
    dpkg -s "$_zk_pkg" >/dev/null 2>&1 || _zk_missing+=("$_zk_pkg")
done
if [ "${#_zk_missing[@]}" -gt 0 ]; then
    echo "installing ${_zk_missing[*]}"
    $_zk_sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $_zk_sudo apt-get install -y -q --no-install-recommends "${_zk_missing[@]}"
fi
# The package must not leave a server running on 2181 (it ships none, but
# be sure: stop a unit if some image added one).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet zookeeper 2>/dev/null; then
    $_zk_sudo systemctl stop zookeeper || true
fi
_zk_venv="$(pwd)/target/zk-venv"
if [ ! -x "$_zk_venv/bin/python" ] || ! "$_zk_venv/bin/python" -c 'import kazoo, puresasl' 2>/dev/null; then
    echo "creating $_zk_venv with kazoo and pure-sasl"
    mkdir -p "$(pwd)/target"
    [ -x "$_zk_venv/bin/python" ] || /usr/bin/python3 -m venv "$_zk_venv"
    # `python -m pip`, not bin/pip: a copied venv's pip script still points
    # at the original venv.
    "$_zk_venv/bin/python" -m pip install -q 'kazoo==2.10.0' 'pure-sasl==0.6.2'
fi
unset _zk_sudo _zk_missing _zk_pkg _zk_venv
