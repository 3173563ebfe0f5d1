//! The Matter node in the daemon (issue 18): its label code for system
//! information, read once at start-up, and the node's thread, which
//! reaches the lock only through the [`Link`] (`matter/link_port.rs`),
//! like BLE and MQTT.
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::link::{Link, MatterHealth};
use crate::store::Store;

/// The Matter manual code for system information (B-4.10), made with the
/// onboarding secret at the first start of a lock with a Matter node. An
/// unreadable secret is logged (the node then refuses to start) and not
/// spoken.
pub fn label_code(config: &Config, store: &mut Store) -> Option<String> {
    if !config.matter.enabled {
        return None;
    }
    #[cfg(feature = "matter")]
    {
        use crate::matter::onboarding::{Onboarding, ONBOARDING_KEY};
        use crate::matter::BlobError;
        use crate::store::MatterScope;
        let loaded = store
            .matter_blob(MatterScope::Label, ONBOARDING_KEY)
            .map_err(|e| BlobError(e.to_string()));
        let made = Onboarding::load_or_create_with(
            move || loaded,
            |b| {
                store
                    .put_matter_blob(MatterScope::Label, ONBOARDING_KEY, b)
                    .map_err(|e| BlobError(e.to_string()))
            },
            &mut rand_core::OsRng,
        );
        match made {
            Ok(o) => Some(o.manual_code()),
            Err(e) => {
                tracing::error!("{e}");
                None
            }
        }
    }
    #[cfg(not(feature = "matter"))]
    {
        let _ = store;
        None
    }
}

/// The running Matter node, if this build and the config have one.
#[derive(Debug, Default)]
pub struct MatterNode {
    #[cfg(feature = "matter")]
    handle: Option<crate::matter::MatterHandle>,
}

impl MatterNode {
    /// Start the node as `[matter]` says. A node that cannot start is
    /// logged; the lock runs on without it.
    pub fn start(
        config: &Config,
        link: &Link,
        serial: &str,
        radios: crate::matter::Radios,
        shutdown: CancellationToken,
    ) -> MatterNode {
        if !config.matter.enabled {
            link.health().set_matter(MatterHealth::Off);
            return MatterNode::default();
        }
        #[cfg(feature = "matter")]
        {
            let identity = crate::matter::Identity {
                serial: serial.to_owned(),
                firmware: env!("CARGO_PKG_VERSION").into(),
            };
            let port = crate::matter::LinkPort::start(link.clone(), shutdown.clone());
            match crate::matter::spawn(config.matter.clone(), identity, radios, port, shutdown) {
                Ok(handle) => MatterNode {
                    handle: Some(handle),
                },
                Err(e) => {
                    tracing::error!("Matter: cannot start the node's thread: {e}");
                    link.health().set_matter(MatterHealth::Failed(format!(
                        "cannot start the node's thread: {e}"
                    )));
                    MatterNode::default()
                }
            }
        }
        #[cfg(not(feature = "matter"))]
        {
            let _ = (serial, radios, shutdown);
            link.health().set_matter(MatterHealth::Unavailable(
                "this build has no Matter node (built without the `matter` feature)".into(),
            ));
            tracing::warn!(
                "Matter: this build has no Matter node (built without the `matter` feature); [matter] is ignored"
            );
            MatterNode::default()
        }
    }

    /// Wait for the node to stop (the shutdown token was cancelled).
    pub async fn join(self) {
        #[cfg(feature = "matter")]
        if let Some(h) = self.handle {
            h.join().await;
        }
    }
}
