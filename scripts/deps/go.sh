# tests/k8s_sim.rs: the Go toolchain and etcd's Go client (Debian's
# golang-etcd-server-dev, the 3.4 client under /usr/share/gocode), from
# Debian packages; the test builds tests/k8s_sim with them offline
# (GO111MODULE=off). Sourced by scripts/test.sh as root or via sudo.
go_missing=()
for pkg in golang-go golang-etcd-server-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || go_missing+=("$pkg")
done
if [ "${#go_missing[@]}" -gt 0 ]; then
    go_sudo=""
    [ "$(id -u)" -eq 0 ] || go_sudo="sudo"
    $go_sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $go_sudo apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=600 "${go_missing[@]}"
fi
unset go_missing go_sudo
