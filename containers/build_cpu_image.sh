#!/usr/bin/env bash
# Build the small CPU test image localhost/mmgenrec-cpu:test without any registry (tests/test_container.py):
#   1. apt-get install podman runc debootstrap when missing (root only);
#   2. debootstrap --variant=minbase bookworm with python3, python3-numpy, python3-pil from the configured Debian
#      mirror, imported as localhost/mmgenrec-base:bookworm (once; ~4 min, 400 MB);
#   3. podman build of containers/Containerfile.cpu-test (adds src/ and a `python` link; a few seconds).
# Exit 77 with the reason on stderr where this cannot work (not root, no apt). Uses containers/containers.conf.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/containers/containers.conf}
BASE=localhost/mmgenrec-base:bookworm
IMAGE=${MMGENREC_TEST_IMAGE:-localhost/mmgenrec-cpu:test}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cannot() { echo "build_cpu_image.sh: cannot run here: $*" >&2; exit 77; }

need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
if ((${#need[@]})); then
    [[ $(id -u) == 0 ]] || cannot "${need[*]} missing and installing needs root"
    command -v apt-get >/dev/null || cannot "${need[*]} missing and there is no apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-cache show podman >/dev/null 2>&1 || apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${need[@]}" >&2 || cannot "apt-get install ${need[*]} failed"
fi
[[ $(id -u) == 0 ]] || cannot "the test image is built and run with root podman"

if ! podman image exists "$BASE"; then
    root=$(mktemp -d /var/tmp/mmgenrec-rootfs.XXXXXX)
    trap 'rm -rf "$root"' EXIT
    echo "build_cpu_image.sh: debootstrap bookworm into $root" >&2
    debootstrap --variant=minbase --include=python3,python3-numpy,python3-pil bookworm "$root" "$MIRROR" >&2 \
        || cannot "debootstrap from $MIRROR failed"
    tar -C "$root" -c . | podman import - "$BASE" >&2
fi
podman build --network=none -q -f containers/Containerfile.cpu-test -t "$IMAGE" . >&2
echo "$IMAGE"
