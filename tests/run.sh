#!/usr/bin/env bash
# The one test command (README.md, .ci/run): installs whatever the tests need beyond the Rust
# toolchain when it is missing, then checks formatting and lints and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Nothing beyond the Rust toolchain is needed yet. Later parts add their peers here (coturn's
# turnutils_stunclient, a Python venv with jwcrypto and aiortc), installed only when missing.

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --no-fail-fast
