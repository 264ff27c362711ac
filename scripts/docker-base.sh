#!/usr/bin/env bash
# Build the base image the Dockerfile starts FROM, without any image registry:
# a minimal Debian bookworm root filesystem made by debootstrap from Debian's
# package mirror, with Python 3.11 and venv in it, imported into the local
# Docker engine.
#
#   sudo scripts/docker-base.sh                # builds raftkv-base:bookworm once
#   FORCE=1 sudo scripts/docker-base.sh        # rebuild even if it exists
#   scripts/docker-base.sh my-base:tag         # another image name
#
# Where a registry is reachable this is not needed: build with
#   docker build --build-arg BASE_IMAGE=python:3.11-slim .
#
# Settings (environment): MIRROR (default http://deb.debian.org/debian),
# SUITE (default bookworm; raftkv needs Python >= 3.11, which bookworm has),
# FORCE=1 to rebuild, WORKDIR for the temporary root filesystem, HOST_CA=0 to
# leave out this machine's own CAs (below).
# Needs root (debootstrap chroots) and the debootstrap package.
set -euo pipefail

IMAGE=${1:-raftkv-base:bookworm}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# Python is part of the base so that the Dockerfile is the same whether it
# starts from this image or from python:3.11-slim; ca-certificates lets pip
# reach PyPI over https.
PACKAGES=python3,python3-venv,ca-certificates

say() { printf 'docker-base: %s\n' "$*" >&2; }

if ! command -v docker >/dev/null; then
    say "docker is not installed"; exit 1
fi
if ! docker info >/dev/null 2>&1; then
    say "no Docker engine answers (start dockerd, e.g. dockerd --storage-driver=vfs)"; exit 1
fi
if [[ -z ${FORCE:-} ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "$IMAGE already exists (FORCE=1 rebuilds it)"
    exit 0
fi
if ! command -v debootstrap >/dev/null; then
    say "debootstrap is missing: apt-get install debootstrap"; exit 1
fi
if [[ $(id -u) != 0 ]]; then
    say "debootstrap needs root"; exit 1
fi

ROOTFS=$(mktemp -d "${WORKDIR:-${TMPDIR:-/tmp}}/raftkv-rootfs.XXXXXX")
# mktemp makes it 0700, and tar carries that mode to the image's "/", where
# it would lock every user but root out of the whole filesystem.
chmod 0755 "$ROOTFS"
cleanup() { rm -rf --one-file-system "$ROOTFS"; }
trap cleanup EXIT

started=$SECONDS
say "debootstrap $SUITE from $MIRROR into $ROOTFS"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >&2

# What the image must not carry: downloaded .debs, package lists (a derived
# image that needs apt runs apt-get update itself), logs, machine identity.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
       "$ROOTFS"/var/log/* "$ROOTFS"/tmp/* "$ROOTFS"/root/.cache
: > "$ROOTFS/etc/machine-id"
printf 'deb %s %s main\n' "$MIRROR" "$SUITE" > "$ROOTFS/etc/apt/sources.list"

# A machine behind a TLS-inspecting proxy trusts the proxy through a CA it
# added in /usr/local/share/ca-certificates; without it pip inside the image
# build cannot reach PyPI. The base image trusts what this machine trusts.
if [[ ${HOST_CA:-1} != 0 ]]; then
    shopt -s nullglob
    host_cas=(/usr/local/share/ca-certificates/*.crt)
    shopt -u nullglob
    if ((${#host_cas[@]})); then
        say "adding this machine's CAs: ${host_cas[*]}"
        mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
        cp "${host_cas[@]}" "$ROOTFS/usr/local/share/ca-certificates/"
        chroot "$ROOTFS" update-ca-certificates >&2
    fi
fi

version=$(chroot "$ROOTFS" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case $version in
    3.1[1-9]|3.[2-9][0-9]) ;;
    *) say "$SUITE has Python $version; raftkv needs >= 3.11"; exit 1 ;;
esac

say "importing into Docker as $IMAGE (Python $version)"
tar -C "$ROOTFS" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase --include=$PACKAGES $SUITE $MIRROR" \
    - "$IMAGE" >/dev/null
say "built $IMAGE in $((SECONDS - started))s"
