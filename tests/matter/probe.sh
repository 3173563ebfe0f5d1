#!/usr/bin/env bash
# Phase-1 probe of issue 18: does Home Assistant's controller commission
# rs-matter 0.4.1's Door Lock? Runs examples/matter_probe.rs and the
# controller in a network namespace of their own (veth mt0/mt1, never
# another address), commissions with the test manual code, locks and
# unlocks, and prints the times.
#
#     tests/matter/probe.sh        (after scripts/matter-env.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --quiet --example matter_probe --no-default-features --features matter
scripts/matter-env.sh
work=$(mktemp -d /tmp/latchd-matter-probe.XXXXXX)
trap 'rm -rf "$work"' EXIT

# chip-tool's development code for passcode 20202021 / discriminator 3840.
code=34970112332
unshare --user --map-root-user --net -- bash -c '
set -euo pipefail
work=$1 code=$2
ip link set lo up
sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
ip link add mt0 type veth peer name mt1
ip addr add fd4c:6174::1/64 dev mt0 nodad
ip addr add fd4c:6174::2/64 dev mt1 nodad
ip link set mt0 up
ip link set mt1 up
RUST_LOG=warn target/debug/examples/matter_probe mt0 "$work/node" >"$work/node.log" 2>&1 &
node=$!
printf "%s\n" \
  "{\"id\":1,\"cmd\":\"commission\",\"code\":\"$code\"}" \
  "{\"id\":2,\"cmd\":\"read\",\"node\":1,\"path\":\"1/257/0\"}" \
  "{\"id\":3,\"cmd\":\"invoke\",\"node\":1,\"endpoint\":1,\"command\":\"UnlockDoor\",\"args\":{},\"timed_ms\":10000}" \
  "{\"id\":4,\"cmd\":\"read\",\"node\":1,\"path\":\"1/257/0\"}" \
  "{\"id\":5,\"cmd\":\"invoke\",\"node\":1,\"endpoint\":1,\"command\":\"LockDoor\",\"args\":{},\"timed_ms\":10000}" \
  "{\"id\":6,\"cmd\":\"read\",\"node\":1,\"path\":\"1/257/0\"}" \
  "{\"id\":7,\"cmd\":\"stop\"}" |
  unshare --mount --propagation private tests/matter/private-root.sh "$work/root" \
    target/matter-venv/bin/python tests/matter/controller.py \
    --storage "$work/controller" --paa tests/matter/Chip-Test-PAA-FFF1-Cert.der \
    --primary-interface mt1
kill $node
' probe "$work" "$code"
