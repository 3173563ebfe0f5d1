#!/usr/bin/env bash
# latchd beside the peers a lock maker would otherwise use, in one run on
# one machine (issue 19). Not part of CI: it takes a few minutes and its
# figures are only meaningful as ratios.
#
#   scripts/bench-peers.sh            # 5 rounds
#   ROUNDS=9 scripts/bench-peers.sh
#
# Creates a Python venv under target/peers-venv with the peers
# (opencv-python-headless, numpy, argon2-cffi), builds benches/peers.rs,
# then for every figure runs latchd's side (benches/peers.rs) and the
# peer's (scripts/peers/peers.py) back to back, alternating which goes
# first, ROUNDS times. Prints one table: the medians over the rounds of
# each side's CPU time per operation, and the median of the per-round
# ratios latchd / peer (below 1: latchd is faster). Raw lines are kept in
# target/bench-peers/results.txt.
#
# Needs the shared models and photos: $LATCHD_SHARED, else ../shared.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-5}"
export LATCHD_SHARED="${LATCHD_SHARED:-$(cd .. && pwd)/shared}"
OUT=target/bench-peers
VENV=target/peers-venv
PEERS="opencv-python-headless numpy argon2-cffi"

if ! "$VENV/bin/python" -c 'import cv2, numpy, argon2' 2>/dev/null; then
    echo "== creating $VENV with $PEERS" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    # shellcheck disable=SC2086 # one word per package
    "$VENV/bin/pip" install --quiet --disable-pip-version-check $PEERS
fi
PY="$VENV/bin/python"

echo "== building benches/peers.rs (release)" >&2
BIN=$(CARGO_INCREMENTAL=0 cargo bench --bench peers --no-run --message-format=json |
    "$PY" -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "peers" and m.get("executable"):
        print(m["executable"])')
[ -x "$BIN" ] || { echo "benches/peers.rs did not build" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT"
"$BIN" frame "$OUT/frame.png"
"$BIN" crop "$OUT/crop.png"
"$BIN" store-make "$OUT/store" >/dev/null
DB="$OUT/store/latchd.db"
RESULTS="$OUT/results.txt"

# name | latchd's arguments | the peer's arguments
FIGURES=(
    "face|face|face $OUT/frame.png"
    "face_still|face-still|face $OUT/frame.png"
    "detect|detect|detect $OUT/frame.png"
    "detect_own|detect|detect-own $OUT/frame.png"
    "embed|embed|embed $OUT/crop.png"
    "antipeep16|antipeep 16|antipeep 16"
    "antipeep32|antipeep 32|antipeep 32"
    "store_load|store-load $OUT/store|store-load $DB"
)

run_latchd() { "$BIN" $1 | sed -n 's/^latchd-figure //p'; }
# OpenCV's new DNN engine warns on stderr about targets; only figures matter.
run_peer() { "$PY" scripts/peers/peers.py $1 2>/dev/null | sed -n 's/^peer-figure //p'; }

echo "== load before: $(uptime)" >&2
for round in $(seq 1 "$ROUNDS"); do
    for f in "${FIGURES[@]}"; do
        IFS='|' read -r name ours theirs <<<"$f"
        if (( round % 2 )); then
            l=$(run_latchd "$ours"); p=$(run_peer "$theirs")
        else
            p=$(run_peer "$theirs"); l=$(run_latchd "$ours")
        fi
        [ -n "$l" ] && [ -n "$p" ] || { echo "figure $name gave no result (latchd: '$l', peer: '$p')" >&2; exit 1; }
        echo "$round $name latchd $l" >>"$RESULTS"
        echo "$round $name peer $p" >>"$RESULTS"
        echo "round $round/$ROUNDS $name done" >&2
    done
done
echo "== load after: $(uptime)" >&2

TRACT=$(sed -n '/^name = "tract-onnx"$/{n;s/version = "\(.*\)"/\1/p}' Cargo.lock)
"$PY" - "$RESULTS" "$TRACT" <<'EOF'
import re, statistics, sys
from importlib.metadata import version

results, tract = sys.argv[1], sys.argv[2]
rows = {}
for line in open(results):
    rnd, name, side, rest = line.split(" ", 3)
    fields = dict(re.findall(r"(\w+)=(\S+)", rest))
    rows.setdefault(name, {}).setdefault(side, {})[int(rnd)] = (
        float(fields["cpu_ms"]), float(fields["wall_ms"]), "extrapolated" in rest)

cv = version("opencv-python-headless")
a2 = version("argon2-cffi")
LABELS = {
    "face": f"face per frame 320x240, detect+align+embed (tract {tract} | OpenCV {cv}: YuNet 320x320 letterbox)",
    "face_still": "face per frame, nothing moved since the last detection (latchd reuses the detections | OpenCV: full pipeline)",
    "detect": "detector alone (320x320 letterbox both)",
    "detect_own": "detector alone (latchd 320x320 letterbox | OpenCV at the frame's own 320x240, padded to 320x256 inside)",
    "embed": "embedder alone, aligned 112x112 crop",
    "antipeep16": f"anti-peep, 16-digit input vs 50 codes (keyed MAC index | per-code Argon2id, argon2-cffi {a2} defaults)",
    "antipeep32": f"anti-peep, 32-digit input vs 50 codes (keyed MAC index | per-code Argon2id, argon2-cffi {a2} defaults)",
    "store_load": "store load, 50 users / 150 credentials (rusqlite + unsealing | Python sqlite3)",
}

def fmt(ms):
    if ms >= 60_000:
        return f"{ms / 60_000:.1f} min"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 1:
        return f"{ms:.2f} ms"
    return f"{ms * 1000:.1f} µs"

def ratio(r):
    # Below 0.001 the ratio is clearer as "1 / N".
    return f"{r:.3g}" if r >= 0.001 else f"1/{1 / r:.3g}"

def table(col, title):
    print(f"\n{title}")
    print("| figure | latchd | peer | ratio (range) |")
    print("|---|---|---|---|")
    for name, label in LABELS.items():
        r = rows.get(name)
        if not r:
            continue
        ours, theirs = r["latchd"], r["peer"]
        rounds = sorted(set(ours) & set(theirs))
        ratios = [ours[i][col] / theirs[i][col] for i in rounds]
        extra = any(theirs[i][2] for i in rounds)
        lat = statistics.median(ours[i][col] for i in rounds)
        peer = statistics.median(theirs[i][col] for i in rounds)
        print(f"| {label} | {fmt(lat)} | {fmt(peer)}{' (extrapolated)' if extra else ''} "
              f"| {ratio(statistics.median(ratios))} ({ratio(min(ratios))}–{ratio(max(ratios))}) |")

n = len({r for v in rows.values() for s in v.values() for r in s})
table(0, f"CPU time per operation, medians over {n} rounds (ratio = latchd / peer, below 1: latchd faster)")
table(1, "Wall-clock time per operation, same runs (affected by other load on the machine)")
print("\nExtrapolated: the per-code Argon2id check costs windows x codes verifications; the peer "
      "times a sample of them and multiplies (PEER_ARGON2_FULL=1 runs whole checks).")
EOF
