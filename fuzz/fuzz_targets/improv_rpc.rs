//! Arbitrary writes into the Improv RPC parser and state machine. Nothing
//! may panic, and no credentials or scans may be emitted while the lock is
//! not in pairing mode.
#![no_main]

use latchd::ble::improv::{parse_rpc, DeviceInfo, Improv, Output};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_rpc(data);
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let authorized = flags & 1 != 0;
    let mut imp = Improv::new(DeviceInfo {
        firmware: "latchd".into(),
        version: "fuzz".into(),
        hardware: "fuzz".into(),
        device_name: "fuzz".into(),
    });
    imp.set_authorized(authorized);
    // Split the input into writes of 1..=20 bytes, as a client would.
    let step = usize::from(flags >> 1) % 20 + 1;
    for w in rest.chunks(step) {
        for out in imp.on_rpc_write(w) {
            if matches!(out, Output::ApplyCredentials { .. } | Output::Scan) {
                assert!(authorized, "provisioning without authorisation");
            }
        }
    }
});
