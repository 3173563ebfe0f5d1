//! The running node: rs-matter's stack on a thread of its own.
//!
//! ```text
//!  thread "matter" (current-thread tokio runtime; rs-matter's futures are not Send)
//!    Matter (fabrics, sessions; onboarding secret) ◄── startup(kv): sealed blobs
//!    InteractionModel ── root endpoint 0 (Basic Information, General
//!    │                    Commissioning, Operational Credentials, ACL, diagnostics…)
//!    │                └─ endpoint 1: Descriptor, Identify, Door Lock (door_lock.rs)
//!    ├ responder   ◄── UDP [::]:port            (PASE, CASE, IM exchanges)
//!    ├ transport   ◄── the same socket
//!    ├ mdns        ◄── 5353 on the chosen interface (_matterc._udp, _matter._tcp)
//!    ├ ble         pairing mode ─► BTP on the BlueZ adapter (ble.rs), chained
//!    │             with UDP in the transport
//!    │  Network Commissioning: Wi-Fi over the lock's backend (wifi.rs) on a
//!    │  Wi-Fi board, else Ethernet (the IP link as it is)
//!    ├ window      pairing mode (B-5.1) rising ─► open a 3-minute commissioning
//!    │             window; falling ─► close it
//!    ├ reset       engine FactoryReset ─► forget fabrics in memory (the store
//!    │             erased them in the reset's own transaction)
//!    └ shutdown    CancellationToken ─► return
//! ```
use std::net::UdpSocket;
use std::pin::pin;
use std::sync::Arc;

use embassy_futures::select::{select, select3, select4, Either};
use rs_matter::crypto::{default_crypto, Crypto};
use rs_matter::dm::clusters::basic_info::{BasicInfoConfig, PairingHintFlags};
use rs_matter::dm::clusters::decl::{door_lock, power_source};
use rs_matter::dm::clusters::desc::{self, ClusterHandler as _};
use rs_matter::dm::clusters::identify::{
    self, IdentifyAction, IdentifyHandler, IdentifyHooks, IdentifyTypeEnum,
};
use rs_matter::dm::devices::test::{DAC_PRIVKEY, TEST_DEV_ATT};
use rs_matter::dm::endpoints;
use rs_matter::dm::networks::eth::EthNetwork;
use rs_matter::dm::networks::wireless::{NetCtlState, NetCtlWithStatusImpl, WifiNetworks};
use rs_matter::dm::networks::SysNetifs;
use rs_matter::dm::{Async, AsyncHandler, ChainedHandler, Dataver, DeviceType, Endpoint, Node};
use rs_matter::error::Error;
use rs_matter::im::{EthInteractionModelState, InteractionModel, WirelessInteractionModelState};
use rs_matter::respond::DefaultResponder;
use rs_matter::transport::exchange::MatterBuffers;
use rs_matter::transport::network::btp::{AdvData, Btp};
use rs_matter::transport::network::mdns::builtin::{BuiltinMdns, Host};
use rs_matter::transport::network::{Address, ChainedNetwork};
use rs_matter::utils::select::Coalesce;
use rs_matter::{clusters, devices, root_endpoint, Matter};
use tokio_util::sync::CancellationToken;

use super::attestation::FileAttestation;
use super::ble;
use super::clock;
use super::config::MatterConfig;
use super::door_lock::DoorLock;
use super::kv::PortKv;
use super::net::{self, Interface};
use super::onboarding::Onboarding;
use super::port::LockPort;
use super::power;
use super::running::MatterError;
use super::wifi::LockWifi;
use super::Radios;
use crate::core::event::EventKind;
use crate::link::MatterHealth;

/// Door Lock device type (Matter Device Library: 0x000A, revision 3).
const DEV_TYPE_DOOR_LOCK: DeviceType = DeviceType {
    dtype: 0x000A,
    drev: 3,
};

/// B-5.1: the window lasts as long as pairing mode (3 minutes).
const WINDOW_SECS: u16 = crate::core::PAIRING_WINDOW.as_secs() as u16;

/// Power Source device type (0x0011, revision 1): the USB-C input.
const DEV_TYPE_POWER_SOURCE: DeviceType = DeviceType {
    dtype: 0x0011,
    drev: 1,
};

/// The endpoint the lock is on.
const LOCK_ENDPOINT: u16 = 1;
/// The USB-C emergency input's endpoint (B-10.3).
const USB_C_ENDPOINT: u16 = 2;

/// The lock's endpoints after the root endpoint, whatever its network.
macro_rules! lock_endpoints {
    ($root:expr) => {
        &[
            $root,
            Endpoint::new(
                LOCK_ENDPOINT,
                devices!(DEV_TYPE_DOOR_LOCK),
                clusters!(
                    desc::DescHandler::CLUSTER,
                    identify::CLUSTER,
                    DoorLock::CLUSTER,
                    power::Battery::CLUSTER
                ),
            ),
            Endpoint::new(
                USB_C_ENDPOINT,
                devices!(DEV_TYPE_POWER_SOURCE),
                clusters!(desc::DescHandler::CLUSTER, power::UsbC::CLUSTER),
            ),
        ]
    };
}

/// On the lock's IP link as it is (Network Commissioning: Ethernet).
const NODE_ETH: Node<'static> = Node {
    endpoints: lock_endpoints!(root_endpoint!(eth)),
};

/// On a Wi-Fi board (Network Commissioning: Wi-Fi, Wi-Fi Diagnostics).
const NODE_WIFI: Node<'static> = Node {
    endpoints: lock_endpoints!(root_endpoint!(wifi)),
};

/// Wi-Fi networks a controller may store on the lock (one is what a home
/// has; three leaves room for a controller that adds before it removes).
const WIFI_NETWORKS: usize = 3;

/// Identify: the lock says so and flashes "0" (the engine decides whether,
/// as for Improv's identify).
struct LockIdentify<'a>(&'a dyn LockPort);

impl IdentifyHooks for LockIdentify<'_> {
    fn identify_type(&self) -> IdentifyTypeEnum {
        IdentifyTypeEnum::VisibleIndicator
    }

    fn identify(&self, action: IdentifyAction) {
        if matches!(action, IdentifyAction::Time(t) if t > 0) {
            self.0.identify();
        }
    }
}

/// What the node needs besides the lock: who it is.
#[derive(Debug, Clone)]
pub struct Identity {
    pub serial: String,
    pub firmware: String,
}

/// Run the node until `shutdown`. Blocking: call it on its own thread.
pub fn run(
    config: MatterConfig,
    identity: Identity,
    radios: Radios,
    port: Arc<dyn LockPort>,
    shutdown: CancellationToken,
) -> Result<(), MatterError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(MatterError::Runtime)?;
    rt.block_on(serve(&config, &identity, &radios, &*port, shutdown))
}

async fn serve(
    config: &MatterConfig,
    identity: &Identity,
    radios: &Radios,
    port: &dyn LockPort,
    shutdown: CancellationToken,
) -> Result<(), MatterError> {
    port.report(MatterHealth::Starting);
    let onboarding = Onboarding::load_or_create(port, &mut rand_core::OsRng)?;
    let file_att = FileAttestation::load(config)?;
    let firmware_number = firmware_number(&identity.firmware);
    let dev_det = BasicInfoConfig {
        vid: config.vendor_id,
        pid: config.product_id,
        hw_ver: 1,
        hw_ver_str: "1",
        sw_ver: firmware_number,
        sw_ver_str: &identity.firmware,
        serial_no: &identity.serial,
        product_name: &config.product_name,
        vendor_name: &config.vendor_name,
        device_name: &config.product_name,
        device_type: Some(DEV_TYPE_DOOR_LOCK.dtype),
        // B-5.1: hold SET for 3 seconds.
        pairing_hint: PairingHintFlags::PRESS_SETUP_BUTTON_FOR_N_SECONDS,
        pairing_instruction: "3",
        ..BasicInfoConfig::new()
    };
    let (dev_att, dac_key): (&dyn rs_matter::dm::clusters::dev_att::DeviceAttestation, _) =
        match &file_att {
            Some(f) => (f, f.secret_key()),
            None => {
                tracing::warn!(
                    "Matter: development attestation (test DAC, VID 0xFFF1): only test controllers trust it; see docs/matter.md to install the product's own"
                );
                (&TEST_DEV_ATT, DAC_PRIVKEY)
            }
        };
    let matter = Matter::new(&dev_det, onboarding.comm_data(), dev_att, config.port);
    // Woken when what the technician sees of the node may have changed:
    // a fabric stored or removed, the window opened or closed, a reset.
    let changed = tokio::sync::Notify::new();
    let kv = matter.kv(PortKv {
        port,
        changed: &changed,
    });
    matter.startup(&kv).map_err(MatterError::Stack)?;
    let buffers: Box<MatterBuffers> = Box::default();
    let crypto = default_crypto(rand_matter::rng(), dac_key);
    let mut rand = crypto.rand().map_err(MatterError::Stack)?;

    let lock = DoorLock::new(Dataver::new_rand(&mut rand), LOCK_ENDPOINT, port);
    let identify = IdentifyHandler::new_with(Dataver::new_rand(&mut rand), LockIdentify(port));
    let battery = power::Battery::new(
        Dataver::new_rand(&mut rand),
        LOCK_ENDPOINT,
        LOCK_ENDPOINT,
        port.status(),
    );
    let usb_c = power::UsbC::new(
        Dataver::new_rand(&mut rand),
        USB_C_ENDPOINT,
        LOCK_ENDPOINT,
        port.status(),
    );
    let app = AppClusters {
        lock: &lock,
        identify,
        battery: &battery,
        usb_c: &usb_c,
    };

    let socket = async_io::Async::<UdpSocket>::bind(std::net::SocketAddr::from((
        std::net::Ipv6Addr::UNSPECIFIED,
        config.port,
    )))
    .map_err(|source| MatterError::Bind {
        port: config.port,
        source,
    })?;
    let hostname = net::hostname(&identity.serial);
    // BTP beside UDP: PASE and commissioning over BLE while pairing mode
    // lasts, everything else on the network.
    let btp = Btp::new();
    // BlueZ reports a GATT MTU that does not match what the peer says.
    btp.set_relaxed_mtu_nego(true);
    let adv = AdvData::new(&dev_det, onboarding.discriminator());
    let ble = async {
        match &radios.ble_adapter {
            Some(adapter) => ble::serve_while_pairing(port.status(), adapter, &adv, &btp).await,
            None => core::future::pending().await,
        }
    };

    // The Interaction Model differs by the network it commissions onto
    // (its state, Network Commissioning's controller); the rest is the
    // same and runs in `run_node!`.
    macro_rules! run_node {
        ($im:expr) => {{
            let im = $im;
            im.startup().await.map_err(MatterError::Stack)?;
            if let Err(e) = matter.persist_reboot_count(&kv) {
                tracing::warn!("Matter: cannot store the reboot count: {e:?}");
            }
            tracing::info!(
                interface = if config.interface.is_empty() { "(first usable)" } else { &config.interface },
                port = config.port,
                fabrics = matter.has_fabrics(),
                wifi = radios.wifi.is_some(),
                ble = match radios.ble_adapter.as_deref() {
                    None => "off",
                    Some("") => "default adapter",
                    Some(a) => a,
                },
                manual_code = %onboarding.manual_code_pretty(),
                "Matter node running; hold SET for 3 s to open the commissioning window"
            );
            let mut reports = pin!(report_changes(&changed, || port.report(health(&matter))));
            let responder = DefaultResponder::new(&im);
            let mut respond = pin!(responder.run::<4, 4>());
            let mut im_job = pin!(im.run());
            let is_btp = |a: &Address| a.is_btp();
            let mut transport = pin!(matter.run(
                &crypto,
                ChainedNetwork::new(is_btp, &btp, &socket),
                ChainedNetwork::new(is_btp, &btp, &socket),
                &socket,
            ));
            let mut mdns = pin!(publish(&config.interface, &hostname, &matter, &crypto));
            let mut window = pin!(follow_pairing_mode(
                port.status().borrow().pairing_mode,
                port.events(),
                |secs| {
                    let opened = im.open_basic_comm_window(secs);
                    changed.notify_one();
                    opened
                },
                || {
                    let closed = im.close_comm_window();
                    changed.notify_one();
                    closed
                },
            ));
            let mut reset = pin!(follow_factory_reset(port, || async {
                matter.factory_reset(&kv)?;
                let forgotten = im.factory_reset().await;
                changed.notify_one();
                forgotten
            }));
            let mut ble = pin!(ble);
            let mut clock = pin!(async {
                clock::follow_wall_time(port.status(), |us| {
                    matter.with_rtc(|rtc| rtc.set_utc_time(us, clock::GRANULARITY, clock::SOURCE, &()));
                })
                .await;
                Ok(())
            });
            let stack = select4(
                &mut transport,
                &mut mdns,
                &mut respond,
                select3(
                    select4(&mut im_job, &mut window, &mut reset, &mut ble).coalesce(),
                    &mut reports,
                    &mut clock,
                )
                .coalesce(),
            )
            .coalesce();
            match select(stack, shutdown.cancelled()).await {
                Either::First(r) => r.map_err(MatterError::Stack),
                Either::Second(()) => {
                    tracing::info!("Matter node stopped");
                    Ok(())
                }
            }
        }};
    }

    match &radios.wifi {
        // On the lock's existing IP link (the simulated lock, a wired
        // board): Network Commissioning is the Ethernet variant.
        None => {
            let state: Box<EthInteractionModelState> =
                Box::new(EthInteractionModelState::new(EthNetwork::new_default()));
            let root = endpoints::EthSysHandlerBuilder::new()
                .netif_diag(&SysNetifs)
                .build(&mut rand);
            let handler = (NODE_ETH, app.chain_after(root, &mut rand));
            run_node!(InteractionModel::new(
                &matter, &crypto, &*buffers, handler, &kv, &*state
            ))
        }
        // A Wi-Fi board: Network Commissioning is Wi-Fi over the lock's
        // backend, and rs-matter keeps the stored network joined.
        Some(backend) => {
            let wifi = LockWifi::new(backend.clone(), port.status());
            let net_state = NetCtlState::new_with_mutex();
            let net_ctl = NetCtlWithStatusImpl::new(&net_state, &wifi);
            let state: Box<WirelessInteractionModelState<WifiNetworks<WIFI_NETWORKS>>> =
                Box::new(WirelessInteractionModelState::new(WifiNetworks::new()));
            let root = endpoints::WifiSysHandlerBuilder::new(&net_ctl, &wifi)
                .netif_diag(&SysNetifs)
                .build(&mut rand);
            let handler = (NODE_WIFI, app.chain_after(root, &mut rand));
            run_node!(InteractionModel::new_with_net_ctl(
                &matter, &crypto, &*buffers, handler, &kv, &net_ctl, &*state
            ))
        }
    }
}

/// mDNS for the node on its interface, for as long as the node runs. The
/// interface may have no IPv6 address yet — a lock whose Wi-Fi is not
/// joined (every new lock commissioned over BLE), a cable not plugged, a
/// driver still loading — and its addresses change (SLAAC, DHCP, another
/// network): the responder starts when there is an address and again on
/// every change. BTP and the node's UDP port need none of this, so the node
/// runs (and commissions over BLE) meanwhile.
async fn publish<C: Crypto>(
    interface: &str,
    hostname: &str,
    matter: &Matter<'_>,
    crypto: &C,
) -> Result<(), Error> {
    let mut said = false;
    loop {
        let iface = match Interface::pick(interface) {
            Ok(iface) => iface,
            Err(e) => {
                if !said {
                    tracing::warn!(
                        "Matter: not on the network yet ({e}); commissioning over BLE works \
                         meanwhile, mDNS starts when the interface has an address"
                    );
                    said = true;
                }
                tokio::time::sleep(net::ADDRESS_POLL).await;
                continue;
            }
        };
        let socket = match net::mdns_socket(&iface) {
            Ok(socket) => socket,
            Err(e) => {
                tracing::warn!("Matter: {e}; trying again");
                tokio::time::sleep(net::ADDRESS_POLL).await;
                continue;
            }
        };
        said = false;
        tracing::info!(interface = %iface.name, ipv6 = ?iface.ipv6, "Matter: mDNS published");
        let v6: Vec<_> = iface.ipv6.iter().map(|a| a.octets().into()).collect();
        let host = Host {
            hostname,
            ip: iface.ipv4.octets().into(),
            ipv6: &v6,
        };
        let mut responder = BuiltinMdns::new();
        let run = responder.run(
            &socket,
            &socket,
            &host,
            (!iface.ipv4.is_unspecified()).then_some(iface.ipv4.octets().into()),
            Some(iface.index),
            matter,
            crypto,
        );
        let outcome = select(pin!(run), pin!(net::addresses_changed(&iface))).await;
        match outcome {
            Either::First(r) => return r,
            Either::Second(()) => {
                tracing::info!(interface = %iface.name, "Matter: the interface's addresses changed")
            }
        }
    }
}

/// The lock's own endpoints' handlers (1: Door Lock, Identify, battery;
/// 2: USB-C), whatever the root endpoint is.
struct AppClusters<'a, 'p> {
    lock: &'a DoorLock<'p>,
    identify: IdentifyHandler<LockIdentify<'p>>,
    battery: &'a power::Battery,
    usb_c: &'a power::UsbC,
}

impl<'a, 'p: 'a> AppClusters<'a, 'p> {
    /// `root` (endpoint 0's handlers) with the lock's chained in front.
    fn chain_after<R: AsyncHandler + 'a>(
        self,
        root: R,
        rand: &mut impl rand_matter::Rng,
    ) -> impl AsyncHandler + 'a {
        ChainedHandler::new(
            |e, c| e == LOCK_ENDPOINT && c == desc::DescHandler::CLUSTER.id,
            Async(desc::DescHandler::new(Dataver::new_rand(&mut *rand)).adapt()),
            root,
        )
        .chain(
            |e, c| e == LOCK_ENDPOINT && c == identify::CLUSTER.id,
            Async(self.identify.adapt()),
        )
        .chain(
            |e, c| e == LOCK_ENDPOINT && c == DoorLock::CLUSTER.id,
            door_lock::HandlerAsyncAdaptor(self.lock),
        )
        .chain(
            |e, c| e == LOCK_ENDPOINT && c == power::Battery::CLUSTER.id,
            Async(power_source::HandlerAdaptor(self.battery)),
        )
        .chain(
            |e, c| e == USB_C_ENDPOINT && c == desc::DescHandler::CLUSTER.id,
            Async(desc::DescHandler::new(Dataver::new_rand(&mut *rand)).adapt()),
        )
        .chain(
            |e, c| e == USB_C_ENDPOINT && c == power::UsbC::CLUSTER.id,
            Async(power_source::HandlerAdaptor(self.usb_c)),
        )
    }
}

/// What pairing mode asks of the commissioning window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    /// Pairing mode began (or began again: SET held once more restarts
    /// its 3 minutes, and the window's with it).
    Open,
    /// Pairing mode ended (time-out, an owner pairing, B-5.2).
    Close,
}

/// The window change a logged event asks for, if any.
fn window_change(kind: &EventKind) -> Option<Window> {
    match kind {
        EventKind::PairingMode { active: true } => Some(Window::Open),
        EventKind::PairingMode { active: false } => Some(Window::Close),
        _ => None,
    }
}

/// B-5.1: pairing mode opens the commissioning window for its 3 minutes;
/// its end closes it. Followed through the event log, so holding SET
/// again while pairing mode lasts opens a fresh window (for the next
/// controller after one has commissioned the lock).
async fn follow_pairing_mode(
    pairing_now: bool,
    mut events: tokio::sync::broadcast::Receiver<crate::core::Event>,
    open: impl Fn(u16) -> Result<(), Error>,
    close: impl Fn() -> Result<bool, Error>,
) -> Result<(), Error> {
    let apply = |w: Window| {
        // rs-matter refuses to open a window over an open one.
        let closed = close();
        let result = match w {
            Window::Open => open(WINDOW_SECS),
            Window::Close => closed.map(|_| ()),
        };
        match result {
            Ok(()) => tracing::info!(open = (w == Window::Open), "Matter commissioning window"),
            Err(e) => tracing::warn!("Matter: commissioning window not changed: {e:?}"),
        }
    };
    if pairing_now {
        apply(Window::Open);
    }
    loop {
        match events.recv().await {
            Ok(e) => {
                if let Some(w) = window_change(&e.kind) {
                    apply(w);
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    "Matter: {n} lock events missed; the commissioning window may lag pairing mode"
                );
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                return core::future::pending().await
            }
        }
    }
}

/// What the node reports of itself now (issue 22): its fabrics and
/// whether a commissioning window is open.
fn health(matter: &Matter<'_>) -> MatterHealth {
    let fabrics = matter.with_state(|s| s.fabrics.iter().count());
    MatterHealth::Running {
        fabrics: u8::try_from(fabrics).unwrap_or(u8::MAX),
        window_open: matter.comm_window_state().is_open(),
    }
}

/// Report the node's state now, then again each time `changed` wakes.
async fn report_changes(changed: &tokio::sync::Notify, report: impl Fn()) -> Result<(), Error> {
    report();
    loop {
        changed.notified().await;
        report();
    }
}

/// B-10.6: a factory reset also forgets every fabric. The store erased
/// their blobs in the reset's transaction; `forget` clears the stack's
/// memory.
async fn follow_factory_reset<F, Fut>(port: &dyn LockPort, forget: F) -> Result<(), Error>
where
    F: Fn() -> Fut,
    Fut: core::future::Future<Output = Result<(), Error>>,
{
    let mut events = port.events();
    loop {
        match events.recv().await {
            Ok(e) if e.kind == EventKind::FactoryReset => {
                tracing::info!("Matter: factory reset, every fabric removed");
                forget().await?;
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                return core::future::pending().await
            }
        }
    }
}

/// Basic Information's numeric software version from "0.1.0": major,
/// minor and patch in one u32 (0x00MMmmpp).
fn firmware_number(version: &str) -> u32 {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor, patch) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    (major.min(255) << 16) | (minor.min(255) << 8) | patch.min(255)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairing_mode_events_open_and_close_the_window() {
        assert_eq!(
            window_change(&EventKind::PairingMode { active: true }),
            Some(Window::Open)
        );
        assert_eq!(
            window_change(&EventKind::PairingMode { active: false }),
            Some(Window::Close)
        );
        assert_eq!(window_change(&EventKind::FactoryReset), None);
    }

    #[test]
    fn the_window_lasts_as_long_as_pairing_mode() {
        assert_eq!(
            u64::from(WINDOW_SECS),
            crate::core::PAIRING_WINDOW.as_secs()
        );
    }

    #[test]
    fn five_fabrics_as_the_spec_asks() {
        // Matter's minimum; a change of rs-matter's max-fabrics-N feature
        // must be a decision, not an accident.
        assert_eq!(rs_matter::fabric::MAX_FABRICS, 5);
    }

    #[test]
    fn firmware_versions_become_numbers() {
        assert_eq!(firmware_number("0.1.0"), 0x0000_0100);
        assert_eq!(firmware_number("2.10.3"), 0x0002_0A03);
        assert_eq!(firmware_number("x"), 0);
    }
}
