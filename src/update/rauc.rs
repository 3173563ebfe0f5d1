//! RAUC's D-Bus API (`de.pengutronix.rauc.Installer` at `/` on the
//! system bus), as far as latchd uses it: check a bundle (`Info`),
//! install one (`InstallBundle`, then `Progress` and `Completed`), read
//! the slots (`GetSlotStatus`, `BootSlot`) and mark one (`Mark`).
//!
//! Every call goes to RAUC; nothing here reads a bundle. A D-Bus error
//! from RAUC (a bad signature, a wrong compatible, no space) comes back as
//! [`RaucError::Refused`] with RAUC's own message, which the engine logs.
use std::collections::HashMap;

use futures_util::StreamExt;
use zbus::zvariant::{OwnedValue, Value};

use crate::dbus::BusChoice;

pub const SERVICE: &str = "de.pengutronix.rauc";
pub const PATH: &str = "/";
pub const INTERFACE: &str = "de.pengutronix.rauc.Installer";

/// What went wrong talking to RAUC.
#[derive(Debug, thiserror::Error)]
pub enum RaucError {
    #[error("cannot reach RAUC ({SERVICE}) on the {bus}: {source}")]
    Connect {
        bus: BusChoice,
        #[source]
        source: zbus::Error,
    },
    /// RAUC answered with an error: its message, as RAUC words it.
    #[error("{0}")]
    Refused(String),
    #[error("RAUC failed: {0}")]
    Failed(String),
    #[error("RAUC's D-Bus answer was not understood: {0}")]
    Protocol(#[source] zbus::Error),
}

impl From<zbus::Error> for RaucError {
    fn from(e: zbus::Error) -> Self {
        match e {
            // The remote error's message is RAUC's own (e.g. "signature
            // verification failed: ...").
            zbus::Error::MethodError(_, Some(msg), _) => RaucError::Refused(msg),
            zbus::Error::MethodError(name, None, _) => RaucError::Refused(name.to_string()),
            zbus::Error::FDO(fdo) => RaucError::Refused(fdo.to_string()),
            other => RaucError::Protocol(other),
        }
    }
}

/// One slot as `GetSlotStatus` reports it (the fields latchd shows).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Slot {
    /// e.g. `rootfs.0`.
    pub name: String,
    pub bootname: String,
    /// `booted`, `active` or `inactive`.
    pub state: String,
    /// `good` or `bad` (from the bootloader), empty if RAUC does not say.
    pub boot_status: String,
    /// The version of the bundle last installed into it, if RAUC knows.
    pub version: String,
}

/// A connection to RAUC.
#[derive(Debug, Clone)]
pub struct Rauc {
    proxy: zbus::Proxy<'static>,
    /// `PropertiesChanged` of the installer (`Progress`).
    props: zbus::fdo::PropertiesProxy<'static>,
}

fn string_of(dict: &HashMap<String, OwnedValue>, key: &str) -> String {
    dict.get(key)
        .and_then(|v| String::try_from(v.clone()).ok())
        .unwrap_or_default()
}

impl Rauc {
    pub async fn connect(bus: &BusChoice) -> Result<Rauc, RaucError> {
        let connect = |source| RaucError::Connect {
            bus: bus.clone(),
            source,
        };
        let conn = crate::dbus::connection_builder(bus)
            .map_err(connect)?
            .build()
            .await
            .map_err(connect)?;
        Self::on(&conn).await.map_err(connect)
    }

    /// RAUC on an existing connection.
    pub async fn on(conn: &zbus::Connection) -> zbus::Result<Rauc> {
        let proxy = zbus::proxy::Builder::new(conn)
            .destination(SERVICE)?
            .path(PATH)?
            .interface(INTERFACE)?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        let props = zbus::fdo::PropertiesProxy::builder(conn)
            .destination(SERVICE)?
            .path(PATH)?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        Ok(Rauc { proxy, props })
    }

    /// `Info(bundle) -> (compatible, version)`: RAUC fetches the bundle,
    /// checks its signature against the keyring and reads the manifest.
    pub async fn info(&self, source: &str) -> Result<(String, String), RaucError> {
        Ok(self.proxy.call("Info", &(source,)).await?)
    }

    /// `Mark(state, slot)`: `good`, `bad` or `active`; `booted`, `other`
    /// or a slot name. Returns RAUC's (slot name, message).
    pub async fn mark(&self, state: &str, slot: &str) -> Result<(String, String), RaucError> {
        Ok(self.proxy.call("Mark", &(state, slot)).await?)
    }

    pub async fn boot_slot(&self) -> Result<String, RaucError> {
        Ok(self.proxy.get_property::<String>("BootSlot").await?)
    }

    pub async fn compatible(&self) -> Result<String, RaucError> {
        Ok(self.proxy.get_property::<String>("Compatible").await?)
    }

    pub async fn last_error(&self) -> Result<String, RaucError> {
        Ok(self.proxy.get_property::<String>("LastError").await?)
    }

    pub async fn operation(&self) -> Result<String, RaucError> {
        Ok(self.proxy.get_property::<String>("Operation").await?)
    }

    /// Every slot, in RAUC's order.
    pub async fn slots(&self) -> Result<Vec<Slot>, RaucError> {
        let raw: Vec<(String, HashMap<String, OwnedValue>)> =
            self.proxy.call("GetSlotStatus", &()).await?;
        Ok(raw
            .into_iter()
            .map(|(name, d)| Slot {
                bootname: string_of(&d, "bootname"),
                state: string_of(&d, "state"),
                boot_status: string_of(&d, "boot-status"),
                version: string_of(&d, "bundle.version"),
                name,
            })
            .collect())
    }

    /// `InstallBundle(source, {})`, then follow `Progress` until
    /// `Completed`: `on_progress` hears each percentage. `Ok` once RAUC
    /// reports success; RAUC's `LastError` otherwise.
    pub async fn install(
        &self,
        source: &str,
        mut on_progress: impl FnMut(u8),
    ) -> Result<(), RaucError> {
        // Subscribed before the call, so no signal is missed.
        let mut completed = self.proxy.receive_signal("Completed").await?;
        let mut progress = self.props.receive_properties_changed().await?;
        let args: HashMap<&str, Value<'_>> = HashMap::new();
        self.proxy
            .call::<_, _, ()>("InstallBundle", &(source, args))
            .await?;
        loop {
            tokio::select! {
                Some(change) = progress.next() => {
                    let Ok(args) = change.args() else { continue };
                    if args.interface_name().as_str() != INTERFACE {
                        continue;
                    }
                    if let Some(v) = args.changed_properties().get("Progress") {
                        if let Ok((percent, _message, _depth)) =
                            <(i32, String, i32)>::try_from(v.clone())
                        {
                            on_progress(u8::try_from(percent.clamp(0, 100)).unwrap_or(0));
                        }
                    }
                }
                c = completed.next() => {
                    let Some(msg) = c else {
                        return Err(RaucError::Failed("RAUC left the bus during the install".into()));
                    };
                    let result: i32 = msg.body().deserialize().map_err(RaucError::Protocol)?;
                    if result == 0 {
                        return Ok(());
                    }
                    let why = self.last_error().await.unwrap_or_default();
                    return Err(RaucError::Failed(if why.is_empty() {
                        format!("install ended with result {result}")
                    } else {
                        why
                    }));
                }
            }
        }
    }
}
