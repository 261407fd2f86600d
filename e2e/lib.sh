# shellcheck shell=bash disable=SC2034  # the scripts that source this use the names
# Shared settings for the e2e scripts: pinned versions and where things live.
# Sourced, never run.

# One Kubernetes release for every component. v1.33 still runs on cgroup v1
# (kubelet needs failCgroupV1: false from v1.31 on) and speaks CRI v1, which
# Debian's containerd 1.6 serves.
KUBE_VERSION=v1.33.13
KUBE_STAGING_VERSION=v0.33.13
COREDNS_VERSION=v1.12.4
HELM_VERSION=v3.18.6
CSI_TEST_VERSION=v5.4.0
DEBIAN_SUITE=bookworm

STRONGROOM_CACHE=${STRONGROOM_CACHE:-$HOME/.cache/strongroom}
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$E2E_DIR/.." && pwd)

KUBE_BIN=$STRONGROOM_CACHE/bin/kubernetes-$KUBE_VERSION
COREDNS_BIN=$STRONGROOM_CACHE/bin/coredns-$COREDNS_VERSION
HELM_BIN=$STRONGROOM_CACHE/bin/helm-$HELM_VERSION
CSI_TEST_BIN=$STRONGROOM_CACHE/bin/csi-test-$CSI_TEST_VERSION

IMAGE_NAME=${STRONGROOM_IMAGE:-strongroom.io/strongroom:dev}
# State and logs of the local cluster; `e2e/cluster down` deletes it.
CLUSTER_DIR=${STRONGROOM_CLUSTER_DIR:-/var/lib/strongroom-e2e}

log() { printf '%s [%s] %s\n' "$(date +%H:%M:%S)" "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

IMAGE_CACHE=$STRONGROOM_CACHE/images

# Packs a root filesystem directory as a one-layer OCI image archive.
#   oci_archive ROOTFS ARCHIVE [umoci config flags...]
# The archive carries the tag "image"; the importer names it.
oci_archive() {
    local rootfs=$1 archive=$2; shift 2
    local work
    work=$(mktemp -d "${TMPDIR:-/tmp}/strongroom-oci.XXXXXX")
    umoci init --layout "$work/layout"
    umoci new --image "$work/layout:image"
    umoci unpack --image "$work/layout:image" "$work/bundle" >/dev/null
    cp -a "$rootfs/." "$work/bundle/rootfs/"
    umoci repack --image "$work/layout:image" "$work/bundle"
    umoci config --image "$work/layout:image" "$@"
    umoci gc --layout "$work/layout"
    mkdir -p "$(dirname "$archive")"
    tar -C "$work/layout" -cf "$archive.tmp" .
    mv "$archive.tmp" "$archive"
    rm -rf "$work"
}

# The Debian packages the local cluster and the image build need; installs the missing ones.
CLUSTER_PACKAGES=(etcd-server containerd runc containernetworking-plugins debootstrap umoci
                  iptables conntrack socat openssl curl)

ensure_cluster_packages() {
    local missing=() package
    for package in "${CLUSTER_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$package")
    done
    ((${#missing[@]} == 0)) && return
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts the packaged services; the cluster runs its own instances.
    systemctl disable --now containerd etcd >/dev/null 2>&1 || true
}
