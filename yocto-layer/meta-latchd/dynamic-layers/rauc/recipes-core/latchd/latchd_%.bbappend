# Software updates through RAUC (issue 20), parsed only when meta-rauc is in
# the build (conf/layer.conf, BBFILES_DYNAMIC).
#
# * org.latchd.rauc.conf (config/dbus/latchd-rauc.conf): RAUC's installer
#   for root and the service user only. RAUC's own file lets anyone call
#   it; ours sorts after it in system.d, so its default deny wins.
# * 50-latchd.rules (config/polkit/50-latchd.rules): lets user latchd ask
#   logind to reboot into the new slot (the daemon has no login session).
#   polkit comes from meta-oe; without it logind lets only root reboot and
#   an update's restart fails with logind's error (reported to the owner).

LATCHD_POLKIT = "${@bb.utils.contains('BBFILE_COLLECTIONS', 'openembedded-layer', 'polkit', '', d)}"

# The rules directory belongs to polkitd (0700): its account must exist in
# the sysroot for the chown below.
DEPENDS += "${LATCHD_POLKIT}"

do_install:append() {
    install -d ${D}${datadir}/dbus-1/system.d
    install -m 0644 ${S}/config/dbus/latchd-rauc.conf ${D}${datadir}/dbus-1/system.d/org.latchd.rauc.conf
    if [ -n "${LATCHD_POLKIT}" ]; then
        install -d -m 0700 ${D}${datadir}/polkit-1/rules.d
        chown polkitd:root ${D}${datadir}/polkit-1/rules.d
        install -m 0644 ${S}/config/polkit/50-latchd.rules ${D}${datadir}/polkit-1/rules.d/50-latchd.rules
    fi
}

FILES:${PN} += "\
    ${datadir}/dbus-1/system.d/org.latchd.rauc.conf \
    ${datadir}/polkit-1/rules.d \
"
# The polkit entry is a variable (empty without meta-oe), which the order
# check cannot place.
# nooelint: oelint.vars.dependsordered
RDEPENDS:${PN} += "rauc ${LATCHD_POLKIT}"
