#!/usr/bin/env bash
# Regenerates the voice prompt sets, one folder per language,
# assets/prompts/<tag>/<name>.wav (en, zh-TW), from the prompt tables in the
# source (src/core/lang/{en,zh_tw}.rs, board/drivers/prompts.rs):
#
#     scripts/gen-prompts.sh
#
# espeak-ng speaks each text at 150 words/min with the language's voice
# (`Language::espeak_voice`: en-us; cmn-latn-pinyin for Mandarin, the cmn
# language reading its pinyin as Mandarin — the plain cmn voice of
# espeak-ng 1.51 reads most Traditional characters as English-sounding
# pinyin); sox converts it to 16 kHz mono 16-bit PCM WAV (repeatable mode,
# no dither) and trims silence at both ends. The same package versions give
# the same files, so the committed sets can be checked by running this and
# `git diff --stat assets/prompts`. Only for regeneration: CI checks that
# every prompt has an asset in every language, not the audio bytes.
#
# Each folder also gets texts.tsv (name<TAB>text, what each recording says):
# the tests compare it with the tables, so a text changed without
# regenerating its recording fails CI.
#
# A Mandarin text whose characters espeak-ng does not know is refused
# rather than recorded wrong: espeak-ng then switches to English ("(en)" in
# its phoneme output), which a text without Latin letters never needs.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null || {
        echo "gen-prompts: $tool is missing: apt-get install espeak-ng sox" >&2
        exit 1
    }
done
out=assets/prompts
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cargo run --quiet --example prompt_texts >"$tmp/list.tsv"
# Recordings outside a language folder (the English set lived in
# assets/prompts/ before there was a choice) and old sets go.
rm -f "$out"/*.wav
cut -f1 "$tmp/list.tsv" | sort -u >"$tmp/langs"
while read -r lang; do
    rm -rf "${out:?}/$lang"
    mkdir -p "$out/$lang"
    awk -F'\t' -v l="$lang" '$1 == l { print $3 "\t" $4 }' "$tmp/list.tsv" >"$out/$lang/texts.tsv"
done <"$tmp/langs"
n=0
while IFS=$'\t' read -r lang voice name text; do
    if [[ $lang != en && ! $text =~ [A-Za-z] ]] &&
        espeak-ng -q -x -v "$voice" -- "$text" | grep -q '(en)'; then
        echo "gen-prompts: $lang/$name: espeak-ng voice $voice does not know a word of" \
            "\"$text\"; use the word it knows in src/core/lang" >&2
        exit 1
    fi
    espeak-ng -v "$voice" -s 150 -w "$tmp/raw.wav" -- "$text"
    sox -R "$tmp/raw.wav" -D -r 16000 -c 1 -b 16 -e signed-integer "$out/$lang/$name.wav" \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse
    n=$((n + 1))
done <"$tmp/list.tsv"
while read -r lang; do
    echo "gen-prompts: $(find "$out/$lang" -name '*.wav' | wc -l) prompts in $out/$lang ($(du -sh "$out/$lang" | cut -f1))"
done <"$tmp/langs"
echo "gen-prompts: $n recordings"
