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
# Needs root, docker and mmdebstrap (apt-get install mmdebstrap); reaches deb.debian.org.
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
mounts=(-v "$work/src:/src")
[ -z "$target" ] || mounts+=(-v "$target:/src/target")
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if [ "$user" = 0 ]; then
  mounts+=(-v "$rustup_home:/root/.rustup" -v "$cargo_home:/root/.cargo")
  run=(env PATH="/root/.cargo/bin:$path" RUSTUP_HOME=/root/.rustup CARGO_HOME=/root/.cargo
    scripts/test.sh)
else
  # The user gets its own copy of the cargo home (cargo writes there); the toolchains are
  # only read.
  cp -a "$cargo_home" "$work/cargo"
  mounts+=(-v "$rustup_home:/opt/rustup:ro" -v "$work/cargo:/home/tester/.cargo")
  # shellcheck disable=SC2016 # expanded by the container's shell
  run=(sh -c 'apt-get update -qq && apt-get install -y -qq sudo >/dev/null &&
    useradd -M -d /home/tester -s /bin/bash tester &&
    chown -R tester: /home/tester /src &&
    echo "tester ALL=(ALL) NOPASSWD: ALL" >/etc/sudoers.d/tester &&
    exec su tester -c "cd /src && env PATH=/home/tester/.cargo/bin:$0 RUSTUP_HOME=/opt/rustup \
      CARGO_HOME=/home/tester/.cargo scripts/test.sh"' "$path")
fi
echo "running scripts/test.sh on a fresh clone of $(git rev-parse --short HEAD) in $image"
# An anonymous volume for the inner engine's storage (overlay cannot stack on the container's).
docker run --rm --name "baton-fresh-$$" --privileged -v /var/lib/docker "${mounts[@]}" -w /src "$image" "${run[@]}"
