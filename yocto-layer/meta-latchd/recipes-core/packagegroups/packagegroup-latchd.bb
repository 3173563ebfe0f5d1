SUMMARY = "latchd smart lock: the daemon and what it needs at run time"
DESCRIPTION = "Add this one package to an image to get a working lock: \
               latchd and latchctl, BlueZ for the app channel, D-Bus for diagnostics."
SECTION = "console/utils"

LICENSE = "MIT"

inherit packagegroup

RDEPENDS:${PN} = "\
    bluez5 \
    dbus \
    latchd \
"
