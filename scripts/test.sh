#!/usr/bin/env bash
# The whole fast test suite, as a newcomer or CI runs it:
#
#     scripts/test.sh
#
# On a fresh Debian machine it first installs the system packages the
# tests use (as root, or through sudo). The slow virtual-hardware tests in
# a QEMU VM are a separate command: scripts/test-vm.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build dependencies of the `board-linux` feature, and the real programs the
# integration tests talk to: dbus-daemon and busctl (D-Bus), ALSA's file
# plugin (voice prompts), mosquitto + openssl (remote access over TLS),
# ffmpeg (video client),
# util-linux's setpriv (policy tests run a caller as another user),
# unshare/nsenter plus iproute2 for the Matter test's network namespace,
# python3 (the layer check, scripts/check-layers.py), libnl (the CHIP
# wheel's controller library links libnl-3 and libnl-route-3),
# swtpm + the TSS2 libraries systemd-creds loads + tpm2-tools (the device
# key sealed to a TPM 2.0, tests/it/keystore.rs), rauc + squashfs-tools
# (software updates against the real RAUC service, tests/it/update_rauc.rs),
# e2fsprogs (an ext4 state partition on a loop device that turns read-only,
# tests/it/storage_faults.rs), tzdata (schedules in a real time zone with
# DST, src/zone.rs, tests/spec/schedules.rs).
packages=(
    pkg-config libdbus-1-dev libasound2-dev libclang-dev clang
    dbus systemd alsa-utils libasound2-plugins util-linux
    mosquitto mosquitto-clients openssl ffmpeg espeak-ng sox python3
    rauc squashfs-tools e2fsprogs tzdata
    iproute2 libnl-3-200 libnl-route-3-200
    swtpm tpm2-tools libtss2-esys-3.0.2-0 libtss2-rc0 libtss2-mu0
    libtss2-tcti-swtpm0 libtss2-tcti-device0
)
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

# Home Assistant's Matter controller (python-matter-server + the CHIP
# wheel) for tests/it/matter_controller.rs: a venv under target/, reused.
scripts/matter-env.sh

# A cold run fills about 4.5 GiB under target/ (the VM suite about 3 more);
# say what there is, so a full disk reads as one.
echo "== disk: $(df -Ph . | awk 'NR == 2 { print $4 }') free on $(df -P . | awk 'NR == 2 { print $6 }')"
export CARGO_TERM_COLOR=never
# A one-shot build gains nothing from incremental state, which costs gigabytes
# across the test crates.
export CARGO_INCREMENTAL=0
# Each phase's header says when it began (seconds since the script
# started): a CI log then shows where the minutes went.
phase() { echo "== $* [${SECONDS} s]"; }
trap 'echo "== scripts/test.sh ended [${SECONDS} s]"' EXIT
phase "layers (scripts/check-layers.sh)"
scripts/check-layers.sh
phase "vendored tract-linalg is the published crate plus vzeroupper (scripts/vendor-tract-linalg.sh --check)"
scripts/vendor-tract-linalg.sh --check
phase "format"
cargo fmt --check
phase "clippy"
cargo clippy --all-targets --all-features --locked -- -D warnings
# The default features compile (sim board, no system packages needed).
# Checked, not built: the all-features build below links every binary, and
# building the default set too cost CI a third codegen pass; the newcomer's
# `cargo run --release` is the default build.
phase "default features (cargo check)"
cargo check --locked
# Most integration tests wait on the real programs they drive (a daemon's
# answer, dbus-daemon, mosquitto, the Matter controller), so libtest's one
# thread per core left the cores idle half the time: two threads per core
# took tests/it from 181 s to 117 s on 2 cores (110 s of CPU either way).
# The caller's own RUST_TEST_THREADS wins.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-$(($(nproc) * 2))}"
phase "tests"
cargo test --all-features --locked
