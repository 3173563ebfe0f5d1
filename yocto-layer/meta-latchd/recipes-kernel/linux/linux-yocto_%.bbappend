# The TPM 2.0 drivers latchd's device key needs (see README.md, "The device
# key and the TPM"), for machines that declare MACHINE_FEATURES "tpm2".
# Kernels that do not inherit kernel-yocto (vendor BSP kernels) take the same
# options from recipes-kernel/linux/files/latchd-tpm2.cfg in their own way.
FILESEXTRAPATHS:prepend := "${THISDIR}/files:"
SRC_URI:append = "${@bb.utils.contains('MACHINE_FEATURES', 'tpm2', ' file://latchd-tpm2.cfg', '', d)}"
