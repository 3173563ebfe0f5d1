//! The caller's side of `org.latchd.Diagnostics1`, used by `latchctl`.
//!
//! Every call goes to the well-known name `org.latchd`; the bus answers for
//! the daemon when it is not there (`ServiceUnknown`) or when the policy
//! forbids the caller (`AccessDenied`), and [`ClientError`] keeps those two
//! apart because a technician must do different things about them.
//!
//! Following events:
//!
//! ```text
//!  GetNameOwner(org.latchd) ─▶ :1.42          (NotRunning if none)
//!  AddMatch(signal, sender=:1.42, path, iface, member=EventLogged)
//!  AddMatch(NameOwnerChanged for org.latchd)
//!  next() ─▶ Some(event) … ─▶ None once :1.42 loses the name
//! ```
//!
//! Matching on the owner's *unique* name means nobody else on the bus can
//! inject a fake `EventLogged` into a technician's terminal.
use std::collections::HashMap;

use futures_util::StreamExt;
use zbus::fdo::DBusProxy;
use zbus::message::Type as MessageType;
use zbus::names::BusName;
use zbus::zvariant::OwnedValue;
use zbus::{Connection, MatchRule, MessageStream};

use super::properties::{from_properties, PropertyError};
use super::service::connection_builder;
use super::{BusChoice, DeviceCheck, Diagnostics, EventRecord, BUS_NAME, INTERFACE, OBJECT_PATH};

/// What went wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to the {bus}: {source}; is dbus-daemon running and the address right?"
    )]
    Connect {
        bus: BusChoice,
        #[source]
        source: zbus::Error,
    },
    #[error("latchd is not running: nobody owns `{BUS_NAME}` on the {0} (check `systemctl status latchd`)")]
    NotRunning(BusChoice),
    #[error("access denied by the D-Bus policy or latchd: {0}; run as root or as a member of the `latchd-tech` group")]
    AccessDenied(String),
    #[error("latchd answered with an error: {name}: {message}")]
    Failed { name: String, message: String },
    #[error(transparent)]
    Property(#[from] PropertyError),
    #[error("unexpected reply from latchd: {0}; is latchctl the same version as latchd?")]
    Reply(#[source] zbus::Error),
    #[error("D-Bus error: {0}")]
    Bus(#[source] zbus::Error),
}

fn classify(bus: &BusChoice, e: zbus::Error) -> ClientError {
    let (name, message) = match &e {
        zbus::Error::MethodError(name, message, _) => (
            name.as_str().to_string(),
            message.clone().unwrap_or_default(),
        ),
        zbus::Error::FDO(fdo) => {
            let full = fdo.to_string();
            match fdo.as_ref() {
                zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_) => {
                    return ClientError::NotRunning(bus.clone())
                }
                zbus::fdo::Error::AccessDenied(m) => return ClientError::AccessDenied(m.clone()),
                _ => {
                    return ClientError::Failed {
                        name: "org.freedesktop.DBus.Error".into(),
                        message: full,
                    }
                }
            }
        }
        _ => return ClientError::Bus(e),
    };
    match name.as_str() {
        "org.freedesktop.DBus.Error.ServiceUnknown"
        | "org.freedesktop.DBus.Error.NameHasNoOwner" => ClientError::NotRunning(bus.clone()),
        "org.freedesktop.DBus.Error.AccessDenied" => ClientError::AccessDenied(message),
        _ => ClientError::Failed { name, message },
    }
}

/// A connection to the bus on which latchd serves diagnostics.
pub struct DiagnosticsClient {
    bus: BusChoice,
    conn: Connection,
}

impl std::fmt::Debug for DiagnosticsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiagnosticsClient")
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

impl DiagnosticsClient {
    /// Connect to `bus`. This succeeds whether or not latchd runs; the
    /// first call tells.
    pub async fn connect(bus: &BusChoice) -> Result<Self, ClientError> {
        let conn = match connection_builder(bus) {
            Ok(b) => b.build().await,
            Err(e) => Err(e),
        }
        .map_err(|source| ClientError::Connect {
            bus: bus.clone(),
            source,
        })?;
        Ok(DiagnosticsClient {
            bus: bus.clone(),
            conn,
        })
    }

    async fn call<B>(
        &self,
        interface: &str,
        method: &str,
        body: &B,
    ) -> Result<zbus::Message, ClientError>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        self.conn
            .call_method(Some(BUS_NAME), OBJECT_PATH, Some(interface), method, body)
            .await
            .map_err(|e| classify(&self.bus, e))
    }

    /// Every property in one `GetAll`.
    pub async fn status(&self) -> Result<Diagnostics, ClientError> {
        let reply = self
            .call("org.freedesktop.DBus.Properties", "GetAll", &(INTERFACE,))
            .await?;
        let map: HashMap<String, OwnedValue> =
            reply.body().deserialize().map_err(ClientError::Reply)?;
        // The daemon refuses each property to a caller it does not allow
        // (issue 14 item 7), and a GetAll leaves refused properties out:
        // nothing at all means we were refused, not a version mismatch.
        if map.is_empty() {
            return Err(ClientError::AccessDenied(
                "latchd reported no property to this caller".into(),
            ));
        }
        Ok(from_properties(&map)?)
    }

    /// `SelfTest()`.
    pub async fn self_test(&self) -> Result<Vec<DeviceCheck>, ClientError> {
        let reply = self.call(INTERFACE, "SelfTest", &()).await?;
        let checks: Vec<(String, bool, String)> =
            reply.body().deserialize().map_err(ClientError::Reply)?;
        Ok(checks
            .into_iter()
            .map(|(device, ok, detail)| DeviceCheck { device, ok, detail })
            .collect())
    }

    /// `RecentEvents(limit)`: oldest first.
    pub async fn recent_events(&self, limit: u32) -> Result<Vec<EventRecord>, ClientError> {
        let reply = self.call(INTERFACE, "RecentEvents", &(limit,)).await?;
        event_records(&reply).map_err(ClientError::Reply)
    }

    /// `EventsBefore(before, limit)`: oldest first; `before` 0 = newest.
    pub async fn events_before(
        &self,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<EventRecord>, ClientError> {
        let reply = self
            .call(INTERFACE, "EventsBefore", &(before.unwrap_or(0), limit))
            .await?;
        event_records(&reply).map_err(ClientError::Reply)
    }

    /// `ExportDiagnostics()`: a JSON document.
    pub async fn export(&self) -> Result<String, ClientError> {
        let reply = self.call(INTERFACE, "ExportDiagnostics", &()).await?;
        reply.body().deserialize().map_err(ClientError::Reply)
    }

    /// Start receiving `EventLogged` from the current owner of `org.latchd`.
    /// Subscribing happens before this returns, so events logged after it
    /// are not missed.
    pub async fn subscribe_events(&self) -> Result<EventSubscription, ClientError> {
        let dbus = DBusProxy::new(&self.conn).await.map_err(ClientError::Bus)?;
        let name = BusName::from_static_str(BUS_NAME).map_err(|e| ClientError::Bus(e.into()))?;
        let owner_changes = dbus
            .receive_name_owner_changed_with_args(&[(0, BUS_NAME)])
            .await
            .map_err(ClientError::Bus)?;
        let owner = dbus
            .get_name_owner(name)
            .await
            .map_err(|e| classify(&self.bus, zbus::Error::from(e)))?;
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender(owner.as_str())
            .and_then(|b| b.path(OBJECT_PATH))
            .and_then(|b| b.interface(INTERFACE))
            .and_then(|b| b.member("EventLogged"))
            .map_err(ClientError::Bus)?
            .build()
            .to_owned();
        let events = MessageStream::for_match_rule(rule, &self.conn, None)
            .await
            .map_err(|e| classify(&self.bus, e))?;
        Ok(EventSubscription {
            events,
            owner_changes,
            owner: owner.to_string(),
        })
    }
}

/// `EventLogged` signals from one run of the daemon.
pub struct EventSubscription {
    events: MessageStream,
    owner_changes: zbus::fdo::NameOwnerChangedStream,
    /// Unique name of the daemon we follow.
    owner: String,
}

impl std::fmt::Debug for EventSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSubscription")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl EventSubscription {
    /// The next event; `None` once the daemon has left the bus.
    pub async fn next(&mut self) -> Result<Option<EventRecord>, ClientError> {
        loop {
            tokio::select! {
                msg = self.events.next() => {
                    let Some(msg) = msg else { return Ok(None) };
                    let msg = msg.map_err(ClientError::Bus)?;
                    let (id, time, kind, detail): (u64, i64, String, String) =
                        msg.body().deserialize().map_err(ClientError::Reply)?;
                    return Ok(Some(EventRecord { id, time, kind, detail }));
                }
                change = self.owner_changes.next() => {
                    let Some(change) = change else { return Ok(None) };
                    let args = change.args().map_err(ClientError::Bus)?;
                    let old_is_ours = args.old_owner().as_ref().map(|o| o.as_str()) == Some(self.owner.as_str());
                    if old_is_ours {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

/// The `a(txss)` events of a `RecentEvents` / `EventsBefore` reply.
fn event_records(reply: &zbus::Message) -> zbus::Result<Vec<EventRecord>> {
    let events: Vec<(u64, i64, String, String)> = reply.body().deserialize()?;
    Ok(events
        .into_iter()
        .map(|(id, time, kind, detail)| EventRecord {
            id,
            time,
            kind,
            detail,
        })
        .collect())
}
