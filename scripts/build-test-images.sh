#!/usr/bin/env bash
# Builds the test images from Debian's binaries (no registry on the internet
# is reachable here) and, given a registry address, pushes them there.
#   usage: build-test-images.sh OUT_DIR [REGISTRY_HOST:PORT]
# Writes, for each image NAME in {busybox, nginx, curl}:
#   OUT_DIR/NAME.rootfs.tar   plain root filesystem (orca images import --rootfs)
#   OUT_DIR/NAME.oci.tar      OCI image-layout archive
#   OUT_DIR/NAME.docker.tar   `docker save` archive
# and pushes REGISTRY/NAME:latest and REGISTRY/library/NAME:latest when a registry is given.
set -euo pipefail
OUT=${1:?usage: build-test-images.sh OUT_DIR [REGISTRY]}
REGISTRY=${2:-}
mkdir -p "$OUT"
BUILD=$(mktemp -d /tmp/orca-images.XXXXXX)
trap 'rm -rf "$BUILD"' EXIT

base_rootfs() { # dir: a busybox userland with the usual files
  local root=$1
  mkdir -p "$root"/{bin,sbin,etc,tmp,proc,sys,dev,root,var/run,usr/bin,usr/sbin,home}
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nwww-data:x:33:33:www-data:/var/www:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\nwww-data:x:33:\n' >"$root/etc/group"
}

copy_with_libs() { # root binary...: copies binaries and the shared libraries they link
  local root=$1; shift
  for bin in "$@"; do
    mkdir -p "$root$(dirname "$bin")"; cp -L "$bin" "$root$bin"
    for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
      mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"
    done
  done
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

oci_image() { # name rootfs config-json-fragment
  local name=$1 root=$2 cfg=$3 layout="$BUILD/$1.oci"
  mkdir -p "$layout/blobs/sha256"
  tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$root" -cf "$OUT/$name.rootfs.tar" .
  local diff_id; diff_id=$(sha "$OUT/$name.rootfs.tar")
  gzip -n -c "$OUT/$name.rootfs.tar" >"$BUILD/layer.gz"
  local layer; layer=$(sha "$BUILD/layer.gz"); local layer_size; layer_size=$(stat -c %s "$BUILD/layer.gz")
  mv "$BUILD/layer.gz" "$layout/blobs/sha256/$layer"
  printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$cfg" "$diff_id" >"$BUILD/config.json"
  local config; config=$(sha "$BUILD/config.json"); local config_size; config_size=$(stat -c %s "$BUILD/config.json")
  mv "$BUILD/config.json" "$layout/blobs/sha256/$config"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config" "$config_size" "$layer" "$layer_size" >"$BUILD/manifest.json"
  local manifest; manifest=$(sha "$BUILD/manifest.json"); local manifest_size; manifest_size=$(stat -c %s "$BUILD/manifest.json")
  mv "$BUILD/manifest.json" "$layout/blobs/sha256/$manifest"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
    "$manifest" "$manifest_size" >"$layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  tar -C "$layout" -cf "$OUT/$name.oci.tar" .
  rm -f "$OUT/$name.docker.tar"
  skopeo copy -q "oci:$layout:latest" "docker-archive:$OUT/$name.docker.tar:$name:latest"
  if [ -n "$REGISTRY" ]; then
    # Also as library/NAME, the path a docker.io mirror is asked for (`busybox` -> library/busybox).
    for path in "$name" "library/$name"; do
      skopeo copy -q --dest-tls-verify=false "oci:$layout:latest" "docker://$REGISTRY/$path:latest"
    done
  fi
  echo "built $name (sha256:$manifest)"
}

PATH_ENV='"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"'

# busybox: Debian's busybox-static and its applets.
base_rootfs "$BUILD/busybox"
oci_image busybox "$BUILD/busybox" "{\"Env\":[$PATH_ENV],\"Cmd\":[\"sh\"]}"

# nginx: Debian's nginx with the libraries it links, serving a page on port 80.
base_rootfs "$BUILD/nginx"
copy_with_libs "$BUILD/nginx" /usr/sbin/nginx
mkdir -p "$BUILD/nginx"/{etc/nginx,var/log/nginx,var/lib/nginx,usr/share/nginx/html,run}
cat >"$BUILD/nginx/etc/nginx/nginx.conf" <<'CONF'
user www-data;
worker_processes 1;
pid /run/nginx.pid;
error_log /dev/stderr;
events { worker_connections 256; }
http {
  access_log /dev/stdout;
  server {
    listen 80;
    root /usr/share/nginx/html;
    location / { index index.html; }
  }
}
CONF
echo '<h1>Welcome to nginx!</h1>' >"$BUILD/nginx/usr/share/nginx/html/index.html"
oci_image nginx "$BUILD/nginx" "{\"Env\":[$PATH_ENV],\"Cmd\":[\"nginx\",\"-g\",\"daemon off;\"],\"ExposedPorts\":{\"80/tcp\":{}},\"StopSignal\":\"SIGQUIT\"}"

# curl: busybox plus Debian's curl and the libraries it links, an HTTPS
# client for in-cluster API calls from a pod.
base_rootfs "$BUILD/curl"
copy_with_libs "$BUILD/curl" /usr/bin/curl
oci_image curl "$BUILD/curl" "{\"Env\":[$PATH_ENV],\"Cmd\":[\"sh\"]}"
