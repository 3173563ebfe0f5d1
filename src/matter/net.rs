//! The node's network: which interface it advertises on, and the mDNS
//! socket.
//!
//! Matter discovery is DNS-SD over multicast (mDNS, port 5353). rs-matter's
//! built-in responder answers for this node on one interface: the one
//! `[matter] interface` names, or the first that is up, is not loopback and
//! has an IPv6 address (controllers ignore loopback for mDNS, so a lock
//! tested on one machine uses a network namespace; see tests/matter/).
use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};

use nix::net::if_::InterfaceFlags;
use nix::sys::socket::{self as so, sockopt};
use rs_matter::transport::network::mdns::{
    MDNS_IPV4_BROADCAST_ADDR, MDNS_IPV6_BROADCAST_ADDR, MDNS_PORT,
};

use super::running::MatterError;

/// An interface and the addresses the node publishes for it.
#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    /// Unspecified when it has none (IPv6-only).
    pub ipv4: Ipv4Addr,
    pub ipv6: Vec<Ipv6Addr>,
}

impl Interface {
    /// The configured interface (`name` non-empty), or the first usable one.
    pub fn pick(name: &str) -> Result<Interface, MatterError> {
        let addrs: Vec<_> = nix::ifaddrs::getifaddrs()
            .map_err(|e| MatterError::Interface(format!("cannot list interfaces: {e}")))?
            .collect();
        let usable = |a: &nix::ifaddrs::InterfaceAddress| {
            a.flags.contains(InterfaceFlags::IFF_UP)
                && !a.flags.contains(InterfaceFlags::IFF_LOOPBACK)
                && a.address
                    .as_ref()
                    .and_then(|s| s.as_sockaddr_in6())
                    .is_some()
        };
        let chosen = if name.is_empty() {
            addrs
                .iter()
                .find(|a| usable(a))
                .map(|a| a.interface_name.clone())
                .ok_or_else(|| {
                    MatterError::Interface(
                        "no interface is up with an IPv6 address (loopback does not count); set [matter] interface".into(),
                    )
                })?
        } else {
            name.to_string()
        };
        let index = nix::net::if_::if_nametoindex(chosen.as_str()).map_err(|e| {
            MatterError::Interface(format!(
                "no interface `{chosen}` ({e}); check [matter] interface"
            ))
        })?;
        let mut ipv4 = Ipv4Addr::UNSPECIFIED;
        let mut ipv6 = Vec::new();
        for a in addrs.iter().filter(|a| a.interface_name == chosen) {
            let Some(addr) = &a.address else { continue };
            if let Some(s) = addr.as_sockaddr_in() {
                ipv4 = s.ip();
            } else if let Some(s) = addr.as_sockaddr_in6() {
                ipv6.push(s.ip());
            }
        }
        if ipv6.is_empty() {
            return Err(MatterError::Interface(format!(
                "interface `{chosen}` has no IPv6 address; Matter needs one"
            )));
        }
        Ok(Interface {
            name: chosen,
            index,
            ipv4,
            ipv6,
        })
    }
}

/// How often the node looks at its interface's addresses.
pub const ADDRESS_POLL: std::time::Duration = std::time::Duration::from_secs(2);

impl Interface {
    /// The same addresses (an address added, removed or replaced is a
    /// change; their order is not).
    pub fn same_addresses(&self, other: &Interface) -> bool {
        let sorted = |v: &[Ipv6Addr]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        self.index == other.index
            && self.ipv4 == other.ipv4
            && sorted(&self.ipv6) == sorted(&other.ipv6)
    }
}

/// Returns when `iface` (by name) is gone, has lost its last IPv6 address,
/// or its addresses changed; polled every [`ADDRESS_POLL`].
pub async fn addresses_changed(iface: &Interface) {
    loop {
        tokio::time::sleep(ADDRESS_POLL).await;
        match Interface::pick(&iface.name) {
            Ok(now) if now.same_addresses(iface) => {}
            _ => return,
        }
    }
}

/// The mDNS socket: port 5353 shared with any other responder on the host
/// (SO_REUSEADDR), IPv6 and IPv4, joined to the groups on `iface`.
pub fn mdns_socket(iface: &Interface) -> Result<async_io::Async<UdpSocket>, MatterError> {
    let err = |what: &str, e: &dyn std::fmt::Display| {
        MatterError::Interface(format!("mDNS socket on {}: {what}: {e}", iface.name))
    };
    let fd = so::socket(
        so::AddressFamily::Inet6,
        so::SockType::Datagram,
        so::SockFlag::SOCK_CLOEXEC | so::SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| err("socket", &e))?;
    so::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| err("SO_REUSEADDR", &e))?;
    so::setsockopt(&fd, sockopt::Ipv6V6Only, &false).map_err(|e| err("IPV6_V6ONLY", &e))?;
    let any = so::SockaddrIn6::from(std::net::SocketAddrV6::new(
        Ipv6Addr::UNSPECIFIED,
        MDNS_PORT,
        0,
        0,
    ));
    so::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &any).map_err(|e| err("bind 5353", &e))?;
    let socket = UdpSocket::from(fd);
    socket
        .join_multicast_v6(&MDNS_IPV6_BROADCAST_ADDR, iface.index)
        .map_err(|e| err("join ff02::fb", &e))?;
    if !iface.ipv4.is_unspecified() {
        socket
            .join_multicast_v4(&MDNS_IPV4_BROADCAST_ADDR, &iface.ipv4)
            .map_err(|e| err("join 224.0.0.251", &e))?;
    }
    async_io::Async::new_nonblocking(socket).map_err(|e| err("register", &e))
}

/// The mDNS host name: the serial, as DNS labels allow it.
pub fn hostname(serial: &str) -> String {
    let name: String = serial
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    if name.is_empty() {
        "latchd".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_dns_labels() {
        assert_eq!(hostname("LD-ABC12"), "LD-ABC12");
        assert_eq!(hostname("a b.c"), "a-b-c");
        assert_eq!(hostname(""), "latchd");
    }

    #[test]
    fn an_address_added_removed_or_replaced_is_a_change_the_order_is_not() {
        let a: Ipv6Addr = "fd00::1".parse().unwrap();
        let b: Ipv6Addr = "fe80::1".parse().unwrap();
        let iface = |ipv6: Vec<Ipv6Addr>| Interface {
            name: "wlan0".into(),
            index: 3,
            ipv4: Ipv4Addr::UNSPECIFIED,
            ipv6,
        };
        assert!(iface(vec![a, b]).same_addresses(&iface(vec![b, a])));
        assert!(!iface(vec![b]).same_addresses(&iface(vec![a, b])));
        assert!(!iface(vec![a, b]).same_addresses(&iface(vec![b])));
        assert!(!iface(vec![a]).same_addresses(&iface(vec![b])));
        let mut v4 = iface(vec![a]);
        v4.ipv4 = Ipv4Addr::new(10, 0, 0, 2);
        assert!(!v4.same_addresses(&iface(vec![a])));
    }

    #[test]
    fn a_missing_interface_is_named() {
        let e = Interface::pick("no-such-if0").unwrap_err();
        assert!(e.to_string().contains("no-such-if0"), "{e}");
    }
}
