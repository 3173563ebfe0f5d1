//! The daemon's own check of who calls it (issue 14 item 7). The bus
//! policy (`config/dbus/org.latchd.conf`) is the first gate; this is the
//! second, so a missing or mis-installed policy file does not open the
//! interface to every local account.
//!
//! ```text
//!  call / Get / GetAll ─► sender ─► cached verdict? ─► yes: it
//!                                      │ no
//!                                      ▼
//!        GetConnectionCredentials(sender) (the bus daemon's view of the peer)
//!        allowed = uid 0 · uid = the daemon's own · latchd-tech ∈ its groups
//! ```
//!
//! Groups are the peer process's own (`UnixGroupIDs`, what the kernel told
//! the bus at connect time); a bus that does not report them falls back to
//! the user's groups in the group database. Verdicts are cached per unique
//! name: a bus never reuses one, and a peer's credentials do not change
//! while it stays connected.
use std::collections::HashMap;
use std::ffi::CString;
use std::sync::Mutex;

use zbus::fdo;
use zbus::message::Header;
use zbus::Connection;

/// The group whose members may read diagnostics (besides root).
pub const TECH_GROUP: &str = "latchd-tech";

/// Who may call, and the verdicts so far.
#[derive(Debug)]
pub(crate) struct CallerGate {
    /// `latchd-tech`'s gid; `None` when the group does not exist (then
    /// only root and the daemon's own account pass).
    tech_gid: Option<u32>,
    own_uid: u32,
    verdicts: Mutex<HashMap<String, bool>>,
}

impl CallerGate {
    /// Resolve the group now (at start-up), not per call.
    pub(crate) fn new() -> Self {
        let tech_gid = nix::unistd::Group::from_name(TECH_GROUP)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw());
        CallerGate {
            tech_gid,
            own_uid: nix::unistd::geteuid().as_raw(),
            verdicts: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` when the message's sender may use the interface. `header` is
    /// `None` when the daemon reads its own property (to announce a
    /// change): always allowed.
    pub(crate) async fn check(
        &self,
        connection: &Connection,
        header: Option<&Header<'_>>,
    ) -> fdo::Result<()> {
        let Some(header) = header else {
            return Ok(());
        };
        let Some(sender) = header.sender() else {
            return Err(denied("the call carries no sender"));
        };
        let sender = sender.to_string();
        let cached = self.lock().get(&sender).copied();
        let allowed = match cached {
            Some(v) => v,
            None => {
                let v = self.ask(connection, &sender).await?;
                self.lock().insert(sender, v);
                v
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(denied(&format!(
                "only root and members of the group {TECH_GROUP} may read the lock's diagnostics"
            )))
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, bool>> {
        // A poisoned map only means a panic elsewhere while inserting a
        // verdict; the verdicts themselves are still sound.
        self.verdicts.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn ask(&self, connection: &Connection, sender: &str) -> fdo::Result<bool> {
        let bus = fdo::DBusProxy::new(connection).await?;
        let name = zbus::names::BusName::try_from(sender)
            .map_err(|e| denied(&format!("sender {sender:?} is not a bus name: {e}")))?;
        let creds = bus.get_connection_credentials(name).await?;
        let Some(uid) = creds.unix_user_id() else {
            return Ok(false);
        };
        let groups = match creds.unix_group_ids() {
            Some(g) => g.clone(),
            None => groups_of(uid),
        };
        Ok(self.allows(uid, &groups))
    }

    /// Root; the daemon's own account (it owns the data anyway); a member
    /// of `latchd-tech`.
    fn allows(&self, uid: u32, groups: &[u32]) -> bool {
        uid == 0 || uid == self.own_uid || self.tech_gid.is_some_and(|gid| groups.contains(&gid))
    }
}

fn denied(why: &str) -> fdo::Error {
    fdo::Error::AccessDenied(why.to_string())
}

/// The user's groups in the group database (when the bus does not report
/// the peer's own). Unknown user: none.
fn groups_of(uid: u32) -> Vec<u32> {
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else {
        return Vec::new();
    };
    let Ok(name) = CString::new(user.name) else {
        return Vec::new();
    };
    nix::unistd::getgrouplist(&name, user.gid)
        .map(|gs| gs.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_own_account_and_technicians_pass_others_do_not() {
        let gate = CallerGate {
            tech_gid: Some(990),
            own_uid: 998,
            verdicts: Mutex::new(HashMap::new()),
        };
        assert!(gate.allows(0, &[]));
        assert!(gate.allows(998, &[]));
        assert!(gate.allows(65534, &[65534, 990]));
        assert!(!gate.allows(65534, &[65534]));
        let no_group = CallerGate {
            tech_gid: None,
            ..gate
        };
        assert!(!no_group.allows(65534, &[990]));
    }
}
