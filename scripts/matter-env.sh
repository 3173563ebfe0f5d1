#!/usr/bin/env bash
# The Python venv with Home Assistant's Matter controller, for the Matter
# tests and bench (tests/it/matter_controller.rs, benches/matter.rs):
#
#     scripts/matter-env.sh            # creates or reuses target/matter-venv
#
# python-matter-server (the server Home Assistant talks to) and its CHIP
# controller wheel, home-assistant-chip-core, both from PyPI, pinned. The
# venv (~250 MB) is kept under target/ and reused while the pins and the
# interpreter are unchanged, so only the first run downloads anything.
# Needs Python 3.12 or newer (python-matter-server 8 requires it).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/matter-venv
# Changing a pin changes the stamp, which rebuilds the venv.
pins=(
    "python-matter-server[server]==8.1.2"
    "home-assistant-chip-core==2025.7.0"
    "home-assistant-chip-clusters==2025.7.0"
)

python=""
# pyenv's shims answer `command -v` for versions that are installed but not
# selected, so its version directories are searched by path too.
pyenv_root=$(pyenv root 2>/dev/null || true)
for candidate in "${MATTER_PYTHON:-}" python3.13 python3.12 python3 \
    ${pyenv_root:+"$pyenv_root"/versions/3.1[2-9]*/bin/python3}; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
        python=$(command -v "$candidate")
        break
    fi
done
if [ -z "$python" ]; then
    echo "matter-env: no Python 3.12+ found (python-matter-server 8 needs it); set MATTER_PYTHON" >&2
    exit 1
fi

stamp="$("$python" --version 2>&1) ${pins[*]}"
if [ -f "$venv/.stamp" ] && [ "$(cat "$venv/.stamp")" = "$stamp" ] && [ -x "$venv/bin/python" ]; then
    exit 0
fi

echo "matter-env: creating $venv with $python (${pins[*]})"
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
"$venv/bin/python" -c 'import chip.native, matter_server.server' # the wheel loads here
echo "$stamp" >"$venv/.stamp"
