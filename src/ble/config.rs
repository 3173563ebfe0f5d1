//! `[ble]`: the lock's Bluetooth LE service (pairing, the app's secure
//! channel, Improv Wi-Fi provisioning; `docs/ble-protocol.md`).
use serde::Deserialize;

/// `[ble]` in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BleConfig {
    /// Serve the GATT application through BlueZ. On by default: pairing
    /// the owner's app (B-5) needs it. Builds without the `board-linux`
    /// feature have no BlueZ client and say so once at start-up.
    pub enabled: bool,
    /// The adapter (`hci0`...); empty: BlueZ's default adapter.
    pub adapter: String,
}

impl Default for BleConfig {
    fn default() -> Self {
        BleConfig {
            enabled: true,
            adapter: String::new(),
        }
    }
}

impl BleConfig {
    /// The adapter name to ask BlueZ for, if one is configured.
    pub fn adapter(&self) -> Option<&str> {
        (!self.adapter.is_empty()).then_some(self.adapter.as_str())
    }

    /// Checked at load: an adapter name BlueZ could never have.
    pub fn validate(&self) -> Result<(), &'static str> {
        let ok = self.adapter.is_empty()
            || (self.adapter.len() <= 16
                && self
                    .adapter
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        if ok {
            Ok(())
        } else {
            Err("use an adapter name such as \"hci0\" (letters, digits, - and _), or leave it empty for the default adapter")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_adapter_names() {
        let c = BleConfig::default();
        assert!(c.enabled && c.adapter().is_none());
        let named = BleConfig {
            adapter: "hci1".into(),
            ..c.clone()
        };
        assert_eq!(named.adapter(), Some("hci1"));
        assert!(named.validate().is_ok());
        let bad = BleConfig {
            adapter: "hci0/../x".into(),
            ..c
        };
        assert!(bad.validate().is_err());
    }
}
