#!/usr/bin/env bash
# deploy/image/podman.sh ARGS...   podman with the settings this host needs (podman-env.sh):
#   deploy/image/podman.sh run --rm --network host localhost/enrolment-reconciliation:dev --help
# ER_IMAGE_CACHE (default $STACK_DIR/image or <repo>/.stack/image) holds the generated
# containers.conf. On a host that needs none of them this is plain podman.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/podman-env.sh
. "$HERE/podman-env.sh"
er_image_env "${ER_IMAGE_CACHE:-}"
exec podman "$@"
