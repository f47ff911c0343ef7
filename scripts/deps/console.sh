# The web console's browser test (tests/console.rs): headless Chromium and
# chromedriver from Debian (chromium, chromium-driver), spoken to over
# plain WebDriver; it also runs etcdctl and zkCli.sh (etcd.sh, zk.sh).
# Sourced by scripts/test.sh as root or via sudo; idempotent and quiet when
# everything is already there.
console_missing=()
for pkg in chromium chromium-driver; do
    dpkg -s "$pkg" >/dev/null 2>&1 || console_missing+=("$pkg")
done
if [ "${#console_missing[@]}" -gt 0 ]; then
    echo "installing ${console_missing[*]}"
    console_sudo=""
    [ "$(id -u)" -eq 0 ] || console_sudo="sudo"
    $console_sudo apt-get -o DPkg::Lock::Timeout=600 update -q
    DEBIAN_FRONTEND=noninteractive $console_sudo apt-get -o DPkg::Lock::Timeout=600 \
        install -y -q --no-install-recommends "${console_missing[@]}"
fi
unset console_missing console_sudo
