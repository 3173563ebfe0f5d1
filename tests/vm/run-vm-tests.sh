#!/usr/bin/env bash
# run-vm-tests.sh: the one command for the VM tests on a fresh Debian 12
# machine (root, 2 cores are enough). Installs what is missing, fills the rig
# cache (kernel, initramfs, gpio-sim.ko), then runs the VM test crate
# (tests/vm/main.rs) with LATCHD_VM_TESTS=1, two tests at a time (each boots
# its own VM).
#
#   tests/vm/run-vm-tests.sh [test filter, e.g. vm_smoke::] [-- libtest args, e.g. --nocapture]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

# Build dependencies of the `board-linux` feature (alsa, dbus/bluer, v4l's
# bindgen) and the Wi-Fi tools; the rig's own packages are installed by
# run-in-vm.sh itself.
missing=()
# hostapd and wpasupplicant: the real Wi-Fi network of vm_wifi (the guest
# runs the host's binaries on mac80211_hwsim radios); iw and iproute2 move
# its access point's radio into a network namespace, where mosquitto (TLS,
# openssl's test certificates) and mosquitto-clients stand for the broker
# the lock reaches over that radio. network-manager and udev: vm_wifi_nm runs
# the real NetworkManager there (which manages only links udev initialised).
for p in pkg-config libasound2-dev libdbus-1-dev libclang-dev hostapd wpasupplicant \
    iw iproute2 mosquitto mosquitto-clients openssl network-manager udev; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}
if ((${#missing[@]})); then
    [[ $EUID -eq 0 ]] || { echo "run-vm-tests: missing ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2; exit 1; }
    # The guest runs these programs; none of their services may start on
    # this host (NetworkManager would take over its network interfaces,
    # mosquitto would listen on 1883): policy-rc.d's 101 forbids starting
    # them, unless the machine already has a policy of its own.
    own_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# run-vm-tests.sh, while it installs packages\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    # As run-in-vm.sh does: a fresh machine's package lists may be missing
    # or stale, so update them once if the first attempt fails.
    status=0
    apt_install "${missing[@]}" || { apt-get update && apt_install "${missing[@]}"; } || status=$?
    if ((own_policy)); then
        rm -f /usr/sbin/policy-rc.d
        trap - EXIT
    fi
    ((status == 0)) || { echo "run-vm-tests: apt-get install ${missing[*]} failed" >&2; exit "$status"; }
    # … nor at the next boot (installed just now, for the guest only).
    if [[ " ${missing[*]} " == *" network-manager "* && -d /run/systemd/system ]]; then
        systemctl disable NetworkManager.service NetworkManager-wait-online.service || true
    fi
fi

# Every device option once, so all packages and cache entries exist before
# the tests start their VMs (they would otherwise race to build them; the
# script serialises that with a lock, but the first test would look slow).
tests/vm/run-in-vm.sh --prepare --video --sound --ble --gpio 1 --adc --tpm --systemd
# Home Assistant's Improv client for vm_ble::daemon_improv_client_in_vm
# (python3-venv from Debian if missing, the libraries from PyPI; cached).
tests/vm/improv-venv.sh >/dev/null
# Home Assistant's Matter controller for vm_matter_ble (python-matter-server
# and the CHIP wheel on Python ≥ 3.12, in target/matter-venv; cached).
scripts/matter-env.sh

export LATCHD_VM_TESTS=1
# Asked to run: a VM test that would skip fails instead (tests/vm/rig.rs),
# so this suite (and CI's scripts/test-vm.sh) cannot pass by running nothing.
export LATCHD_VM_REQUIRED=1
export CARGO_INCREMENTAL=0  # same build as scripts/test.sh, reused
# Two VMs at a time: a guest spends much of its test waiting (a grace
# period, a scan, a controller starting), and the suite took 887 s one VM
# at a time and 611 s two at a time on 2 cores (each test slower, none
# failing; `RUST_TEST_THREADS=1` for one). Set here rather than as
# `-- --test-threads=2` so the caller's own `-- ...` libtest arguments
# still work, and only if the caller did not choose.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
exec cargo test --all-features --test vm "$@"
