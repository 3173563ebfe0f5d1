//! A lock that is not on the network yet still runs its Matter node (issue
//! 18 item 1): every new lock commissioned over BLE has no address until
//! the controller hands it Wi-Fi, and a wired one may start before its
//! cable or its router. Before, the node gave up at start ("interface has
//! no IPv6 address") and the lock could then only be commissioned after a
//! restart. Now it runs (BTP needs no address), and its mDNS responder
//! starts when the interface gets one and again when the addresses change.
//!
//! Proven with Home Assistant's controller (`tests/it/common/matter.rs`),
//! in a network namespace whose lock side has IPv6 turned off until the
//! test turns it on.
use serde_json::json;

use crate::common::bus::TestBus;
use crate::common::daemon::{first_start, Daemon};
use crate::common::matter::{
    lock_config, manual_code, wait_for_diagnostics, Controller, NetNs, LOCK_IF,
};

#[test]
fn the_node_runs_before_the_network_and_is_found_once_an_address_comes() {
    let ns = NetNs::new();
    // The lock's side of the link, without an IPv6 address (not joined).
    ns.sh(&format!(
        "sysctl -qw net.ipv6.conf.{LOCK_IF}.disable_ipv6=1"
    ));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("lock");
    let config = lock_config(dir.path());
    let bus = TestBus::start();
    let d = Daemon::start_wrapped(
        &ns.enter(),
        &state,
        &["--config", config.to_str().unwrap(), "--dbus", &bus.address],
    );
    first_start(&d);
    // Running, not failed, and saying why nothing is published yet.
    wait_for_diagnostics(&bus.address, "running", 0);
    assert!(
        d.log_text().contains("Matter: not on the network yet"),
        "{}",
        d.log_text()
    );
    let code = manual_code(&state, &config);
    d.ok(json!({"cmd": "set", "long": true}));
    wait_for_diagnostics(&bus.address, "commissioning", 0);

    // The network comes (Wi-Fi joined, cable in): found and commissioned.
    ns.sh(&format!(
        "sysctl -qw net.ipv6.conf.{LOCK_IF}.disable_ipv6=0 && \
         ip addr add fd4c:6174::1/64 dev {LOCK_IF} nodad"
    ));
    let mut c = Controller::start(&ns, &dir.path().join("controller"));
    let done = c.ok("commission", json!({"code": code}));
    let node = done["node_id"].as_u64().unwrap();
    println!(
        "FIGURE commissioned {:.2} s after the address came",
        done["seconds"].as_f64().unwrap()
    );
    assert!(
        d.log_text().contains("Matter: mDNS published"),
        "{}",
        d.log_text()
    );
    assert_eq!(c.read(node, "1/257/1"), json!(3), "LockType = Mortise");
    c.stop();
    let status = d.sigterm();
    assert!(status.success(), "{status}");
}
