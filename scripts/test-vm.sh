#!/usr/bin/env bash
# The slow suite. The virtual-hardware tests: each boots a QEMU VM (TCG)
# with kernel virtual devices — vivid (V4L2), snd-dummy (ALSA), hci_vhci +
# btvirt (BLE), gpio-sim (GPIO) — and runs latchd's real Linux backends
# there. Then bounded fuzzing of every parser of outside bytes
# (scripts/fuzz.sh: a fixed seed and a fixed number of executions per
# target from the committed seeds, ≈ 2 min in all; FUZZ_SECONDS and
# FUZZ_SEED change them; docs/fuzzing.md).
#
#     scripts/test-vm.sh
#
# Installs what it needs on a fresh Debian machine (as root). Details and
# figures: tests/vm/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== disk: $(df -Ph . | awk 'NR == 2 { print $4 }') free on $(df -P . | awk 'NR == 2 { print $6 }')"
# Phase headers say when each began (seconds since this script started).
trap 'echo "== scripts/test-vm.sh ended [${SECONDS} s]"' EXIT
echo "== VM tests (tests/vm/run-vm-tests.sh) [${SECONDS} s]"
tests/vm/run-vm-tests.sh "$@"
echo "== bounded fuzzing (scripts/fuzz.sh) [${SECONDS} s]"
FUZZ_SEED="${FUZZ_SEED:-1}" scripts/fuzz.sh
