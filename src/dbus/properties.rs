//! [`Diagnostics`] ↔ D-Bus property values, in one table.
//!
//! The service uses [`to_values`] to build `PropertiesChanged` from the
//! difference of two snapshots; `latchctl` uses [`from_properties`] to
//! rebuild a snapshot from one `GetAll` reply. Keeping both directions side
//! by side (and the round-trip test below) is what keeps the property
//! getters of `service.rs`, the signal, and the client in agreement.
use std::collections::HashMap;

use zbus::zvariant::{OwnedValue, Structure, Value};

use super::{Capacity, Diagnostics};

/// Every property of `org.latchd.Diagnostics1`, in introspection order.
pub const PROPERTY_NAMES: [&str; 35] = [
    "FirmwareVersion",
    "SerialNumber",
    "Board",
    "UptimeSeconds",
    "LockState",
    "BoltState",
    "DoorState",
    "BatteryPercent",
    "BatteryMillivolts",
    "ExternalPower",
    "WifiState",
    "WifiRssi",
    "BleState",
    "MatterState",
    "MatterFabrics",
    "MotorCycles",
    "LastJam",
    "ActiveAlarms",
    "LockoutActive",
    "LockoutRemainingSeconds",
    "Users",
    "UsersLimit",
    "Admins",
    "Faces",
    "Palms",
    "Fingerprints",
    "Passcodes",
    "StorageHealth",
    "KeyStorage",
    "WallClock",
    "TrustedTimeFloor",
    "TimeSource",
    "UpdateState",
    "UpdateSlots",
    "LastUpdate",
];

/// What an unknown reading looks like on the bus (issue 22: never a
/// plausible value). `docs/dbus.md` lists them.
pub const UNKNOWN_BATTERY_PERCENT: u8 = 255;
/// No battery that runs the lock reads 0 mV.
pub const UNKNOWN_MILLIVOLTS: u32 = 0;
/// A received signal is always below 0 dBm.
pub const UNKNOWN_RSSI: i16 = 0;
/// 1970-01-01 is never a time the lock trusts.
pub const UNKNOWN_TIME: i64 = 0;
/// Matter allows at most 5 fabrics (rs-matter here: 5), never 255.
pub const UNKNOWN_FABRICS: u8 = 255;
/// No trusted time source: the wall time is unknown.
pub const UNKNOWN_TIME_SOURCE: &str = "none";

fn known<T: PartialEq>(v: T, unknown: T) -> Option<T> {
    (v != unknown).then_some(v)
}

/// A `GetAll` reply that does not describe a [`Diagnostics`]: the daemon
/// is a different version than this client, or something else owns the name.
#[derive(Debug, thiserror::Error)]
pub enum PropertyError {
    #[error("the daemon did not report property `{0}`; is latchctl the same version as latchd?")]
    Missing(&'static str),
    #[error("property `{name}` has an unexpected type: {source}; is latchctl the same version as latchd?")]
    Type {
        name: &'static str,
        #[source]
        source: zbus::zvariant::Error,
    },
}

fn capacity(c: &Capacity) -> Value<'static> {
    Value::Structure(Structure::from((c.enrolled, c.limit, c.per_user_limit)))
}

/// The value of every property, in [`PROPERTY_NAMES`] order.
pub(crate) fn to_values(d: &Diagnostics) -> [(&'static str, Value<'static>); 35] {
    [
        ("FirmwareVersion", Value::from(d.firmware_version.clone())),
        ("SerialNumber", Value::from(d.serial_number.clone())),
        ("Board", Value::from(d.board.clone())),
        ("UptimeSeconds", Value::from(d.uptime_s)),
        ("LockState", Value::from(d.lock_state.clone())),
        ("BoltState", Value::from(d.bolt_state.clone())),
        ("DoorState", Value::from(d.door_state.clone())),
        (
            "BatteryPercent",
            Value::from(d.battery_percent.unwrap_or(UNKNOWN_BATTERY_PERCENT)),
        ),
        (
            "BatteryMillivolts",
            Value::from(d.battery_mv.unwrap_or(UNKNOWN_MILLIVOLTS)),
        ),
        ("ExternalPower", Value::from(d.external_power)),
        ("WifiState", Value::from(d.wifi_state.clone())),
        ("WifiRssi", Value::from(d.wifi_rssi.unwrap_or(UNKNOWN_RSSI))),
        ("BleState", Value::from(d.ble_state.clone())),
        ("MatterState", Value::from(d.matter_state.clone())),
        (
            "MatterFabrics",
            Value::from(d.matter_fabrics.unwrap_or(UNKNOWN_FABRICS)),
        ),
        ("MotorCycles", Value::from(d.motor_cycles)),
        ("LastJam", Value::from(d.last_jam)),
        ("ActiveAlarms", Value::from(d.active_alarms.clone())),
        ("LockoutActive", Value::from(d.lockout_active)),
        (
            "LockoutRemainingSeconds",
            Value::from(d.lockout_remaining_s),
        ),
        ("Users", Value::from(d.users)),
        ("UsersLimit", Value::from(d.users_limit)),
        ("Admins", Value::from(d.admins)),
        ("Faces", capacity(&d.faces)),
        ("Palms", capacity(&d.palms)),
        ("Fingerprints", capacity(&d.fingerprints)),
        ("Passcodes", capacity(&d.passcodes)),
        ("StorageHealth", Value::from(d.storage_health.clone())),
        ("KeyStorage", Value::from(d.key_storage.clone())),
        (
            "WallClock",
            Value::from(d.wall_clock.unwrap_or(UNKNOWN_TIME)),
        ),
        (
            "TrustedTimeFloor",
            Value::from(d.time_floor.unwrap_or(UNKNOWN_TIME)),
        ),
        (
            "TimeSource",
            Value::from(
                d.time_source
                    .clone()
                    .unwrap_or_else(|| UNKNOWN_TIME_SOURCE.into()),
            ),
        ),
        ("UpdateState", Value::from(d.update_state.clone())),
        ("UpdateSlots", Value::from(d.update_slots.clone())),
        ("LastUpdate", Value::from(d.last_update.clone())),
    ]
}

/// The properties whose value differs between `old` and `new`.
pub(crate) fn changed(
    old: &Diagnostics,
    new: &Diagnostics,
) -> HashMap<&'static str, Value<'static>> {
    to_values(old)
        .into_iter()
        .zip(to_values(new))
        .filter(|((_, a), (_, b))| a != b)
        .map(|(_, (name, value))| (name, value))
        .collect()
}

fn value(
    map: &HashMap<String, OwnedValue>,
    name: &'static str,
) -> Result<Value<'static>, PropertyError> {
    let owned = map.get(name).ok_or(PropertyError::Missing(name))?;
    // try_clone only fails for file descriptors, which no property carries.
    let owned = owned
        .try_clone()
        .map_err(|source| PropertyError::Type { name, source })?;
    Ok(Value::from(owned))
}

fn get<T>(map: &HashMap<String, OwnedValue>, name: &'static str) -> Result<T, PropertyError>
where
    T: TryFrom<Value<'static>, Error = zbus::zvariant::Error>,
{
    T::try_from(value(map, name)?).map_err(|source| PropertyError::Type { name, source })
}

fn get_capacity(
    map: &HashMap<String, OwnedValue>,
    name: &'static str,
) -> Result<Capacity, PropertyError> {
    let structure: Structure<'static> = get(map, name)?;
    let (enrolled, limit, per_user_limit) = <(u32, u32, u32)>::try_from(structure)
        .map_err(|source| PropertyError::Type { name, source })?;
    Ok(Capacity {
        enrolled,
        limit,
        per_user_limit,
    })
}

/// Rebuild a snapshot from an `org.freedesktop.DBus.Properties.GetAll` reply.
pub fn from_properties(map: &HashMap<String, OwnedValue>) -> Result<Diagnostics, PropertyError> {
    Ok(Diagnostics {
        firmware_version: get(map, "FirmwareVersion")?,
        serial_number: get(map, "SerialNumber")?,
        board: get(map, "Board")?,
        uptime_s: get(map, "UptimeSeconds")?,
        lock_state: get(map, "LockState")?,
        bolt_state: get(map, "BoltState")?,
        door_state: get(map, "DoorState")?,
        battery_percent: known(get(map, "BatteryPercent")?, UNKNOWN_BATTERY_PERCENT),
        battery_mv: known(get(map, "BatteryMillivolts")?, UNKNOWN_MILLIVOLTS),
        external_power: get(map, "ExternalPower")?,
        wifi_state: get(map, "WifiState")?,
        wifi_rssi: known(get(map, "WifiRssi")?, UNKNOWN_RSSI),
        ble_state: get(map, "BleState")?,
        matter_state: get(map, "MatterState")?,
        matter_fabrics: known(get(map, "MatterFabrics")?, UNKNOWN_FABRICS),
        motor_cycles: get(map, "MotorCycles")?,
        last_jam: get(map, "LastJam")?,
        active_alarms: get(map, "ActiveAlarms")?,
        lockout_active: get(map, "LockoutActive")?,
        lockout_remaining_s: get(map, "LockoutRemainingSeconds")?,
        users: get(map, "Users")?,
        users_limit: get(map, "UsersLimit")?,
        admins: get(map, "Admins")?,
        faces: get_capacity(map, "Faces")?,
        palms: get_capacity(map, "Palms")?,
        fingerprints: get_capacity(map, "Fingerprints")?,
        passcodes: get_capacity(map, "Passcodes")?,
        storage_health: get(map, "StorageHealth")?,
        key_storage: get(map, "KeyStorage")?,
        wall_clock: known(get(map, "WallClock")?, UNKNOWN_TIME),
        time_floor: known(get(map, "TrustedTimeFloor")?, UNKNOWN_TIME),
        time_source: known(get(map, "TimeSource")?, UNKNOWN_TIME_SOURCE.to_string()),
        update_state: get(map, "UpdateState")?,
        update_slots: get(map, "UpdateSlots")?,
        last_update: get(map, "LastUpdate")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Diagnostics {
        Diagnostics {
            serial_number: "LD-0001".into(),
            wifi_rssi: Some(-61),
            battery_percent: Some(0),
            time_floor: Some(1_700_000_000),
            time_source: Some("ntp".into()),
            last_jam: 1_700_000_000,
            active_alarms: vec!["tamper".into()],
            faces: Capacity {
                enrolled: 4,
                limit: 50,
                per_user_limit: 3,
            },
            ..Diagnostics::default()
        }
    }

    #[test]
    fn table_is_in_name_order() {
        let names: Vec<_> = to_values(&sample()).iter().map(|(n, _)| *n).collect();
        assert_eq!(names, PROPERTY_NAMES);
    }

    #[test]
    fn round_trips_through_owned_values() {
        let d = sample();
        let map: HashMap<String, OwnedValue> = to_values(&d)
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.try_into_owned().expect("no fds")))
            .collect();
        assert_eq!(from_properties(&map).expect("decodes"), d);
    }

    #[test]
    fn unknown_readings_round_trip_as_unknown() {
        let d = Diagnostics::default();
        let map: HashMap<String, OwnedValue> = to_values(&d)
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.try_into_owned().expect("no fds")))
            .collect();
        assert_eq!(map["BatteryPercent"], OwnedValue::from(255u8));
        let back = from_properties(&map).expect("decodes");
        assert_eq!(back.battery_percent, None);
        assert_eq!(back.battery_mv, None);
        assert_eq!(back.wifi_rssi, None);
        assert_eq!(back.wall_clock, None);
        assert_eq!(
            map["TimeSource"],
            OwnedValue::from(zbus::zvariant::Str::from("none"))
        );
        assert_eq!(back.time_source, None);
        assert_eq!(map["MatterFabrics"], OwnedValue::from(255u8));
        assert_eq!(back.matter_fabrics, None);
        assert_eq!(back, d);
    }

    #[test]
    fn missing_property_is_named() {
        let mut map: HashMap<String, OwnedValue> = to_values(&sample())
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.try_into_owned().expect("no fds")))
            .collect();
        map.remove("LockState");
        let err = from_properties(&map).expect_err("LockState is missing");
        assert!(err.to_string().contains("LockState"), "{err}");
    }

    #[test]
    fn changed_lists_only_differences() {
        let old = sample();
        let mut new = old.clone();
        new.battery_percent = Some(41);
        new.active_alarms.clear();
        let diff = changed(&old, &new);
        let mut names: Vec<_> = diff.keys().copied().collect();
        names.sort_unstable();
        assert_eq!(names, ["ActiveAlarms", "BatteryPercent"]);
        assert_eq!(diff["BatteryPercent"], Value::from(41u8));
        assert!(changed(&old, &old).is_empty());
    }
}
