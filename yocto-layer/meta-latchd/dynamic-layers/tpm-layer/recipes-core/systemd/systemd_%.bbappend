# systemd-creds and LoadCredentialEncrypted= need systemd built with TPM2
# support (tpm2-tss from meta-security's meta-tpm), for latchd's device key
# with [key] storage = "tpm2" (LATCHD_KEY_STORAGE, see latchd_git.bb). Only
# for builds that opt in with DISTROOVERRIDES:append = ":latchd-tpm2".
PACKAGECONFIG:append:latchd-tpm2 = " tpm2"
