#!/usr/bin/env bash
# improv-venv.sh: the Python environment of Home Assistant's Improv client
# (py-improv-ble-client on bleak, from PyPI) for tests/vm/improv_client.py.
# Prints the venv's directory. Cached: built once under the rig cache
# (${LATCHD_VM_CACHE:-${CARGO_TARGET_DIR:-target}/vm}/improv-venv), which the
# guest sees (not under /tmp, /run or /root: tmpfs there). Debian's python3
# (/usr/bin, visible in the guest), never a pyenv under /root.
#
#   tests/vm/improv-venv.sh            # path on stdout, progress on stderr
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${LATCHD_VM_CACHE:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/vm}"
VENV="$CACHE/improv-venv"
# What Home Assistant runs: its Improv client, and the two libraries the
# client imports but (2.0.1 on PyPI) does not declare.
PACKAGES=(py-improv-ble-client==2.0.1 bleak==3.1.0 bleak-retry-connector==4.7.1)
PY=/usr/bin/python3

probe() { "$VENV/bin/python" -c 'import improv_ble_client, bleak' 2>/dev/null; }

if [[ -x "$VENV/bin/python" ]] && probe; then
    echo "$VENV"
    exit 0
fi
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
    [[ $EUID -eq 0 ]] || { echo "improv-venv: python3-venv missing; run: sudo apt-get install -y python3-venv" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv >&2
fi
mkdir -p "$CACHE"
# Built beside, then moved: a half-built venv is never taken for a cached one.
rm -rf "$VENV.part"
"$PY" -m venv "$VENV.part" >&2
"$VENV.part/bin/python" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}" >&2
rm -rf "$VENV"
mv "$VENV.part" "$VENV"
# The venv's scripts name the .part path; only bin/python is used.
probe || { echo "improv-venv: $VENV does not import improv_ble_client" >&2; exit 1; }
echo "$VENV"
