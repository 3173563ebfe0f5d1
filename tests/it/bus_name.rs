//! `link::bus_name` on a real (private) `dbus-daemon`: connections take a
//! well-known name in turn, as a system service and the one systemd starts
//! after it crashed would.
//!
//! The rules under test: a registration made with the new bluetoothd must
//! not be dropped for the event of that same bluetoothd taking the name
//! (queued while the registration was being made), and must be dropped
//! for the next real change; each start of a service is an arrival, its
//! leaving is not.
use std::time::Duration;

use latchd::link::bus_name::{NameWatch, BLUEZ};

use crate::common::bus::TestBus;

async fn connect(bus: &TestBus) -> zbus::Connection {
    zbus::connection::Builder::address(bus.address.as_str())
        .expect("address")
        .build()
        .await
        .expect("connection")
}

/// A connection owning `org.bluez`: a stand-in bluetoothd for the name
/// only (nothing here calls it).
async fn bluetoothd(bus: &TestBus) -> zbus::Connection {
    let c = connect(bus).await;
    c.request_name("org.bluez").await.expect("take org.bluez");
    c
}

/// Still waiting after `d`?
async fn pending(f: impl std::future::Future<Output = ()>, d: Duration) -> bool {
    tokio::time::timeout(d, f).await.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_is_seen_once_and_the_new_owner_taking_the_name_is_not_a_restart() {
    let bus = TestBus::start();
    let watcher = connect(&bus).await;
    let first = bluetoothd(&bus).await;
    let mut owner = NameWatch::watch(&watcher, BLUEZ).await.expect("watch");
    assert!(owner.running().await);
    let registered_with = owner.current().await;
    assert_eq!(
        registered_with.as_deref(),
        first.unique_name().map(|n| n.as_str())
    );
    // Nothing changed: no restart.
    assert!(
        pending(
            owner.next_restart(registered_with.as_deref()),
            Duration::from_millis(300)
        )
        .await
    );

    // The first bluetoothd dies; another takes the name before the
    // registrant looks again (both changes are queued).
    drop(first);
    let second = bluetoothd(&bus).await;
    tokio::time::timeout(
        Duration::from_secs(5),
        owner.next_restart(registered_with.as_deref()),
    )
    .await
    .expect("the first bluetoothd leaving is a restart");

    // Registered again with the second: its own taking of the name (still
    // queued) is not another restart.
    let again = owner.current().await;
    assert_eq!(again.as_deref(), second.unique_name().map(|n| n.as_str()));
    assert!(
        pending(
            owner.next_restart(again.as_deref()),
            Duration::from_millis(300)
        )
        .await
    );

    // The second one goes too: that is.
    second.release_name("org.bluez").await.expect("release");
    tokio::time::timeout(Duration::from_secs(5), owner.next_restart(again.as_deref()))
        .await
        .expect("the second bluetoothd leaving is a restart");
    assert!(!owner.running().await);
    assert_eq!(owner.current().await, None);
}

/// What the Wi-Fi monitor waits on: each start of the service is an
/// arrival; its leaving is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_start_of_a_service_is_an_arrival_and_its_leaving_is_not() {
    const SERVICE: &str = "fi.w1.wpa_supplicant1";
    let bus = TestBus::start();
    let watcher = connect(&bus).await;
    let mut wifi = NameWatch::watch(&watcher, SERVICE).await.expect("watch");
    assert!(!wifi.running().await);

    let first = connect(&bus).await;
    first.request_name(SERVICE).await.expect("take the name");
    tokio::time::timeout(Duration::from_secs(5), wifi.next_arrival())
        .await
        .expect("the start is an arrival");
    first.release_name(SERVICE).await.expect("release");
    // Gone, nobody back: no arrival.
    let mut arrival = Box::pin(wifi.next_arrival());
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut arrival)
            .await
            .is_err(),
        "leaving is not an arrival"
    );
    let second = connect(&bus).await;
    second
        .request_name(SERVICE)
        .await
        .expect("take the name again");
    assert!(tokio::time::timeout(Duration::from_secs(5), arrival)
        .await
        .expect("the restart is an arrival"));
}
