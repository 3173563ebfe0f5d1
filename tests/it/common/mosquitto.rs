//! Mosquitto as the integration tests and the soak run it: a process on a
//! config file, its log in a file, waited for until it listens. Benches
//! include it with `#[path = "../tests/it/common/mosquitto.rs"] mod mosquitto;`.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `mosquitto -c conf`, stderr to `log`; returns once `port` on loopback
/// accepts a connection (panics after `limit`).
pub fn spawn(conf: &Path, log: std::fs::File, port: u16, limit: Duration) -> Child {
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("mosquitto starts (apt-get install mosquitto)");
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}
