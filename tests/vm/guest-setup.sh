#!/bin/bash
# Runs inside the guest, chrooted into the host's root, as root.
# Usage: guest-setup.sh RUN_DIR
#
# Brings up the devices/daemons chosen in RUN_DIR/options.sh, then runs
# RUN_DIR/command.sh with stdout/stderr in RUN_DIR/{stdout,stderr} and its
# exit status in RUN_DIR/status. A setup failure writes RUN_DIR/rig-error and
# no status, so the host can tell "rig broken" from "command failed".
set -uo pipefail
RUN="$1"
exec 2>>"$RUN/setup.log"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck source=/dev/null # written by run-in-vm.sh for each run
. "$RUN/options.sh"

fail() {
    echo "setup: $*" >&2
    echo "$*" >"$RUN/rig-error"
    exit 1
}
# poll SECONDS COMMAND...: true once COMMAND succeeds, false after SECONDS.
# The limit is wall time, not a poll count: under TCG on a loaded host one
# probe (fork + exec over 9p) can take a second or more.
poll() {
    local deadline=$((SECONDS + $1))
    shift
    while ((SECONDS < deadline)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}
# wait_for SECONDS DESCRIPTION COMMAND...: poll, or fail the rig.
wait_for() {
    local secs="$1" what="$2"
    shift 2
    poll "$secs" "$@" || fail "timed out after $secs s waiting for $what"
}

mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts || fail "mount devpts"
mount -t tmpfs -o mode=1777 tmpfs /dev/shm || fail "mount /dev/shm"
[ -e /dev/ptmx ] || ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777 tmpfs /var/tmp || fail "mount /var/tmp"
mkdir -p /run/lock /run/user
# A private, writable home: the host's /root is read-only here. The host's
# pyenv interpreters stay visible under it (read-only): the Matter
# controller's venv (target/matter-venv, scripts/matter-env.sh) runs on a
# Python ≥ 3.12 that Debian 12 does not ship, from /root/.pyenv here.
if [ -d /root/.pyenv ]; then
    mkdir -p /run/host-pyenv && mount --bind /root/.pyenv /run/host-pyenv || fail "bind /root/.pyenv"
fi
mount -t tmpfs -o mode=0700 tmpfs /root || fail "tmpfs /root"
if mountpoint -q /run/host-pyenv 2>/dev/null; then
    mkdir -p /root/.pyenv && mount --move /run/host-pyenv /root/.pyenv || fail "move /root/.pyenv"
fi
mkdir -p "$RUN/out"
export HOME=/root LATCHD_VM_GUEST=1 LATCHD_VM_RUN_DIR="$RUN" LATCHD_VM_OUT_DIR="$RUN/out"
# `modprobe -d "$LATCHD_VM_MODPROBE_ROOT" MODULE` loads any module of the
# guest kernel (the host has no /lib/modules to mount it on).
if [ -r "$RUN/modprobe-root" ]; then
    LATCHD_VM_MODPROBE_ROOT="$(sed -n 's/^LATCHD_VM_MODPROBE_ROOT=//p' "$RUN/modprobe-root")"
    export LATCHD_VM_MODPROBE_ROOT
fi
# The host's /dev/fd symlinks are not in devtmpfs; bash process substitution
# and some tools need them.
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr
sed 's/ .*//; s/^/uptime_at_setup=/' /proc/uptime >"$RUN/guest-timing"

if [ "$VIDEO" = 1 ]; then
    wait_for 10 "/dev/video0 from vivid" test -c /dev/video0
fi
if [ "$SOUND" = 1 ]; then
    wait_for 10 "/dev/snd/pcmC0D0p from snd-dummy" test -c /dev/snd/pcmC0D0p
fi

if [ "$BLE" = 1 ]; then
    # bluetoothd keeps its controller database here; the host copy is ro.
    mount -t tmpfs -o mode=0755 tmpfs /var/lib/bluetooth || fail "tmpfs /var/lib/bluetooth"
    mkdir -p /run/dbus
    # The system bus as installed, plus one rule: tests may serve a
    # wpa_supplicant double (root owning fi.w1.wpa_supplicant1), which the
    # real package's policy file would allow on a board.
    cat >"$RUN/system-bus.conf" <<'CONF'
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <include>/usr/share/dbus-1/system.conf</include>
  <policy user="root">
    <allow own="fi.w1.wpa_supplicant1"/>
    <allow send_destination="fi.w1.wpa_supplicant1"/>
  </policy>
</busconfig>
CONF
    dbus-daemon --config-file="$RUN/system-bus.conf" --fork --nopidfile --print-address=3 3>"$RUN/dbus.address" \
        >>"$RUN/dbus.log" 2>&1 || fail "dbus-daemon --system failed, see dbus.log"
    wait_for 10 "the system bus socket" test -S /run/dbus/system_bus_socket
    # Every HCI command and event of every controller, for a BLE test that
    # fails (LATCHD_VM_KEEP=1 keeps the run dir: btmon -r reads it back).
    setsid btmon -w "$RUN/hci.btsnoop" >/dev/null 2>&1 </dev/null &
    # bluetoothd as the lock's drop-in has systemd run it
    # (systemd/bluetooth.service.d/latchd.conf: Restart=on-failure,
    # RestartSec=2, no start limit): a crash is logged and bluetoothd starts
    # again; a clean stop (status 0, or SIGTERM as vm_ble's restart sends)
    # ends the loop.
    # shellcheck disable=SC2317 # run through setsid bash -c
    supervise_bluetoothd() {
        local rc n=0
        while :; do
            # shellcheck disable=SC2086 # BLUETOOTHD_ARGS is a list of words
            /usr/libexec/bluetooth/bluetoothd -n $BLUETOOTHD_ARGS
            rc=$?
            { [ "$rc" -eq 0 ] || [ "$rc" -eq 143 ]; } && break
            n=$((n + 1))
            echo "rig: bluetoothd exited with status $rc (failure $n); starting it again in 2 s"
            sleep 2
        done
    }
    export BLUETOOTHD_ARGS
    export -f supervise_bluetoothd
    setsid bash -c supervise_bluetoothd >>"$RUN/bluetoothd.log" 2>&1 </dev/null &
    # shellcheck disable=SC2317 # called through poll
    all_controllers() {
        [ "$(timeout 10 bluetoothctl list 2>/dev/null | grep -c '^Controller')" -ge "$BLE_CONTROLLERS" ]
    }
    # shellcheck disable=SC2317 # called through poll
    ble_settled() { # sets ble_state to ready, or broken when a reset failed
        if all_controllers; then
            ble_state=ready
        elif dmesg 2>/dev/null | grep -q 'hci[0-9]*: Opcode 0x0c03 failed'; then
            ble_state=broken
        else
            return 1
        fi
    }
    # -l2 (or -lN, --ble-controllers): controllers, each BR/EDR + LE, on
    # one virtual air. On a
    # starved host the kernel can time out btvirt's answer to HCI Reset
    # ("hci0: Opcode 0x0c03 failed: -110") and the controller stays down;
    # a fresh btvirt then usually comes up, so try up to three times.
    # btvirt opens hci0 and then sets up hci1 before its main loop answers
    # anything; page-faulting its code in over 9p during that window is what
    # makes hci0's reset late. Read the binary once so it is in page cache.
    cat "$(dirname "$BTVIRT")"/bin/* >/dev/null
    "$BTVIRT" --version >/dev/null 2>&1
    ble_ok=0
    for attempt in 1 2 3; do
        setsid "$BTVIRT" -l"$BLE_CONTROLLERS" >>"$RUN/btvirt.log" 2>&1 </dev/null &
        btvirt_pid=$!
        dmesg -C 2>/dev/null
        ble_state=""
        if poll 20 test -e "/sys/class/bluetooth/hci$((BLE_CONTROLLERS - 1))" && poll 40 ble_settled && [ "$ble_state" = ready ]; then
            ble_ok=1
            break
        fi
        echo "setup: btvirt attempt $attempt: controllers did not come up, retrying" >&2
        kill "$btvirt_pid" 2>/dev/null
        wait "$btvirt_pid" 2>/dev/null
        poll 10 test ! -e /sys/class/bluetooth/hci0 || true
    done
    [ "$ble_ok" = 1 ] ||
        fail "btvirt -l$BLE_CONTROLLERS + bluetoothd did not give $BLE_CONTROLLERS controllers (see btvirt.log, bluetoothd.log, console.log)"
fi

if [ "${#GPIO_NAMES[@]}" -gt 0 ]; then
    [ -r "$GPIO_KO" ] || fail "gpio-sim module $GPIO_KO missing"
    insmod "$GPIO_KO" || fail "insmod $GPIO_KO failed (see console.log for the kernel message)"
    mountpoint -q /sys/kernel/config || mount -t configfs configfs /sys/kernel/config ||
        fail "mount configfs"
    chip=/sys/kernel/config/gpio-sim/latchd-sim
    mkdir "$chip" "$chip/bank0" || fail "cannot create the gpio-sim chip in configfs"
    echo "${#GPIO_NAMES[@]}" >"$chip/bank0/num_lines" || fail "gpio-sim num_lines"
    echo latchd-sim >"$chip/bank0/label" || fail "gpio-sim label"
    for i in "${!GPIO_NAMES[@]}"; do
        if [ -n "${GPIO_NAMES[$i]}" ]; then
            mkdir "$chip/bank0/line$i" && echo "${GPIO_NAMES[$i]}" >"$chip/bank0/line$i/name" ||
                fail "gpio-sim line $i name"
        fi
    done
    echo 1 >"$chip/live" || fail "gpio-sim: writing live=1 failed"
    dev_name="$(cat "$chip/dev_name")" && chip_name="$(cat "$chip/bank0/chip_name")" ||
        fail "gpio-sim: no dev_name/chip_name after going live"
    wait_for 10 "/dev/$chip_name" test -c "/dev/$chip_name"
    export LATCHD_VM_GPIO_CHIP="/dev/$chip_name"
    export LATCHD_VM_GPIO_SIM="/sys/devices/platform/$dev_name/$chip_name"
    [ -d "$LATCHD_VM_GPIO_SIM" ] || fail "gpio-sim sysfs dir $LATCHD_VM_GPIO_SIM missing"
fi

if [ "$ADC" = 1 ]; then
    [ -r "$ADC_KO" ] || fail "latchd-adc-sim module $ADC_KO missing"
    insmod "$ADC_KO" || fail "insmod $ADC_KO failed (see console.log for the kernel message)"
    # shellcheck disable=SC2317 # called through poll
    spidev_up() { compgen -G '/sys/module/latchd_adc_sim' >/dev/null && ls /sys/bus/spi/drivers/spidev/ | grep -q '^spi'; }
    wait_for 10 "spidev bound to the virtual ADC" spidev_up
    spi="$(basename "$(ls -d /sys/bus/spi/drivers/spidev/spi* | head -n1)")"
    wait_for 10 "/dev/spidev${spi#spi}" test -c "/dev/spidev${spi#spi}"
    export LATCHD_VM_SPIDEV="/dev/spidev${spi#spi}"
    export LATCHD_VM_ADC_COUNTS=/sys/module/latchd_adc_sim/parameters/counts
fi

sed 's/ .*//; s/^/uptime_at_command=/' /proc/uptime >>"$RUN/guest-timing"
cd "$CMD_CWD" || fail "cannot cd to $CMD_CWD in the guest"
/bin/bash "$RUN/command.sh" >"$RUN/stdout" 2>"$RUN/stderr" </dev/null
status=$?
sed 's/ .*//; s/^/uptime_at_end=/' /proc/uptime >>"$RUN/guest-timing"
# The status file is written last: its presence means "the command ran".
echo "$status" >"$RUN/status.tmp" && mv "$RUN/status.tmp" "$RUN/status"
exit 0
