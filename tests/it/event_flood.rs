//! Issue 14 item 4: the event log cannot be wiped by noise. The engine
//! runs against the real store (SQLite on disk) with simulated time: a
//! lockout, then 20,000 doorbell presses and 20,000 refused invite frames.
//! Two defences, each with its own test: the engine's noise budget
//! (`core::noise`) keeps the flood from being written at all, and the
//! store's retention classes (`store/events.rs`) keep even an unlimited
//! flood of noise from evicting a record.
use latchd::core::event::AppRefusal;
use latchd::core::input::{BoltPosition, DoorPosition};
use latchd::core::types::Key;
use latchd::core::{
    Action, Channel, Engine, EngineConfig, Event, EventKind, Input, Now, PairingCodes,
};
use latchd::store::{Store, StoreOptions};

const WALL0: i64 = 1_795_500_000;
const ADMIN_CODE: &str = "135790";

/// Bytes this thread handed to `write(2)` so far (`wchar` of
/// `/proc/thread-self/io`): what SQLite wrote, WAL and database, whatever
/// the other test threads do.
fn thread_bytes_written() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").expect("/proc/thread-self/io");
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("wchar line")
}

/// The engine wired to a real store, the way the daemon's engine task
/// does it: every batch's changes applied, its events appended.
struct Rig {
    engine: Engine,
    store: Store,
    mono: u64,
    logged: usize,
}

impl Rig {
    fn now(&self) -> Now {
        Now::new(self.mono, Some(WALL0 + (self.mono / 1000) as i64))
    }

    fn input(&mut self, input: Input) {
        let actions = self.engine.handle(self.now(), input);
        let mut events: Vec<Event> = Vec::new();
        for a in actions {
            match a {
                Action::Persist(changes) => self.store.apply(&changes).expect("persist"),
                Action::Log(e) => events.push(e),
                _ => {}
            }
        }
        if !events.is_empty() {
            self.logged += events.len();
            self.store.append_events(&events).expect("append");
        }
    }

    /// Move time on by `ms`, ticking at every engine deadline on the way.
    fn advance(&mut self, ms: u64) {
        let target = self.mono + ms;
        while let Some(d) = self.engine.next_deadline() {
            if d.as_millis() > target {
                break;
            }
            self.mono = self.mono.max(d.as_millis());
            self.input(Input::Tick);
        }
        self.mono = target;
    }

    fn press(&mut self, keys: &str) {
        for c in keys.chars() {
            let key = match c {
                '0'..='9' => Key::Digit(c as u8 - b'0'),
                '✓' => Key::Confirm,
                '↩' => Key::Back,
                'b' => Key::Doorbell,
                other => panic!("no key {other:?}"),
            };
            self.input(Input::Key(key));
        }
    }

    /// A fresh lock, installed as B-2 says (right-hand door, administrator
    /// 001), keypad asleep again.
    fn installed(dir: &std::path::Path) -> Rig {
        let (store, _) = Store::open(dir, StoreOptions::default()).expect("store");
        let config = EngineConfig {
            passcode_key: [0x5a; 32],
            serial: "LD-0001".into(),
            firmware: "0.1.0".into(),
            pairing_codes: PairingCodes::new(|g| format!("482913-{g}")),
            low_battery_percent: 20,
            one_time_code_ttl: EngineConfig::DEFAULT_ONE_TIME_CODE_TTL,
            weak_wifi_dbm: latchd::core::wifi_signal::DEFAULT_WEAK_DBM,
            update: latchd::core::update::UpdatePolicy::default(),
            matter_code: None,
            default_language: latchd::core::Language::En,
            time_zone: latchd::core::schedule::LocalZone::utc(),
        };
        let persisted = store.load().expect("load");
        let mono = 1_000;
        let engine = Engine::new(config, persisted, Now::new(mono, Some(WALL0)));
        let mut rig = Rig {
            engine,
            store,
            mono,
            logged: 0,
        };
        rig.input(Input::PowerUp { set_held: false });
        rig.input(Input::Door(DoorPosition::Closed));
        rig.input(Input::Bolt(BoltPosition::Extended));
        rig.press(&format!("✓1✓{ADMIN_CODE}✓{ADMIN_CODE}✓↩↩"));
        assert_eq!(rig.engine.status().step, "idle");
        rig.advance(30_000);
        rig
    }

    fn has_lockout(&self) -> bool {
        self.store
            .recent_events(usize::MAX)
            .expect("read")
            .iter()
            .any(|e| e.event.kind == EventKind::LockoutStarted)
    }
}

/// A lockout, then 20,000 doorbell presses and 20,000 refused invite
/// frames, one every 100 ms (a bit over an hour of flooding): the lockout
/// is still in the log, and the engine logged a bounded number of entries
/// (the first of each kind, one per refill, and the counts of what it
/// dropped). Prints the bytes the store wrote.
#[test]
fn a_flood_after_a_lockout_keeps_the_lockout_and_writes_little() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rig = Rig::installed(tmp.path());
    for _ in 0..5 {
        rig.input(Input::Touch);
        rig.press("802468✓");
    }
    assert!(
        rig.engine.status().lockout_remaining.is_some(),
        "locked out"
    );
    assert!(rig.has_lockout());
    let before = (rig.logged, thread_bytes_written());

    for _ in 0..20_000 {
        rig.input(Input::Touch);
        rig.press("b");
        rig.advance(50);
        rig.input(Input::AppRefused {
            via: Channel::Ble,
            reason: AppRefusal::InviteRefused,
        });
        rig.advance(50);
    }
    // Let the last summaries come due.
    rig.advance(15 * 60_000);

    let logged = rig.logged - before.0;
    let written = thread_bytes_written() - before.1;
    println!(
        "flood: 40,000 noise inputs -> {logged} events logged, {written} bytes written by the store"
    );
    assert!(rig.has_lockout(), "the lockout survived the flood");
    // Per kind: a burst of 10, one per 6 min over ~67 min (≈ 12), and a
    // summary for each; doubled for the two kinds, plus slack for the
    // other entries the lockout's end causes.
    assert!(logged <= 100, "{logged} events logged for a flood");
    let all = rig.store.recent_events(usize::MAX).unwrap();
    let dropped: u64 = all
        .iter()
        .filter_map(|e| match e.event.kind {
            EventKind::EventsSuppressed { count, .. } => Some(count),
            _ => None,
        })
        .sum();
    let doorbells = all
        .iter()
        .filter(|e| e.event.kind == EventKind::Doorbell)
        .count() as u64;
    let refusals = all
        .iter()
        .filter(|e| matches!(e.event.kind, EventKind::AppRefused { .. }))
        .count() as u64;
    assert_eq!(
        doorbells + refusals + dropped,
        40_000,
        "every press and frame is logged or counted"
    );
    // Bounded flash: what was written is a few hundred bytes per logged
    // entry, not per input.
    assert!(written < 4_000_000, "{written} bytes written");
}

/// The store's own defence, without the engine's budget: 40,000 noise
/// entries appended straight to a log of 10,000 do not evict the lockout
/// recorded before them, and noise keeps to its fifth.
#[test]
fn unlimited_noise_cannot_evict_a_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    let ev = |kind| Event {
        at: Some(latchd::core::WallTime(WALL0)),
        mono_ms: 0,
        kind,
    };
    store
        .append_events(&[ev(EventKind::LockoutStarted)])
        .unwrap();
    for i in 0..400 {
        let batch: Vec<Event> = (0..100)
            .map(|j| {
                ev(if (i + j) % 2 == 0 {
                    EventKind::Doorbell
                } else {
                    EventKind::AppRefused {
                        via: Channel::Ble,
                        reason: AppRefusal::InviteRefused,
                    }
                })
            })
            .collect();
        store.append_events(&batch).unwrap();
    }
    let all = store.recent_events(usize::MAX).unwrap();
    assert!(all
        .iter()
        .any(|e| e.event.kind == EventKind::LockoutStarted));
    assert_eq!(all.len(), 1 + 2_000, "one record and a fifth of noise");
}
