#!/bin/busybox sh
# /init of the rig's initramfs (busybox only; see run-in-vm.sh for the flow).
#
# Loads the modules named on the kernel command line, mounts the host root
# (9p, read-only) and the run dir (9p, writable, same absolute path), gives
# the chroot its own /dev /proc /sys /tmp /run, then runs the run dir's
# guest-setup.sh inside the chroot and powers off. Any failure here is a rig
# failure: it is written to <run dir>/rig-error when the run dir is mounted.
/bin/busybox --install -s /bin
export PATH=/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

RUN="" MODS="" MODTREE="" INIT=""
for w in $(cat /proc/cmdline); do
    case "$w" in
    latchd.run=*) RUN="${w#latchd.run=}" ;;
    latchd.modules=*) MODS="${w#latchd.modules=}" ;;
    latchd.modtree=*) MODTREE="${w#latchd.modtree=}" ;;
    latchd.init=*) INIT="${w#latchd.init=}" ;;
    esac
done

stop() {
    echo "LATCHD_VM_INIT_END"
    sync
    reboot -f
    sleep 5
}
fail() {
    echo "latchd-vm init: error: $*"
    if [ -n "$RUN" ] && [ -d "/newroot$RUN" ]; then
        echo "init: $*" >"/newroot$RUN/rig-error"
    fi
    stop
}

[ -n "$RUN" ] || fail "no latchd.run= on the kernel command line"

# 9p first so errors can be reported into the run dir.
for m in virtio_pci 9pnet_virtio 9p; do
    modprobe "$m" || fail "modprobe $m failed"
done
mkdir -p /newroot
# msize: bigger 9p messages cut the round trips when loading host binaries.
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /newroot ||
    fail "cannot mount the host root over 9p (tag hostroot)"
[ -d "/newroot$RUN" ] || fail "run dir $RUN is not visible in the host root"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 latchdrun "/newroot$RUN" ||
    fail "cannot mount the run dir over 9p (tag latchdrun)"

# The chroot gets its own /dev /proc /sys (second mounts of the same
# instances, so busybox here keeps working too) and an empty /tmp and /run.
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp || fail "tmpfs /tmp"
mount -t tmpfs -o mode=0755 tmpfs /newroot/run || fail "tmpfs /run"
mount -t devtmpfs devtmpfs /newroot/dev || fail "devtmpfs in the chroot"
mount -t proc proc /newroot/proc || fail "proc in the chroot"
mount -t sysfs sysfs /newroot/sys || fail "sysfs in the chroot"

# Modules the kernel asks for on demand (crypto templates, protocol
# families...) come from the full cached tree on the host, loaded by the
# host's kmod modprobe inside the chroot. The helper runs in this root.
if [ -n "$MODTREE" ] && [ -e "/newroot$MODTREE/modules.dep" ]; then
    PREFIX="${MODTREE%/lib/modules/*}"
    printf '#!/bin/busybox sh\nexec /bin/busybox chroot /newroot /sbin/modprobe -d %s "$@"\n' "$PREFIX" >/sbin/modprobe
    chmod 0755 /sbin/modprobe
    echo /sbin/modprobe >/proc/sys/kernel/modprobe
    echo "LATCHD_VM_MODPROBE_ROOT=$PREFIX" >"/newroot$RUN/modprobe-root"
else
    echo "latchd-vm init: warning: no module tree at $MODTREE, on-demand module loads will fail"
fi

for m in $(echo "$MODS" | tr ',' ' '); do
    modprobe "$m" || fail "modprobe $m failed"
done

if [ "$INIT" = systemd ]; then
    # --systemd: systemd becomes PID 1 (exec keeps the pid) inside the same
    # chroot, and runs guest-setup.sh as a oneshot unit of a target of its
    # own; when that unit ends, systemd reboots at once, which with QEMU's
    # -no-reboot ends the VM. Nothing of the host's default target
    # starts; a command adds units in /run/systemd/system. The kernel's
    # module helper stays this initramfs's wrapper (usermode helpers run in
    # the initial root, not in the chroot).
    units="/newroot$RUN/units"
    mkdir -p "$units" || fail "cannot create $units"
    cat >"$units/latchd-vm.target" <<EOF || fail "cannot write latchd-vm.target"
[Unit]
Description=latchd VM rig: the command under systemd
Requires=latchd-vm-command.service
After=latchd-vm-command.service
EOF
    cat >"$units/latchd-vm-command.service" <<EOF || fail "cannot write latchd-vm-command.service"
[Unit]
Description=latchd VM rig command
DefaultDependencies=no
SuccessAction=reboot-immediate
FailureAction=reboot-immediate

[Service]
Type=oneshot
ExecStart=/bin/bash $RUN/guest-setup.sh $RUN
StandardOutput=append:$RUN/setup.log
StandardError=append:$RUN/setup.log
TimeoutStartSec=infinity
EOF
    # systemd mounts its own /run: with a /run it did not mount, a
    # service's credentials directory ends up unreadable by its user. The
    # rig's units come from the run dir through $SYSTEMD_UNIT_PATH (the
    # trailing colon keeps the default search path).
    umount /newroot/run || fail "cannot unmount the rig's /run for systemd"
    echo "LATCHD_VM_SYSTEMD_EXEC"
    exec env SYSTEMD_UNIT_PATH="$RUN/units:" chroot /newroot /lib/systemd/systemd \
        --unit=latchd-vm.target --log-target=console --log-level=notice --show-status=false
    fail "cannot exec systemd in the chroot"
fi

chroot /newroot /bin/bash "$RUN/guest-setup.sh" "$RUN"
echo "LATCHD_VM_SETUP_EXIT=$?"
stop
