# The lock's BlueZ configuration (files/main.conf: one ATT bearer, no EATT,
# so BTP and latchd's channel get their indications in order).
FILESEXTRAPATHS:prepend := "${THISDIR}/files:"
SRC_URI += "file://main.conf"

# UNPACKDIR exists from styhead on; scarthgap unpacks into WORKDIR.
LATCHD_BLUEZ_FILES = "${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}"

do_install:append() {
    install -d ${D}${sysconfdir}/bluetooth
    install -m 0644 ${LATCHD_BLUEZ_FILES}/main.conf ${D}${sysconfdir}/bluetooth/main.conf
}
