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
# examples/06's application with the Azure SDK (e2e/build-example-image).
EXAMPLE_IMAGE_NAME=${STRONGROOM_EXAMPLE_IMAGE:-strongroom.io/strongroom-example-app:dev}
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

# ------------------------------------------------------------- image root filesystems

PACKAGES_FILE=$E2E_DIR/image-packages.txt
DEBIAN_KEYRING=${STRONGROOM_DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}

# The Debian mirror this machine's apt uses, so the image needs no other host.
debian_mirror() {
    if [[ -n ${STRONGROOM_DEBIAN_MIRROR:-} ]]; then
        echo "$STRONGROOM_DEBIAN_MIRROR"
        return
    fi
    local url
    url=$(
        {
            # deb822 paragraphs whose Suites include the release itself
            awk -v RS= -v suite="$DEBIAN_SUITE" '
                $0 ~ "Suites:[^\n]*(^|[ \t])" suite "([ \t\n]|$)" {
                    match($0, /URIs:[ \t]*[^ \t\n]+/); print substr($0, RSTART + 5, RLENGTH - 5)
                }' /etc/apt/sources.list.d/*.sources 2>/dev/null
            # one-line sources
            awk -v suite="$DEBIAN_SUITE" '$1 == "deb" && $3 == suite {print $2}' \
                /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
        } | tr -d ' \t' | grep -v -- '-security' | head -n1
    )
    [[ -n $url ]] || die "no $DEBIAN_SUITE mirror in /etc/apt/sources.list*; set STRONGROOM_DEBIAN_MIRROR"
    echo "$url"
}

package_list() { grep -v -e '^#' -e '^[[:space:]]*$' "$PACKAGES_FILE"; }

# A tarball of the base root filesystem, keyed by the package list: debootstrap
# minbase plus e2e/image-packages.txt. debootstrap checks the suite's Release file
# against Debian's archive keyring and every package against the Packages index
# that Release signs, so the tarball holds exactly what the signed Release names.
base_rootfs() {
    local key tarball mirror dir
    key=$( { echo "$DEBIAN_SUITE"; package_list; } | sha256sum | cut -c1-12)
    tarball=$STRONGROOM_CACHE/rootfs/$DEBIAN_SUITE-$key.tar
    if [[ ! -f $tarball ]]; then
        mirror=$(debian_mirror)
        dir=$(mktemp -d "$STRONGROOM_CACHE/rootfs/build.XXXXXX")
        log "debootstrap $DEBIAN_SUITE from $mirror"
        [[ -f $DEBIAN_KEYRING ]] || die "$DEBIAN_KEYRING is missing (apt-get install debian-archive-keyring)"
        # --keyring: a Release whose signature does not verify fails the build.
        debootstrap --variant=minbase --keyring="$DEBIAN_KEYRING" \
            --include="$(package_list | paste -sd,)" \
            "$DEBIAN_SUITE" "$dir" "$mirror" > "$dir.log" 2>&1 ||
            die "debootstrap failed; see $dir.log"
        chroot "$dir" apt-get clean
        rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/log/*.log "$dir"/tmp/*
        tar -C "$dir" --numeric-owner -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$dir" "$dir.log"
    fi
    echo "$tarball"
}

# Runs a shell script as root inside a root filesystem with network access for pip:
# this machine's resolver, trust store (it may hold a proxy's CA) and a pip cache
# kept across builds, none of which stays in the root filesystem.
#   chroot_pip ROOTFS SCRIPT
chroot_pip() {
    local rootfs=$1 script=$2 pip_cache=$STRONGROOM_CACHE/image-pip-cache status=0
    mkdir -p "$pip_cache"
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/tmp/build-ca.crt"
    mv "$pip_cache" "$rootfs/tmp/pip-cache"
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        PIP_CERT=/tmp/build-ca.crt PIP_CACHE_DIR=/tmp/pip-cache PIP_DISABLE_PIP_VERSION_CHECK=1 \
        chroot "$rootfs" /bin/sh -c "set -e; $script" || status=$?
    mv "$rootfs/tmp/pip-cache" "$pip_cache"
    rm -rf "$rootfs/tmp/build-ca.crt" "$rootfs/root/.cache"
    : > "$rootfs/etc/resolv.conf"
    return "$status"
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
