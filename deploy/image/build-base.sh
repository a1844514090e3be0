#!/usr/bin/env bash
# deploy/image/build-base.sh [CACHE_DIR]
#
# Builds the job's base image from Debian's archive alone (no container registry needed):
# a bookworm root filesystem made by debootstrap (variant minbase) with what the job needs at
# run time (openjdk-17-jre-headless, python3.11 + python3-venv, ca-certificates, procps, tini or
# dumb-init), imported into podman's local storage as $ER_BASE_IMAGE.
#
#   CACHE_DIR      downloaded .debs and the root filesystem's tarball; default $STACK_DIR/image,
#                  else <repo>/.stack/image (git-ignored)
#   ER_BASE_IMAGE  the image's name (default localhost/er-debian-base:bookworm)
#   FORCE=1        rebuild the root filesystem and re-import, even if the image or tarball exist
#   DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR   the archive (default deb.debian.org)
#
# Idempotent: an existing image is kept (FORCE=1 rebuilds); an existing tarball in the cache is
# imported without debootstrap. Needs root, debootstrap and podman
# (apt-get install -y podman buildah debootstrap; runc too where cgroups are hybrid, see
# podman-env.sh). Ends with a self-test: `podman run --rm --network host IMAGE java -version`.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/podman-env.sh
. "$HERE/podman-env.sh"

IMAGE="${ER_BASE_IMAGE:-localhost/er-debian-base:bookworm}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
PACKAGES=(openjdk-17-jre-headless python3.11 python3-venv ca-certificates procps)

[ "$(id -u)" = 0 ] || { echo "build-base.sh: run as root (debootstrap, podman storage)" >&2; exit 2; }
for tool in debootstrap podman; do
  command -v "$tool" >/dev/null || {
    echo "build-base.sh: $tool missing: apt-get install -y podman buildah debootstrap" >&2; exit 2; }
done
er_image_env "${1:-}"
CACHE="$ER_IMAGE_CACHE"
TARBALL="$CACHE/er-debian-base-$SUITE.tar"
ROOTFS="$CACHE/rootfs"
start=$SECONDS
log() { printf '[build-base %4ds] %s\n' "$((SECONDS - start))" "$*" >&2; }

if [ "${FORCE:-0}" != 1 ] && er_image_exists "$IMAGE"; then
  log "$IMAGE exists (FORCE=1 rebuilds it)"
  exit 0
fi

mounted_under() { findmnt -rn -o TARGET | grep -q "^$1\(/\|$\)"; }
unmount_all() {
  local m
  for m in var/cache/apt/archives dev/pts proc sys; do
    mountpoint -q "$ROOTFS/$m" 2>/dev/null && umount -l "$ROOTFS/$m"
  done
  return 0
}

build_rootfs() {
  trap unmount_all EXIT
  unmount_all
  if mounted_under "$ROOTFS"; then
    echo "build-base.sh: something is still mounted under $ROOTFS; not removing it" >&2; exit 1
  fi
  rm -rf "$ROOTFS"
  mkdir -p "$ROOTFS" "$CACHE/debs" "$CACHE/apt-archives/partial"

  log "debootstrap --variant=minbase $SUITE from $MIRROR"
  debootstrap --variant=minbase --cache-dir="$CACHE/debs" "$SUITE" "$ROOTFS" "$MIRROR" \
    >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -30 "$CACHE/debootstrap.log" >&2; exit 1; }

  # What a container needs no copy of (as Debian's -slim images): docs, man pages, translations.
  # /usr/share/man/man1 stays: openjdk's postinst registers its man pages there.
  cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/er-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
EOF
  mkdir -p "$ROOTFS/usr/share/man/man1"
  cat >"$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
  cat >"$ROOTFS/etc/apt/apt.conf.d/er-container" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
  printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"  # no daemon starts in a chroot
  chmod 755 "$ROOTFS/usr/sbin/policy-rc.d"

  mount -t proc proc "$ROOTFS/proc"
  mount -t sysfs sysfs "$ROOTFS/sys"
  mount --bind "$CACHE/apt-archives" "$ROOTFS/var/cache/apt/archives"
  in_root() { chroot "$ROOTFS" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@"; }

  log "apt-get update, upgrade (bookworm-updates, -security)"
  in_root apt-get update -qq >"$CACHE/apt.log" 2>&1 || { tail -30 "$CACHE/apt.log" >&2; exit 1; }
  in_root apt-get -y -qq upgrade >>"$CACHE/apt.log" 2>&1 || { tail -30 "$CACHE/apt.log" >&2; exit 1; }
  local init=""
  for candidate in tini dumb-init; do
    if in_root apt-cache show "$candidate" >/dev/null 2>&1; then init="$candidate"; break; fi
  done
  [ -n "$init" ] || log "neither tini nor dumb-init in the archive: the image runs without an init"
  log "apt-get install ${PACKAGES[*]} $init"
  in_root apt-get install -y -qq "${PACKAGES[@]}" $init >>"$CACHE/apt.log" 2>&1 \
    || { tail -30 "$CACHE/apt.log" >&2; exit 1; }

  # a smoke test of the runtime inside the chroot (java needs /proc), before it becomes an image
  in_root java -version >/dev/null 2>&1 || { echo "java does not run in $ROOTFS" >&2; exit 1; }
  in_root python3.11 -c 'import venv, ensurepip, ssl' \
    || { echo "python3.11 (venv, ensurepip, ssl) incomplete in $ROOTFS" >&2; exit 1; }

  log "cleaning"
  unmount_all
  trap - EXIT
  rm -f "$ROOTFS/usr/sbin/policy-rc.d"
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
    "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/debconf/*-old \
    "$ROOTFS"/var/lib/dpkg/*-old "$ROOTFS"/var/log/* "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/* \
    "$ROOTFS"/root/.cache
  find "$ROOTFS/usr/lib/python3.11" -name __pycache__ -prune -exec rm -rf {} +
  # what debootstrap unpacked before the dpkg excludes above were in place
  find "$ROOTFS/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
  find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete
  find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias \
    -exec rm -rf {} +
  find "$ROOTFS/usr/share/man" "$ROOTFS/usr/share/info" -mindepth 1 -not -type d -delete
  # podman mounts these per container; the image carries none of the build host's
  : >"$ROOTFS/etc/resolv.conf"
  echo localhost >"$ROOTFS/etc/hostname"
  : >"$ROOTFS/etc/machine-id"

  log "tar $TARBALL"
  tar --numeric-owner --xattrs --acls -C "$ROOTFS" \
    --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' \
    -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  [ "${KEEP_ROOTFS:-0}" = 1 ] || rm -rf "$ROOTFS"
}

if [ "${FORCE:-0}" = 1 ] || [ ! -s "$TARBALL" ]; then
  build_rootfs
else
  log "reusing $TARBALL (FORCE=1 rebuilds it)"
fi

log "podman import -> $IMAGE"
podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  --change "LABEL org.opencontainers.image.title=er-debian-base org.opencontainers.image.description=debootstrap-$SUITE-minbase+openjdk-17-jre-headless+python3.11" \
  --message "debootstrap --variant=minbase $SUITE + ${PACKAGES[*]}" \
  "$TARBALL" "$IMAGE" >/dev/null

log "self-test: podman run --rm --network host $IMAGE java -version"
podman run --rm --network host "$IMAGE" java -version 2>&1 | sed 's/^/  /' >&2
podman image ls "$IMAGE" >&2
log "done${CONTAINERS_CONF:+ (podman settings for this host: CONTAINERS_CONF=$CONTAINERS_CONF)}"
