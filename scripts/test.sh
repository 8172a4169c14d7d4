#!/usr/bin/env bash
# Runs every check and test of the workspace. Installs what it needs on a
# fresh Debian 12 machine (only when missing, so a second run is fast):
# baresip and pjsua2 (real SIP phones), chromium (the web page test), openssh-server
# (the ssh:// test), util-linux/iproute2 (network namespaces for RFC 4475),
# cargo-deny.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_needed=()
command -v baresip >/dev/null 2>&1 || apt_needed+=(baresip-core)
command -v chromium >/dev/null 2>&1 || apt_needed+=(chromium)
[ -x /usr/sbin/sshd ] || apt_needed+=(openssh-server openssh-client)
command -v script >/dev/null 2>&1 || apt_needed+=(bsdutils)
command -v unshare >/dev/null 2>&1 || apt_needed+=(util-linux)
command -v ip >/dev/null 2>&1 || apt_needed+=(iproute2)
if [ "${#apt_needed[@]}" -gt 0 ]; then
    echo "== installing Debian packages: ${apt_needed[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_needed[@]}"
fi
if ! python3 -c 'import pjsua2' >/dev/null 2>&1; then
    echo "== installing pjsua2 (PyPI pjsua2-python: the pjsip phone the interop tests drive)"
    python3 -m pip install --quiet pjsua2-python
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
