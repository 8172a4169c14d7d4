#!/usr/bin/env bash
# Runs every check and test of the workspace. Installs what it needs on a
# fresh Debian 12 machine (only when missing, so a second run is fast):
# baresip (real SIP phones), pjsua2 (PJSIP's Python binding, PyPI
# pjsua2-python: the 100rel, session timer, DTMF and transfer interop
# tests), chromium (the web page test), openssh-server (the ssh:// test),
# util-linux/iproute2 (network namespaces for RFC 4475), tshark (reads the
# pcap of `swctl calls pcap`), postgresql (the CDR tests start a throwaway
# server of their own on a free loopback port), promtool (Debian's
# prometheus package) and prometheus-client (PyPI) for the /metrics test,
# redis-server (the shared-state tests start their own on a free loopback
# port), cargo-deny.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_needed=()
command -v baresip >/dev/null 2>&1 || apt_needed+=(baresip-core)
command -v chromium >/dev/null 2>&1 || apt_needed+=(chromium)
[ -x /usr/sbin/sshd ] || apt_needed+=(openssh-server openssh-client)
command -v script >/dev/null 2>&1 || apt_needed+=(bsdutils)
command -v unshare >/dev/null 2>&1 || apt_needed+=(util-linux)
command -v ip >/dev/null 2>&1 || apt_needed+=(iproute2)
python3 -m pip --version >/dev/null 2>&1 || apt_needed+=(python3-pip)
command -v tshark >/dev/null 2>&1 || apt_needed+=(tshark)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_needed+=(postgresql)
command -v redis-server >/dev/null 2>&1 || apt_needed+=(redis-server)
if [ "${#apt_needed[@]}" -gt 0 ]; then
    echo "== installing Debian packages: ${apt_needed[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    # tshark's wireshark-common asks whether non-root users may capture:
    # answered no, so the install never waits for a question.
    echo "wireshark-common wireshark-common/install-setuid boolean false" \
        | $SUDO debconf-set-selections
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_needed[@]}"
fi
# pjsua2 (PJSIP's Python binding, PyPI wheel) for the pjsua2 interop tests.
# Debian's own python3 refuses a system-wide pip install (PEP 668): then it
# goes to the user's site-packages.
if ! python3 -c 'import pjsua2' >/dev/null 2>&1; then
    echo "== installing pjsua2-python"
    python3 -m pip install pjsua2-python \
        || python3 -m pip install --user --break-system-packages pjsua2-python
fi
# promtool (Prometheus' own exposition linter) for the /metrics test. Only
# that binary is taken out of Debian's prometheus package: installing the
# package would also set up a Prometheus server (a service on :9090, which
# is swrtp's default port) that the tests do not want.
if ! command -v promtool >/dev/null 2>&1; then
    echo "== installing promtool (from Debian's prometheus package)"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    tmp=$(mktemp -d)
    $SUDO apt-get update -qq
    (cd "$tmp" && apt-get download prometheus)
    dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -xO ./usr/bin/promtool > "$tmp/promtool"
    $SUDO install -m 0755 "$tmp/promtool" /usr/local/bin/promtool
    rm -rf "$tmp"
fi
# The Python client library's exposition parser, for the /metrics test.
if ! python3 -c 'import prometheus_client.parser' >/dev/null 2>&1; then
    echo "== installing prometheus-client (PyPI)"
    python3 -m pip install prometheus-client \
        || python3 -m pip install --user --break-system-packages prometheus-client
fi
if ! cargo deny --version >/dev/null 2>&1; then
    echo "== installing cargo-deny"
    cargo install --locked cargo-deny
fi

echo "== cargo fmt"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo deny (bans, licenses, sources; advisories need the RustSec database, see deny.toml)"
cargo deny --log-level error check bans licenses sources
echo "== cargo test"
cargo build --workspace --bins
cargo test --workspace
