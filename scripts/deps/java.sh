# Sourced by scripts/test.sh (as root or with sudo) before the build.
# tests/kafka_sim.rs compiles tests/kafka_sim/*.java with javac at test time
# (against Debian's ZooKeeper jars from zk.sh), so it needs a JDK, not just
# the JRE zk.sh brings. Idempotent and quiet when javac is there; waits for
# the dpkg lock, which other installs may hold.
if ! command -v javac >/dev/null 2>&1; then
    _java_sudo=""
    [ "$(id -u)" -eq 0 ] || _java_sudo="sudo"
    echo "installing default-jdk-headless"
    $_java_sudo apt-get update -q
    $_java_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=600 default-jdk-headless
    unset _java_sudo
fi
