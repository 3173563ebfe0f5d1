//! The lock as a Matter Door Lock, proven with the controller Home
//! Assistant uses (python-matter-server + home-assistant-chip-core, issue
//! 18), in a network namespace the test makes (`tests/it/common/matter.rs`).
//!
//! One scenario, in order, on one lock: system information speaks the
//! label's manual code (B-4.10); commission with it (pairing mode opens the
//! window, B-5.1) → read the attributes → lock
//! and unlock (remote unlock off refuses, B-6.7; OperatingMode Normal turns
//! it on) with LockOperation events by subscription → SetUser + SetCredential
//! a PIN, which then opens on the simulated keypad → OperatingMode Privacy
//! refuses it, a controller cannot end Privacy, the inside handle does
//! (issue 18 item 2) → week-day, year-day and holiday schedules set, read
//! back and cleared, a year-day period refusing the PIN → a weak PIN refused
//! (B-2.3) → wrong PINs over Matter count towards the keypad's lockout
//! (B-7.1, issue 13's shared budget; DoorLockAlarm WrongCodeEntryLimit)
//! → a keypad-made user's palm shows as
//! a FingerVein credential that Matter deletes → jam and tamper alarms →
//! restart the lock, operate again without commissioning → a second
//! controller (a second fabric) after SET is held again → remove both
//! fabrics (the lock forgets them). Around the lock: Basic Information from
//! `[matter]`, Power Source (battery, USB-C) following the simulated
//! battery, Identify speaking the identify prompt.
//!
//! Needs `scripts/matter-env.sh` (scripts/test.sh runs it), util-linux
//! `unshare`/`nsenter` and iproute2; the namespaces need no root (user
//! namespaces). Run alone:
//!     cargo test --all-features --test it matter_controller:: -- --nocapture
use serde_json::json;

use crate::common::bus::TestBus;
use crate::common::daemon::{self as daemon_common, first_start, Daemon};
use crate::common::matter::{
    lock_config, manual_code, wait_for_diagnostics, wait_until, Controller, NetNs,
};

/// Door Lock events (cluster 257).
const ALARM: u32 = 0;
const LOCK_OPERATION: u32 = 2;
const OPERATION_ERROR: u32 = 3;
const USER_CHANGE: u32 = 4;

/// The PIN the controller gives user 002.
const PIN: &str = "246801";

fn lock_state(d: &Daemon) -> String {
    d.status()["engine"]["lock"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn start_lock(
    ns: &NetNs,
    bus: &TestBus,
    state: &std::path::Path,
    config: &std::path::Path,
) -> Daemon {
    let wrapper = ns.enter();
    Daemon::start_wrapped(
        &wrapper,
        state,
        &["--config", config.to_str().unwrap(), "--dbus", &bus.address],
    )
}

/// How many of rs-matter's fabric records (keys 0..=255 of the node
/// scope) the lock's store holds.
fn stored_fabrics(state: &std::path::Path) -> u32 {
    let db = rusqlite::Connection::open_with_flags(
        state.join("latchd.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    db.query_row(
        "SELECT count(*) FROM matter_blobs WHERE scope = 'node' AND key < 256",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn home_assistants_controller_commissions_and_operates_the_lock() {
    let ns = NetNs::new();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("lock");
    let config = lock_config(dir.path());
    let bus = TestBus::start();
    let d = start_lock(&ns, &bus, &state, &config);
    first_start(&d);
    wait_for_diagnostics(&bus.address, "running", 0);
    let code = manual_code(&state, &config);
    assert_eq!(code.len(), 11, "{code}");
    // B-4.10: system information speaks the label's Matter code too.
    daemon_common::enter_menu(&d);
    d.press("✓");
    assert!(
        d.last_prompt()
            .ends_with(&format!("Matter setup code {code}.")),
        "{}",
        d.last_prompt()
    );
    d.press("↩");

    let mut c = Controller::start(&ns, &dir.path().join("controller"));
    // Nothing to find until SET is held (B-5.1): the window is closed.
    let refused = c.call("commission", json!({"code": code}));
    assert!(
        refused.is_err(),
        "commissioned without pairing mode: {refused:?}"
    );

    d.ok(json!({"cmd": "set", "long": true}));
    wait_for_diagnostics(&bus.address, "commissioning", 0);
    let done = c.ok("commission", json!({"code": code}));
    let node = done["node_id"].as_u64().unwrap();
    println!(
        "FIGURE commissioning on the veth pair: {:.2} s (manual code → interviewed node)",
        done["seconds"].as_f64().unwrap()
    );
    assert_eq!(
        stored_fabrics(&state),
        1,
        "the fabric is in the sealed store"
    );
    wait_for_diagnostics(&bus.address, "running", 1);

    // Attributes (the lock is unlocked after its first start: bolt retracted).
    assert_eq!(c.read(node, "1/257/1"), json!(3), "LockType = Mortise");
    assert_eq!(c.read(node, "1/257/2"), json!(true), "ActuatorEnabled");
    assert_eq!(
        c.read(node, "1/257/37"),
        json!(3),
        "OperatingMode = NoRemoteLockUnlock (B-6.7 default)"
    );
    assert_eq!(
        c.read(node, "1/257/17"),
        json!(999),
        "NumberOfTotalUsersSupported (B-1.4)"
    );
    assert_eq!(
        c.read(node, "1/257/18"),
        json!(50),
        "NumberOfPINUsersSupported (B-1.1)"
    );
    assert_eq!(
        c.read(node, "1/257/24"),
        json!(6),
        "MinPINCodeLength (B-2.3)"
    );
    assert_eq!(
        c.read(node, "1/257/23"),
        json!(10),
        "MaxPINCodeLength (B-2.3)"
    );
    assert_eq!(
        c.read(node, "1/257/48"),
        json!(5),
        "WrongCodeEntryLimit (B-7.1)"
    );
    assert_eq!(
        c.read(node, "1/257/49"),
        json!(180),
        "UserCodeTemporaryDisableTime (B-7.1)"
    );
    let serial = c.read(node, "0/40/15");
    assert!(
        serial.as_str().is_some_and(|s| s.starts_with("LD-")),
        "SerialNumber: {serial}"
    );
    assert_eq!(
        c.read(node, "0/40/2"),
        json!(0xFFF1),
        "VendorID (development attestation)"
    );
    assert_eq!(c.read(node, "0/40/1"), json!("latchd"), "VendorName");
    assert_eq!(
        c.read(node, "0/40/3"),
        json!("latchd smart lock"),
        "ProductName"
    );
    assert_eq!(
        c.read(node, "0/40/10"),
        json!(env!("CARGO_PKG_VERSION")),
        "SoftwareVersionString = the firmware"
    );

    // Power Source: the battery on endpoint 1, USB-C on endpoint 2 (B-10.1, B-10.3).
    d.ok(json!({"cmd": "battery", "percent": 80, "external": false}));
    c.wait_attribute(node, "1/47/12", json!(160)); // BatPercentRemaining, half percent
    c.wait_attribute(node, "1/47/14", json!(0)); // BatChargeLevel OK
    let volts = c.read(node, "1/47/11");
    assert!(
        volts.as_u64().is_some_and(|mv| mv > 0),
        "BatVoltage {volts}"
    );
    assert_eq!(c.read(node, "2/47/9"), json!(false), "USB-C WiredPresent");
    d.ok(json!({"cmd": "battery", "percent": 10}));
    c.wait_attribute(node, "1/47/14", json!(1)); // Warning: low battery
    c.wait_attribute(node, "1/47/15", json!(true)); // BatReplacementNeeded
    d.ok(json!({"cmd": "battery", "external": true}));
    c.wait_attribute(node, "2/47/9", json!(true));
    c.wait_attribute(node, "2/47/0", json!(1)); // Status Active
    d.ok(json!({"cmd": "battery", "percent": 80, "external": false}));
    c.wait_attribute(node, "2/47/9", json!(false));

    // Identify: the lock says so (and flashes 0).
    c.invoke(node, 1, "Identify", "Identify", json!({"identifyTime": 5}))
        .unwrap();
    wait_until("the identify prompt", || {
        d.last_prompt() == "This is the lock you are setting up."
    });

    // Lock over Matter; the subscription delivers LockOperation (source Remote = 7).
    c.lock_cmd(node, "LockDoor", json!({})).unwrap();
    d.settle();
    assert_eq!(lock_state(&d), "locked");
    c.event(
        node,
        LOCK_OPERATION,
        json!({"lockOperationType": 0, "operationSource": 7}),
    );
    c.ok(
        "wait_attribute",
        json!({"node": node, "path": "1/257/0", "value": 1}),
    );

    // Unlock is refused while remote unlock is off (B-6.7)…
    let refused = c.lock_cmd(node, "UnlockDoor", json!({}));
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("UnsupportedAccess")),
        "{refused:?}"
    );
    assert_eq!(lock_state(&d), "locked");
    c.event(node, OPERATION_ERROR, json!({"operationError": 3}));
    // …OperatingMode Normal turns it on, and the door opens.
    let written = c.ok(
        "write",
        json!({"node": node, "path": "1/257/37", "value": 0}),
    );
    wait_until(&format!("remote unlock on after {written}"), || {
        d.status()["engine"]["settings"]["remote_unlock"] == json!(true)
    });
    let unlocked = c.lock_cmd(node, "UnlockDoor", json!({})).unwrap();
    println!(
        "FIGURE UnlockDoor round trip (controller → engine → motor command → reply): {:.3} s",
        unlocked["seconds"].as_f64().unwrap()
    );
    d.settle();
    assert_eq!(lock_state(&d), "unlocked");
    c.event(
        node,
        LOCK_OPERATION,
        json!({"lockOperationType": 1, "operationSource": 7}),
    );
    assert!(d.count_events("unlocked.matter") >= 1);

    // A user and a PIN from the controller (SetUser + SetCredential)…
    c.lock_cmd(
        node,
        "SetUser",
        json!({"operationType": 0, "userIndex": 2, "userName": "guest", "userUniqueID": 7,
               "userStatus": 1, "userType": 0, "credentialRule": 0}),
    )
    .unwrap();
    c.event(
        node,
        USER_CHANGE,
        json!({"lockDataType": 2, "dataOperationType": 0, "userIndex": 2}),
    );
    let set = c
        .lock_cmd(
            node,
            "SetCredential",
            json!({"operationType": 0, "credential": {"credentialType": 1, "credentialIndex": 2},
                   "credentialData": PIN, "userIndex": 2, "userStatus": null, "userType": null}),
        )
        .unwrap();
    assert_eq!(set["result"]["status"], json!(0), "{set}");
    c.event(
        node,
        USER_CHANGE,
        json!({"lockDataType": 6, "dataOperationType": 0, "userIndex": 2}),
    );
    let user = c
        .lock_cmd(node, "GetUser", json!({"userIndex": 2}))
        .unwrap();
    assert_eq!(user["result"]["userName"], json!("guest"), "{user}");
    assert_eq!(
        user["result"]["credentials"][0]["credentialType"],
        json!(1),
        "{user}"
    );
    // …which the engine holds like a keypad-made one: it opens on the keypad.
    d.ok(json!({"cmd": "lock_button"}));
    d.settle();
    assert_eq!(lock_state(&d), "locked");
    d.press(&format!("{PIN}✓"));
    d.settle();
    assert_eq!(lock_state(&d), "unlocked");
    c.event(
        node,
        LOCK_OPERATION,
        json!({"lockOperationType": 1, "operationSource": 3, "userIndex": 2}),
    );

    // Issue 18 item 2: all five operating modes (the inverted bitmap's
    // bits 0-4 clear). Privacy refuses the user's PIN on the keypad; a
    // controller cannot end it (it is the outside Privacy shuts out); the
    // inside handle does, and the PIN opens again.
    assert_eq!(
        c.read(node, "1/257/38"),
        json!(0xFFE0),
        "SupportedOperatingModes"
    );
    d.ok(json!({"cmd": "lock_button"}));
    d.settle();
    c.ok(
        "write",
        json!({"node": node, "path": "1/257/37", "value": 2}),
    );
    let mode = |d: &Daemon| d.status()["engine"]["settings"]["mode"].clone();
    wait_until("privacy mode", || mode(&d) == json!("privacy"));
    d.press(&format!("{PIN}✓"));
    d.settle();
    assert_eq!(lock_state(&d), "locked", "Privacy refused the PIN");
    let refused = c.call(
        "write",
        json!({"node": node, "path": "1/257/37", "value": 0}),
    );
    d.settle();
    assert_eq!(
        mode(&d),
        json!("privacy"),
        "not left from outside: {refused:?}"
    );
    d.ok(json!({"cmd": "handle"}));
    d.settle();
    assert_eq!(
        c.read(node, "1/257/37"),
        json!(0),
        "the handle ended Privacy"
    );
    d.ok(json!({"cmd": "lock_button"}));
    d.settle();
    d.press(&format!("{PIN}✓"));
    d.settle();
    assert_eq!(lock_state(&d), "unlocked");

    // Issue 18 item 2: the schedules (WDSCH, YDSCH, HDSCH) are the engine's.
    let features = c.read(node, "1/257/65532").as_u64().unwrap_or(0);
    assert_eq!(features & 0xC10, 0xC10, "FeatureMap {features:#x}");
    assert_eq!(c.read(node, "1/257/20"), json!(7), "week-day per user");
    assert_eq!(c.read(node, "1/257/21"), json!(4), "year-day per user");
    assert_eq!(c.read(node, "1/257/22"), json!(8), "holidays");
    // A week-day window reads back as it was set, and clears.
    let weekdays = json!({"weekDayIndex": 1, "userIndex": 2, "daysMask": 0x3e,
                          "startHour": 8, "startMinute": 30, "endHour": 17, "endMinute": 0});
    c.lock_cmd(node, "SetWeekDaySchedule", weekdays).unwrap();
    c.event(
        node,
        USER_CHANGE,
        json!({"lockDataType": 3, "dataOperationType": 0, "userIndex": 2, "dataIndex": 1}),
    );
    let got = c
        .lock_cmd(
            node,
            "GetWeekDaySchedule",
            json!({"weekDayIndex": 1, "userIndex": 2}),
        )
        .unwrap();
    for (field, value) in [
        ("status", 0),
        ("daysMask", 0x3e),
        ("startHour", 8),
        ("startMinute", 30),
        ("endHour", 17),
        ("endMinute", 0),
    ] {
        assert_eq!(got["result"][field], json!(value), "{field}: {got}");
    }
    c.lock_cmd(
        node,
        "ClearWeekDaySchedule",
        json!({"weekDayIndex": 0xFE, "userIndex": 2}),
    )
    .unwrap();
    let gone = c
        .lock_cmd(
            node,
            "GetWeekDaySchedule",
            json!({"weekDayIndex": 1, "userIndex": 2}),
        )
        .unwrap();
    assert_eq!(gone["result"]["status"], json!(0x8B), "NotFound: {gone}");
    // A year-day period in January 2000 only: the PIN is refused today,
    // like a wrong one; cleared, it opens again.
    let year2000 =
        json!({"yearDayIndex": 1, "userIndex": 2, "localStartTime": 1000, "localEndTime": 2000});
    c.lock_cmd(node, "SetYearDaySchedule", year2000).unwrap();
    let got = c
        .lock_cmd(
            node,
            "GetYearDaySchedule",
            json!({"yearDayIndex": 1, "userIndex": 2}),
        )
        .unwrap();
    assert_eq!(got["result"]["localStartTime"], json!(1000), "{got}");
    assert_eq!(got["result"]["localEndTime"], json!(2000), "{got}");
    d.ok(json!({"cmd": "lock_button"}));
    d.settle();
    d.press(&format!("{PIN}✓"));
    d.settle();
    assert_eq!(lock_state(&d), "locked", "outside its year-day schedule");
    c.lock_cmd(
        node,
        "ClearYearDaySchedule",
        json!({"yearDayIndex": 0xFE, "userIndex": 2}),
    )
    .unwrap();
    d.press(&format!("{PIN}✓"));
    d.settle();
    assert_eq!(lock_state(&d), "unlocked", "no schedule: unrestricted");
    // Holidays: never Passage (a timetable that holds the door open); a
    // Vacation one reads back and clears.
    let passage = c.lock_cmd(
        node,
        "SetHolidaySchedule",
        json!({"holidayIndex": 1, "localStartTime": 1000, "localEndTime": 2000, "operatingMode": 4}),
    );
    assert!(
        passage
            .as_ref()
            .is_err_and(|e| e.contains("InvalidCommand")),
        "{passage:?}"
    );
    c.lock_cmd(
        node,
        "SetHolidaySchedule",
        json!({"holidayIndex": 1, "localStartTime": 1000, "localEndTime": 2000, "operatingMode": 1}),
    )
    .unwrap();
    let got = c
        .lock_cmd(node, "GetHolidaySchedule", json!({"holidayIndex": 1}))
        .unwrap();
    assert_eq!(got["result"]["operatingMode"], json!(1), "Vacation: {got}");
    assert_eq!(got["result"]["localEndTime"], json!(2000), "{got}");
    c.lock_cmd(node, "ClearHolidaySchedule", json!({"holidayIndex": 0xFE}))
        .unwrap();
    // A schedule for a user that does not exist: FAILURE.
    let nobody = c.lock_cmd(
        node,
        "SetWeekDaySchedule",
        json!({"weekDayIndex": 1, "userIndex": 9, "daysMask": 1,
               "startHour": 8, "startMinute": 0, "endHour": 9, "endMinute": 0}),
    );
    assert!(
        nobody.as_ref().is_err_and(|e| e.contains("Failure")),
        "{nobody:?}"
    );

    // B-2.3: a weak PIN gets the cluster's failure status and changes nothing.
    let weak = c
        .lock_cmd(
            node,
            "SetCredential",
            json!({"operationType": 2, "credential": {"credentialType": 1, "credentialIndex": 2},
                   "credentialData": "123456", "userIndex": 2, "userStatus": null, "userType": null}),
        )
        .unwrap();
    assert_eq!(
        weak["result"]["status"],
        json!(0x85),
        "InvalidField: {weak}"
    );

    // A user made on the keypad appears to Matter, with its palm shown as a
    // FingerVein credential (Matter has no palm type) that Matter deletes
    // but cannot create.
    daemon_common::enter_menu(&d);
    d.press("22"); // add a user (003), by palm vein
    for _ in 0..10 {
        if d.status()["engine"]["counts"]["palms"] == json!(1) {
            break;
        }
        d.ok(json!({"cmd": "palm", "person": 7}));
        d.settle();
    }
    assert_eq!(d.status()["engine"]["counts"]["palms"], json!(1));
    for _ in 0..3 {
        if d.step() == "idle" {
            break;
        }
        d.press("↩");
    }
    assert_eq!(d.step(), "idle");
    c.event(
        node,
        USER_CHANGE,
        json!({"lockDataType": 9, "dataOperationType": 0, "userIndex": 3}),
    );
    let user = c
        .lock_cmd(node, "GetUser", json!({"userIndex": 3}))
        .unwrap();
    let palm = &user["result"]["credentials"][0];
    assert_eq!(palm["credentialType"], json!(4), "FingerVein: {user}");
    let refused = c.lock_cmd(
        node,
        "SetCredential",
        json!({"operationType": 0, "credential": {"credentialType": 4, "credentialIndex": 9},
               "credentialData": "00", "userIndex": 3, "userStatus": null, "userType": null}),
    );
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("InvalidCommand")),
        "{refused:?}"
    );
    c.lock_cmd(
        node,
        "ClearCredential",
        json!({"credential": {"credentialType": 4, "credentialIndex": palm["credentialIndex"]}}),
    )
    .unwrap();
    wait_until("the palm to be deleted", || {
        d.status()["engine"]["counts"]["palms"] == json!(0)
    });

    // Alarms: a jam (the next move sticks) and the front panel removed.
    d.ok(json!({"cmd": "jam", "moves": 1}));
    d.ok(json!({"cmd": "lock_button"}));
    d.settle();
    c.event(node, ALARM, json!({"alarmCode": 0})); // LockJammed
    d.ok(json!({"cmd": "tamper", "open": true}));
    c.event(node, ALARM, json!({"alarmCode": 5})); // FrontEsceutcheonRemoved
    d.ok(json!({"cmd": "tamper", "open": false}));
    d.settle();

    // B-7.1 + issue 13: wrong PINs over Matter are keypad failures in the
    // one brute-force budget: four over Matter and a fifth typed on the
    // keypad lock out.
    d.ok(json!({"cmd": "lock_button"}));
    d.settle();
    for i in 1..=4 {
        let wrong = c.lock_cmd(node, "UnlockDoor", json!({"PINCode": "864209"}));
        assert!(
            wrong.as_ref().is_err_and(|e| e.contains("Failure")),
            "wrong PIN {i}: {wrong:?}"
        );
        c.event(node, OPERATION_ERROR, json!({"operationError": 1}));
    }
    let s = d.status();
    assert_eq!(s["engine"]["strikes"], json!(4), "{s}");
    assert_eq!(s["engine"]["lockout_active"], json!(false), "{s}");
    d.press("975318✓");
    d.settle();
    c.event(node, ALARM, json!({"alarmCode": 4})); // WrongCodeEntryLimit
    let s = d.status();
    assert_eq!(s["engine"]["lockout_active"], json!(true), "{s}");
    assert_eq!(lock_state(&d), "locked");
    // The right PIN does not open during the lockout either.
    let during = c.lock_cmd(node, "UnlockDoor", json!({"PINCode": PIN}));
    assert!(
        during.as_ref().is_err_and(|e| e.contains("Failure")),
        "{during:?}"
    );

    // A restart: the fabric and the controller's session come back.
    let exit = d.sigterm();
    assert!(exit.success(), "{exit}");
    let d = start_lock(&ns, &bus, &state, &config);
    wait_until("the controller to reach the restarted lock", || {
        c.lock_cmd(node, "LockDoor", json!({})).is_ok()
    });
    c.event(
        node,
        LOCK_OPERATION,
        json!({"lockOperationType": 0, "operationSource": 7}),
    );

    // A second home app (another fabric): the window closed when the first
    // commissioning completed; holding SET again opens a fresh one.
    let mut c2 = Controller::start(&ns, &dir.path().join("controller2"));
    d.ok(json!({"cmd": "set", "long": true}));
    let node2 = c2.ok("commission", json!({"code": code}))["node_id"]
        .as_u64()
        .unwrap();
    assert_eq!(stored_fabrics(&state), 2, "two fabrics in the sealed store");
    wait_for_diagnostics(&bus.address, "running", 2);
    let fabrics = c2.ok("fabrics", json!({"node": node2}));
    assert_eq!(fabrics.as_array().map(Vec::len), Some(2), "{fabrics}");

    // Removing the first node takes its fabric off the lock; the second
    // home app still operates it.
    c.ok("remove", json!({"node": node}));
    wait_until("the lock to forget the first fabric", || {
        stored_fabrics(&state) == 1
    });
    wait_for_diagnostics(&bus.address, "running", 1);
    c2.lock_cmd(node2, "LockDoor", json!({})).unwrap();
    c2.ok("remove", json!({"node": node2}));
    wait_until("the lock to forget the second fabric", || {
        stored_fabrics(&state) == 0
    });
    wait_for_diagnostics(&bus.address, "running", 0);
    c.stop();
    c2.stop();
    assert!(d.sigterm().success());
}
