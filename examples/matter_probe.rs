//! Phase-1 probe for issue 18: the smallest rs-matter 0.4.1 node with a
//! Door Lock endpoint, to find out whether Home Assistant's controller
//! (python-matter-server + home-assistant-chip-core) commissions and
//! operates it. The lock behind the cluster is a bolt in memory; the real
//! node (`src/matter/`) drives the lock engine instead.
//!
//! ```text
//! cargo run --example matter_probe --features matter -- <iface> <state-dir>
//! ```
//!
//! `iface` is the interface whose addresses the mDNS responder publishes
//! (the test puts it in a network namespace of its own). Commissioning
//! uses rs-matter's test passcode 20202021 / discriminator 3840 and its
//! test DAC (VID 0xFFF1, PID 0x8001).
use core::pin::pin;
use std::cell::Cell;
use std::net::UdpSocket;

use embassy_futures::select::select4;
use rs_matter::crypto::{default_crypto, Crypto};
use rs_matter::dm::clusters::decl::door_lock::{
    self, ClearCredentialRequest, ClearHolidayScheduleRequest, ClearUserRequest,
    ClearWeekDayScheduleRequest, ClearYearDayScheduleRequest, DlLockState, DlLockType,
    GetCredentialStatusRequest, GetCredentialStatusResponseBuilder, GetHolidayScheduleRequest,
    GetHolidayScheduleResponseBuilder, GetUserRequest, GetUserResponseBuilder,
    GetWeekDayScheduleRequest, GetWeekDayScheduleResponseBuilder, GetYearDayScheduleRequest,
    GetYearDayScheduleResponseBuilder, LockDoorRequest, OperatingModeEnum, SetCredentialRequest,
    SetCredentialResponseBuilder, SetHolidayScheduleRequest, SetUserRequest,
    SetWeekDayScheduleRequest, SetYearDayScheduleRequest, UnlockDoorRequest,
    UnlockWithTimeoutRequest,
};
use rs_matter::dm::clusters::desc::{self, ClusterHandler as _};
use rs_matter::dm::devices::test::{DAC_PRIVKEY, TEST_DEV_ATT, TEST_DEV_COMM, TEST_DEV_DET};
use rs_matter::dm::endpoints;
use rs_matter::dm::networks::eth::EthNetwork;
use rs_matter::dm::networks::SysNetifs;
use rs_matter::dm::{
    Async, Cluster, Dataver, DeviceType, Endpoint, InvokeContext, Node, ReadContext,
};
use rs_matter::error::{Error, ErrorCode};
use rs_matter::im::{EthInteractionModelState, InteractionModel};
use rs_matter::pairing::qr::QrTextType;
use rs_matter::pairing::DiscoveryCapabilities;
use rs_matter::persist::DirKvBlobStore;
use rs_matter::respond::DefaultResponder;
use rs_matter::sc::pase::MAX_COMM_WINDOW_TIMEOUT_SECS;
use rs_matter::tlv::{Nullable, TLVBuilderParent};
use rs_matter::transport::exchange::MatterBuffers;
use rs_matter::transport::network::mdns::builtin::{BuiltinMdns, Host};
use rs_matter::transport::network::mdns::{
    MDNS_IPV4_BROADCAST_ADDR, MDNS_IPV6_BROADCAST_ADDR, MDNS_SOCKET_DEFAULT_BIND_ADDR,
};
use rs_matter::transport::MATTER_SOCKET_BIND_ADDR;
use rs_matter::utils::select::Coalesce;
use rs_matter::{clusters, devices, root_endpoint, with, Matter, MATTER_PORT};

/// Door Lock device type (Matter Device Library 1.3+: 0x000A, revision 3).
const DEV_TYPE_DOOR_LOCK: DeviceType = DeviceType {
    dtype: 0x000A,
    drev: 3,
};

/// The probe's bolt, in memory.
struct ProbeLock {
    dataver: Dataver,
    locked: Cell<bool>,
}

impl ProbeLock {
    const CLUSTER: Cluster<'static> = door_lock::FULL_CLUSTER
        .with_features(0)
        .with_attrs(with!(required))
        .with_cmds(with!(
            door_lock::CommandId::LockDoor | door_lock::CommandId::UnlockDoor
        ));
}

fn unsupported<T>() -> Result<T, Error> {
    // Not in `CLUSTER`'s command list: the Interaction Model refuses these
    // before they reach the handler.
    Err(ErrorCode::CommandNotFound.into())
}

impl door_lock::ClusterAsyncHandler for ProbeLock {
    const CLUSTER: Cluster<'static> = ProbeLock::CLUSTER;

    fn dataver(&self) -> u32 {
        self.dataver.get()
    }

    fn dataver_changed(&self) {
        self.dataver.changed();
    }

    async fn lock_state(&self, _ctx: impl ReadContext) -> Result<Nullable<DlLockState>, Error> {
        Ok(Nullable::some(if self.locked.get() {
            DlLockState::Locked
        } else {
            DlLockState::Unlocked
        }))
    }

    async fn lock_type(&self, _ctx: impl ReadContext) -> Result<DlLockType, Error> {
        Ok(DlLockType::DeadBolt)
    }

    async fn actuator_enabled(&self, _ctx: impl ReadContext) -> Result<bool, Error> {
        Ok(true)
    }

    async fn operating_mode(&self, _ctx: impl ReadContext) -> Result<OperatingModeEnum, Error> {
        Ok(OperatingModeEnum::Normal)
    }

    async fn supported_operating_modes(
        &self,
        _ctx: impl ReadContext,
    ) -> Result<door_lock::DlSupportedOperatingModes, Error> {
        // Bits set are modes NOT supported (the spec's inverted bitmap):
        // only Normal (bit 0) is supported here.
        Ok(door_lock::DlSupportedOperatingModes::from_bits_retain(
            0xFFFE,
        ))
    }

    async fn set_operating_mode(
        &self,
        _ctx: impl rs_matter::dm::WriteContext,
        _value: OperatingModeEnum,
    ) -> Result<(), Error> {
        Err(ErrorCode::ConstraintError.into())
    }

    async fn handle_unbolt_door(
        &self,
        _ctx: impl InvokeContext,
        _request: door_lock::UnboltDoorRequest<'_>,
    ) -> Result<(), Error> {
        unsupported()
    }

    async fn handle_set_aliro_reader_config(
        &self,
        _ctx: impl InvokeContext,
        _request: door_lock::SetAliroReaderConfigRequest<'_>,
    ) -> Result<(), Error> {
        unsupported()
    }

    async fn handle_clear_aliro_reader_config(
        &self,
        _ctx: impl InvokeContext,
    ) -> Result<(), Error> {
        unsupported()
    }

    async fn handle_lock_door(
        &self,
        ctx: impl InvokeContext,
        _request: LockDoorRequest<'_>,
    ) -> Result<(), Error> {
        self.locked.set(true);
        self.dataver_changed();
        ctx.notify_own_attr_changed(door_lock::AttributeId::LockState as _);
        Ok(())
    }

    async fn handle_unlock_door(
        &self,
        ctx: impl InvokeContext,
        _request: UnlockDoorRequest<'_>,
    ) -> Result<(), Error> {
        self.locked.set(false);
        self.dataver_changed();
        ctx.notify_own_attr_changed(door_lock::AttributeId::LockState as _);
        Ok(())
    }

    async fn handle_unlock_with_timeout(
        &self,
        _ctx: impl InvokeContext,
        _request: UnlockWithTimeoutRequest<'_>,
    ) -> Result<(), Error> {
        unsupported()
    }

    async fn handle_set_week_day_schedule(
        &self,
        _ctx: impl InvokeContext,
        _request: SetWeekDayScheduleRequest<'_>,
    ) -> Result<(), Error> {
        unsupported()
    }

    async fn handle_get_week_day_schedule<P: TLVBuilderParent>(
        &self,
        _ctx: impl InvokeContext,
        _request: GetWeekDayScheduleRequest<'_>,
        _response: GetWeekDayScheduleResponseBuilder<P>,
    ) -> Result<P, Error> {
        unsupported()
    }

    async fn handle_clear_week_day_schedule(
        &self,
        _ctx: impl InvokeContext,
        _request: ClearWeekDayScheduleRequest<'_>,
    ) -> Result<(), Error> {
        unsupported()
    }

    async fn handle_set_year_day_schedule(
        &self,
        _ctx: impl InvokeContext,
        _request: SetYearDayScheduleRequest<'_>,
    ) -> Result<(), Error> {
        unsupported()
    }

    async fn handle_get_year_day_schedule<P: TLVBuilderParent>(
        &self,
        _ctx: impl InvokeContext,
        _request: GetYearDayScheduleRequest<'_>,
        _response: GetYearDayScheduleResponseBuilder<P>,
    ) -> Result<P, Error> {
        unsupported()
    }

    async fn handle_clear_year_day_schedule(
        &self,
        _ctx: impl InvokeContext,
        _request: ClearYearDayScheduleRequest<'_>,
    ) -> Result<(), Error> {
        unsupported()
    }

    async fn handle_set_holiday_schedule(
        &self,
        _ctx: impl InvokeContext,
        _request: SetHolidayScheduleRequest<'_>,
    ) -> Result<(), Error> {
        unsupported()
    }

    async fn handle_get_holiday_schedule<P: TLVBuilderParent>(
        &self,
        _ctx: impl InvokeContext,
        _request: GetHolidayScheduleRequest<'_>,
        _response: GetHolidayScheduleResponseBuilder<P>,
    ) -> Result<P, Error> {
        unsupported()
    }

    async fn handle_clear_holiday_schedule(
        &self,
        _ctx: impl InvokeContext,
        _request: ClearHolidayScheduleRequest<'_>,
    ) -> Result<(), Error> {
        unsupported()
    }

    async fn handle_set_user(
        &self,
        _ctx: impl InvokeContext,
        _request: SetUserRequest<'_>,
    ) -> Result<(), Error> {
        unsupported()
    }

    async fn handle_get_user<P: TLVBuilderParent>(
        &self,
        _ctx: impl InvokeContext,
        _request: GetUserRequest<'_>,
        _response: GetUserResponseBuilder<P>,
    ) -> Result<P, Error> {
        unsupported()
    }

    async fn handle_clear_user(
        &self,
        _ctx: impl InvokeContext,
        _request: ClearUserRequest<'_>,
    ) -> Result<(), Error> {
        unsupported()
    }

    async fn handle_set_credential<P: TLVBuilderParent>(
        &self,
        _ctx: impl InvokeContext,
        _request: SetCredentialRequest<'_>,
        _response: SetCredentialResponseBuilder<P>,
    ) -> Result<P, Error> {
        unsupported()
    }

    async fn handle_get_credential_status<P: TLVBuilderParent>(
        &self,
        _ctx: impl InvokeContext,
        _request: GetCredentialStatusRequest<'_>,
        _response: GetCredentialStatusResponseBuilder<P>,
    ) -> Result<P, Error> {
        unsupported()
    }

    async fn handle_clear_credential(
        &self,
        _ctx: impl InvokeContext,
        _request: ClearCredentialRequest<'_>,
    ) -> Result<(), Error> {
        unsupported()
    }
}

const NODE: Node<'static> = Node {
    endpoints: &[
        root_endpoint!(eth),
        Endpoint::new(
            1,
            devices!(DEV_TYPE_DOOR_LOCK),
            clusters!(desc::DescHandler::CLUSTER, ProbeLock::CLUSTER),
        ),
    ],
};

/// The interface's addresses for the mDNS responder: (index, IPv4, IPv6s).
fn interface(name: &str) -> Result<(u32, std::net::Ipv4Addr, Vec<std::net::Ipv6Addr>), String> {
    let index =
        nix::net::if_::if_nametoindex(name).map_err(|e| format!("no interface `{name}`: {e}"))?;
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| e.to_string())?;
    let mut v4 = std::net::Ipv4Addr::UNSPECIFIED;
    let mut v6 = Vec::new();
    for a in addrs.filter(|a| a.interface_name == name) {
        let Some(addr) = a.address else { continue };
        if let Some(s) = addr.as_sockaddr_in() {
            v4 = s.ip();
        } else if let Some(s) = addr.as_sockaddr_in6() {
            v6.push(s.ip());
        }
    }
    if v6.is_empty() {
        return Err(format!("interface `{name}` has no IPv6 address"));
    }
    Ok((index, v4, v6))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let iface = args
        .next()
        .ok_or("usage: matter_probe <iface> <state-dir>")?;
    let state = args
        .next()
        .ok_or("usage: matter_probe <iface> <state-dir>")?;
    let (index, v4, v6) = interface(&iface)?;
    std::fs::create_dir_all(&state)?;

    let matter = Matter::new(&TEST_DEV_DET, TEST_DEV_COMM, &TEST_DEV_ATT, MATTER_PORT);
    let kv = matter.kv(DirKvBlobStore::new(state.into()));
    matter.startup(&kv)?;
    let buffers: MatterBuffers = MatterBuffers::new();
    let im_state: EthInteractionModelState =
        EthInteractionModelState::new(EthNetwork::new_default());
    let crypto = default_crypto(rand_matter::rng(), DAC_PRIVKEY);
    let mut rand = crypto.rand()?;

    let lock = ProbeLock {
        dataver: Dataver::new_rand(&mut rand),
        locked: Cell::new(true),
    };
    let handler = (
        NODE,
        endpoints::EthSysHandlerBuilder::new()
            .netif_diag(&SysNetifs)
            .build(&mut rand)
            .chain(
                |e, c| e == 1 && c == desc::DescHandler::CLUSTER.id,
                Async(desc::DescHandler::new(Dataver::new_rand(&mut rand)).adapt()),
            )
            .chain(
                |e, c| e == 1 && c == ProbeLock::CLUSTER.id,
                door_lock::HandlerAsyncAdaptor(&lock),
            ),
    );
    let im = InteractionModel::new(&matter, &crypto, &buffers, handler, &kv, &im_state);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(im.startup())?;

    let responder = DefaultResponder::new(&im);
    let mut respond = pin!(responder.run::<4, 4>());
    let mut im_job = pin!(im.run());
    let socket = async_io::Async::<UdpSocket>::bind(MATTER_SOCKET_BIND_ADDR)?;

    let mdns_socket = {
        use nix::sys::socket::{self as so, sockopt};
        let fd = so::socket(
            so::AddressFamily::Inet6,
            so::SockType::Datagram,
            so::SockFlag::SOCK_CLOEXEC | so::SockFlag::SOCK_NONBLOCK,
            None,
        )?;
        so::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        so::setsockopt(&fd, sockopt::Ipv6V6Only, &false)?;
        let std::net::SocketAddr::V6(bind) = MDNS_SOCKET_DEFAULT_BIND_ADDR else {
            return Err("the mDNS bind address is IPv6".into());
        };
        so::bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &so::SockaddrIn6::from(bind),
        )?;
        let s = async_io::Async::<UdpSocket>::new_nonblocking(UdpSocket::from(fd))?;
        s.get_ref()
            .join_multicast_v6(&MDNS_IPV6_BROADCAST_ADDR, index)?;
        if !v4.is_unspecified() {
            s.get_ref()
                .join_multicast_v4(&MDNS_IPV4_BROADCAST_ADDR, &v4)?;
        }
        s
    };
    let v6: Vec<_> = v6.iter().map(|a| a.octets().into()).collect();
    let host = Host {
        hostname: "latchd-probe",
        ip: v4.octets().into(),
        ipv6: &v6,
    };
    let mut mdns_responder = BuiltinMdns::new();
    let mut mdns = pin!(mdns_responder.run(
        &mdns_socket,
        &mdns_socket,
        &host,
        (!v4.is_unspecified()).then_some(v4.octets().into()),
        Some(index),
        &matter,
        &crypto,
    ));
    let mut transport = pin!(matter.run(&crypto, &socket, &socket, &socket));

    if !matter.has_fabrics() {
        matter.print_standard_qr_text(DiscoveryCapabilities::IP)?;
        matter.print_standard_qr_code(QrTextType::Unicode, DiscoveryCapabilities::IP)?;
        im.open_basic_comm_window(MAX_COMM_WINDOW_TIMEOUT_SECS)?;
    }
    let all = select4(&mut transport, &mut mdns, &mut respond, &mut im_job).coalesce();
    rt.block_on(all)?;
    Ok(())
}
