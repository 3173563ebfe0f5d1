SUMMARY = "latchd smart lock daemon"
DESCRIPTION = "The daemon that runs a smart door lock: keypad and voice menu, \
               users and credentials, motor and sensors, BLE app channel, Wi-Fi, \
               camera and event log, with a read-only D-Bus diagnostics interface \
               for technicians and the latchctl command line."
# HOMEPAGE/BUGTRACKER: not set until the project publishes them (lint.sh
# suppresses those two findings and says why).
SECTION = "console/utils"
LICENSE = "Apache-2.0 | MIT"
# The licence line of Cargo.toml ([package] license = ...).
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=8;endline=8;md5=b62ec12929096a5479d83e0aae7a4fe2"

# By default: the checkout this layer lives in (see conf/layer.conf), at its
# newest commit. For a release build point both at the published tree, e.g.
#   LATCHD_SRC_URI = "git://example.org/latchd.git;protocol=https;branch=main"
#   SRCREV:pn-latchd = "<commit>"
LATCHD_SRC_URI ??= "git://${LATCHD_REPO_DIR};protocol=file;branch=main"
PV = "0.1.0+git"
SRC_URI = "${LATCHD_SRC_URI};destsuffix=git"
# Deliberate for the in-tree default: the layer builds its own checkout.
# Release builds pin SRCREV (see above).
# nooelint: oelint.vars.autorev
SRCREV ??= "${AUTOREV}"
CVE_PRODUCT = "latchd"

require latchd-crates.inc

# UNPACKDIR exists from styhead on; scarthgap unpacks into WORKDIR.
S = "${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}/git"

inherit cargo cargo-update-recipe-crates pkgconfig systemd useradd features_check

REQUIRED_DISTRO_FEATURES = "systemd"

# Cargo features. "face" = face recognition (tract, pure Rust);
# "board-linux" = GPIO/SPI/evdev/ALSA/V4L2/BlueZ backends and the Matter
# node (feature "matter", pure Rust); "board-rpi" adds
# Raspberry Pi GPIO. Without board-linux the image runs the simulated board.
# board-linux builds against ALSA and libdbus (BlueZ client) and needs clang
# for the V4L2 bindings (clang-native comes from meta-clang).
PACKAGECONFIG ??= "face board-linux"
PACKAGECONFIG[face] = "--features=face"
PACKAGECONFIG[board-linux] = "--features=board-linux,,alsa-lib clang-native,alsa-lib"
PACKAGECONFIG[board-rpi] = "--features=board-rpi"

# Board pin map installed as /etc/latchd/board.toml: config/board-${LATCHD_BOARD}.toml.
LATCHD_BOARD ??= "example"

# Where the device key rests ([key] storage in latchd.toml): "tpm2" (a
# systemd credential only the board's TPM 2.0 opens; needs the TPM drivers,
# MACHINE_FEATURES "tpm2", and systemd's tpm2 PACKAGECONFIG, both set by this
# layer), "host" (systemd's host key: boards without a TPM) or "file"
# (development only: a plain key file a flash dump reveals).
LATCHD_KEY_STORAGE ??= "tpm2"

# The board's RTC by its kernel name ([lock] rtc): an owner's time sync is
# kept as an offset from it and survives reboots. Safe on an RTC without a
# battery: one that restarts behind its reading at the sync voids the sync.
# "" for a board with none.
LATCHD_RTC ??= "rtc0"

# Cargo.toml says rust-version = "1.95": refuse early, with the way out,
# rather than fail deep inside do_compile.
# nooelint: oelint.task.noanonpython
python () {
    rust = (d.getVar('RUSTVERSION') or '0').rstrip('%')
    if bb.utils.vercmp_string_op(rust, '1.95', '<'):
        raise bb.parse.SkipRecipe("latchd needs Rust >= 1.95 but this build has %s; "
                                  "use a release whose oe-core ships it or add a newer "
                                  "Rust (e.g. meta-lts-mixins) and set RUSTVERSION" % rust)
}

# oe-core's cargo class passes no features of its own: only ours, from
# PACKAGECONFIG, on top of none.
do_compile() {
    oe_cargo_build --no-default-features ${PACKAGECONFIG_CONFARGS}
}

# The cargo class's do_install puts every binary of the build in ${bindir}:
# latchd, latchctl and latchd-coast (run by latchd.service's ExecStopPost=
# so the motor coasts however the daemon ended; docs/motor-safety.md).
do_install:append() {
    test -x ${D}${bindir}/latchd-coast || bbfatal "latchd-coast is not installed: latchd.service's ExecStopPost= needs it"
    install -d ${D}${sysconfdir}/latchd
    # The documented defaults, but on the real board: board = "linux" with
    # the installed board file (as shipped the file selects the sim board).
    sed -e 's,^board = "sim"$,board = "linux",' \
        -e 's,^# board_file = ".*/latchd/board.toml"$,board_file = "${sysconfdir}/latchd/board.toml",' \
        -e 's,^storage = "file"$,storage = "${LATCHD_KEY_STORAGE}",' \
        -e 's,^rtc = ""$,rtc = "${LATCHD_RTC}",' \
        -e 's,^wpa_supplicant_config = ""$,wpa_supplicant_config = "${localstatedir}/lib/latchd-wifi/wpa_supplicant.conf",' \
        ${S}/config/latchd.toml > ${D}${sysconfdir}/latchd/latchd.toml
    chmod 0644 ${D}${sysconfdir}/latchd/latchd.toml
    install -m 0644 ${S}/config/board-${LATCHD_BOARD}.toml ${D}${sysconfdir}/latchd/board.toml

    install -d ${D}${systemd_system_unitdir}
    for unit in latchd.service latchd-key.service; do
        sed -e 's,/usr/bin/,${bindir}/,g' ${S}/systemd/$unit > ${D}${systemd_system_unitdir}/$unit
        chmod 0644 ${D}${systemd_system_unitdir}/$unit
    done
    if [ "${LATCHD_KEY_STORAGE}" = "file" ]; then
        # No credential to load: the daemon keeps its own key file.
        install -d ${D}${systemd_system_unitdir}/latchd.service.d
        printf '[Service]\nLoadCredentialEncrypted=\n' \
            > ${D}${systemd_system_unitdir}/latchd.service.d/key-file.conf
    fi

    # The lock's BlueZ configuration and the drop-in that runs bluetoothd
    # with it (no EATT: BTP and latchd's channel need ordered indications).
    install -m 0644 ${S}/config/bluetooth/main.conf ${D}${sysconfdir}/latchd/bluetooth.conf
    install -d ${D}${systemd_system_unitdir}/bluetooth.service.d
    sed -e 's,/usr/libexec/,${libexecdir}/,g' -e 's,/etc/,${sysconfdir}/,g' \
        ${S}/systemd/bluetooth.service.d/latchd.conf \
        > ${D}${systemd_system_unitdir}/bluetooth.service.d/latchd.conf
    chmod 0644 ${D}${systemd_system_unitdir}/bluetooth.service.d/latchd.conf

    install -d ${D}${nonarch_libdir}/tmpfiles.d
    sed -e 's,/usr/share/,${datadir}/,g' -e 's,/var/,${localstatedir}/,g' \
        ${S}/systemd/latchd.tmpfiles > ${D}${nonarch_libdir}/tmpfiles.d/latchd.conf
    chmod 0644 ${D}${nonarch_libdir}/tmpfiles.d/latchd.conf
    # The template of wpa_supplicant's configuration for the lock's Wi-Fi
    # (update_config=1); tmpfiles copies it to the persistent partition.
    install -d ${D}${datadir}/latchd
    install -m 0644 ${S}/config/wpa_supplicant/latchd.conf ${D}${datadir}/latchd/wpa_supplicant.conf

    install -d ${D}${nonarch_libdir}/sysusers.d
    install -m 0644 ${S}/systemd/latchd.sysusers ${D}${nonarch_libdir}/sysusers.d/latchd.conf

    install -d ${D}${nonarch_base_libdir}/udev/rules.d
    install -m 0644 ${S}/systemd/60-latchd.rules ${D}${nonarch_base_libdir}/udev/rules.d/60-latchd.rules

    install -d ${D}${datadir}/dbus-1/system.d
    install -m 0644 ${S}/config/dbus/org.latchd.conf ${D}${datadir}/dbus-1/system.d/org.latchd.conf

    # The voice prompts (board file `[voice] assets`), one folder per
    # language: the language can be changed on the lock and from the app,
    # so every set is installed. Face models are not in the source tree:
    # an image that enables `[face]` adds them to ${datadir}/latchd/models
    # from its own layer.
    install -d ${D}${datadir}/latchd/prompts/en ${D}${datadir}/latchd/prompts/zh-TW
    install -m 0644 ${S}/assets/prompts/en/*.wav ${D}${datadir}/latchd/prompts/en/
    install -m 0644 ${S}/assets/prompts/zh-TW/*.wav ${D}${datadir}/latchd/prompts/zh-TW/

    install -d ${D}${docdir}/latchd
    install -m 0644 ${S}/docs/dbus.md ${D}${docdir}/latchd/dbus.md
}

# The same accounts as systemd/latchd.sysusers, made at rootfs time.
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system latchd-tech; --system gpio; --system spi; --system bluetooth"
USERADD_PARAM:${PN} = "--system --home-dir ${localstatedir}/lib/latchd --no-create-home \
                       --shell ${base_sbindir}/nologin --user-group \
                       --groups gpio,spi,dialout,video,audio,input,bluetooth latchd"

SYSTEMD_SERVICE:${PN} = "latchd.service latchd-key.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

# No BBCLASSEXTEND: a daemon for the target board only; a native or SDK
# variant makes no sense (lint.sh suppresses the suggestion).

FILES:${PN} += "\
    ${datadir}/dbus-1/system.d/org.latchd.conf \
    ${nonarch_base_libdir}/udev/rules.d/60-latchd.rules \
    ${nonarch_libdir}/sysusers.d/latchd.conf \
    ${nonarch_libdir}/tmpfiles.d/latchd.conf \
    ${systemd_system_unitdir}/latchd.service.d \
    ${systemd_system_unitdir}/bluetooth.service.d \
"
CONFFILES:${PN} = "${sysconfdir}/latchd/latchd.toml ${sysconfdir}/latchd/board.toml ${sysconfdir}/latchd/bluetooth.conf"

# tzdata: `[lock] time_zone` reads /usr/share/zoneinfo (schedules in local
# time, DST included).
RDEPENDS:${PN} = "bluez5 dbus tzdata"
# Wi-Fi provisioning talks to wpa_supplicant's D-Bus API (or NetworkManager's,
# `[wifi] backend`); an image may choose either.
RRECOMMENDS:${PN} = "wpa-supplicant"
