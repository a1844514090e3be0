# shellcheck shell=bash
# Sourced by build-base.sh, build-image.sh and podman.sh: the cache folder and the podman
# settings this host needs, given to podman through the environment (CONTAINERS_CONF), never by
# editing /etc.
#
#   er_image_env [CACHE_DIR]   sets ER_IMAGE_CACHE and, where the host needs it, CONTAINERS_CONF
#
# What a host may need (each is detected, so a host that needs none gets podman as configured):
#   - no CAP_SYS_RESOURCE (a sandbox or a VM agent that drops it): root cannot raise a hard
#     rlimit, while podman asks the OCI runtime for nofile=nproc=1048576 by default, and the
#     container fails to start with
#       crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted: OCI permission denied
#     so default_ulimits pins nofile and nproc to what podman itself may hand down: the hard
#     nofile, and an nproc no higher than kernel.pid_max and 32768 (seen with podman 4.3 on a
#     host whose hard nproc was 96555: podman and conmon ran with 32768, and any container nproc
#     above that failed with "error setting rlimit type 6: operation not permitted").
#   - cgroups v1 with a cgroup v2 hierarchy that has controllers ("hybrid"): crun 1.8 refuses
#       crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2
#     (even with --cgroups=disabled), so the runtime is runc (apt-get install runc).
#   - no systemd as PID 1: cgroup_manager cgroupfs, events_logger file.
# The storage driver is podman's (overlay on ext4/xfs); STORAGE_DRIVER=vfs is honoured by podman
# and buildah alike, but a graph root made by one driver cannot be opened by another: give vfs its
# own root, e.g. `podman.sh --root /var/lib/containers/vfs-storage ...`.
# CONTAINERS_CONF set by the caller wins: nothing is generated then.

ER_IMAGE_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

er_image_env() {
  ER_IMAGE_CACHE="${1:-${STACK_DIR:-$ER_IMAGE_REPO/.stack}/image}"
  mkdir -p "$ER_IMAGE_CACHE"
  ER_IMAGE_CACHE="$(cd "$ER_IMAGE_CACHE" && pwd)"
  export ER_IMAGE_CACHE
  [ -n "${CONTAINERS_CONF:-}" ] && return 0

  local containers=() engine=()
  local capeff
  capeff=$((16#$(awk '/^CapEff:/ {print $2}' /proc/self/status)))
  if (( (capeff >> 24 & 1) == 0 )); then  # CAP_SYS_RESOURCE is capability 24
    local nofile nproc pid_max
    nofile="$(ulimit -Hn)"
    nproc="$(ulimit -Hu)"
    pid_max="$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)"
    [ "$nofile" = unlimited ] && nofile=1048576
    [ "$nproc" = unlimited ] && nproc="$pid_max"
    (( nproc > pid_max )) && nproc="$pid_max"
    (( nproc > 32768 )) && nproc=32768
    containers+=("default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]")
  fi
  # hybrid: cgroup v1 with a v2 hierarchy holding controllers (cgroupfs files report size 0:
  # read them)
  if [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
    command -v runc >/dev/null || {
      echo "cgroups here are hybrid (v1 + v2 with controllers): crun cannot run containers;" \
           "apt-get install -y runc" >&2
      return 1
    }
    engine+=('runtime = "runc"')
  fi
  if [ "$(cat /proc/1/comm 2>/dev/null)" != systemd ]; then
    engine+=('cgroup_manager = "cgroupfs"' 'events_logger = "file"')
  fi
  (( ${#containers[@]} + ${#engine[@]} == 0 )) && return 0

  local conf="$ER_IMAGE_CACHE/containers.conf"
  {
    echo "# written by deploy/image/podman-env.sh for this host; podman and buildah read it"
    echo "# through CONTAINERS_CONF (deploy/image/podman.sh sets it)"
    echo "[containers]"
    printf '%s\n' "${containers[@]}"
    echo "[engine]"
    printf '%s\n' "${engine[@]}"
  } >"$conf.tmp"
  mv "$conf.tmp" "$conf"
  export CONTAINERS_CONF="$conf"
}

er_image_exists() { podman image exists "$1" 2>/dev/null; }
