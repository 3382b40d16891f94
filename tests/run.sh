#!/usr/bin/env bash
# The one test command (README.md, .ci/run): installs whatever the tests need beyond the Rust
# toolchain when it is missing, then checks formatting and lints and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# mandoc, which lints the man pages; systemd-analyze (and man, for Documentation=), which
# checks the unit; strip and dpkg-shlibdeps, which cargo-deb uses to build the package that the
# tests unpack with dpkg-deb.
missing=()
command -v mandoc >/dev/null 2>&1 || missing+=(mandoc)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v man >/dev/null 2>&1 || missing+=(man-db)
command -v dpkg-shlibdeps >/dev/null 2>&1 || missing+=(dpkg-dev)
command -v strip >/dev/null 2>&1 || missing+=(binutils)
# lintian, Debian's package checker, which the package test runs on what cargo-deb built.
command -v lintian >/dev/null 2>&1 || missing+=(lintian)
# redis-server, a real Redis for the Redis storage engine (each test starts its own server).
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# openssl, which opens a passphrase-protected key file as any PKCS#8 tool would.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# script(1), which gives `jasper receive` a terminal in the progress-bar test (essential on
# Debian; a trimmed image may lack it).
command -v script >/dev/null 2>&1 || missing+=(bsdutils)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# cargo-deb, which builds the Debian package (pinned: 3.8.0 builds with this toolchain).
if ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb 3.8.0"; then
  cargo install cargo-deb --version 3.8.0 --locked
fi

# Independent protocol peers, installed only when missing:
# - coturn's turnutils_stunclient, which asks our UDP STUN service for its address (and
#   coturn's turnserver, which benches/stun.rs measures beside ours).
if ! command -v turnutils_stunclient >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq coturn
fi
# - Python's ssl module (tests/interop/stun_tls_peer.py), a TLS stack other than rustls.
# - Python's jwcrypto (in .venv), which opens our envelopes and seals its own, and aiortc, a
#   WebRTC stack other than ours (tests/interop/rtc_peer.py).
if ! command -v python3 >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq python3 python3-venv
fi
if ! .venv/bin/python -c "import jwcrypto, aiortc" >/dev/null 2>&1; then
  rm -rf .venv
  python3 -m venv .venv || { apt-get update -qq && apt-get install -y -qq python3-venv && python3 -m venv .venv; }
  .venv/bin/pip install --quiet --disable-pip-version-check "jwcrypto==1.6.1" "aiortc==1.14.0"
fi

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --no-fail-fast
