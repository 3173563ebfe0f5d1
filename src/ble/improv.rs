//! Improv Wi-Fi over BLE (<https://www.improv-wifi.com/ble/>, revision 2.2),
//! sans-IO: the open provisioning standard Home Assistant
//! (`py-improv-ble-client`), browsers and the app use to give the lock its
//! 2.4 GHz Wi-Fi credentials during pairing (B-5.1).
//!
//! GATT service `00467768-6228-2272-4663-277478268000`:
//!
//! | characteristic | UUID suffix | access | carries |
//! |---|---|---|---|
//! | current state  | …8001 | read, notify | one byte, [`State`] |
//! | error state    | …8002 | read, notify | one byte, [`ErrorState`] |
//! | RPC command    | …8003 | write, write without response | `[cmd, len, data…, checksum]` |
//! | RPC result     | …8004 | read, notify | `[cmd, len, strings…, checksum]` (read: the last result) |
//! | capabilities   | …8005 | read         | [`CAPABILITY_IDENTIFY`] \| [`CAPABILITY_DEVICE_INFO`] \| [`CAPABILITY_SCAN`] |
//!
//! The advertisement carries the service UUID and, under the 16-bit UUID
//! `0x4677` ([`SERVICE_DATA_UUID`]), the service data
//! [`Improv::service_data`] `[state, capabilities, 0, 0, 0, 0]` (Improv
//! 2.0), renewed on every state change: Home Assistant's discovery filter
//! (`improv_ble_client.device_filter`) needs both, and offers the device
//! only while the state is not provisioning or provisioned.
//!
//! `checksum` is the low byte of the sum of every preceding byte. A command
//! may arrive split over several writes; bytes are buffered (at most
//! 258 = 2 + 255 + 1) until `len + 3` bytes are there. Every RPC answers
//! with one result packet: device info four strings (firmware, version,
//! hardware, device name), a scan `ssid, rssi, auth` triples (auth `YES` /
//! `NO`, as many as fit 255 data bytes, in the backend's order: strongest
//! first), Wi-Fi settings the redirect URL or no string.
//!
//! ```text
//!   AuthorizationRequired ──pairing mode on (physical presence: SET held)──► Authorized
//!          ▲   pairing mode off                                                 │ ▲
//!          └────────────────────────────────────────────────────────────────────┤ │ pairing mode on
//!                                                           send Wi-Fi settings │ │ (set up again)
//!                                                                               ▼ │
//!   Provisioned ◄──connect Ok (RPC result: redirect URL)── Provisioning ──► Output::ApplyCredentials
//!                  connect Err → error 0x03, back to Authorized (or AuthorizationRequired)
//! ```
//!
//! Authorisation is the lock's pairing mode, decided by the engine and
//! passed in with [`Improv::set_authorized`]; Wi-Fi settings and scans are
//! refused with error 0x04 without it. Identify and device info need none
//! (the spec's rule; the engine rate-limits identify). The caller applies
//! the credentials (the `wifi` service) and reports back with
//! [`Improv::on_connect_result`]. Hostname and device name (RPC 0x05,
//! 0x06: revisions 2.3, 2.4) are not offered: their capability bit is clear
//! and the commands answer "unknown RPC".

use thiserror::Error;
use zeroize::Zeroizing;

/// Improv service UUID.
pub const SERVICE_UUID: &str = "00467768-6228-2272-4663-277478268000";
/// Current-state characteristic.
pub const CURRENT_STATE_UUID: &str = "00467768-6228-2272-4663-277478268001";
/// Error-state characteristic.
pub const ERROR_STATE_UUID: &str = "00467768-6228-2272-4663-277478268002";
/// RPC command characteristic.
pub const RPC_COMMAND_UUID: &str = "00467768-6228-2272-4663-277478268003";
/// RPC result characteristic.
pub const RPC_RESULT_UUID: &str = "00467768-6228-2272-4663-277478268004";
/// Capabilities characteristic.
pub const CAPABILITIES_UUID: &str = "00467768-6228-2272-4663-277478268005";
/// The 16-bit UUID `0x4677` the advertisement's service data is filed
/// under, in its 128-bit form (as bluer and bleak spell it).
pub const SERVICE_DATA_UUID: &str = "00004677-0000-1000-8000-00805f9b34fb";
/// Capability bit 0: identify (the lock plays a prompt).
pub const CAPABILITY_IDENTIFY: u8 = 0x01;
/// Capability bit 1: device info (RPC 0x03, Improv 2.1).
pub const CAPABILITY_DEVICE_INFO: u8 = 0x02;
/// Capability bit 2: Wi-Fi scan (RPC 0x04, Improv 2.2).
pub const CAPABILITY_SCAN: u8 = 0x04;

/// Largest buffered command: command + length + 255 data bytes + checksum.
pub const MAX_RPC_PACKET: usize = 258;
/// Longest SSID (IEEE 802.11).
pub const MAX_SSID: usize = 32;
/// Longest password: 63-character passphrase or 64 hex digits (WPA2-PSK).
pub const MAX_PASSWORD: usize = 64;

/// Provisioning state (current-state characteristic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Waiting for physical authorisation (pairing mode).
    AuthorizationRequired = 0x01,
    /// Ready to take credentials.
    Authorized = 0x02,
    /// Credentials received, connecting.
    Provisioning = 0x03,
    /// Connected.
    Provisioned = 0x04,
}

/// Error state (error-state characteristic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorState {
    /// No error.
    NoError = 0x00,
    /// Malformed packet or bad checksum.
    InvalidRpc = 0x01,
    /// Unknown command.
    UnknownRpc = 0x02,
    /// The credentials did not connect.
    UnableToConnect = 0x03,
    /// Not authorised (lock not in pairing mode).
    NotAuthorized = 0x04,
    /// Anything else (e.g. a command while provisioning is under way).
    Unknown = 0xFF,
}

/// RPC command ids.
pub mod cmd {
    /// Send Wi-Fi settings.
    pub const WIFI_SETTINGS: u8 = 0x01;
    /// Identify.
    pub const IDENTIFY: u8 = 0x02;
    /// Device info.
    pub const DEVICE_INFO: u8 = 0x03;
    /// Scan Wi-Fi networks.
    pub const SCAN: u8 = 0x04;
}

/// An RPC packet was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RpcError {
    #[error("RPC packet of {0} bytes is shorter than the 3-byte minimum")]
    Truncated(usize),
    #[error("RPC length field says {declared} data bytes but {actual} arrived")]
    Length { declared: usize, actual: usize },
    #[error("RPC checksum {got:#04x} does not match the computed {expected:#04x}")]
    Checksum { got: u8, expected: u8 },
    #[error("RPC command {0:#04x} is not supported")]
    UnknownCommand(u8),
    #[error("RPC data is invalid: {0}")]
    BadData(&'static str),
}

impl RpcError {
    /// The Improv error state this maps to.
    pub fn error_state(&self) -> ErrorState {
        match self {
            RpcError::UnknownCommand(_) => ErrorState::UnknownRpc,
            _ => ErrorState::InvalidRpc,
        }
    }
}

/// A parsed RPC command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Wi-Fi credentials.
    WifiSettings {
        /// SSID, 1–32 bytes (not necessarily UTF-8).
        ssid: Vec<u8>,
        /// Password, empty (open network) or 8–64 bytes.
        password: Zeroizing<Vec<u8>>,
    },
    /// Identify.
    Identify,
    /// Device info.
    DeviceInfo,
    /// Scan.
    Scan,
}

/// Low byte of the sum of `bytes`.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

/// Parse one complete RPC command packet.
pub fn parse_rpc(packet: &[u8]) -> Result<Command, RpcError> {
    let (command, data) = split_packet(packet)?;
    let no_data = |c: Command| {
        if data.is_empty() {
            Ok(c)
        } else {
            Err(RpcError::BadData("this command takes no data"))
        }
    };
    match command {
        cmd::WIFI_SETTINGS => {
            let (ssid, rest) =
                take_prefixed(data).ok_or(RpcError::BadData("SSID length exceeds the data"))?;
            let (password, rest) =
                take_prefixed(rest).ok_or(RpcError::BadData("password length exceeds the data"))?;
            if !rest.is_empty() {
                return Err(RpcError::BadData("trailing bytes after the password"));
            }
            if ssid.is_empty() || ssid.len() > MAX_SSID {
                return Err(RpcError::BadData("SSID must be 1 to 32 bytes"));
            }
            if (1..8).contains(&password.len()) || password.len() > MAX_PASSWORD {
                return Err(RpcError::BadData("password must be empty or 8 to 64 bytes"));
            }
            Ok(Command::WifiSettings {
                ssid: ssid.to_vec(),
                password: Zeroizing::new(password.to_vec()),
            })
        }
        cmd::IDENTIFY => no_data(Command::Identify),
        cmd::DEVICE_INFO => no_data(Command::DeviceInfo),
        cmd::SCAN => no_data(Command::Scan),
        other => Err(RpcError::UnknownCommand(other)),
    }
}

fn take_prefixed(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&n, rest) = data.split_first()?;
    (rest.len() >= n as usize).then(|| rest.split_at(n as usize))
}

/// Encode an RPC packet (used for results, and by clients/tests for
/// commands). Strings are length-prefixed; each is cut to fit the 255-byte
/// data limit.
pub fn encode_packet(command: u8, strings: &[&[u8]]) -> Vec<u8> {
    let mut data = Vec::new();
    for s in strings {
        let room = 255usize.saturating_sub(data.len() + 1);
        if room == 0 {
            break;
        }
        let s = &s[..s.len().min(room).min(255)];
        data.push(s.len() as u8);
        data.extend_from_slice(s);
    }
    let mut out = Vec::with_capacity(data.len() + 3);
    out.push(command);
    out.push(data.len() as u8);
    out.extend_from_slice(&data);
    out.push(checksum(&out));
    out
}

/// Decode an RPC result packet (what a client reads from the RPC-result
/// characteristic): `(command, strings)`.
pub fn decode_result(packet: &[u8]) -> Result<(u8, Vec<Vec<u8>>), RpcError> {
    let (command, mut data) = split_packet(packet)?;
    let mut strings = Vec::new();
    while !data.is_empty() {
        let (s, rest) =
            take_prefixed(data).ok_or(RpcError::BadData("string length exceeds the data"))?;
        strings.push(s.to_vec());
        data = rest;
    }
    Ok((command, strings))
}

/// `[command, len, data…, checksum]` checked: the command and the data.
fn split_packet(packet: &[u8]) -> Result<(u8, &[u8]), RpcError> {
    let [command, len, rest @ ..] = packet else {
        return Err(RpcError::Truncated(packet.len()));
    };
    let Some((&sum, data)) = rest.split_last() else {
        return Err(RpcError::Truncated(packet.len()));
    };
    if data.len() != *len as usize {
        return Err(RpcError::Length {
            declared: *len as usize,
            actual: data.len(),
        });
    }
    let expected = checksum(&packet[..packet.len() - 1]);
    if sum != expected {
        return Err(RpcError::Checksum { got: sum, expected });
    }
    Ok((*command, data))
}

/// The scan result packet (`ssid, rssi, YES/NO` triples) as networks, in
/// the order the lock sent them; empty when it heard none.
pub fn decode_scan_results(packet: &[u8]) -> Result<Vec<ScannedNetwork>, RpcError> {
    let (command, strings) = decode_result(packet)?;
    if command != cmd::SCAN {
        return Err(RpcError::UnknownCommand(command));
    }
    if strings.len() % 3 != 0 {
        return Err(RpcError::BadData(
            "a scan result holds ssid, rssi, auth triples",
        ));
    }
    strings
        .chunks(3)
        .map(|t| {
            let rssi_dbm = std::str::from_utf8(&t[1])
                .ok()
                .and_then(|r| r.parse::<i8>().ok())
                .ok_or(RpcError::BadData("RSSI is not a number of dBm"))?;
            let auth_required = match t[2].as_slice() {
                b"YES" => true,
                b"NO" => false,
                _ => return Err(RpcError::BadData("auth-required is neither YES nor NO")),
            };
            Ok(ScannedNetwork {
                ssid: t[0].clone(),
                rssi_dbm,
                auth_required,
            })
        })
        .collect()
}

/// What the device-info command reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Firmware name, e.g. "latchd".
    pub firmware: String,
    /// Firmware version.
    pub version: String,
    /// Hardware / chip.
    pub hardware: String,
    /// Device name.
    pub device_name: String,
}

/// A network found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedNetwork {
    /// SSID.
    pub ssid: Vec<u8>,
    /// Signal in dBm.
    pub rssi_dbm: i8,
    /// Needs a password.
    pub auth_required: bool,
}

/// What the caller must do after feeding an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write and notify the current-state characteristic.
    State(State),
    /// Write and notify the error-state characteristic.
    Error(ErrorState),
    /// Notify this packet on the RPC-result characteristic.
    Result(Vec<u8>),
    /// Try these credentials, then call [`Improv::on_connect_result`].
    ApplyCredentials {
        /// SSID.
        ssid: Vec<u8>,
        /// Password.
        password: Zeroizing<Vec<u8>>,
    },
    /// Identify the lock (play a prompt / flash the keypad).
    Identify,
    /// Scan for networks, then call [`Improv::on_scan_result`].
    Scan,
}

/// The Improv state machine for one lock.
#[derive(Debug)]
pub struct Improv {
    state: State,
    error: ErrorState,
    authorized: bool,
    buf: Vec<u8>,
    /// The last RPC result, for a client that reads the characteristic
    /// instead of (or after) the notification.
    last_result: Vec<u8>,
    info: DeviceInfo,
}

impl Improv {
    /// A fresh service, waiting for authorisation.
    pub fn new(info: DeviceInfo) -> Self {
        Improv {
            state: State::AuthorizationRequired,
            error: ErrorState::NoError,
            authorized: false,
            buf: Vec::new(),
            last_result: Vec::new(),
            info,
        }
    }

    /// A service for a lock that is already on a network (it joined
    /// before this start): Provisioned, so Home Assistant does not offer
    /// it for setup again after every restart. Pairing mode (SET held)
    /// still makes it Authorized for a new setup.
    pub fn already_provisioned(info: DeviceInfo) -> Self {
        Improv {
            state: State::Provisioned,
            ..Improv::new(info)
        }
    }

    /// Current state byte.
    pub fn state(&self) -> State {
        self.state
    }

    /// Current error byte.
    pub fn error(&self) -> ErrorState {
        self.error
    }

    /// Capabilities byte: every command this service answers (a client
    /// refuses to send one whose bit is clear).
    pub fn capabilities(&self) -> u8 {
        CAPABILITY_IDENTIFY | CAPABILITY_DEVICE_INFO | CAPABILITY_SCAN
    }

    /// Service data for the advertisement: `[state, capabilities, 0, 0, 0,
    /// 0]` (Improv 2.0: six bytes, the last four reserved).
    pub fn service_data(&self) -> [u8; 6] {
        [self.state as u8, self.capabilities(), 0, 0, 0, 0]
    }

    /// The last RPC result (empty before the first, and after a
    /// disconnection).
    pub fn last_result(&self) -> &[u8] {
        &self.last_result
    }

    fn result(&mut self, packet: Vec<u8>, out: &mut Vec<Output>) {
        self.last_result.clone_from(&packet);
        out.push(Output::Result(packet));
    }

    fn set_state(&mut self, s: State, out: &mut Vec<Output>) {
        if self.state != s {
            self.state = s;
            out.push(Output::State(s));
        }
    }

    fn set_error(&mut self, e: ErrorState, out: &mut Vec<Output>) {
        if self.error != e {
            self.error = e;
            out.push(Output::Error(e));
        }
    }

    /// The engine's pairing mode, read now (physical presence at the
    /// lock). Only a change moves the state: pairing mode starting makes
    /// even a provisioned lock Authorized (the owner is setting it up again,
    /// and Home Assistant offers only a lock that is not provisioned);
    /// ending it returns an Authorized lock to AuthorizationRequired.
    pub fn set_authorized(&mut self, pairing_mode_active: bool) -> Vec<Output> {
        let mut out = Vec::new();
        let was = std::mem::replace(&mut self.authorized, pairing_mode_active);
        match (was, pairing_mode_active, self.state) {
            // A connection attempt under way finishes first.
            (_, _, State::Provisioning) => {}
            (false, true, _) => self.set_state(State::Authorized, &mut out),
            (true, false, State::Authorized) => {
                self.set_state(State::AuthorizationRequired, &mut out)
            }
            _ => {}
        }
        out
    }

    /// The client disconnected: drop any half-received packet and the
    /// last result (the next client starts clean).
    pub fn on_disconnect(&mut self) {
        self.buf.clear();
        self.last_result.clear();
    }

    /// Bytes written to the RPC-command characteristic.
    pub fn on_rpc_write(&mut self, bytes: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        if self.buf.len() + bytes.len() > MAX_RPC_PACKET {
            self.buf.clear();
            self.set_error(ErrorState::InvalidRpc, &mut out);
            return out;
        }
        self.buf.extend_from_slice(bytes);
        let needed = match self.buf.get(1) {
            Some(&len) => len as usize + 3,
            None => return out,
        };
        if self.buf.len() < needed {
            return out;
        }
        let packet = std::mem::take(&mut self.buf);
        if packet.len() > needed {
            self.set_error(ErrorState::InvalidRpc, &mut out);
            return out;
        }
        match parse_rpc(&packet) {
            Err(e) => self.set_error(e.error_state(), &mut out),
            Ok(command) => self.run(command, &mut out),
        }
        out
    }

    fn run(&mut self, command: Command, out: &mut Vec<Output>) {
        match command {
            Command::Identify => {
                self.set_error(ErrorState::NoError, out);
                out.push(Output::Identify);
            }
            Command::DeviceInfo => {
                self.set_error(ErrorState::NoError, out);
                let packet = encode_packet(
                    cmd::DEVICE_INFO,
                    &[
                        self.info.firmware.as_bytes(),
                        self.info.version.as_bytes(),
                        self.info.hardware.as_bytes(),
                        self.info.device_name.as_bytes(),
                    ],
                );
                self.result(packet, out);
            }
            Command::Scan => {
                if !self.authorized {
                    self.set_error(ErrorState::NotAuthorized, out);
                    return;
                }
                self.set_error(ErrorState::NoError, out);
                out.push(Output::Scan);
            }
            Command::WifiSettings { ssid, password } => {
                if !self.authorized {
                    self.set_error(ErrorState::NotAuthorized, out);
                    return;
                }
                if self.state == State::Provisioning {
                    // One connection attempt at a time.
                    self.set_error(ErrorState::Unknown, out);
                    return;
                }
                self.set_error(ErrorState::NoError, out);
                self.set_state(State::Provisioning, out);
                out.push(Output::ApplyCredentials { ssid, password });
            }
        }
    }

    /// The outcome of [`Output::ApplyCredentials`]: `Ok(redirect_url)` when
    /// connected (the URL the client may open; `None` for none).
    pub fn on_connect_result(&mut self, result: Result<Option<String>, ()>) -> Vec<Output> {
        let mut out = Vec::new();
        if self.state != State::Provisioning {
            return out;
        }
        match result {
            Ok(url) => {
                self.set_state(State::Provisioned, &mut out);
                let strings: Vec<&[u8]> = url.iter().map(|u| u.as_bytes()).collect();
                let packet = encode_packet(cmd::WIFI_SETTINGS, &strings);
                self.result(packet, &mut out);
            }
            Err(()) => {
                self.set_error(ErrorState::UnableToConnect, &mut out);
                let back = if self.authorized {
                    State::Authorized
                } else {
                    State::AuthorizationRequired
                };
                self.set_state(back, &mut out);
            }
        }
        out
    }

    /// The outcome of [`Output::Scan`]: one result packet of `ssid, rssi,
    /// YES/NO` triples in the order given (strongest first), as many whole
    /// triples as fit the 255 data bytes (a client reads one result per
    /// command); none heard is a packet with no strings.
    pub fn on_scan_result(&mut self, networks: &[ScannedNetwork]) -> Vec<Output> {
        let mut out = Vec::new();
        let mut room = 255usize;
        let mut rows: Vec<(&[u8], String, &[u8])> = Vec::new();
        for n in networks {
            let rssi = n.rssi_dbm.to_string();
            let auth: &[u8] = if n.auth_required { b"YES" } else { b"NO" };
            let len = 3 + n.ssid.len() + rssi.len() + auth.len();
            if len > room {
                // What does not fit is the weakest.
                break;
            }
            room -= len;
            rows.push((n.ssid.as_slice(), rssi, auth));
        }
        let strings: Vec<&[u8]> = rows
            .iter()
            .flat_map(|(s, r, a)| [*s, r.as_bytes(), *a])
            .collect();
        let packet = encode_packet(cmd::SCAN, &strings);
        self.result(packet, &mut out);
        out
    }

    /// [`Output::Scan`] could not be done (no Wi-Fi service, radio off):
    /// the client sees Improv's "unknown error" and falls back to typing
    /// the network name.
    pub fn on_scan_failed(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        self.set_error(ErrorState::Unknown, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> DeviceInfo {
        DeviceInfo {
            firmware: "latchd".into(),
            version: "0.1.0".into(),
            hardware: "sim".into(),
            device_name: "Front door".into(),
        }
    }

    fn wifi(ssid: &[u8], pw: &[u8]) -> Vec<u8> {
        let mut data = vec![ssid.len() as u8];
        data.extend_from_slice(ssid);
        data.push(pw.len() as u8);
        data.extend_from_slice(pw);
        let mut p = vec![cmd::WIFI_SETTINGS, data.len() as u8];
        p.extend_from_slice(&data);
        p.push(checksum(&p));
        p
    }

    #[test]
    fn b_5_1_provisioning_needs_pairing_mode() {
        let mut imp = Improv::new(info());
        let out = imp.on_rpc_write(&wifi(b"home", b"password1"));
        assert_eq!(out, vec![Output::Error(ErrorState::NotAuthorized)]);
        assert_eq!(imp.state(), State::AuthorizationRequired);

        assert_eq!(
            imp.set_authorized(true),
            vec![Output::State(State::Authorized)]
        );
        let out = imp.on_rpc_write(&wifi(b"home", b"password1"));
        assert_eq!(
            out,
            vec![
                Output::Error(ErrorState::NoError),
                Output::State(State::Provisioning),
                Output::ApplyCredentials {
                    ssid: b"home".to_vec(),
                    password: Zeroizing::new(b"password1".to_vec())
                }
            ]
        );
        let out = imp.on_connect_result(Ok(Some("https://lock.local/".into())));
        assert_eq!(out[0], Output::State(State::Provisioned));
        assert_eq!(
            out[1],
            Output::Result(encode_packet(cmd::WIFI_SETTINGS, &[b"https://lock.local/"]))
        );
    }

    #[test]
    fn failed_connect_reports_and_returns_to_authorized() {
        let mut imp = Improv::new(info());
        imp.set_authorized(true);
        imp.on_rpc_write(&wifi(b"home", b""));
        let out = imp.on_connect_result(Err(()));
        assert_eq!(
            out,
            vec![
                Output::Error(ErrorState::UnableToConnect),
                Output::State(State::Authorized)
            ]
        );
    }

    #[test]
    fn split_writes_are_reassembled() {
        let mut imp = Improv::new(info());
        imp.set_authorized(true);
        let p = wifi(b"a-rather-long-ssid-name", b"a-rather-long-password");
        let (a, b) = p.split_at(20);
        assert!(imp.on_rpc_write(a).is_empty());
        assert!(imp
            .on_rpc_write(b)
            .iter()
            .any(|o| matches!(o, Output::ApplyCredentials { .. })));
    }

    #[test]
    fn malformed_packets_get_the_right_error() {
        let mut p = wifi(b"home", b"password1");
        let last = p.len() - 1;
        p[last] ^= 1;
        assert!(matches!(parse_rpc(&p), Err(RpcError::Checksum { .. })));
        assert_eq!(parse_rpc(&[0x09, 0, 9]), Err(RpcError::UnknownCommand(9)));
        assert_eq!(
            parse_rpc(&[0x02, 1, 0, 3]),
            Err(RpcError::BadData("this command takes no data"))
        );
        assert!(matches!(
            parse_rpc(&wifi(b"", b"")),
            Err(RpcError::BadData(_))
        ));
        assert!(matches!(
            parse_rpc(&wifi(b"x", b"short")),
            Err(RpcError::BadData(_))
        ));
        assert_eq!(parse_rpc(&[1]), Err(RpcError::Truncated(1)));

        let mut imp = Improv::new(info());
        assert_eq!(
            imp.on_rpc_write(&[0x09, 0, 9]),
            vec![Output::Error(ErrorState::UnknownRpc)]
        );
        // A complete packet followed by extra bytes in one write.
        assert_eq!(
            imp.on_rpc_write(&[0x02, 0, 2, 7]),
            vec![Output::Error(ErrorState::InvalidRpc)]
        );
        // The next good command clears the error.
        assert_eq!(
            imp.on_rpc_write(&[0x02, 0, 2]),
            vec![Output::Error(ErrorState::NoError), Output::Identify]
        );
    }

    #[test]
    fn pairing_mode_end_revokes_authorisation() {
        let mut imp = Improv::new(info());
        imp.set_authorized(true);
        assert_eq!(
            imp.set_authorized(false),
            vec![Output::State(State::AuthorizationRequired)]
        );
        assert_eq!(
            imp.on_rpc_write(&[cmd::SCAN, 0, cmd::SCAN]),
            vec![Output::Error(ErrorState::NotAuthorized)]
        );
    }

    fn net(ssid: &[u8], rssi_dbm: i8, auth_required: bool) -> ScannedNetwork {
        ScannedNetwork {
            ssid: ssid.to_vec(),
            rssi_dbm,
            auth_required,
        }
    }

    fn only_result(out: &[Output]) -> &[u8] {
        match out {
            [Output::Result(p)] => p,
            other => panic!("expected one result, got {other:?}"),
        }
    }

    /// Improv 2.2, "Request scanned Wi-Fi networks": one RPC result whose
    /// strings are `ssid, rssi, auth` triples (py-improv-ble-client's
    /// `ScanWifiRes` reads exactly one result per command).
    #[test]
    fn scan_results_are_one_packet_of_triples() {
        let mut imp = Improv::new(info());
        let out = imp.on_scan_result(&[net(b"home", -60, true), net(b"cafe", -71, false)]);
        let expected = [
            &[cmd::SCAN, 25][..],
            &[4],
            b"home",
            &[3],
            b"-60",
            &[3],
            b"YES",
            &[4],
            b"cafe",
            &[3],
            b"-71",
            &[2],
            b"NO",
        ]
        .concat();
        let mut expected = expected;
        expected.push(checksum(&expected));
        assert_eq!(only_result(&out), expected.as_slice());
        assert_eq!(imp.last_result(), expected.as_slice());
        // None heard: a result with no strings, not silence.
        let out = imp.on_scan_result(&[]);
        assert_eq!(only_result(&out), &[cmd::SCAN, 0, cmd::SCAN]);
    }

    #[test]
    fn scan_results_keep_the_strongest_that_fit_255_bytes() {
        let mut imp = Improv::new(info());
        // 32-byte SSIDs: 3 + 32 + 3 + 3 = 41 bytes a triple, 6 fit in 255.
        let nets: Vec<ScannedNetwork> = (0..10u8)
            .map(|i| net(&[b'a' + i; 32], -40 - i as i8, true))
            .collect();
        let out = imp.on_scan_result(&nets);
        let packet = only_result(&out);
        assert!(packet.len() <= MAX_RPC_PACKET);
        let decoded = decode_scan_results(packet).expect("decodes");
        assert_eq!(decoded, nets[..6].to_vec());
    }

    #[test]
    fn scan_results_decode_as_they_were_encoded() {
        let mut imp = Improv::new(info());
        let nets = [
            net(b"home", -45, true),
            net(&[0xe2, 0x98, 0x95, 0xff], -90, false),
        ];
        let out = imp.on_scan_result(&nets);
        assert_eq!(
            decode_scan_results(only_result(&out)).expect("decodes"),
            nets.to_vec()
        );
        let mut bad = encode_packet(cmd::SCAN, &[b"home", b"loud", b"YES"]);
        assert!(matches!(
            decode_scan_results(&bad),
            Err(RpcError::BadData(_))
        ));
        assert_eq!(
            decode_scan_results(&encode_packet(cmd::SCAN, &[b"home", b"-1"])),
            Err(RpcError::BadData(
                "a scan result holds ssid, rssi, auth triples"
            ))
        );
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(matches!(
            decode_scan_results(&bad),
            Err(RpcError::Checksum { .. })
        ));
        assert!(matches!(
            decode_scan_results(&encode_packet(cmd::DEVICE_INFO, &[])),
            Err(RpcError::UnknownCommand(cmd::DEVICE_INFO))
        ));
        // A string length running past the data, checksum right.
        let mut overrun = vec![cmd::SCAN, 2, 5, b'a'];
        overrun.push(checksum(&overrun));
        assert_eq!(
            decode_result(&overrun),
            Err(RpcError::BadData("string length exceeds the data"))
        );
        assert!(matches!(
            decode_result(&[cmd::SCAN, 3, 5, b'a', 0]),
            Err(RpcError::Length {
                declared: 3,
                actual: 2
            })
        ));
    }

    /// Improv BLE spec, "Service data" (2.0): 16-bit UUID 4677, six bytes:
    /// current state, capabilities, four reserved zero bytes. Capabilities
    /// (characteristic 8005): bit 0 identify, bit 1 device info (2.1),
    /// bit 2 Wi-Fi scan (2.2), bit 3 hostname (2.3, not offered).
    /// A lock that restarts while on its network advertises Provisioned
    /// (Home Assistant would offer it for setup after every restart), and
    /// SET held still opens a new setup.
    #[test]
    fn a_lock_already_on_a_network_starts_provisioned() {
        let mut imp = Improv::already_provisioned(info());
        assert_eq!(imp.state(), State::Provisioned);
        assert_eq!(imp.service_data()[0], State::Provisioned as u8);
        assert_eq!(
            imp.set_authorized(true),
            vec![Output::State(State::Authorized)]
        );
    }

    #[test]
    fn service_data_and_capabilities_follow_the_spec_layout() {
        assert_eq!(
            SERVICE_DATA_UUID, "00004677-0000-1000-8000-00805f9b34fb",
            "the 16-bit UUID 0x4677 on the Bluetooth base UUID"
        );
        let mut imp = Improv::new(info());
        assert_eq!(imp.capabilities(), 0b0000_0111);
        assert_eq!(imp.service_data(), [0x01, 0x07, 0, 0, 0, 0]);
        imp.set_authorized(true);
        assert_eq!(imp.service_data(), [0x02, 0x07, 0, 0, 0, 0]);
        imp.on_rpc_write(&wifi(b"home", b"password1"));
        assert_eq!(imp.service_data(), [0x03, 0x07, 0, 0, 0, 0]);
        imp.on_connect_result(Ok(None));
        assert_eq!(imp.service_data(), [0x04, 0x07, 0, 0, 0, 0]);
    }

    /// Every state change is an [`Output::State`] (the caller renews the
    /// advertisement on it): required → authorized → provisioning →
    /// provisioned, and pairing mode again after provisioning → authorized
    /// (set up again), its end → authorization required.
    #[test]
    fn every_state_change_is_reported() {
        let mut imp = Improv::new(info());
        assert_eq!(
            imp.set_authorized(true),
            vec![Output::State(State::Authorized)]
        );
        assert!(imp.set_authorized(true).is_empty(), "no change, no output");
        let out = imp.on_rpc_write(&wifi(b"home", b"password1"));
        assert!(out.contains(&Output::State(State::Provisioning)), "{out:?}");
        // Pairing mode ending mid-join: the join finishes first.
        assert!(imp.set_authorized(false).is_empty());
        let out = imp.on_connect_result(Ok(None));
        assert_eq!(out[0], Output::State(State::Provisioned));
        assert!(imp.set_authorized(false).is_empty(), "stays provisioned");
        assert_eq!(
            imp.set_authorized(true),
            vec![Output::State(State::Authorized)]
        );
        assert_eq!(
            imp.set_authorized(false),
            vec![Output::State(State::AuthorizationRequired)]
        );
    }

    /// Improv 2.1 device info: one result, four strings in the order
    /// firmware name, firmware version, hardware, device name; no
    /// authorisation needed.
    #[test]
    fn device_info_is_four_strings_without_authorisation() {
        let mut imp = Improv::new(DeviceInfo {
            firmware: "latchd".into(),
            version: "1.2.3".into(),
            hardware: "rpi".into(),
            device_name: "latchd-00BE".into(),
        });
        let out = imp.on_rpc_write(&[cmd::DEVICE_INFO, 0, cmd::DEVICE_INFO]);
        let expected = [
            &[cmd::DEVICE_INFO, 29, 6][..],
            b"latchd",
            &[5],
            b"1.2.3",
            &[3],
            b"rpi",
            &[11],
            b"latchd-00BE",
        ]
        .concat();
        let mut expected = expected;
        expected.push(checksum(&expected));
        assert_eq!(out, vec![Output::Result(expected.clone())]);
        assert_eq!(imp.last_result(), expected.as_slice());
        assert_eq!(imp.state(), State::AuthorizationRequired);
        imp.on_disconnect();
        assert!(imp.last_result().is_empty(), "the next client starts clean");
    }

    /// Wi-Fi settings result: the redirect URL as the one string, or no
    /// string at all (py-improv-ble-client reads `redirect_url = None`).
    #[test]
    fn wifi_settings_result_carries_the_url_or_nothing() {
        let mut imp = Improv::new(info());
        imp.set_authorized(true);
        imp.on_rpc_write(&wifi(b"home", b"password1"));
        let out = imp.on_connect_result(Ok(None));
        assert_eq!(
            out,
            vec![
                Output::State(State::Provisioned),
                Output::Result(vec![cmd::WIFI_SETTINGS, 0, cmd::WIFI_SETTINGS])
            ]
        );
    }

    #[test]
    fn a_failed_scan_is_an_unknown_error() {
        let mut imp = Improv::new(info());
        imp.set_authorized(true);
        assert_eq!(
            imp.on_scan_failed(),
            vec![Output::Error(ErrorState::Unknown)]
        );
        assert_eq!(imp.error(), ErrorState::Unknown);
        assert_eq!(imp.state(), State::Authorized, "the device stays usable");
    }
}
