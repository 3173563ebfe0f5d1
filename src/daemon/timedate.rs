//! Whether systemd says the system clock is NTP-synchronised
//! (`org.freedesktop.timedate1`, property `NTPSynchronized`): one of the
//! trusted time sources of issue 13 item 3.
//!
//! ```text
//!  connect ─► Get(NTPSynchronized) ─► clock.set_ntp_synchronized(v)
//!     │            ▲                      │
//!     │            └── PropertiesChanged, timedated (re)started,
//!     │                or every minute while not synchronised
//!     └─ no bus / no timedated: not synchronised (fail closed), retried
//!        with back-off up to an hour
//! ```
//!
//! timedated computes the property from the kernel's NTP state and does
//! not always signal it, so an unsynchronised clock is asked again every
//! minute until it is synchronised; a synchronised one is believed until
//! timedate1 says otherwise. The engine checks every reading against its
//! trusted-time floor anyway, so a clock stepped back while still
//! "synchronised" is refused there.
use std::time::Duration;

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::dbus::BusChoice;
use crate::link::Clock;

const SERVICE: &str = "org.freedesktop.timedate1";
const PATH: &str = "/org/freedesktop/timedate1";
const PROPERTY: &str = "NTPSynchronized";
/// How often an unsynchronised clock is asked again.
const RECHECK: Duration = Duration::from_secs(60);
/// Longest wait between attempts to reach the bus.
const BACKOFF_CAP: Duration = Duration::from_secs(3600);

/// Watch timedate1 on `bus` until shutdown.
pub fn spawn(bus: BusChoice, clock: Clock, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_secs(5);
        let mut logged = false;
        loop {
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = watch(&bus, &clock) => r,
            };
            clock.set_ntp_synchronized(false);
            if let Err(e) = outcome {
                if !logged {
                    tracing::warn!(
                        "cannot read NTP synchronisation from {SERVICE} on the {bus}: {e}; \
                         the system clock is not trusted until an owner syncs the time"
                    );
                    logged = true;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_CAP);
        }
    })
}

async fn synchronised(proxy: &zbus::Proxy<'_>) -> zbus::Result<bool> {
    proxy.get_property::<bool>(PROPERTY).await
}

/// Follow the property; returns when the connection fails.
async fn watch(bus: &BusChoice, clock: &Clock) -> zbus::Result<()> {
    let conn = crate::dbus::connection_builder(bus)?.build().await?;
    let proxy = zbus::Proxy::new(&conn, SERVICE, PATH, SERVICE).await?;
    let props = zbus::fdo::PropertiesProxy::builder(&conn)
        .destination(SERVICE)?
        .path(PATH)?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let mut changes = props.receive_properties_changed().await?;
    let dbus = zbus::fdo::DBusProxy::new(&conn).await?;
    let mut owners = dbus
        .receive_name_owner_changed_with_args(&[(0, SERVICE)])
        .await?;
    let mut last = None;
    loop {
        let synced = synchronised(&proxy).await?;
        clock.set_ntp_synchronized(synced);
        if last != Some(synced) {
            tracing::info!(synchronised = synced, "NTP synchronisation ({SERVICE})");
            last = Some(synced);
        }
        let recheck = async {
            if synced {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(RECHECK).await
            }
        };
        tokio::select! {
            c = changes.next() => if c.is_none() { return Ok(()) },
            o = owners.next() => if o.is_none() { return Ok(()) },
            _ = recheck => {}
        }
    }
}
