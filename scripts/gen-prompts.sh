#!/usr/bin/env bash
# Regenerates the English voice prompt set in assets/prompts/ from the
# prompt texts in the source (src/core/action.rs, board/drivers/prompts.rs):
#
#     scripts/gen-prompts.sh
#
# espeak-ng (voice en-us, 150 words/min) speaks each text; sox converts it
# to 16 kHz mono 16-bit PCM WAV (repeatable mode, no dither) and trims
# silence at both ends. The same
# package versions give the same files, so the committed set can be
# checked by running this and `git diff --stat assets/prompts`.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null || {
        echo "gen-prompts: $tool is missing: apt-get install espeak-ng sox" >&2
        exit 1
    }
done
out=assets/prompts
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cargo run --quiet --example prompt_texts >"$tmp/list.tsv"
rm -f "$out"/*.wav
n=0
while IFS=$'\t' read -r name text; do
    espeak-ng -v en-us -s 150 -w "$tmp/raw.wav" -- "$text"
    sox -R "$tmp/raw.wav" -D -r 16000 -c 1 -b 16 -e signed-integer "$out/$name.wav" \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse
    n=$((n + 1))
done <"$tmp/list.tsv"
echo "gen-prompts: $n prompts in $out ($(du -sh "$out" | cut -f1))"
