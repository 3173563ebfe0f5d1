//! A TPM 2.0 emulator (`swtpm`) for one test, reached by `systemd-creds`
//! through the TSS2 swtpm TCTI (`SYSTEMD_TPM2_DEVICE=swtpm:path=…`).
//! Needs the Debian packages `swtpm`, `tpm2-tools` and the TSS2 libraries
//! systemd-creds loads; scripts/test.sh installs them.
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use latchd::store::keystore::SystemdCreds;

/// A TPM 2.0 emulator for one test, killed on drop.
pub struct Swtpm {
    child: Child,
    dir: tempfile::TempDir,
    sock: PathBuf,
}

impl Swtpm {
    pub fn start() -> Swtpm {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("tpm.sock");
        let ctrl = dir.path().join("tpm.sock.ctrl");
        let child = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={}", dir.path().display()))
            .arg("--server")
            .arg(format!("type=unixio,path={}", sock.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", ctrl.display()))
            .arg("--flags")
            .arg("startup-clear")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("swtpm (Debian package swtpm) starts");
        // Waiting for a socket is not a timing assertion: the limit only
        // turns a hang into a failure.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(sock.exists() && ctrl.exists()) {
            assert!(Instant::now() < deadline, "swtpm made no sockets");
            std::thread::sleep(Duration::from_millis(20));
        }
        // swtpm alone has no resource manager (the kernel's /dev/tpmrm0
        // is one): systemd-creds leaves its sessions loaded and the third
        // call finds no free session slot. Flush after each call, as the
        // kernel does when the file is closed.
        let wrapper = dir.path().join("systemd-creds");
        std::fs::write(
            &wrapper,
            "#!/bin/sh\nsystemd-creds \"$@\"; rc=$?\n\
             for t in -t -l -s; do tpm2_flushcontext $t >/dev/null 2>&1; done\nexit $rc\n",
        )
        .unwrap();
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        Swtpm { child, dir, sock }
    }

    /// `systemd-creds` against this TPM (and never the host's secret).
    pub fn creds(&self) -> SystemdCreds {
        SystemdCreds {
            program: self.dir.path().join("systemd-creds"),
            env: vec![
                (
                    "TPM2TOOLS_TCTI".into(),
                    format!("swtpm:path={}", self.sock.display()),
                ),
                (
                    "SYSTEMD_TPM2_DEVICE".into(),
                    format!("swtpm:path={}", self.sock.display()),
                ),
                // Never the host's own /var/lib/systemd/credential.secret.
                (
                    "SYSTEMD_CREDENTIAL_SECRET".into(),
                    self.dir.path().join("host.secret").display().to_string(),
                ),
            ],
            ..SystemdCreds::default()
        }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
