#!/usr/bin/env bash
# A test host for the SSH-worker benchmark: a network namespace on a private bridge
# (10.214.0.0/24, used nowhere else) running this machine's own sshd with fresh keys.
#   bench/sshhost.sh up DIR    -> prints the host address; keys and known_hosts in DIR
#   bench/sshhost.sh down DIR
# Needs root, iproute2, openssh-server, dtach and curl.
set -euo pipefail
cmd=$1 dir=$2
ns=btbenchh1 br=btbench veth=btbenchv1 peer=btbenchp1 gw=10.214.0.1 addr=10.214.0.11
down() {
  if [ -f "$dir/sshd.pid" ]; then kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true; fi
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  ip link del "$br" 2>/dev/null || true
}
if [ "$cmd" = down ]; then down; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "the SSH benchmark needs root (network namespaces)" >&2; exit 1; }
down
mkdir -p "$dir/home" /run/sshd
ip link add "$br" type bridge && ip addr add "$gw/24" dev "$br" && ip link set "$br" up
ip netns add "$ns"
ip link add "$veth" type veth peer name "$peer"
ip link set "$veth" master "$br" && ip link set "$veth" up && ip link set "$peer" netns "$ns"
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" ip addr add "$addr/24" dev "$peer"
ip netns exec "$ns" ip link set "$peer" up
ip netns exec "$ns" ip route add default via "$gw"
ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key"
ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
cp "$dir/client_key.pub" "$dir/authorized_keys"
echo "$addr $(cut -d' ' -f1,2 "$dir/host_key.pub")" > "$dir/known_hosts"
cat > "$dir/sshd_config" <<CFG
Port 22
ListenAddress $addr
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxSessions 50
MaxStartups 100
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel ERROR
CFG
# A private, empty /root so the machine's dotfiles never run in the host's sessions.
# shellcheck disable=SC2016 # $1 and $2 are the inner shell's arguments
ip netns exec "$ns" unshare --mount --propagation private \
  sh -c 'mount --bind "$1" /root && exec /usr/sbin/sshd -f "$2"' sh "$dir/home" "$dir/sshd_config"
for _ in $(seq 100); do [ -f "$dir/sshd.pid" ] && break; sleep 0.05; done
echo "$addr"
