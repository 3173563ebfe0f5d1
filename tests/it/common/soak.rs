//! The soak driver (issue 15 item 4), shared by the bench
//! (`benches/soak.rs`, a million inputs, `scripts/soak.sh`) and the CI
//! test (`tests/it/soak_short.rs`, a few thousand): the real `latchd`
//! binary on the sim board in a temporary state directory, with its MQTT
//! remote access on a Mosquitto broker this driver starts (plain MQTT on
//! loopback), fed a deterministic mix of traffic, and sampled every
//! `every` inputs.
//!
//! ```text
//!  driver ── control socket (one connection) ──► latchd ◄── /proc/<pid>: VmRSS, fd/
//!     │        keys, finger/palm/face, buttons,    │        state dir: latchd.db, -wal
//!     │        door, SET + menus, user churn       │        events: SELECT count(*) (read-only)
//!     └── RemoteClient (owner key) ── mosquitto ──►┘
//!              status, unlock/lock, users, passcodes, time sync,
//!              one-time code create → (use) → revoke, lockout release, delete user
//! ```
//!
//! **Why MQTT for the app protocol.** The sim board has no BLE (BlueZ
//! needs the VM rig), and Matter is a separate protocol, not the app's.
//! MQTT carries the same sealed app requests (`app::dispatch`) as BLE,
//! through the library's own app client (`remote::client::RemoteClient`,
//! what `latchctl remote` runs) and a real broker process. Plain MQTT on
//! loopback (`[remote] tls = false`, allowed only for a broker on this
//! host): TLS would add CPU per frame and nothing to what is measured.
//!
//! **Time is not compressed by a clock hook**: latchd has none (no
//! time-scale, no "advance" on the control socket). Hours of use are
//! compressed by density: inputs back to back, and every lockout is
//! released by the owner's app (`ReleaseLockout`) or an administrator's
//! finger at SET (B-7.2), alternately, never waited out.
//!
//! **An input** is one keypad key, one other simulated physical action
//! (touch, SET, a finger, palm or face, the lock button, the handle, the
//! door) or one app request. Observations (`status`, `settle`, the
//! samples) are not counted.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use latchd::app::crypto::StaticKeypair;
use latchd::app::request::{PasscodeDigits, Setting, TempPasscodeKind};
use latchd::app::{Request, Response};
use latchd::core::passcode::{Macer, Passcode};
use latchd::core::time::{Validity, WallTime};
use latchd::core::types::{
    AppKey, AppKeyId, AppKeyRole, Change, Credential, CredentialId, CredentialKind,
    CredentialSecret, Handing, Role, User, UserNumber,
};
use latchd::remote::client::{AppIdentity, ClientSettings, RemoteClient};
use latchd::store::{Store, StoreOptions};
use serde_json::{json, Value};

use super::daemon::Daemon;
use super::ports::free_port;
use super::shared::{rss_kib, rss_split_kib};

const SERIAL: &str = "LD-SOAK";
const ADMIN_CODE: &str = "135792";
/// The simulated person whose finger the administrator enrols (SET release).
const ADMIN_PERSON: u32 = 1;
/// Residents 002…004: codes, and persons 2…4 for finger, palm and face.
const RESIDENTS: [(u16, &str); 3] = [(2, "246801"), (3, "358024"), (4, "470257")];
/// Nobody's code, nobody's finger.
const WRONG_CODE: &str = "802468";
const STRANGER: u32 = 900;
/// The code of the churn's `person`: each its own (the lock refuses a
/// passcode another user holds), `9xxxxx`, no other code's digits.
fn churn_code(person: u32) -> String {
    format!("9{:05}", (person * 7919) % 100_000)
}
/// Only turns a hang into a failure; nothing is asserted on time.
const LIMIT: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Inputs to drive.
    pub inputs: u64,
    /// Sample every this many inputs.
    pub every: u64,
    /// `[store] max_events` of the lock.
    pub max_events: usize,
    /// Where the state directory goes (a temporary directory in it);
    /// `None` = the system's temporary directory.
    pub state_parent: Option<PathBuf>,
    /// The mix's random seed (reproducible runs).
    pub seed: u64,
    /// Print a line per sample.
    pub progress: bool,
    /// A command prefix latchd runs under (a heap profiler:
    /// `heaptrack -o FILE`); the samples are of latchd itself.
    pub wrapper: Vec<String>,
}

/// One sample of the daemon's resources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub inputs: u64,
    pub elapsed_s: f64,
    pub rss_kib: u64,
    /// VmRSS split: private memory (heap, stacks) and mapped-file pages
    /// (the binary's code as new paths run), to tell a leak from code
    /// being paged in.
    pub rss_anon_kib: u64,
    pub rss_file_kib: u64,
    pub fds: u64,
    pub db_bytes: u64,
    pub wal_bytes: u64,
    pub event_rows: u64,
    /// The daemon's own count of handled engine inputs (ticks and motor
    /// reports included).
    pub processed: u64,
}

impl Sample {
    pub const CSV_HEADER: &'static str =
        "inputs,elapsed_s,rss_kib,fds,db_bytes,wal_bytes,event_rows,processed,rss_anon_kib,rss_file_kib";

    pub fn csv_row(&self) -> String {
        format!(
            "{},{:.2},{},{},{},{},{},{},{},{}",
            self.inputs,
            self.elapsed_s,
            self.rss_kib,
            self.fds,
            self.db_bytes,
            self.wal_bytes,
            self.event_rows,
            self.processed,
            self.rss_anon_kib,
            self.rss_file_kib
        )
    }
}

/// The measured quantities and how much each may grow after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Rss,
    Fds,
    Db,
    Wal,
    Events,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::Rss,
        Metric::Fds,
        Metric::Db,
        Metric::Wal,
        Metric::Events,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Rss => "VmRSS (KiB)",
            Metric::Fds => "open fds",
            Metric::Db => "latchd.db (bytes)",
            Metric::Wal => "latchd.db-wal (bytes)",
            Metric::Events => "event-log rows",
        }
    }

    pub fn of(self, s: &Sample) -> u64 {
        match self {
            Metric::Rss => s.rss_kib,
            Metric::Fds => s.fds,
            Metric::Db => s.db_bytes,
            Metric::Wal => s.wal_bytes,
            Metric::Events => s.event_rows,
        }
    }

    /// The margin over the warm-up's maximum: `warm × (1 + rel) + abs`.
    ///
    /// * RSS: 20 % + 2 MiB (allocator and SQLite page-cache noise; a leak
    ///   of a few hundred bytes per input is tens of MiB over a million).
    /// * fds: +2 (a control or broker connection in flight at a sample).
    /// * database: 10 % + 64 KiB (free pages move; the log is at its cap).
    /// * WAL: + one auto-checkpoint's worth (1000 pages of 4 KiB) + 1 MiB:
    ///   it grows to about that between checkpoints and is cut back to
    ///   `journal_size_limit` (1 MiB) after each, so a sample anywhere in
    ///   the saw-tooth is bounded by it.
    /// * events: none: the log holds exactly its cap
    ///   ([`event_cap`]) once full.
    pub fn margin(self, warm: u64) -> u64 {
        let (rel, abs) = match self {
            Metric::Rss => (0.20, 2 * 1024),
            Metric::Fds => (0.0, 2),
            Metric::Db => (0.10, 64 * 1024),
            Metric::Wal => (0.0, 1000 * 4096 + 1024 * 1024),
            Metric::Events => (0.0, 0),
        };
        warm + (warm as f64 * rel) as u64 + abs
    }
}

/// Rows the event log holds at most: `max_events` records and a fifth as
/// many noise entries (`store/events.rs`).
pub fn event_cap(max_events: usize) -> u64 {
    (max_events + (max_events / 5).max(1)) as u64
}

/// Counts of what the lock refused or what failed along the way: not
/// errors of the soak (a correct code during a lockout is refused by
/// design), but shown, so a run that did nothing useful is seen.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub unlocks: u64,
    pub lockouts_released_app: u64,
    pub lockouts_released_set: u64,
    pub users_added: u64,
    pub users_refused: u64,
    pub users_deleted: u64,
    pub temp_codes_created: u64,
    pub temp_codes_used: u64,
    pub control_refused: u64,
    pub app_requests: u64,
    pub app_refused: u64,
    pub recoveries: u64,
    /// App refusals by request and code (`RevokePasscode: NotFound`: the
    /// one-time code was spent at the door first).
    pub app_refusals: std::collections::BTreeMap<String, u64>,
    /// Per kind of operation: how many, and the time they took (with the
    /// `tidy` before each).
    pub op_time: std::collections::BTreeMap<&'static str, (u64, Duration)>,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct SoakReport {
    pub samples: Vec<Sample>,
    pub max_events: usize,
    pub tally: Tally,
    pub elapsed: Duration,
}

/// One metric's verdict.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub metric: Metric,
    /// The maximum over the warm-up samples.
    pub warm: u64,
    pub last: u64,
    /// The maximum after the warm-up.
    pub max_after: u64,
    pub limit: u64,
}

impl Row {
    pub fn bounded(&self) -> bool {
        self.max_after <= self.limit
    }
}

impl SoakReport {
    /// Where the warm-up ends: after `warm_fraction` of the inputs, or
    /// once the event log first holds `max_events` rows if that is later
    /// (until the log is full the database grows by design; the margins
    /// are about what comes after).
    pub fn warm_up_end(&self, warm_fraction: f64) -> u64 {
        let total = self.samples.last().map_or(0, |s| s.inputs);
        let fraction = (total as f64 * warm_fraction) as u64;
        let full = self
            .samples
            .iter()
            .find(|s| s.event_rows >= self.max_events as u64)
            .map_or(0, |s| s.inputs);
        fraction.max(full)
    }

    /// Samples up to [`SoakReport::warm_up_end`] are the warm-up; every
    /// metric's maximum after it must stay within [`Metric::margin`] of the
    /// warm-up's maximum (events also within [`event_cap`]).
    pub fn rows(&self, warm_fraction: f64) -> Vec<Row> {
        let split = self.warm_up_end(warm_fraction);
        let (warm, after): (Vec<&Sample>, Vec<&Sample>) =
            self.samples.iter().partition(|s| s.inputs <= split);
        Metric::ALL
            .into_iter()
            .map(|m| {
                let w = warm.iter().map(|s| m.of(s)).max().unwrap_or(0);
                let mut limit = m.margin(w);
                if m == Metric::Events {
                    limit = limit.max(event_cap(self.max_events));
                }
                Row {
                    metric: m,
                    warm: w,
                    last: self.samples.last().map_or(0, |s| m.of(s)),
                    max_after: after.iter().map(|s| m.of(s)).max().unwrap_or(w),
                    limit,
                }
            })
            .collect()
    }

    pub fn csv(&self) -> String {
        let mut out = String::from(Sample::CSV_HEADER);
        out.push('\n');
        for s in &self.samples {
            out.push_str(&s.csv_row());
            out.push('\n');
        }
        out
    }

    /// The summary table and the verdict, as printed.
    pub fn summary(&self, warm_fraction: f64) -> String {
        let rows = self.rows(warm_fraction);
        let inputs = self.samples.last().map_or(0, |s| s.inputs);
        let secs = self.elapsed.as_secs_f64();
        let mut out = format!(
            "soak: {inputs} inputs in {secs:.1} s ({:.0} inputs/s), {} samples, warm-up: the first \
             {} inputs (≥ {:.0} %, the event log full)\n",
            inputs as f64 / secs.max(1e-9),
            self.samples.len(),
            self.warm_up_end(warm_fraction),
            warm_fraction * 100.0
        );
        out.push_str(&format!(
            "{:<24} {:>12} {:>12} {:>12} {:>12}  verdict\n",
            "metric", "warm-up max", "last", "max after", "limit"
        ));
        for r in &rows {
            out.push_str(&format!(
                "{:<24} {:>12} {:>12} {:>12} {:>12}  {}\n",
                r.metric.name(),
                r.warm,
                r.last,
                r.max_after,
                r.limit,
                if r.bounded() { "bounded" } else { "GROWS" }
            ));
        }
        let t = &self.tally;
        out.push_str(&format!(
            "done: {} unlocks, lockouts released {} by the app and {} at SET, users {} added \
             ({} refused) and {} deleted, one-time codes {} made and {} used, {} app requests \
             ({} refused: {:?}), {} control inputs refused, {} recoveries to idle\n",
            t.unlocks,
            t.lockouts_released_app,
            t.lockouts_released_set,
            t.users_added,
            t.users_refused,
            t.users_deleted,
            t.temp_codes_created,
            t.temp_codes_used,
            t.app_requests,
            t.app_refused,
            t.app_refusals,
            t.control_refused,
            t.recoveries
        ));
        for (name, (n, d)) in &t.op_time {
            out.push_str(&format!(
                "  {name:<40} {n:>8} × {:>7.2} ms\n",
                d.as_secs_f64() * 1000.0 / (*n).max(1) as f64
            ));
        }
        out
    }
}

fn fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

fn event_rows(state: &Path) -> u64 {
    let db = rusqlite::Connection::open_with_flags(
        state.join("latchd.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the database read-only");
    db.busy_timeout(Duration::from_secs(10)).expect("timeout");
    db.query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .expect("count events")
}

/// A small xorshift: reproducible, not strong.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A Mosquitto process on loopback, plain MQTT, anonymous; killed on drop.
struct Broker {
    child: Child,
}

impl Broker {
    fn start(dir: &Path, port: u16) -> Broker {
        let conf = dir.join("mosquitto.conf");
        // `user root` keeps mosquitto from dropping to a `mosquitto` user
        // that cannot read the temporary directory when run as root.
        std::fs::write(
            &conf,
            format!(
                "user root\npersistence false\nset_tcp_nodelay true\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
            ),
        )
        .expect("write mosquitto.conf");
        let log = std::fs::File::create(dir.join("mosquitto.log")).expect("log");
        let child = super::mosquitto::spawn(&conf, log, port, LIMIT);
        Broker { child }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One control-socket connection, kept for the whole run.
struct Control {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Control {
    fn connect(sock: &Path) -> Control {
        let writer = UnixStream::connect(sock).expect("control socket");
        writer.set_read_timeout(Some(LIMIT)).expect("timeout");
        Control {
            reader: BufReader::new(writer.try_clone().expect("clone")),
            writer,
        }
    }

    fn call(&mut self, request: &Value) -> Value {
        writeln!(self.writer, "{request}").expect("write to the control socket");
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .expect("read the control socket");
        assert!(n > 0, "latchd closed the control socket (died?)");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad reply {line:?}: {e}"))
    }

    fn ok(&mut self, request: Value) -> Value {
        let r = self.call(&request);
        assert_eq!(r["ok"], json!(true), "{request} -> {r}");
        r
    }
}

/// The owner's app over the broker.
struct App {
    rt: tokio::runtime::Runtime,
    client: RemoteClient,
}

impl App {
    /// Connect once the lock is online (its retained availability).
    fn connect(port: u16, owner: &StaticKeypair, lock_public: [u8; 32]) -> App {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let settings = ClientSettings {
            host: "127.0.0.1".into(),
            port,
            topic_prefix: "latchd".into(),
            serial: SERIAL.into(),
            tls: None,
            credentials: None,
            client_id: "soak-app".into(),
            timeout: LIMIT,
        };
        let first = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        let deadline = Instant::now() + LIMIT;
        let client = loop {
            let id = AppIdentity {
                me: StaticKeypair::from_secret_bytes(*owner.secret_bytes()),
                lock_public,
            };
            let c = rt
                .block_on(RemoteClient::connect(&settings, id, first, false))
                .expect("the app reaches the broker");
            if c.availability() == Some("online") {
                break c;
            }
            rt.block_on(c.close());
            assert!(Instant::now() < deadline, "the lock never came online");
            std::thread::sleep(Duration::from_millis(200));
        };
        App { rt, client }
    }

    /// One request; a stale challenge (rotated while the app was quiet) is
    /// sent again once, as an app does.
    fn ask(&mut self, r: &Request) -> Response {
        for _ in 0..2 {
            match self.rt.block_on(self.client.request(r)) {
                Ok(Response::Error {
                    code: latchd::app::protocol::ErrorCode::Stale,
                    ..
                }) => continue,
                Ok(answer) => return answer,
                Err(e) => panic!("app request {r:?} failed: {e}"),
            }
        }
        panic!("app request {r:?} stale twice")
    }
}

/// The lock's store before the first start: door direction, administrator
/// 001 and the residents with their passcodes, and the owner's app key.
/// Returns the lock's public key.
fn seed(state: &Path, owner: &StaticKeypair) -> [u8; 32] {
    latchd::daemon::create_state_dir(state).expect("state dir");
    let (mut store, device) = Store::open(state, StoreOptions::default()).expect("store");
    let macer = Macer::new(&device.passcode_key());
    let admin = UserNumber::new(1).expect("001");
    let mut changes = vec![Change::SetHanding(Handing::RightHand)];
    let mut id = 0u32;
    for (n, code) in std::iter::once((1u16, ADMIN_CODE)).chain(RESIDENTS) {
        let number = UserNumber::new(n).expect("number");
        changes.push(Change::PutUser(User {
            number,
            role: if n == 1 { Role::Admin } else { Role::User },
            validity: Validity::ALWAYS,
        }));
        id += 1;
        changes.push(Change::PutCredential(Credential {
            id: CredentialId(id),
            user: number,
            kind: CredentialKind::Passcode,
            secret: CredentialSecret::Passcode(
                macer.mac(Passcode::parse(code).expect("code").digits()),
            ),
        }));
    }
    changes.push(Change::PutAppKey(AppKey {
        id: AppKeyId(1),
        role: AppKeyRole::Owner { admin },
        public_key: owner.public(),
        validity: Validity::ALWAYS,
        label: "soak owner".into(),
    }));
    store.apply(&changes).expect("seed");
    latchd::app::crypto::lock_keypair(&device.passcode_key()).public()
}

/// The running soak: the daemon, its broker, the two channels.
struct Rig {
    // Field order is drop order: the app disconnects before the daemon
    // and the broker go.
    app: App,
    control: Control,
    daemon: Option<Daemon>,
    _broker: Broker,
    state: PathBuf,
    rng: Rng,
    inputs: u64,
    tally: Tally,
    /// Users the churn added and has not deleted yet.
    churn_users: Vec<u16>,
    churn_person: u32,
    /// One-time codes the app created and has not revoked yet: (id, digits).
    temp_codes: Vec<(u16, String)>,
    /// Alternates who releases a lockout.
    release_by_app: bool,
    language_zh: bool,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn start(cfg: &SoakConfig) -> Rig {
        let dir = match &cfg.state_parent {
            Some(p) => tempfile::tempdir_in(p),
            None => tempfile::tempdir(),
        }
        .expect("tempdir");
        let port = free_port();
        let broker = Broker::start(dir.path(), port);
        let owner = StaticKeypair::generate(&mut rand_core::OsRng);
        let state = dir.path().join("state");
        let lock_public = seed(&state, &owner);
        let config = dir.path().join("latchd.toml");
        std::fs::write(
            &config,
            format!(
                "[lock]\nserial = \"{SERIAL}\"\ntrust_system_clock = true\ntimedate_bus = \"off\"\n\
                 [sim]\nmotor_travel_ms = 1\n\
                 [store]\nmax_events = {}\n\
                 [remote]\nenabled = true\nhost = \"127.0.0.1\"\nport = {port}\ntls = false\n\
                 reconnect_min_ms = 100\nreconnect_max_ms = 1000\n",
                cfg.max_events
            ),
        )
        .expect("write latchd.toml");
        let config = config.display().to_string();
        let daemon = Daemon::start_wrapped_with_env(
            &cfg.wrapper,
            &state,
            &["--config", &config],
            // Warnings only: an info line per event would make the log,
            // not the lock, the thing that grows.
            &[("RUST_LOG", "warn")],
        );
        let control = Control::connect(&daemon.sock);
        let app = App::connect(port, &owner, lock_public);
        Rig {
            app,
            control,
            daemon: Some(daemon),
            _broker: broker,
            state,
            rng: Rng(cfg.seed | 1),
            inputs: 0,
            tally: Tally::default(),
            churn_users: Vec::new(),
            churn_person: 1000,
            temp_codes: Vec::new(),
            release_by_app: true,
            language_zh: false,
            _dir: dir,
        }
    }

    fn pid(&self) -> u32 {
        self.daemon.as_ref().map_or(0, |d| d.latchd_pid())
    }

    // ----- counted inputs -----

    /// A simulated action (one input); `false` if the lock refused it
    /// (a door that cannot open while the bolt is out).
    fn act(&mut self, request: Value) -> bool {
        self.inputs += 1;
        let r = self.control.call(&request);
        let ok = r["ok"] == json!(true);
        if !ok {
            self.tally.control_refused += 1;
        }
        ok
    }

    /// Keys, one input each.
    fn press(&mut self, keys: &str) {
        self.inputs += keys.chars().filter(|c| !c.is_whitespace()).count() as u64;
        self.control.ok(json!({"cmd": "press", "keys": keys}));
    }

    fn app(&mut self, r: Request) -> Response {
        self.inputs += 1;
        self.tally.app_requests += 1;
        let answer = self.app.ask(&r);
        if let Response::Error { code, .. } = &answer {
            self.tally.app_refused += 1;
            let what = format!("{r:?}");
            let name = what.split([' ', '(', '{']).next().unwrap_or("?");
            *self
                .tally
                .app_refusals
                .entry(format!("{name}: {code:?}"))
                .or_default() += 1;
        }
        answer
    }

    // ----- observations (not counted) -----

    fn status(&mut self) -> Value {
        self.control.ok(json!({"cmd": "status"}))
    }

    fn settle(&mut self) {
        self.control.ok(json!({"cmd": "settle"}));
    }

    fn sample(&mut self, t0: Instant) -> Sample {
        let pid = self.pid();
        let processed = self.status()["daemon"]["processed"].as_u64().unwrap_or(0);
        let (rss_anon_kib, rss_file_kib) = rss_split_kib(pid);
        Sample {
            inputs: self.inputs,
            elapsed_s: t0.elapsed().as_secs_f64(),
            rss_kib: rss_kib(pid),
            rss_anon_kib,
            rss_file_kib,
            fds: fds(pid),
            db_bytes: file_len(&self.state.join("latchd.db")),
            wal_bytes: file_len(&self.state.join("latchd.db-wal")),
            event_rows: event_rows(&self.state),
            processed,
        }
    }

    // ----- the mix -----

    /// Back to idle, the bolt thrown, no lockout: what every operation
    /// starts from. Leaves a menu, locks, releases a lockout.
    fn tidy(&mut self) {
        let s = self.status();
        let step = s["engine"]["step"].as_str().unwrap_or("").to_owned();
        if step != "idle" {
            self.tally.recoveries += 1;
            for _ in 0..4 {
                self.press("↩");
                if self.status()["engine"]["step"] == json!("idle") {
                    break;
                }
            }
            let now = self.status()["engine"]["step"].clone();
            assert_eq!(now, json!("idle"), "the lock stays in {now} after ↩×4");
        }
        if s["engine"]["lockout_active"] == json!(true)
            || s["engine"]["keypad_disabled"] == json!(true)
        {
            self.release_lockout();
        }
        if s["sim"]["door"] == json!("open") {
            self.act(json!({"cmd": "door", "open": false}));
        }
        if self.status()["engine"]["lock"] != json!("locked") {
            self.act(json!({"cmd": "lock_button"}));
            self.settle();
        }
    }

    /// Two refused tries during the lockout, then its release: by the
    /// owner's app or by the administrator's finger at SET, alternately.
    fn release_lockout(&mut self) {
        self.press(&format!("{}✓", RESIDENTS[0].1));
        self.act(json!({"cmd": "finger", "person": STRANGER}));
        let by_app = self.release_by_app;
        let mut answer = None;
        if by_app {
            answer = Some(self.app(Request::ReleaseLockout));
            // The control socket's status is the engine task's published
            // snapshot, which may trail the app's answer by the rest of
            // the batch (the events' commit); `settle` waits for it.
            self.settle();
            self.tally.lockouts_released_app += 1;
        } else {
            self.act(json!({"cmd": "set"}));
            self.act(json!({"cmd": "finger", "person": ADMIN_PERSON}));
            self.press("↩");
            self.tally.lockouts_released_set += 1;
        }
        self.release_by_app = !self.release_by_app;
        let s = self.status();
        if s["engine"]["lockout_active"] != json!(false)
            || s["engine"]["keypad_disabled"] != json!(false)
        {
            let prompts = self.control.ok(json!({"cmd": "prompts", "n": 12}));
            let events = self.control.ok(json!({"cmd": "events", "n": 12}));
            panic!(
                "the lockout was not released (by app: {by_app}, answer {answer:?}):\n\
                 status {s}\nprompts {prompts}\nevents {events}\ntally {:?}",
                self.tally
            );
        }
    }

    /// Through the door after an unlock: open, close, lock from inside.
    fn walk_through(&mut self) {
        self.settle();
        if self.status()["engine"]["lock"] == json!("unlocked") {
            self.tally.unlocks += 1;
            self.act(json!({"cmd": "door", "open": true}));
            self.act(json!({"cmd": "door", "open": false}));
            self.act(json!({"cmd": "lock_button"}));
            self.settle();
        }
    }

    fn resident(&mut self) -> (u16, &'static str) {
        RESIDENTS[self.rng.below(RESIDENTS.len() as u64) as usize]
    }

    fn enter_menu(&mut self) {
        self.act(json!({"cmd": "set"}));
        self.press(&format!("{ADMIN_CODE}✓"));
        let step = self.status()["engine"]["step"].clone();
        assert_eq!(step, json!("menu"), "SET + the admin code");
    }

    /// One operation of the mix.
    fn step(&mut self) {
        let t = Instant::now();
        self.tidy();
        let op = Op::pick(self.rng.below(Op::TOTAL));
        self.op(op);
        let e = self.tally.op_time.entry(op.name()).or_default();
        e.0 += 1;
        e.1 += t.elapsed();
    }

    fn op(&mut self, op: Op) {
        match op {
            Op::KeypadCode => {
                let (_, code) = self.resident();
                self.press(&format!("{code}✓"));
                self.walk_through();
            }
            Op::WrongCode => self.press(&format!("{WRONG_CODE}✓")),
            Op::Cancelled => self.press("4711↩"),
            Op::Biometric => {
                let (n, _) = self.resident();
                let person = u32::from(n);
                let cmd = ["finger", "palm", "face"][self.rng.below(3) as usize];
                self.act(json!({"cmd": cmd, "person": person}));
                if cmd == "face" {
                    self.act(json!({"cmd": "face", "person": null}));
                }
                self.walk_through();
            }
            Op::StrangerBiometric => {
                let cmd = ["finger", "palm", "face"][self.rng.below(3) as usize];
                self.act(json!({"cmd": cmd, "person": STRANGER}));
                if cmd == "face" {
                    self.act(json!({"cmd": "face", "person": null}));
                }
            }
            Op::Handle => {
                self.act(json!({"cmd": "handle"}));
                self.walk_through();
            }
            Op::Doorbell => self.press("d"),
            Op::MenuInfo => {
                self.enter_menu();
                self.press("✓");
                self.press("↩");
                self.press("↩");
            }
            Op::MenuLanguage => {
                self.enter_menu();
                self.language_zh = !self.language_zh;
                self.press(if self.language_zh { "62" } else { "61" });
                self.press("↩");
            }
            Op::ChurnAddOrDelete => {
                if self.churn_users.len() < 3 {
                    self.add_churn_user();
                } else {
                    self.delete_churn_user();
                }
            }
            Op::ChurnDelete => {
                if !self.churn_users.is_empty() {
                    self.delete_churn_user();
                }
            }
            Op::AppStatus => {
                self.app(Request::Status);
            }
            Op::AppUsers => {
                self.app(Request::ListUsers);
            }
            Op::AppPasscodes => {
                self.app(Request::ListPasscodes);
            }
            Op::AppTimeSync => {
                self.app(Request::TimeSync { now: wall_now() });
            }
            Op::AppEvents => {
                self.app(Request::Events {
                    before: None,
                    limit: 10,
                });
            }
            Op::AppUnlockLock => {
                if matches!(self.app(Request::Unlock), Response::Ok) {
                    self.settle();
                    self.tally.unlocks += 1;
                }
                self.app(Request::Lock);
                self.settle();
            }
            Op::AppOneTimeCode => self.temp_code(),
            Op::AppSettings => {
                self.app(Request::GetSettings);
            }
        }
    }

    fn add_churn_user(&mut self) {
        self.enter_menu();
        self.press("2");
        self.press("4");
        self.churn_person += 1;
        let code = churn_code(self.churn_person);
        self.press(&format!("{code}✓{code}✓"));
        self.press("3");
        for _ in 0..3 {
            self.act(json!({"cmd": "finger", "person": self.churn_person}));
        }
        self.press("↩↩");
        // The newest user: the highest number above the residents.
        let Response::Users(users) = self.app(Request::ListUsers) else {
            panic!("ListUsers refused");
        };
        let known: Vec<u16> = users
            .iter()
            .map(|u| u.user)
            .filter(|&n| n > 4 && !self.churn_users.contains(&n))
            .collect();
        assert!(known.len() <= 1, "one user added: {users:?}");
        let Some(&added) = known.first() else {
            // The code broke a rule (a sequence, a repeat): nothing stored.
            self.tally.users_refused += 1;
            return;
        };
        self.churn_users.push(added);
        self.tally.users_added += 1;
        // The new user opens with the finger just enrolled.
        self.act(json!({"cmd": "finger", "person": self.churn_person}));
        self.walk_through();
    }

    fn delete_churn_user(&mut self) {
        let user = self.churn_users.remove(0);
        if self.rng.below(2) == 0 {
            let answer = self.app(Request::DeleteUser { user });
            assert!(matches!(answer, Response::Ok), "DeleteUser: {answer:?}");
        } else {
            self.enter_menu();
            self.press("3");
            self.press(&format!("{user:03}✓"));
            self.press("↩");
        }
        self.tally.users_deleted += 1;
    }

    fn temp_code(&mut self) {
        let digits = format!("{:08}", 10_000_000 + self.rng.below(89_999_999));
        let kind = TempPasscodeKind::OneTime;
        let r = Request::CreatePasscode {
            digits: PasscodeDigits::new(&digits).expect("8 digits"),
            kind,
        };
        if let Response::PasscodeCreated { id } = self.app(r) {
            self.tally.temp_codes_created += 1;
            self.temp_codes.push((id, digits));
        }
        if self.temp_codes.len() >= 2 || self.rng.below(2) == 0 {
            let Some((id, digits)) =
                (!self.temp_codes.is_empty()).then(|| self.temp_codes.remove(0))
            else {
                return;
            };
            if self.rng.below(2) == 0 {
                self.press(&format!("{digits}✓"));
                self.tally.temp_codes_used += 1;
                self.walk_through();
            }
            self.app(Request::RevokePasscode { id });
        }
    }

    /// Before the mix: remote unlock on, the administrator's finger, and
    /// each resident's finger, palm and face enrolled at the keypad.
    fn setup(&mut self) {
        let answer = self.app(Request::SetSetting(Setting::RemoteUnlock(true)));
        assert!(matches!(answer, Response::Ok), "remote unlock: {answer:?}");
        self.enter_menu();
        for (n, person) in std::iter::once((1u16, ADMIN_PERSON))
            .chain(RESIDENTS.iter().map(|&(n, _)| (n, u32::from(n))))
        {
            self.press("5");
            self.press(&format!("{n:03}✓"));
            self.press("3");
            for _ in 0..3 {
                self.act(json!({"cmd": "finger", "person": person}));
            }
            if n != 1 {
                self.press("2");
                for _ in 0..2 {
                    self.act(json!({"cmd": "palm", "person": person}));
                }
                self.press("1");
                for _ in 0..5 {
                    self.act(json!({"cmd": "face", "person": person}));
                }
            }
            self.press("↩");
        }
        self.press("↩");
        let s = self.status();
        assert_eq!(s["engine"]["step"], json!("idle"), "{s}");
        let c = &s["engine"]["counts"];
        assert_eq!(c["fingerprints"], json!(4), "{s}");
        assert_eq!(c["palms"], json!(3), "{s}");
        assert_eq!(c["faces"], json!(3), "{s}");
    }
}

/// The operations of the mix, each with its weight (out of
/// [`Op::TOTAL`]) and its name in the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// A resident's code at the keypad, then through the door.
    KeypadCode,
    /// Someone's wrong code (five strikes make a lockout).
    WrongCode,
    /// A code typed and cancelled.
    Cancelled,
    /// A resident's finger, palm or face, then through the door.
    Biometric,
    /// A stranger's finger, palm or face (a strike).
    StrangerBiometric,
    /// Leaving from inside: the handle, the door, the lock button.
    Handle,
    /// The doorbell (noise in the log).
    Doorbell,
    /// SET, the administrator's code, system information, back, out.
    MenuInfo,
    /// The prompt language, back and forth.
    MenuLanguage,
    /// Add a user (passcode + fingerprint) at the keypad, or delete one
    /// when three are there.
    ChurnAddOrDelete,
    /// Delete a churned user (keypad or app).
    ChurnDelete,
    AppStatus,
    AppUsers,
    AppPasscodes,
    AppTimeSync,
    AppEvents,
    /// Unlock and lock from the app.
    AppUnlockLock,
    /// A one-time code made, sometimes used at the door, revoked.
    AppOneTimeCode,
    AppSettings,
}

/// The mix: each operation and its weight.
const MIX: [(Op, u64, &str); 19] = [
    (Op::KeypadCode, 18, "keypad code"),
    (Op::WrongCode, 10, "wrong code"),
    (Op::Cancelled, 4, "typed and cancelled"),
    (Op::Biometric, 12, "finger/palm/face"),
    (Op::StrangerBiometric, 5, "stranger's biometric"),
    (Op::Handle, 6, "handle, door, lock"),
    (Op::Doorbell, 3, "doorbell"),
    (Op::MenuInfo, 3, "menu: system information"),
    (Op::MenuLanguage, 1, "menu: language"),
    (Op::ChurnAddOrDelete, 4, "user churn: add (or delete)"),
    (Op::ChurnDelete, 2, "user churn: delete"),
    (Op::AppStatus, 8, "app: status"),
    (Op::AppUsers, 4, "app: list users"),
    (Op::AppPasscodes, 3, "app: list passcodes"),
    (Op::AppTimeSync, 2, "app: time sync"),
    (Op::AppEvents, 2, "app: events"),
    (Op::AppUnlockLock, 4, "app: unlock + lock"),
    (Op::AppOneTimeCode, 5, "app: one-time code"),
    (Op::AppSettings, 4, "app: settings"),
];

const _: () = {
    let (mut sum, mut i) = (0, 0);
    while i < MIX.len() {
        sum += MIX[i].1;
        i += 1;
    }
    assert!(sum == Op::TOTAL, "the weights of MIX add up to Op::TOTAL");
};

impl Op {
    /// The sum of the weights.
    const TOTAL: u64 = 100;

    /// The operation a roll in `0..TOTAL` lands on.
    fn pick(roll: u64) -> Op {
        let mut left = roll;
        for (op, weight, _) in MIX {
            if left < weight {
                return op;
            }
            left -= weight;
        }
        Op::AppSettings
    }

    fn name(self) -> &'static str {
        MIX.iter()
            .find(|(op, _, _)| *op == self)
            .map_or("?", |(_, _, name)| *name)
    }
}

fn wall_now() -> WallTime {
    WallTime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    )
}

/// Run the soak: start the broker and the daemon, set the lock up, drive
/// `cfg.inputs` inputs, sampling every `cfg.every` (and at 0 and the end),
/// stop the daemon (it must exit cleanly).
pub fn run(cfg: &SoakConfig) -> SoakReport {
    let mut rig = Rig::start(cfg);
    rig.setup();
    let t0 = Instant::now();
    rig.inputs = 0;
    let mut samples = vec![rig.sample(t0)];
    let mut next = cfg.every;
    while rig.inputs < cfg.inputs {
        rig.step();
        if rig.inputs >= next || rig.inputs >= cfg.inputs {
            let s = rig.sample(t0);
            if cfg.progress {
                println!("soak: {}", s.csv_row());
            }
            samples.push(s);
            next = (rig.inputs / cfg.every + 1) * cfg.every;
        }
    }
    let elapsed = t0.elapsed();
    // The modules' slots follow the store: a deleted user's finger, palm
    // and face leave their module too (else a module fills up and stops
    // enrolling after 50 churned users).
    let s = rig.status();
    for (module, count) in [
        ("fingerprint", "fingerprints"),
        ("palm", "palms"),
        ("face", "faces"),
    ] {
        let slots = s["sim"]["modules"][module]
            .as_object()
            .map_or(0, |m| m.len());
        assert_eq!(
            json!(slots),
            s["engine"]["counts"][count],
            "{module} slots not freed: {s}"
        );
    }
    let daemon = rig.daemon.take().expect("daemon");
    let log = daemon.log_text();
    // Under a wrapper latchd itself gets the SIGTERM; the wrapper then
    // finishes (a profiler writes its file) and exits as latchd did.
    let status = if cfg.wrapper.is_empty() {
        daemon.sigterm()
    } else {
        let pid = nix::unistd::Pid::from_raw(daemon.latchd_pid() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        daemon.wait()
    };
    assert!(status.success(), "latchd exited with {status}: {log}");
    SoakReport {
        samples,
        max_events: cfg.max_events,
        tally: rig.tally.clone(),
        elapsed,
    }
}
