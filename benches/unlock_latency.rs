//! Passcode unlock latency in the daemon, not only in the engine: the
//! whole daemon (`latchd::daemon::start`, in this process, sim board,
//! motor travel 1 ms) with 50 users holding passcodes, and `UNLOCK_RUNS`
//! unlocks (default 1,000), each by a different user's code in turn.
//!
//! Each run types the six digits, waits until the engine has handled
//! them (its `processed` counter reaches the input queue's `sent` count),
//! then times the ✓ from `SimControl::press` (the input reaching the
//! daemon's queue) to
//!
//! * **motor**: the sim motor driven towards `Retracted` (the board's
//!   `Motor::drive`, seen through the sim's change notification), and
//! * **published**: the engine task's published status leaving `Locked`
//!   (the whole step done: it also waits for the event log's commit after
//!   the motor started).
//!
//! ```text
//!  t0 ✓ ─► input queue ─► engine.handle ─► Persist(attempt record): SQLite commit, fsync
//!        ─► Motor drive ─────────────────────────────────────────► t1 motor
//!        ─► Log(unlocked) commit, Persist(clear) commit ─► publish ─► t1 published
//! ```
//!
//! Three variants:
//!
//! * `durable`: the state directory on the real filesystem (`/tmp` here,
//!   or `UNLOCK_STATE_DIR`), SQLite `synchronous=FULL`: what a lock does;
//! * `tmpfs`: the same daemon with its state on `/dev/shm`, where an fsync
//!   costs nothing: the daemon's own overhead without the durable commit;
//! * `engine`: `Engine::handle` of the ✓ alone (same 50 codes, anti-peep
//!   MAC over the input, the actions that drive the motor), no IO.
//!
//! * `loaded`: the tmpfs daemon beside one busy process per core, at the
//!   default priority, at nice -5 and as SCHED_FIFO 1: how much of the
//!   tail is the scheduler, and what a unit's priority would buy back.
//!
//! p50 / p99 / max per variant. Nothing is asserted on time.
//!
//! Run: `cargo bench --bench unlock_latency` (`UNLOCK_RUNS=N` to change
//! the count).

#[path = "common/lock_seed.rs"]
mod lock_seed;

use std::path::Path;
use std::time::{Duration, Instant};

use latchd::board::sim::{parse_keys, MotorState, SimControl};
use latchd::core::input::{BoltPosition, DoorPosition, MotorReport};
use latchd::core::passcode::Macer;
use latchd::core::types::{Key, Persisted};
use latchd::core::{Action, Engine, EngineConfig, Input, LockState, MotorCmd, Now};
use lock_seed::{code_of, seed_lock};
use tokio::sync::watch;

/// Users in the store (001 the administrator); every one unlocks in turn.
const USERS: u16 = 50;

fn runs() -> usize {
    std::env::var("UNLOCK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1_000)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    // Nearest rank: the smallest value with at least p of the runs at or below it.
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what} ({} unlocks): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        times.len(),
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(times[times.len() - 1]),
    );
}

/// Wait until the published engine status satisfies `cond`.
async fn published_until(
    rx: &mut watch::Receiver<latchd::link::Published>,
    what: &str,
    cond: impl Fn(&latchd::link::Published) -> bool,
) {
    let wait = async {
        loop {
            if cond(&rx.borrow_and_update()) {
                return;
            }
            rx.changed().await.expect("the daemon stopped");
        }
    };
    // Only turns a hang into a message; nothing is asserted on time.
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("never saw {what}"));
}

/// Wait until the sim motor has been driven towards `Retracted` since
/// `cycles_before` (moving now, or already done: the travel is 1 ms).
async fn motor_driven(sim: &SimControl, rx: &mut watch::Receiver<u64>, cycles_before: u64) {
    let wait = async {
        loop {
            let s = sim.snapshot();
            let moving = s.motor
                == MotorState::Moving {
                    target: BoltPosition::Retracted,
                };
            if moving || s.motor_cycles > cycles_before {
                return;
            }
            rx.changed().await.expect("the sim stopped");
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("the motor was never driven"));
}

/// `runs` unlocks through the daemon with its state under `parent`;
/// returns (✓ → motor, ✓ → published) per run.
fn daemon_unlocks(parent: &Path, runs: usize) -> (Vec<Duration>, Vec<Duration>) {
    let dir = tempfile::tempdir_in(parent).expect("tempdir");
    let state = dir.path().join("state");
    seed_lock(&state, USERS, false);
    let mut config = latchd::config::Config::default();
    config.sim.motor_travel_ms = 1;
    let opts = latchd::daemon::Options {
        config,
        state_dir: state,
        front_panel: false,
        control_socket: None,
        dbus: None,
        set_held: false,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let token = tokio_util::sync::CancellationToken::new();
        let running = latchd::daemon::start(opts, token).await.expect("daemon");
        let sim = running.sim.clone().expect("sim board");
        let inputs = running.inputs.clone();
        let mut published = running.published.clone();
        let mut changes = sim.subscribe();
        let confirm = parse_keys("✓").expect("keys");
        // A few unlocks first (page cache, SQLite statement cache).
        let warm_up = 20;
        let mut to_motor = Vec::with_capacity(runs);
        let mut to_published = Vec::with_capacity(runs);
        for run in 0..runs + warm_up {
            published_until(&mut published, "locked", |p| {
                p.engine.lock == LockState::Locked
            })
            .await;
            sim.motor_idle().await;
            // Users 002…050 in turn (the administrator's code opens too,
            // but an administrator is one user among 50).
            let user = 2 + (run as u16 % (USERS - 1));
            let digits = parse_keys(&code_of(user)).expect("keys");
            sim.press(&digits).expect("digits");
            let target = inputs.sent();
            published_until(&mut published, "the digits handled", |p| {
                p.daemon.processed >= target
            })
            .await;
            let cycles = sim.snapshot().motor_cycles;
            changes.mark_unchanged();

            let t0 = Instant::now();
            sim.press(&confirm).expect("confirm");
            motor_driven(&sim, &mut changes, cycles).await;
            let t_motor = t0.elapsed();
            published_until(&mut published, "the unlock", |p| {
                p.engine.lock != LockState::Locked
            })
            .await;
            let t_published = t0.elapsed();
            if run >= warm_up {
                to_motor.push(t_motor);
                to_published.push(t_published);
            }

            published_until(&mut published, "unlocked", |p| {
                p.engine.lock == LockState::Unlocked
            })
            .await;
            sim.motor_idle().await;
            sim.lock_button().expect("lock button");
        }
        published_until(&mut published, "locked", |p| {
            p.engine.lock == LockState::Locked
        })
        .await;
        running.stop().await.expect("stop");
        (to_motor, to_published)
    })
}

const KEY: [u8; 32] = [9; 32];

/// The engine alone with the same 50 users and codes as the daemon runs.
fn engine_with_codes() -> Engine {
    use latchd::core::types::{
        Credential, CredentialId, CredentialKind, CredentialSecret, Handing, Role, User, UserNumber,
    };
    use latchd::core::Validity;
    let macer = Macer::new(&KEY);
    let mut store = Persisted {
        handing: Some(Handing::RightHand),
        ..Persisted::default()
    };
    for n in 1..=USERS {
        let number = UserNumber::new(n).expect("1..=50");
        store.users.push(User {
            number,
            role: if n == 1 { Role::Admin } else { Role::User },
            validity: Validity::ALWAYS,
        });
        let digits: Vec<u8> = code_of(n).bytes().map(|b| b - b'0').collect();
        store.credentials.push(Credential {
            id: CredentialId(u32::from(n)),
            user: number,
            kind: CredentialKind::Passcode,
            secret: CredentialSecret::Passcode(macer.mac(&digits)),
        });
    }
    let config = EngineConfig {
        passcode_key: KEY,
        serial: "S".into(),
        firmware: "F".into(),
        pairing_codes: latchd::core::PairingCodes::new(|_| "V".into()),
        low_battery_percent: 20,
        matter_code: None,
        one_time_code_ttl: EngineConfig::DEFAULT_ONE_TIME_CODE_TTL,
        weak_wifi_dbm: latchd::core::wifi_signal::DEFAULT_WEAK_DBM,
        update: latchd::core::update::UpdatePolicy::default(),
        default_language: latchd::core::Language::En,
        time_zone: latchd::core::schedule::LocalZone::utc(),
    };
    Engine::new(config, store, Now::new(0, Some(1_795_500_000)))
}

/// `Engine::handle(✓)` alone, the rest of each visit untimed.
fn engine_unlocks(runs: usize) -> Vec<Duration> {
    let mut e = engine_with_codes();
    let wall = Some(1_795_500_000);
    e.handle(Now::new(0, None), Input::PowerUp { set_held: false });
    e.handle(Now::new(0, None), Input::Door(DoorPosition::Closed));
    e.handle(Now::new(0, None), Input::Bolt(BoltPosition::Extended));
    let mut t = 1_000u64;
    let mut times = Vec::with_capacity(runs);
    for run in 0..runs + 20 {
        let user = 2 + (run as u16 % (USERS - 1));
        t += 5_000;
        e.handle(Now::new(t, wall), Input::Touch);
        for d in code_of(user).bytes() {
            e.handle(Now::new(t, wall), Input::Key(Key::Digit(d - b'0')));
        }
        let t0 = Instant::now();
        let actions = e.handle(Now::new(t, wall), Input::Key(Key::Confirm));
        let dt = t0.elapsed();
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Motor(MotorCmd::Drive { .. }))),
            "run {run}: the ✓ did not drive the motor: {actions:?}"
        );
        if run >= 20 {
            times.push(dt);
        }
        for input in [
            Input::Motor(MotorReport::Done(BoltPosition::Retracted)),
            Input::LockButton,
            Input::Motor(MotorReport::Done(BoltPosition::Extended)),
        ] {
            t += 100;
            e.handle(Now::new(t, wall), input);
        }
    }
    times
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let runs = runs();
    let durable_dir = std::env::var_os("UNLOCK_STATE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let (motor, published) = daemon_unlocks(&durable_dir, runs);
    println!(
        "unlock_latency: daemon, sim board, 50 users, state in {} (synchronous=FULL)",
        durable_dir.display()
    );
    report("  durable: ✓ -> motor driven", motor);
    report("  durable: ✓ -> published unlock (step done)", published);

    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let (motor, published) = daemon_unlocks(shm, runs);
        println!("unlock_latency: the same daemon, state on tmpfs (/dev/shm: fsync is free)");
        report("  tmpfs: ✓ -> motor driven", motor);
        report("  tmpfs: ✓ -> published unlock (step done)", published);
    }

    if shm.is_dir() {
        loaded_unlocks(shm, runs);
    }

    report(
        "unlock_latency: engine only, Engine::handle(✓) with 50 codes",
        engine_unlocks(runs),
    );
}

/// The nice value tried beside the busy processes: a CFS weight of 3:1 over
/// a default process.
const RAISED_NICE: i32 = -5;

/// One busy process per core at the default priority: what a lock's other
/// work (an update installing, a log upload) does to the unlock path.
struct BusyNeighbours(Vec<std::process::Child>);

impl BusyNeighbours {
    fn start() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self(
            (0..cores)
                .map(|_| {
                    std::process::Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("a busy neighbour")
                })
                .collect(),
        )
    }
}

impl Drop for BusyNeighbours {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The calling thread's scheduling, inherited by the threads it creates
/// after (the runtime, the store and motor threads): what a unit's `Nice=`
/// or `CPUSchedulingPolicy=` would give the daemon.
#[derive(Clone, Copy, Debug)]
enum Sched {
    Nice(i32),
    Fifo(i32),
}

impl Sched {
    fn apply(self) -> std::io::Result<()> {
        // SAFETY: both calls act on the calling thread (0) and read only
        // the parameter struct passed by reference.
        let rc = unsafe {
            match self {
                Sched::Nice(n) => {
                    let p = libc::sched_param { sched_priority: 0 };
                    libc::sched_setscheduler(0, libc::SCHED_OTHER, &p);
                    libc::setpriority(libc::PRIO_PROCESS, 0, n)
                }
                Sched::Fifo(prio) => {
                    let p = libc::sched_param {
                        sched_priority: prio,
                    };
                    libc::sched_setscheduler(0, libc::SCHED_FIFO, &p)
                }
            }
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

/// The tmpfs daemon beside one busy process per core, at the default
/// priority, at a raised nice value and as a real-time (SCHED_FIFO 1)
/// process: how much of the tail is the scheduler, and what each would buy.
/// Raising a priority needs CAP_SYS_NICE; without it a line says so.
fn loaded_unlocks(shm: &Path, runs: usize) {
    let neighbours = BusyNeighbours::start();
    let n = neighbours.0.len();
    for sched in [Sched::Nice(0), Sched::Nice(RAISED_NICE), Sched::Fifo(1)] {
        if let Err(e) = sched.apply() {
            println!("unlock_latency: {sched:?} skipped: {e} (needs CAP_SYS_NICE)");
            continue;
        }
        let (motor, _) = daemon_unlocks(shm, runs);
        println!("unlock_latency: tmpfs daemon as {sched:?} beside {n} busy processes (nice 0)");
        report(&format!("  loaded, {sched:?}: ✓ -> motor driven"), motor);
    }
    Sched::Nice(0)
        .apply()
        .expect("back to the default scheduling");
    drop(neighbours);
}
