#!/usr/bin/env bash
# The layer rules of ARCHITECTURE.md ("Layers (turn 2)") checked on src/:
# prints the module graph and fails on an import that crosses a layer the
# wrong way or closes a cycle between top-level modules. Run by
# scripts/test.sh; on its own:
#
#     scripts/check-layers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/check-layers.py .
