//! `kill -9` in the middle of writing: the store keeps whole batches only.
//!
//! ```text
//!   parent (this test)                      child (this binary, writer mode)
//!   ──────────────────                      ────────────────────────────────
//!   first start ─┐
//!   round r:     ├─ spawn current_exe() ──► open store, print READY
//!                │  ◄──────────── READY ── loop as fast as it can:
//!                │  sleep 3..100 ms          apply [DeleteUser n, PutUser n,
//!                │  SIGKILL ───────────────►        k credentials of n]
//!                │                           append_events [UserAdded n]
//!                │                           put_counter(gen)
//!   reopen: integrity_check = ok; every user has exactly the credentials
//!   its batch carried; event ids strictly increasing and never reused.
//! ```
//!
//! SIGKILL kills the process, not the machine: the kernel still writes the
//! page cache back, so this proves SQLite's transaction atomicity under
//! process death (and that we commit batches as one transaction), not the
//! storage stack's behaviour under power loss: `tests/vm/vm_power_cut.rs`
//! cuts the power of a VM for that.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use latchd::store::{EventId, Store};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::common::crash_batches::*;
use crate::common::test_name;

/// Set (to the state directory) in the child: run the writer loop.
const WRITER_ENV: &str = "LATCHD_STORE_CRASH_WRITER_DIR";
/// The round number, which seeds the child's generation numbers.
const ROUND_ENV: &str = "LATCHD_STORE_CRASH_ROUND";
const READY: &str = "LATCHD-STORE-CRASH-WRITER-READY";
const ROUNDS: u64 = 20;
/// Generations of round r are r * GEN_STRIDE + 1, + 2, ...
const GEN_STRIDE: u64 = 1_000_000;

/// The child: write until killed.
fn writer(dir: &Path, round: u64) -> ! {
    let (mut store, _key) = Store::open(dir, opts()).expect("writer opens the store");
    println!("{READY}");
    std::io::stdout().flush().expect("stdout");
    let mut gen = round * GEN_STRIDE;
    loop {
        gen += 1;
        write_generation(&mut store, gen);
    }
}

/// xorshift64*: a seeded, reproducible source of kill delays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// What the parent has seen so far, to check the next round against.
#[derive(Default)]
struct Seen {
    /// Event id → the generation it recorded, for every id ever seen.
    events: BTreeMap<u64, u64>,
    counter: u64,
    /// Rounds in which at least one batch was committed.
    productive_rounds: u64,
}

fn verify(dir: &Path, round: u64, seen: &mut Seen) {
    let (mut store, _key) = Store::open(dir, opts())
        .unwrap_or_else(|e| panic!("round {round}: reopen after SIGKILL failed: {e}"));
    assert_eq!(store.integrity_check().unwrap(), "ok", "round {round}");

    let state = store.load().unwrap();
    let this_round = assert_whole_batches(&state, &format!("round {round}"))
        .iter()
        .filter(|gen| *gen / GEN_STRIDE == round)
        .count();
    if this_round > 0 {
        seen.productive_rounds += 1;
    }

    // Oldest first; ids strictly increasing, and an id seen before still
    // means the same event (ids are never reused after pruning or a crash).
    let log = store.events_after(EventId(0), usize::MAX).unwrap();
    assert!(log.len() <= MAX_EVENTS);
    let mut prev = 0;
    let newest_before = seen.events.keys().next_back().copied().unwrap_or(0);
    for e in &log {
        assert!(e.id.0 > prev, "round {round}: event ids not increasing");
        prev = e.id.0;
        let gen = e.event.mono_ms;
        if let Some(old) = seen.events.insert(e.id.0, gen) {
            assert_eq!(old, gen, "round {round}: event id {} was reused", e.id.0);
        } else {
            assert!(
                e.id.0 > newest_before,
                "round {round}: new event below an old id"
            );
            assert_eq!(
                gen / GEN_STRIDE,
                round,
                "round {round}: new event from another round"
            );
        }
    }
    let counter = store.get_counter(COUNTER).unwrap().unwrap_or(0);
    assert!(counter >= seen.counter, "round {round}: counter went back");
    seen.counter = counter;

    // A kill between the batch and its event leaves at most one batch
    // without an event, never an event without its batch.
    if let Some(last) = log.last() {
        if last.event.mono_ms / GEN_STRIDE == round {
            let user = state
                .users
                .iter()
                .find(|u| u.number == user_for(last.event.mono_ms))
                .expect("the user of the newest event exists");
            assert!(user.validity.from.unwrap().0 as u64 >= last.event.mono_ms);
        }
    }
}

#[test]
fn kill_9_mid_write_leaves_only_whole_batches() {
    if let Ok(dir) = std::env::var(WRITER_ENV) {
        let round = std::env::var(ROUND_ENV)
            .ok()
            .and_then(|r| r.parse().ok())
            .expect("round number");
        writer(Path::new(&dir), round);
    }

    let tmp = tempfile::tempdir().unwrap();
    drop(Store::open(tmp.path(), opts()).expect("first start"));
    let exe = std::env::current_exe().unwrap();
    // The child runs this one test of the shared `it` binary, by its full name.
    let name = test_name(module_path!(), "kill_9_mid_write_leaves_only_whole_batches");
    let mut rng = Rng(0x1a7c_d5eed);
    let mut seen = Seen::default();

    for round in 1..=ROUNDS {
        let mut child = Command::new(&exe)
            .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env(WRITER_ENV, tmp.path())
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the writer");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains(READY) => break,
                Some(Ok(_)) => continue,
                _ => panic!(
                    "round {round}: writer exited before it was ready: {:?}",
                    child.wait()
                ),
            }
        }
        std::thread::sleep(Duration::from_millis(3 + rng.below(98)));
        kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("SIGKILL the writer");
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(Signal::SIGKILL as i32),
            "round {round}: the writer must die by SIGKILL, not stop on its own ({status})"
        );
        drop(lines);
        verify(tmp.path(), round, &mut seen);
    }
    assert!(
        seen.productive_rounds > 0,
        "the writer never committed a batch; the test proved nothing"
    );
    eprintln!(
        "{ROUNDS} SIGKILL rounds, {} of them after committed batches; last event id {}",
        seen.productive_rounds,
        seen.events.keys().next_back().copied().unwrap_or(0)
    );
}
