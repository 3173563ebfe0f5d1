#!/usr/bin/env bash
# btvirt.sh: the BLE rig's virtual controllers, from BlueZ 5.80 or newer.
# Prints a command that runs that btvirt. Cached under the rig cache
# (${LATCHD_VM_CACHE:-${CARGO_TARGET_DIR:-target}/vm}/btvirt), which the
# guest sees.
#
# Why not Debian 12's own btvirt (5.66): its emulated controller sends an
# advertiser's report once, at the moment the scanner enables scanning, and
# the Linux host drops reports that arrive before its discovery state says
# "finding" (the HCI event races the command-sync worker). A scanner then
# does not see the lock until its next scan cycle, ~10 s later, and a 30 s
# window sometimes ends empty: the flakes seen in vm_ble (btmon in the VM
# shows the two LE Meta events arrive 0.3 ms before MGMT's "discovering").
# BlueZ fixed the emulator in 5.80 (commit fa4d477ab, "btdev: Broadcast
# EXT_ADV packets based on its interval"): it advertises every interval,
# as a real controller does. Debian 13 carries it; its btvirt needs
# glibc ≥ 2.38, so the trixie libc's loader and libc.so.6 come along and
# run it (nothing is installed on the host; apt verifies both downloads
# against the Debian archive keyring).
#
#   tests/vm/btvirt.sh            # the command on stdout, progress on stderr
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${LATCHD_VM_CACHE:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/vm}"
DIR="$CACHE/btvirt"
RUNNER="$DIR/run"
MIRROR="${LATCHD_VM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=trixie
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

die() { echo "btvirt.sh: $*" >&2; exit 1; }

# The emulator fix is in 5.80; anything older brings the race back.
probe() {
    local v
    v="$("$RUNNER" --version 2>/dev/null)" || return 1
    [[ "$v" =~ ^5\.([0-9]+)$ ]] && ((BASH_REMATCH[1] >= 80))
}

if [[ -x "$RUNNER" ]] && probe; then
    echo "$RUNNER"
    exit 0
fi
[[ -r "$KEYRING" ]] || die "$KEYRING missing (apt-get install debian-archive-keyring)"
mkdir -p "$CACHE"
# Built beside, then moved: a half-made copy is never taken for a cached one.
PART="$DIR.part"
rm -rf "$PART"
mkdir -p "$PART/apt/lists/partial" "$PART/apt/cache/archives/partial" "$PART/debs" "$PART/x"
echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main" >"$PART/apt/sources.list"
# A private apt state: the host's sources and lists stay as they are.
APT=(-o "Dir::Etc::SourceList=$PART/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$PART/apt/lists" -o "Dir::Cache=$PART/apt/cache"
    -o APT::Get::List-Cleanup=0 -o Acquire::Languages=none -o APT::Sandbox::User=root)
apt-get "${APT[@]}" update >"$PART/apt.log" 2>&1 || die "apt-get update ($SUITE) failed: $(tail -n3 "$PART/apt.log")"
(cd "$PART/debs" && apt-get "${APT[@]}" download bluez-test-tools libc6 >>"$PART/apt.log" 2>&1) ||
    die "apt-get download bluez-test-tools libc6 ($SUITE) failed: $(tail -n3 "$PART/apt.log")"
for deb in "$PART"/debs/*.deb; do
    echo "btvirt.sh: $(basename "$deb")" >&2
    dpkg-deb -x "$deb" "$PART/x"
done
mkdir -p "$PART/bin"
lib="$PART/x/usr/lib/x86_64-linux-gnu"
cp "$PART/x/usr/bin/btvirt" "$lib/ld-linux-x86-64.so.2" "$lib/libc.so.6" "$PART/bin/"
rm -rf "$PART/x" "$PART/apt" "$PART/debs"
# The runner finds its files beside itself, wherever the cache is mounted.
cat >"$PART/run" <<'RUN'
#!/bin/sh
here="$(dirname "$(readlink -f "$0")")/bin"
exec "$here/ld-linux-x86-64.so.2" --library-path "$here" "$here/btvirt" "$@"
RUN
chmod +x "$PART/run"
rm -rf "$DIR"
mv "$PART" "$DIR"
probe || die "$RUNNER does not run or is older than 5.80 ($("$RUNNER" --version 2>&1 | head -n1))"
echo "$RUNNER"
