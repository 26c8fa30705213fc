#!/usr/bin/env bash
# Runs the test command (scripts/test.sh) as a fresh Debian 12 machine that has only Rust would:
# a minimal bookworm root filesystem (mmdebstrap, imported as baton-fresh-debian:12 once), in a
# privileged container (its own Docker engine, network namespaces and Podman need that; it never
# gets this machine's Docker socket), on a fresh clone of this repository's HEAD, with this
# machine's Rust toolchain mounted.
#   scripts/fresh-debian.sh [--user] [--target DIR]
#     --user        run as a user with sudo (useradd + a sudoers entry) instead of root
#     --target DIR  mount a copy of a built target/ as the clone's target/ (saves a cold build;
#                   linking still needs the C toolchain, so a missing package still shows)
# Needs root, docker, capsh and mmdebstrap (apt-get install mmdebstrap); reaches deb.debian.org.
set -euo pipefail
cd "$(dirname "$0")/.."
user=0 target=""
while [ $# -gt 0 ]; do
  case $1 in
    --user) user=1 ;;
    --target) target=$(realpath "$2"); shift ;;
    *) echo "unknown argument $1 (see the top of $0)" >&2; exit 2 ;;
  esac
  shift
done
image=baton-fresh-debian:12
rustup_home=${RUSTUP_HOME:-$HOME/.rustup} cargo_home=${CARGO_HOME:-$HOME/.cargo}
work=$(mktemp -d /tmp/baton-fresh.XXXXXX)
trap 'rm -rf "$work"' EXIT
if ! docker image inspect "$image" >/dev/null 2>&1; then
  mmdebstrap --variant=minbase bookworm "$work/rootfs.tar" http://deb.debian.org/debian
  docker import "$work/rootfs.tar" "$image"
  rm "$work/rootfs.tar"
fi
git clone -q --no-local . "$work/src"
# Inside the container: as root, or as a user with sudo (useradd + a sudoers entry; the user
# gets its own copy of the cargo home, which cargo writes to, at the same place; the toolchains
# are only read).
cat >"$work/entry.sh" <<'ENTRY'
#!/bin/bash
set -euo pipefail
if [ "$CGROUPS" = mount ]; then
  # Not privileged (see below): make /sys and the cgroup hierarchies writable for the inner
  # engines, as --privileged would.
  mount -o remount,rw /sys
  if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    umount /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup
  else
    for d in /sys/fs/cgroup/*; do
      [ -L "$d" ] && continue
      o=${d##*/}; [ "$o" = systemd ] && o=none,name=systemd
      umount "$d" && mount -t cgroup -o "$o" cgroup "$d"
    done
  fi
fi
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if [ "$AS_USER" = 0 ]; then
  exec env PATH="/root/.cargo/bin:$path" RUSTUP_HOME=/root/.rustup CARGO_HOME=/root/.cargo \
    scripts/test.sh
fi
apt-get update -qq && apt-get install -y -qq sudo >/dev/null
useradd -m -s /bin/bash tester
# The toolchain stays where it was built (so a mounted target/ stays valid): let the user in.
chmod o+x /root
chown -R tester: /root/.cargo /src
echo "tester ALL=(ALL) NOPASSWD: ALL" >/etc/sudoers.d/tester
exec su tester -c "cd /src && env PATH=/root/.cargo/bin:$path RUSTUP_HOME=/root/.rustup \
  CARGO_HOME=/root/.cargo scripts/test.sh"
ENTRY
chmod +x "$work/entry.sh"
# Real filesystems for the inner engines' storage and /tmp, as on a machine (overlay cannot
# stack on the container's own root).
mounts=(-v "$work/entry.sh:/entry.sh:ro" -v "$work/src:/src" -v /var/lib/docker -v /tmp)
[ -z "$target" ] || mounts+=(-v "$target:/src/target")
if [ "$user" = 0 ]; then
  mounts+=(-v "$rustup_home:/root/.rustup" -v "$cargo_home:/root/.cargo")
else
  cp -a "$cargo_home" "$work/cargo"
  mounts+=(-v "$rustup_home:/root/.rustup:ro" -v "$work/cargo:/root/.cargo")
fi
# --privileged where this machine's engine can grant it; where it cannot (an engine that itself
# lacks a capability, e.g. CAP_SYS_RESOURCE in a sandbox), every capability it has, no seccomp
# or AppArmor confinement, all devices, and a private cgroup namespace whose hierarchies
# entry.sh mounts writable.
if docker run --rm --privileged "$image" true 2>/dev/null; then
  mode=(--privileged) cgroups=keep
else
  echo "this Docker engine cannot run a --privileged container; granting what it can instead"
  have=$(grep CapBnd /proc/self/status | awk '{print $2}')
  # CAP_SYS_RESOURCE is the usual one missing; drop every capability this process lacks.
  drop=()
  for cap in $(capsh --decode=1ffffffffff | cut -d= -f2 | tr , ' '); do
    if ! capsh --decode="$have" | grep -qw "$cap"; then c=${cap#cap_} && drop+=(--cap-drop "${c^^}"); fi
  done
  mode=(--cap-add ALL "${drop[@]}" --security-opt seccomp=unconfined
    --security-opt apparmor=unconfined --security-opt systempaths=unconfined
    --device-cgroup-rule 'a *:* rwm' --cgroupns private)
  cgroups=mount
fi
echo "running scripts/test.sh on a fresh clone of $(git rev-parse --short HEAD) in $image"
set -x
docker run --rm --name "baton-fresh-$$" "${mode[@]}" -e AS_USER="$user" -e CGROUPS="$cgroups" \
  "${mounts[@]}" -w /src "$image" /entry.sh
