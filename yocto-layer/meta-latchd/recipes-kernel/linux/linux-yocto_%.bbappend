# The TPM 2.0 drivers latchd's device key needs (README.md, "The device key
# and the TPM"). Only for builds that opt in with
#   DISTROOVERRIDES:append = ":latchd-tpm2"
# so that adding the layer alone changes no other recipe. Kernels that do
# not inherit kernel-yocto (vendor BSP kernels) take the same options from
# files/latchd-tpm2.cfg in their own way.
FILESEXTRAPATHS:prepend:latchd-tpm2 := "${THISDIR}/files:"
SRC_URI:append:latchd-tpm2 = " file://latchd-tpm2.cfg"
