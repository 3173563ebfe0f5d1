//! Loopback ports for servers a test starts in another process (Mosquitto,
//! the daemon's video server), which must be told a port before they bind.
//!
//! All integration tests share one process and run in parallel, so "bind
//! port 0, read the port, close" is not enough: the kernel hands the same
//! ephemeral range to every `connect` and `bind(0)` of every test, and a
//! port freed here can be taken again before the server binds it. Ports
//! come from below the ephemeral range instead (Linux's default starts at
//! 32768), each one at most once per process, and only after a bind showed
//! it free.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Below `net.ipv4.ip_local_port_range` (32768–60999 by default), above
/// the ports services register.
const FIRST: u16 = 20_000;
const END: u16 = 32_768;

/// A loopback TCP port that was free a moment ago and that no other test of
/// this process has been given.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    // Start at a place that depends on the process, so test runs of several
    // worktrees on one machine rarely probe the same ports first.
    let span = END - FIRST;
    let start = (std::process::id() % u32::from(span)) as u16;
    for i in 0..span {
        let port = FIRST + (start + i) % span;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{END}");
}
