#!/usr/bin/env bash
# Fuzzes the API server's request-body decoders (crates/apiserver/fuzz,
# target decode_body) for a bounded time; fails on the first panic.
#   usage: scripts/fuzz.sh [SECONDS]      (default 60)
# Needs a nightly toolchain (cargo-fuzz builds with sanitizers) and
# installs cargo-fuzz with cargo when it is missing. Not part of
# scripts/test.sh, which runs on stable.
set -euo pipefail
cd "$(dirname "$0")/../crates/apiserver/fuzz"
SECS=${1:-60}
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
mkdir -p corpus/decode_body
cargo +nightly fuzz run decode_body corpus/decode_body -- -max_total_time="$SECS" -rss_limit_mb=4096
