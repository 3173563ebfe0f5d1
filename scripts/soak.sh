#!/usr/bin/env bash
# Issue 15 item 4, the soak: a million inputs of mixed traffic through the
# control socket and the app protocol (MQTT through a Mosquitto broker the
# driver starts) into the release latchd on the sim board, with VmRSS,
# open fds, database, WAL and event-log size sampled; then the plot.
#
#     scripts/soak.sh                             # 1,000,000 inputs
#     LATCHD_SOAK_INPUTS=200000 scripts/soak.sh   # fewer
#
# Writes target/soak/soak.csv and target/soak/soak.png and exits non-zero
# when a metric grew past its margin after the warm-up (the driver and its
# margins: tests/it/common/soak.rs; knobs: benches/soak.rs).
# LATCHD_SOAK_ARTEFACTS=DIR also copies the CSV, the PNG and the summary
# there.
set -euo pipefail
cd "$(dirname "$0")/.."

# mosquitto (the broker), gnuplot-nox (the plot), as scripts/test.sh
# installs what the tests use.
packages=(mosquitto gnuplot-nox)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing system packages: ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

out=target/soak
mkdir -p "$out"
export LATCHD_SOAK_CSV="$PWD/$out/soak.csv"
# The soak needs no face models: without `face` the release build is
# minutes shorter, and the sim board's face module still recognises people.
status=0
cargo bench --no-default-features --bench soak 2>&1 | tee "$out/soak.txt" || status=$?

if [ -s "$out/soak.csv" ]; then
    gnuplot <<GNUPLOT
set datafile separator ","
set terminal png size 1200,900 font ",10"
set output "$out/soak.png"
set multiplot layout 3,2 title "latchd soak: $(tail -n 1 "$out/soak.csv" | cut -d, -f1) inputs (control socket + MQTT app protocol), $(date -u +%Y-%m-%d)"
set key off
set grid
set xlabel "inputs"
set format x "%.0s%c"
set title "VmRSS, RssAnon (private), RssFile (mapped files) (MiB)"
set key top left
plot "$out/soak.csv" using 1:(\$3/1024) every ::1 with linespoints pt 7 ps 0.4 title "VmRSS", \\
     "" using 1:(\$9/1024) every ::1 with linespoints pt 7 ps 0.4 title "RssAnon", \\
     "" using 1:(\$10/1024) every ::1 with linespoints pt 7 ps 0.4 title "RssFile"
set key off
set title "open fds"
plot "$out/soak.csv" using 1:4 every ::1 with linespoints pt 7 ps 0.4
set title "latchd.db (KiB)"
plot "$out/soak.csv" using 1:(\$5/1024) every ::1 with linespoints pt 7 ps 0.4
set title "latchd.db-wal (KiB)"
plot "$out/soak.csv" using 1:(\$6/1024) every ::1 with linespoints pt 7 ps 0.4
set title "event-log rows"
plot "$out/soak.csv" using 1:7 every ::1 with linespoints pt 7 ps 0.4
set title "elapsed (s)"
plot "$out/soak.csv" using 1:2 every ::1 with linespoints pt 7 ps 0.4
unset multiplot
GNUPLOT
    echo "soak: plotted $out/soak.png"
fi

if [ -n "${LATCHD_SOAK_ARTEFACTS:-}" ]; then
    mkdir -p "$LATCHD_SOAK_ARTEFACTS"
    cp "$out/soak.csv" "$out/soak.png" "$out/soak.txt" "$LATCHD_SOAK_ARTEFACTS"/
    echo "soak: copied to $LATCHD_SOAK_ARTEFACTS"
fi
exit "$status"
