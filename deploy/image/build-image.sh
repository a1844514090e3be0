#!/usr/bin/env bash
# deploy/image/build-image.sh RELEASE [TAG]
#
# Builds the job's image from a release folder (the build context; see Containerfile) with
# podman: the Debian base first (build-base.sh, skipped when it exists), then
#   podman build --network host -t TAG -f deploy/image/Containerfile RELEASE
# with this host's podman settings (podman-env.sh). TAG defaults to
# localhost/enrolment-reconciliation:dev.
#   BASE=IMAGE        build FROM another base (e.g. docker.io/library/debian:bookworm-slim, with
#                     a registry): build-base.sh is skipped
#   ER_EXTRAS=charts  the wheel's extras to install
#   ER_IMAGE_CACHE    the cache folder (default $STACK_DIR/image or <repo>/.stack/image)
#   PODMAN_BUILD_ARGS more podman build options (word-split), e.g. "--no-cache"
#   ER_BUILD_CA_BUNDLE the CA bundle pip trusts during the build (a build secret, not kept in the
#                     image); default $PIP_CERT, else /etc/ssl/certs/ca-certificates.crt: the
#                     host's, so a TLS-intercepting proxy the host trusts works in the build too
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/podman-env.sh
. "$HERE/podman-env.sh"

release="${1:-}"
tag="${2:-localhost/enrolment-reconciliation:dev}"
if [ -z "$release" ] || [ ! -d "$release" ]; then echo "usage: $0 RELEASE [TAG]" >&2; exit 2; fi
er_image_env "${ER_IMAGE_CACHE:-}"

base_args=()
if [ -n "${BASE:-}" ]; then
  base_args=(--build-arg "BASE=$BASE")
else
  "$HERE/build-base.sh" "$ER_IMAGE_CACHE"
fi

secret_args=()
ca_bundle="${ER_BUILD_CA_BUNDLE:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}"
[ -s "$ca_bundle" ] && secret_args=(--secret "id=ca-bundle,src=$ca_bundle")

start=$SECONDS
# shellcheck disable=SC2086  # PODMAN_BUILD_ARGS is a list of options
podman build --network host "${base_args[@]}" "${secret_args[@]}" --build-arg "ER_EXTRAS=${ER_EXTRAS:-}" \
  ${PODMAN_BUILD_ARGS:-} -t "$tag" -f "$HERE/Containerfile" "$release"
echo "[build-image] $tag built in $((SECONDS - start)) s" >&2
podman image ls "$tag" >&2
