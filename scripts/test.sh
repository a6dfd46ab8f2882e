#!/usr/bin/env bash
# The whole test suite, on a fresh Debian/Ubuntu machine, as root:
#   runs the README's build first, before installing anything and with protoc
#   out of reach; then installs what the tests need, starts etcd and an OCI
#   registry on 127.0.0.1, builds the test images, and runs fmt, clippy and
#   every test.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# Incremental artifacts would double the debug build on disk and a one-off
# build gains nothing from them.
export CARGO_INCREMENTAL=0

WORK=$(mktemp -d /tmp/orca-test.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- the README's build needs a Rust toolchain (and gcc), nothing else -------
# No protoc and no -dev package: a protoc that fails comes first in PATH, so
# the build fails here if anything calls one, even where protoc is installed.
mkdir "$WORK/no-protoc"
printf '#!/bin/sh\necho "protoc was called: building Orca must not need it" >&2\nexit 1\n' \
  >"$WORK/no-protoc/protoc"
chmod +x "$WORK/no-protoc/protoc"
echo "== cargo build --release (protoc unreachable)"
PROTOC=/nonexistent PATH="$WORK/no-protoc:$PATH" cargo build --release

# --- packages the tests use (installed only when missing) -------------------
need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in etcd-server docker-registry skopeo busybox-static nginx-light curl iproute2 \
           iptables openssl; do
  have "$pkg" || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "== installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v cargo-nextest >/dev/null && ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

# --- services on loopback, stopped on exit (see cleanup) ----------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

ETCD_PORT=$(free_port); ETCD_PEER=$(free_port)
etcd --data-dir "$WORK/etcd" --name orca-test \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
  --initial-cluster "orca-test=http://127.0.0.1:$ETCD_PEER" >"$WORK/etcd.log" 2>&1 &
pids+=($!)
wait_port "$ETCD_PORT"
export ORCA_TEST_ETCD="http://127.0.0.1:$ETCD_PORT"

REG_PORT=$(free_port)
cat >"$WORK/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $WORK/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REG_PORT
YML
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
pids+=($!)
wait_port "$REG_PORT"
export ORCA_TEST_REGISTRY="127.0.0.1:$REG_PORT"

# --- test images, built from Debian's binaries (no internet here) ------------
export ORCA_TEST_IMAGES="$WORK/images"
bash "$ROOT/scripts/build-test-images.sh" "$ORCA_TEST_IMAGES" "$ORCA_TEST_REGISTRY"

# --- checks and tests ----------------------------------------------------------
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo nextest"
cargo nextest run --workspace --no-fail-fast
