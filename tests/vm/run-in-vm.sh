#!/usr/bin/env bash
# run-in-vm.sh: run one command inside a throwaway QEMU guest that has the
# kernel's virtual devices (vivid camera, snd-dummy sound card, vhci BLE
# controllers, gpio-sim GPIO chip), with this machine's root filesystem
# mounted read-only so host binaries run unchanged.
#
#   host                                      guest (QEMU TCG, Debian 6.1 kernel)
#   ----                                      -----------------------------------
#   run-in-vm.sh --video -- cmd
#     | fetch + cache kernel, initramfs       /init (busybox, from initramfs)
#     | make run dir target/vm/runs/<id> ---->  modprobe virtio/9p + device modules
#     | qemu -kernel -initrd                    mount host / (9p, ro) at /newroot
#     |      -virtfs / (ro)                     mount run dir (9p, rw) at same path
#     |      -virtfs run dir (rw)               tmpfs /tmp /run, move /dev /proc /sys
#     |                                         chroot -> guest-setup.sh (bash)
#     |                                           daemons (dbus, btvirt, bluetoothd),
#     |                                           gpio-sim chip, then cmd
#     | <---- run dir: stdout, stderr, status  reboot -f (QEMU exits: -no-reboot)
#     v
#   prints stdout/stderr, exits with the command's status
#
# Exit status: the command's status; 124 when the VM hit --timeout; 125 when
# the rig itself failed (message on stderr, console log kept in the run dir).
#
# Everything downloaded or built is cached under ${CARGO_TARGET_DIR:-target}/vm,
# so only the first run downloads (~85 MB, ~225 MB more with --gpio).
set -euo pipefail

readonly RIG_FAIL=125
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
readonly SCRIPT_DIR REPO_ROOT
CACHE="${LATCHD_VM_CACHE:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/vm}"

# Modules in the initramfs. The 9p set is always loaded; the others only when
# the matching option asks for them. Their dependencies come from depmod.
readonly BASE_MODULES="virtio_pci virtio_rng 9pnet_virtio 9p uinput"
readonly VIDEO_MODULES="vivid"
readonly SOUND_MODULES="snd-dummy"
# btvirt -l2 makes LE controllers, which the kernel only accepts when the
# crypto user API is present (the SMP code checks for it); see the notes.
# drbg must come before hci_vhci: bluetooth pulls in ecdh_generic, whose
# self-test needs the default RNG (stdrng); without it the test fails with
# EFAULT and SMP cannot create its ECDH context, so LE pairing is impossible.
readonly BLE_MODULES="drbg jitterentropy_rng hci_vhci af_alg algif_skcipher algif_hash cmac ecb"
readonly GPIO_MODULES="configfs"
readonly ALL_MODULES="$BASE_MODULES $VIDEO_MODULES $SOUND_MODULES $BLE_MODULES $GPIO_MODULES"

usage() {
    cat <<'EOF'
usage: tests/vm/run-in-vm.sh [options] [--] COMMAND [ARG...]

Runs COMMAND as root inside a QEMU guest whose root is this machine's root
(read-only; /tmp, /run, /var/tmp, /var/lib/bluetooth, /root are guest tmpfs).
One argument is run as a bash command line; several are run as an argv.

devices:
  --video            load vivid: /dev/video0.. (V4L2 test pattern camera)
  --sound            load snd-dummy: card 0, /dev/snd/pcmC0D0p
  --ble              btvirt -l2 (hci0, hci1: BR/EDR+LE), system D-Bus, bluetoothd
  --ble-controllers N  with --ble: N controllers (2..4) on the one virtual air
                     (btvirt -lN: hci0 … hci{N-1})
  --gpio LINES       gpio-sim chip "latchd-sim" with named lines, LINES is a
                     comma list (e.g. lock,door,button) or a line count
  --adc              a virtual SPI controller with an MCP3008-class ADC bound
                     to spidev (latchd-adc-sim, built here): /dev/spidevB.0;
                     channel values in LATCHD_VM_ADC_COUNTS (sysfs, writable)
  --disk FILE        FILE (raw image on the host) as the guest's /dev/vda
                     (virtio-blk): storage whose page cache dies with the VM
  --tpm              a TPM 2.0 (QEMU tpm-tis backed by swtpm, started and
                     stopped here): /dev/tpm0 and /dev/tpmrm0 in the guest
  --tpm-state DIR    keep swtpm's state in DIR (created if missing) so a later
                     run sees the same TPM; default: a fresh TPM in the run dir
guest:
  --systemd          boot systemd as PID 1 (in the chroot) and run COMMAND as
                     a oneshot unit under it, so units can be started with
                     systemctl; default: a plain shell under busybox init
  --env NAME=VALUE   set a variable for COMMAND (repeatable)
  --cwd DIR          working directory of COMMAND (default: current directory)
  --bluetoothd-args ARGS  extra bluetoothd arguments (e.g. "-E")
  --timeout SECS     hard limit on the whole VM run (default 300)
  --mem MB           guest memory (default 1024)
  --smp N            guest CPUs (default: host CPUs, at most 4)
  --cpu MODEL        QEMU CPU model (default: $LATCHD_VM_CPU or "max"); an
                     older model without AVX (e.g. Nehalem) runs SIMD-heavy
                     code such as the face models many times faster under TCG
rig:
  --run-dir DIR      use DIR (must not exist yet) for this run's files
  --keep             keep the run dir (default: kept only on failure)
  --prepare          only fetch/build the cache (kernel, initramfs, gpio-sim)
  -v, --verbose      stream the guest console to stderr
  -h, --help         this text

Power cuts: a command that cuts the guest's power (echo b >
/proc/sysrq-trigger: reset, no sync) writes $LATCHD_VM_RUN_DIR/power-cut
first; a run that ends without a status but with that file reports status 0
and the output written so far.

Inside the guest: LATCHD_VM_GUEST=1, LATCHD_VM_RUN_DIR (writable, shared
with the host), and with --gpio LATCHD_VM_GPIO_CHIP (/dev/gpiochipN),
LATCHD_VM_GPIO_SIM (sysfs dir holding sim_gpioN/{pull,value}).
EOF
}

die() {
    echo "run-in-vm: error: $*" >&2
    exit "$RIG_FAIL"
}
log() {
    [[ "$VERBOSE" == 1 ]] && echo "run-in-vm: $*" >&2
    return 0
}

VIDEO=0 SOUND=0 BLE=0 ADC=0 GPIO_LINES="" TIMEOUT=300 MEM=1024 SMP="" CPU="${LATCHD_VM_CPU:-max}" RUN_DIR="" KEEP=0
PREPARE=0 VERBOSE=0 CWD="$PWD" BLUETOOTHD_ARGS="" BLE_CONTROLLERS=2 DISK="" TPM=0 TPM_STATE="" SYSTEMD=0
ENVS=()
while (($#)); do
    case "$1" in
    --video) VIDEO=1 ;;
    --sound) SOUND=1 ;;
    --ble) BLE=1 ;;
    --ble-controllers)
        (($# >= 2)) || die "--ble-controllers needs a count"
        [[ "$2" =~ ^[2-4]$ ]] || die "--ble-controllers $2: 2, 3 or 4"
        BLE_CONTROLLERS="$2"
        shift
        ;;
    --adc) ADC=1 ;;
    --gpio)
        (($# >= 2)) || die "--gpio needs a value: a comma list of line names or a count"
        GPIO_LINES="$2"
        shift
        ;;
    --env)
        (($# >= 2)) || die "--env needs NAME=VALUE"
        [[ "$2" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env '$2' is not NAME=VALUE"
        ENVS+=("$2")
        shift
        ;;
    --disk)
        (($# >= 2)) || die "--disk needs an image file"
        [[ -f "$2" && -w "$2" ]] || die "--disk $2: no such writable file"
        DISK="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
        shift
        ;;
    --tpm) TPM=1 ;;
    --tpm-state)
        (($# >= 2)) || die "--tpm-state needs a directory"
        TPM=1
        TPM_STATE="$2"
        shift
        ;;
    --systemd) SYSTEMD=1 ;;
    --cwd)
        (($# >= 2)) || die "--cwd needs a directory"
        CWD="$2"
        shift
        ;;
    --bluetoothd-args)
        (($# >= 2)) || die "--bluetoothd-args needs a value"
        BLUETOOTHD_ARGS="$2"
        shift
        ;;
    --timeout)
        (($# >= 2)) && [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "--timeout needs a positive number of seconds"
        TIMEOUT="$2"
        shift
        ;;
    --mem)
        (($# >= 2)) && [[ "$2" =~ ^[1-9][0-9]*$ ]] && (($2 >= 256)) || die "--mem needs a size in MB, at least 256"
        MEM="$2"
        shift
        ;;
    --smp)
        (($# >= 2)) && [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "--smp needs a CPU count"
        SMP="$2"
        shift
        ;;
    --cpu)
        (($# >= 2)) && [[ "$2" =~ ^[A-Za-z0-9_.-]+$ ]] || die "--cpu needs a QEMU CPU model name"
        CPU="$2"
        shift
        ;;
    --run-dir)
        (($# >= 2)) || die "--run-dir needs a directory"
        RUN_DIR="$2"
        shift
        ;;
    --keep) KEEP=1 ;;
    --prepare) PREPARE=1 ;;
    -v | --verbose) VERBOSE=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    --)
        shift
        break
        ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) break ;;
    esac
    shift
done
if [[ "$PREPARE" == 0 && $# == 0 ]]; then
    die "no command given (see --help)"
fi

# Validate the GPIO line spec now: names end up in configfs paths and files.
GPIO_NAMES=()
if [[ -n "$GPIO_LINES" ]]; then
    if [[ "$GPIO_LINES" =~ ^[0-9]+$ ]]; then
        ((GPIO_LINES >= 1 && GPIO_LINES <= 64)) || die "--gpio count must be 1..64, got $GPIO_LINES"
        for ((i = 0; i < GPIO_LINES; i++)); do GPIO_NAMES+=(""); done
    else
        IFS=, read -r -a GPIO_NAMES <<<"$GPIO_LINES"
        ((${#GPIO_NAMES[@]} <= 64)) || die "--gpio: at most 64 lines"
        for n in "${GPIO_NAMES[@]}"; do
            [[ "$n" =~ ^[A-Za-z0-9_.-]{1,31}$ ]] ||
                die "--gpio: line name '$n' must be 1-31 chars of [A-Za-z0-9_.-]"
        done
    fi
fi

# Paths the guest hides behind its own tmpfs (or that are not real files):
# anything there is invisible inside the chroot.
hidden_in_guest() {
    case "$1/" in
    /tmp/* | /run/* | /var/tmp/* | /var/run/* | /var/lib/bluetooth/* | /root/* | /dev/* | /proc/* | /sys/*) return 0 ;;
    esac
    return 1
}

# ---------------------------------------------------------------- host tools
ensure_packages() {
    # pairs of "test:package"; a test is a command name or an absolute path
    local missing=() pair t p
    for pair in "$@"; do
        t="${pair%%:*}" p="${pair#*:}"
        if [[ "$t" == /* ]]; then [[ -e "$t" ]] && continue; else command -v "$t" >/dev/null && continue; fi
        [[ " ${missing[*]} " == *" $p "* ]] || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    if [[ $EUID -ne 0 ]]; then
        die "missing system packages: ${missing[*]} (run: sudo apt-get install -y ${missing[*]})"
    fi
    echo "run-in-vm: installing ${missing[*]}" >&2
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >"$CACHE/apt.log" 2>&1; then
        apt-get update >>"$CACHE/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >>"$CACHE/apt.log" 2>&1 ||
            die "apt-get install ${missing[*]} failed, see $CACHE/apt.log"
    fi
}

mkdir -p "$CACHE" || die "cannot create cache dir $CACHE"
CACHE="$(cd "$CACHE" && pwd)"
hidden_in_guest "$CACHE" && die "cache dir $CACHE is under a path the guest mounts a tmpfs on; set LATCHD_VM_CACHE elsewhere"
hidden_in_guest "$SCRIPT_DIR" && die "the repository ($REPO_ROOT) is under a path the guest hides (/tmp, /run...); move it"

[[ "$(uname -m)" == x86_64 ]] || die "only x86_64 hosts are supported (guest kernel is Debian amd64)"
command -v apt-get >/dev/null || die "apt-get not found: this rig needs a Debian-based host"

PKGS=(qemu-system-x86_64:qemu-system-x86 /bin/busybox:busybox-static cpio:cpio depmod:kmod
    dpkg-deb:dpkg timeout:coreutils flock:util-linux xz:xz-utils
    v4l2-ctl:v4l-utils aplay:alsa-utils gpioinfo:gpiod /sbin/hwclock:util-linux-extra)
((BLE)) && PKGS+=(bluetoothctl:bluez btmgmt:bluez /usr/libexec/bluetooth/bluetoothd:bluez dbus-daemon:dbus)
[[ -n "$GPIO_LINES" || "$ADC" == 1 ]] && PKGS+=(gcc-12:gcc-12 make:make)
[[ -n "$DISK" ]] && PKGS+=(/usr/sbin/mkfs.ext4:e2fsprogs /usr/sbin/mkfs.f2fs:f2fs-tools /usr/sbin/dmsetup:dmsetup)
# swtpm on the host; in the guest systemd-creds (systemd) dlopens the TSS2
# libraries, and tpm2-tools is there for inspecting the TPM by hand.
((TPM)) && PKGS+=(swtpm:swtpm swtpm_setup:swtpm-tools tpm2_getcap:tpm2-tools systemd-creds:systemd
    /usr/lib/x86_64-linux-gnu/libtss2-esys.so.0:libtss2-esys-3.0.2-0
    /usr/lib/x86_64-linux-gnu/libtss2-rc.so.0:libtss2-rc0
    /usr/lib/x86_64-linux-gnu/libtss2-mu.so.0:libtss2-mu0
    /usr/lib/x86_64-linux-gnu/libtss2-tcti-device.so.0:libtss2-tcti-device0)
((SYSTEMD)) && PKGS+=(/lib/systemd/systemd:systemd)
ensure_packages "${PKGS[@]}"
# busybox (dynamic) and busybox-static both ship /bin/busybox; only a static
# one runs in the initramfs, which has no libc.
if ! file -b /bin/busybox 2>/dev/null | grep -q 'statically linked' && ! dpkg -s busybox-static >/dev/null 2>&1; then
    die "/bin/busybox is not statically linked: apt-get install -y busybox-static"
fi

# ------------------------------------------------------------- kernel cache
exec 9>"$CACHE/.lock"
flock 9 # one builder at a time; parallel runs then share the result

# The kernel version is pinned by the first run (target/vm/kernel-version) so
# a point release in the archive does not silently rebuild everything.
if [[ -n "${LATCHD_VM_KERNEL:-}" ]]; then
    KVER="$LATCHD_VM_KERNEL"
elif [[ -s "$CACHE/kernel-version" ]]; then
    KVER="$(cat "$CACHE/kernel-version")"
else
    KVER="$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: linux-image-\(6\.1\.[0-9]*-[0-9]*-amd64\)$/\1/p' | head -n1)"
    if [[ -z "$KVER" ]]; then
        apt-get update >/dev/null 2>&1 || true
        KVER="$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: linux-image-\(6\.1\.[0-9]*-[0-9]*-amd64\)$/\1/p' | head -n1)"
    fi
    [[ -n "$KVER" ]] || die "cannot find a linux-image-6.1.*-amd64 package via apt (is this Debian 12 with its main + security sources?)"
fi
[[ "$KVER" =~ ^6\.1\.[0-9]+-[0-9]+-amd64$ ]] || die "kernel version '$KVER' is not of the form 6.1.0-N-amd64"
KDIR="$CACHE/$KVER"
mkdir -p "$KDIR" "$CACHE/debs"

fetch_deb() { # package -> path of the .deb in the cache
    local pkg="$1" f
    f="$(ls "$CACHE/debs/${pkg}_"*.deb 2>/dev/null | head -n1 || true)"
    if [[ -z "$f" ]]; then
        echo "run-in-vm: downloading $pkg" >&2
        (cd "$CACHE/debs" && apt-get download "$pkg" >"$CACHE/debs/.download.log" 2>&1) ||
            die "apt-get download $pkg failed: $(tail -n2 "$CACHE/debs/.download.log")"
        f="$(ls "$CACHE/debs/${pkg}_"*.deb 2>/dev/null | head -n1 || true)"
        [[ -n "$f" ]] || die "apt-get download $pkg produced no .deb"
    fi
    echo "$f"
}

# The init script is part of the initramfs: its hash and the module list
# decide whether a cached initramfs is still valid.
INIT_SRC="$SCRIPT_DIR/guest-init.sh"
[[ -r "$INIT_SRC" ]] || die "missing $INIT_SRC"
INITRD_KEY="$( (echo "$KVER $ALL_MODULES"; cat "$INIT_SRC") | sha256sum | cut -c1-16)"
INITRD="$KDIR/initramfs-$INITRD_KEY.cpio.gz"
VMLINUZ="$KDIR/vmlinuz"

MODTREE="$KDIR/modules" # full module tree, depmod'ed: lib/modules/$KVER

# The whole module tree stays in the cache (~390 MB): the guest bind-mounts
# it on /lib/modules so that the kernel's on-demand loads (crypto templates
# such as ctr(aes) for drbg, sha3 for jitterentropy...) and a test's own
# `modprobe` work. The initramfs carries only what is loaded at boot.
if [[ ! -s "$VMLINUZ" || ! -e "$MODTREE/.complete" ]]; then
    t0=$SECONDS
    deb="$(fetch_deb "linux-image-$KVER")"
    rm -rf "$MODTREE" && mkdir -p "$MODTREE"
    echo "run-in-vm: unpacking $(basename "$deb")" >&2
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$MODTREE" ./boot ./lib/modules ||
        die "cannot unpack $deb"
    depmod -b "$MODTREE" "$KVER" || die "depmod on the unpacked kernel failed"
    cp "$MODTREE/boot/vmlinuz-$KVER" "$VMLINUZ.new" && mv "$VMLINUZ.new" "$VMLINUZ"
    cp "$MODTREE/boot/config-$KVER" "$KDIR/config"
    rm -rf "${MODTREE:?}/boot"
    touch "$MODTREE/.complete"
    echo "$KVER" >"$CACHE/kernel-version"
    echo "run-in-vm: kernel $KVER unpacked in $((SECONDS - t0)) s" >&2
fi

if [[ ! -s "$INITRD" ]]; then
    t0=$SECONDS
    # Resolve the module closure through modules.dep; the subset gets its own
    # modules.dep for busybox modprobe in the initramfs.
    moddir="$MODTREE/lib/modules/$KVER"
    declare -A want=()
    for m in $ALL_MODULES; do
        paths="$(modprobe -d "$MODTREE" -S "$KVER" --show-depends "$m" 2>&1)" ||
            die "module $m not found in $KVER: $paths"
        while read -r kind path _; do
            [[ "$kind" == insmod ]] && want["$path"]=1
        done <<<"$paths"
    done
    root="$KDIR/initramfs-root"
    rm -rf "$root" && mkdir -p "$root"/{bin,sbin,dev,proc,sys,newroot,lib/modules/"$KVER"}
    for p in "${!want[@]}"; do
        rel="${p#"$MODTREE"/}"
        rel="${rel#./}"
        mkdir -p "$root/$(dirname "$rel")"
        cp "$p" "$root/$rel"
    done
    cp "$moddir"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$KVER/" 2>/dev/null || true
    depmod -b "$root" "$KVER" || die "depmod on the initramfs module subset failed"
    cp /bin/busybox "$root/bin/busybox"
    install -m 0755 "$INIT_SRC" "$root/init"
    (cd "$root" && find . -print0 | cpio --null -o -H newc --quiet | gzip -6 >"$INITRD.new") ||
        die "cpio of the initramfs failed"
    mv "$INITRD.new" "$INITRD"
    find "$KDIR" -maxdepth 1 -name 'initramfs-*.cpio.gz' ! -name "$(basename "$INITRD")" -delete
    rm -rf "$root"
    echo "run-in-vm: initramfs ($(du -h "$INITRD" | cut -f1), ${#want[@]} modules) built in $((SECONDS - t0)) s" >&2
fi

# gpio-sim is not built in Debian's kernel: build it out of tree from the
# matching linux-source (gpio-sim.c + irq_sim.c) against the matching headers.
# Patched with one module parameter, keep_value_on_free (default off, the
# upstream behaviour): when set, a released output line keeps the level it
# was last driven to instead of returning to its pull, as the GPIO blocks
# of most SoCs do. The motor fail-safe tests (vm_motor_failsafe) need that
# to see what a killed daemon leaves behind. The stamp file names the
# patches a cached module has; an older module is rebuilt.
GPIO_KO="$KDIR/gpio-sim/gpio-sim.ko"
GPIO_PATCHES="irq_to_desc keep_value_on_free"
build_gpio_sim() {
    local t0=$SECONDS kcommon gdir hdir src
    kcommon="linux-headers-${KVER%-amd64}-common"
    gdir="$KDIR/gpio-sim"
    hdir="$gdir/headers"
    rm -rf "$gdir" && mkdir -p "$hdir" "$gdir/src"
    for pkg in "linux-headers-$KVER" "$kcommon" linux-kbuild-6.1 linux-source-6.1; do
        fetch_deb "$pkg" >/dev/null
    done
    for pkg in "linux-headers-$KVER" "$kcommon" linux-kbuild-6.1; do
        dpkg -x "$(fetch_deb "$pkg")" "$hdir" || die "cannot unpack $pkg"
    done
    # The flavour Makefile includes the common one by absolute path; point it
    # at our private copy instead of installing the headers system-wide.
    sed -i 's#^include /usr/src/#include $(dir $(lastword $(MAKEFILE_LIST)))../#' \
        "$hdir/usr/src/linux-headers-$KVER/Makefile"
    src="$(fetch_deb linux-source-6.1)"
    local want_ver
    want_ver="$(dpkg-deb -f "$(fetch_deb "linux-headers-$KVER")" Version)"
    [[ "$(dpkg-deb -f "$src" Version)" == "$want_ver" ]] ||
        die "linux-source-6.1 $(dpkg-deb -f "$src" Version) does not match headers $want_ver; delete $CACHE/debs/linux-source-6.1_* and retry"
    echo "run-in-vm: extracting gpio-sim sources from linux-source-6.1" >&2
    dpkg-deb --fsys-tarfile "$src" | tar -xO ./usr/src/linux-source-6.1.tar.xz |
        tar -xJ -C "$gdir/src" --strip-components=1 --wildcards \
            'linux-source-6.1/drivers/gpio/gpio-sim.c' 'linux-source-6.1/drivers/gpio/gpiolib.h' \
            'linux-source-6.1/kernel/irq/irq_sim.c' || die "cannot extract gpio-sim sources"
    local b="$gdir/build"
    mkdir -p "$b"
    # The module is gpio-sim.o = gpio-sim-main.o + irq_sim.o: Debian lacks
    # CONFIG_IRQ_SIM, and irq_to_desc() is not exported, so irq_sim.c calls
    # the exported generic_handle_irq() instead (same effect for a simple irq).
    cp "$gdir/src/drivers/gpio/gpio-sim.c" "$b/gpio-sim-main.c"
    cp "$gdir/src/drivers/gpio/gpiolib.h" "$b/"
    cp "$gdir/src/kernel/irq/irq_sim.c" "$b/"
    sed -i 's/handle_simple_irq(irq_to_desc(irqnum))/generic_handle_irq(irqnum)/; /^EXPORT_SYMBOL_GPL/d' "$b/irq_sim.c"
    grep -q 'generic_handle_irq(irqnum)' "$b/irq_sim.c" || die "irq_sim.c changed upstream: the irq_to_desc patch no longer applies"
    # keep_value_on_free: the one line of gpio_sim_free() that restores the
    # pull becomes conditional.
    sed -i 's/^#include "gpiolib.h"$/&\n\nstatic bool keep_value_on_free;\nmodule_param(keep_value_on_free, bool, 0644);\nMODULE_PARM_DESC(keep_value_on_free, "a released line keeps its last level (as SoC GPIO blocks do)");/' "$b/gpio-sim-main.c"
    sed -i 's/^\(\s*\)\(__assign_bit(offset, chip->value[a-z_]*, !!test_bit(offset, chip->pull[a-z_]*));\)$/\1if (!keep_value_on_free)\n\1\t\2/' "$b/gpio-sim-main.c"
    [[ "$(grep -c 'keep_value_on_free' "$b/gpio-sim-main.c")" -ge 4 ]] ||
        die "gpio-sim.c changed upstream: the keep_value_on_free patch no longer applies"
    printf 'obj-m := gpio-sim.o\ngpio-sim-y := gpio-sim-main.o irq_sim.o\n' >"$b/Kbuild"
    make -C "$hdir/usr/src/linux-headers-$KVER" M="$b" modules >"$gdir/build.log" 2>&1 ||
        die "building gpio-sim failed, see $gdir/build.log"
    strip --strip-debug -o "$GPIO_KO" "$b/gpio-sim.ko" || die "strip gpio-sim.ko failed"
    echo "$GPIO_PATCHES" >"$gdir/patches"
    rm -rf "$hdir" "$gdir/src" "$b"
    # 139 MB we will not need again for this kernel.
    rm -f "$src"
    echo "run-in-vm: gpio-sim.ko built in $((SECONDS - t0)) s" >&2
}
if [[ -n "$GPIO_LINES" ]] && [[ ! -s "$GPIO_KO" || "$(cat "$KDIR/gpio-sim/patches" 2>/dev/null)" != "$GPIO_PATCHES" ]]; then
    build_gpio_sim
fi

# latchd-adc-sim (tests/vm/adc-sim): our own small module, built against the
# same private header unpack; rebuilt when its source changes.
ADC_SRC="$SCRIPT_DIR/adc-sim/latchd-adc-sim.c"
ADC_KEY="$( (echo "$KVER"; cat "$ADC_SRC") | sha256sum | cut -c1-16)"
ADC_KO="$KDIR/adc-sim/latchd-adc-sim-$ADC_KEY.ko"
build_adc_sim() {
    local t0=$SECONDS adir hdir kcommon
    kcommon="linux-headers-${KVER%-amd64}-common"
    adir="$KDIR/adc-sim"
    hdir="$adir/headers"
    rm -rf "$adir" && mkdir -p "$hdir" "$adir/build"
    for pkg in "linux-headers-$KVER" "$kcommon" linux-kbuild-6.1; do
        dpkg -x "$(fetch_deb "$pkg")" "$hdir" || die "cannot unpack $pkg"
    done
    sed -i 's#^include /usr/src/#include $(dir $(lastword $(MAKEFILE_LIST)))../#' \
        "$hdir/usr/src/linux-headers-$KVER/Makefile"
    cp "$ADC_SRC" "$adir/build/"
    printf 'obj-m := latchd-adc-sim.o\n' >"$adir/build/Kbuild"
    make -C "$hdir/usr/src/linux-headers-$KVER" M="$adir/build" modules >"$adir/build.log" 2>&1 ||
        die "building latchd-adc-sim failed, see $adir/build.log"
    strip --strip-debug -o "$ADC_KO" "$adir/build/latchd-adc-sim.ko" || die "strip latchd-adc-sim.ko failed"
    rm -rf "$hdir" "$adir/build"
    echo "run-in-vm: latchd-adc-sim.ko built in $((SECONDS - t0)) s" >&2
}
if [[ "$ADC" == 1 && ! -s "$ADC_KO" ]]; then
    build_adc_sim
fi
# BlueZ ≥ 5.80's btvirt (Debian 12's drops adverts: tests/vm/btvirt.sh).
BTVIRT=""
if ((BLE)); then
    BTVIRT="$(LATCHD_VM_CACHE="$CACHE" "$SCRIPT_DIR/btvirt.sh")" || die "no btvirt for the BLE rig (tests/vm/btvirt.sh)"
fi
flock -u 9

if ((PREPARE)); then
    echo "run-in-vm: cache ready in $CACHE (kernel $KVER)" >&2
    exit 0
fi

# --------------------------------------------------------------- run dir
if [[ -z "$RUN_DIR" ]]; then
    mkdir -p "$CACHE/runs"
    RUN_DIR="$(mktemp -d "$CACHE/runs/run-XXXXXXXX")"
else
    [[ "$RUN_DIR" == /* ]] || RUN_DIR="$PWD/$RUN_DIR"
    hidden_in_guest "$RUN_DIR" && die "run dir $RUN_DIR is under a path the guest hides"
    if ! mkdir -p "$(dirname "$RUN_DIR")" || ! mkdir "$RUN_DIR" 2>/dev/null; then
        die "--run-dir $RUN_DIR must not exist yet"
    fi
    RUN_DIR="$(cd "$RUN_DIR" && pwd)"
fi
hidden_in_guest "$RUN_DIR" && die "run dir $RUN_DIR is under a path the guest hides"
for p in "$RUN_DIR" "$MODTREE"; do
    [[ "$p" =~ ^[A-Za-z0-9_./-]+$ ]] || die "path '$p' has characters the kernel command line cannot carry"
done
CWD="$(cd "$CWD" 2>/dev/null && pwd)" || die "--cwd: no such directory"
hidden_in_guest "$CWD" && { log "cwd $CWD is hidden in the guest, using /"; CWD=/; }

# swtpm exits by itself when QEMU closes the control channel; kill it if
# QEMU never connected (or died early).
stop_swtpm() {
    if [[ -s "$RUN_DIR/swtpm.pid" ]]; then
        kill "$(cat "$RUN_DIR/swtpm.pid")" 2>/dev/null || true
        rm -f "$RUN_DIR/swtpm.pid"
    fi
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local rc=$?
    stop_swtpm
    if [[ "$KEEP" == 0 && "$rc" -ne "$RIG_FAIL" && "$rc" -ne 124 ]]; then
        rm -rf "$RUN_DIR"
    elif [[ "$rc" -eq "$RIG_FAIL" || "$rc" -eq 124 ]]; then
        echo "run-in-vm: run files kept in $RUN_DIR" >&2
    fi
}
trap cleanup EXIT

{
    q() { printf '%q' "$1"; }
    echo "VIDEO=$VIDEO SOUND=$SOUND BLE=$BLE"
    echo "GPIO_KO=$(q "$GPIO_KO")"
    echo "ADC=$ADC ADC_KO=$(q "$ADC_KO")"
    echo "GPIO_NAMES=($(for n in "${GPIO_NAMES[@]}"; do printf '%q ' "$n"; done))"
    echo "CMD_CWD=$(q "$CWD")"
    # The product's BlueZ configuration (one ATT bearer, no EATT) first;
    # --bluetoothd-args come after it.
    echo "BLUETOOTHD_ARGS=$(q "-f $REPO_ROOT/config/bluetooth/main.conf $BLUETOOTHD_ARGS")"
    echo "BLE_CONTROLLERS=$BLE_CONTROLLERS"
    echo "BTVIRT=$(q "$BTVIRT")"
    echo "TPM=$TPM SYSTEMD=$SYSTEMD"
} >"$RUN_DIR/options.sh"
{
    for e in "${ENVS[@]}"; do printf 'export %s=%q\n' "${e%%=*}" "${e#*=}"; done
    if (($# == 1)); then
        printf 'exec /bin/bash -c %q\n' "$1"
    else
        printf 'exec'
        printf ' %q' "$@"
        printf '\n'
    fi
} >"$RUN_DIR/command.sh"
cp "$SCRIPT_DIR/guest-setup.sh" "$RUN_DIR/guest-setup.sh"

MODS="$BASE_MODULES"
((VIDEO)) && MODS+=" $VIDEO_MODULES"
((SOUND)) && MODS+=" $SOUND_MODULES"
((BLE)) && MODS+=" $BLE_MODULES"
[[ -n "$GPIO_LINES" ]] && MODS+=" $GPIO_MODULES"

if [[ -z "$SMP" ]]; then
    SMP="$(nproc)"
    ((SMP > 4)) && SMP=4
fi

# quiet + loglevel keep the console readable; the command's output does not
# go through the console anyway (it is written to the run dir over 9p).
APPEND="console=ttyS0 quiet loglevel=4 panic=-1 rdinit=/init"
APPEND+=" latchd.run=$RUN_DIR latchd.modules=${MODS// /,} latchd.modtree=$MODTREE/lib/modules/$KVER"
((SYSTEMD)) && APPEND+=" latchd.init=systemd"
# Debugging aid, e.g. LATCHD_VM_KERNEL_ARGS="loglevel=7" to see every boot message.
APPEND+="${LATCHD_VM_KERNEL_ARGS:+ $LATCHD_VM_KERNEL_ARGS}"

SERIAL=(-serial "file:$RUN_DIR/console.log")
if ((VERBOSE)); then
    SERIAL=(-chardev "stdio,id=con0,signal=off,logfile=$RUN_DIR/console.log" -serial chardev:con0)
fi

# TCG, not KVM: nested KVM hangs the guest on the machines this runs on.
# shellcheck disable=SC2054 # the commas are QEMU's sub-option syntax
QEMU=(qemu-system-x86_64 -accel tcg,thread=multi -cpu "$CPU" -smp "$SMP" -m "$MEM"
    -nodefaults -no-user-config -display none -no-reboot -nic none
    "${SERIAL[@]}"
    -kernel "$VMLINUZ" -initrd "$INITRD" -append "$APPEND"
    -device virtio-rng-pci
    -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
    -virtfs "local,path=$RUN_DIR,mount_tag=latchdrun,security_model=none,multidevs=remap")
if [[ -n "$DISK" ]]; then
    # cache=writeback: the guest's flushes reach the host file; what the guest
    # had not flushed is lost with the VM, as with a power cut.
    QEMU+=(-drive "file=$DISK,format=raw,if=none,id=disk0,cache=writeback"
        -device virtio-blk-pci,drive=disk0)
fi

if ((TPM)); then
    # swtpm: one TPM 2.0 per run (or per --tpm-state dir), reached by QEMU
    # over its control socket; QEMU's tpm-tis device is what the guest's
    # built-in tpm_tis driver finds (/dev/tpm0, /dev/tpmrm0). The firmware
    # (SeaBIOS) sends TPM2_Startup, as on a board.
    if [[ -n "$TPM_STATE" ]]; then
        [[ "$TPM_STATE" == /* ]] || TPM_STATE="$PWD/$TPM_STATE"
    else
        TPM_STATE="$RUN_DIR/tpm"
    fi
    mkdir -p "$TPM_STATE" || die "cannot create TPM state dir $TPM_STATE"
    TPM_SOCK="$RUN_DIR/swtpm.sock"
    [[ ${#TPM_SOCK} -lt 100 ]] || die "swtpm socket path $TPM_SOCK is too long for a Unix socket"
    swtpm socket --tpm2 --tpmstate "dir=$TPM_STATE" --ctrl "type=unixio,path=$TPM_SOCK" \
        --log "file=$RUN_DIR/swtpm.log,level=1" --pid "file=$RUN_DIR/swtpm.pid" --daemon ||
        die "swtpm did not start (see $RUN_DIR/swtpm.log)"
    for _ in $(seq 50); do [[ -S "$TPM_SOCK" ]] && break; sleep 0.1; done
    [[ -S "$TPM_SOCK" ]] || die "swtpm did not create $TPM_SOCK"
    # shellcheck disable=SC2054 # the commas are QEMU's sub-option syntax
    QEMU+=(-chardev "socket,id=chrtpm,path=$TPM_SOCK" -tpmdev emulator,id=tpm0,chardev=chrtpm
        -device tpm-tis,tpmdev=tpm0)
fi
log "booting: ${QEMU[*]}"
t0="$(date +%s.%N)"
set +e
if ((VERBOSE)); then
    timeout -k 5 "$TIMEOUT" "${QEMU[@]}" 2>"$RUN_DIR/qemu.log" >&2 </dev/null
else
    timeout -k 5 "$TIMEOUT" "${QEMU[@]}" >"$RUN_DIR/qemu.log" 2>&1 </dev/null
fi
qrc=$?
set -e
((TPM)) && stop_swtpm
t1="$(date +%s.%N)"
WALL="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
echo "wall_seconds=$WALL" >>"$RUN_DIR/timing"

console_tail() {
    echo "---- last guest console lines ($RUN_DIR/console.log) ----" >&2
    tail -n 25 "$RUN_DIR/console.log" 2>/dev/null | tr -d '\r' >&2 || true
    [[ -s "$RUN_DIR/setup.log" ]] && { echo "---- guest setup log ----" >&2; tail -n 25 "$RUN_DIR/setup.log" >&2; }
    return 0
}

if ((qrc == 124 || qrc == 137)); then
    console_tail
    echo "run-in-vm: error: the VM did not finish within --timeout $TIMEOUT s and was killed" >&2
    exit 124
fi
if [[ ! -f "$RUN_DIR/status" && -f "$RUN_DIR/power-cut" ]]; then
    log "the guest cut its power, as $RUN_DIR/power-cut announced"
    echo 0 >"$RUN_DIR/status"
fi
if [[ ! -f "$RUN_DIR/status" ]]; then
    console_tail
    if [[ -s "$RUN_DIR/rig-error" ]]; then
        die "guest setup failed: $(cat "$RUN_DIR/rig-error")"
    fi
    [[ -s "$RUN_DIR/qemu.log" ]] && { echo "---- qemu ----" >&2; tail -n 10 "$RUN_DIR/qemu.log" >&2; }
    die "the guest ended without reporting a status (qemu exit $qrc)"
fi
STATUS="$(cat "$RUN_DIR/status")"
[[ "$STATUS" =~ ^[0-9]+$ ]] || die "guest wrote a malformed status '$STATUS'"

# A failed BLE test: bluetoothd's own words (and the rig's line when it
# crashed and was started again) go with the test's stderr, which the
# Rust side reads back — a CI log has nothing else to show.
if [[ "$STATUS" != 0 && -s "$RUN_DIR/bluetoothd.log" ]]; then
    { echo "---- bluetoothd.log (last 20 lines) ----"; tail -n 20 "$RUN_DIR/bluetoothd.log"; } >>"$RUN_DIR/stderr"
fi
cat "$RUN_DIR/stdout" 2>/dev/null || true
cat "$RUN_DIR/stderr" >&2 2>/dev/null || true
log "status $STATUS, wall ${WALL}s, $(tr '\n' ' ' <"$RUN_DIR/guest-timing" 2>/dev/null)"
exit "$STATUS"
