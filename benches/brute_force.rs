//! How long a patient attacker needs to open the lock by guessing 6-digit
//! codes at the keypad (issue 13 item 1): the figure, before and after.
//!
//! ```text
//! cargo bench --bench brute_force
//! ```
//!
//! # The attacker
//!
//! A robot finger types at [`KEY_MS`] per key. It walks a de Bruijn
//! sequence B(10, 6) — every 6-digit string exactly once — in overlapping
//! chunks: each input repeats the last 5 digits of the one before, so
//! with anti-peep (B-6.4) every new digit tests one new 6-digit code. It
//! sits out every lockout and types again the moment it ends.
//!
//! # How the figure is computed
//!
//! The attacker's order is fixed; the stored codes are random. So one run
//! through the whole sequence against a lock that never opens gives the
//! trace `(t_i, W_i)`: the time of input i's ✓ and the valid codes tested
//! so far. With k codes stored among N valid ones, the chance that none
//! was hit after W tests is C(N−W, k)/C(N, k), and the expected time to
//! open is Σ t_i · (P(none after W_{i−1}) − P(none after W_i)), exactly.
//!
//! * **after**: the trace comes from the real engine (`latchd::core`),
//!   simulated time, a lock whose administrator has no passcode (so it
//!   never opens) and an owner app key. Two attackers: *greedy* (16-digit
//!   inputs as fast as the lockouts allow; the owner's app releases the
//!   disabled keypad once a day — an owner who taps "release" every day
//!   without looking), and *careful* (never lets the keypad disable
//!   itself, lives on the strike leak; nobody releases anything).
//!   Then, as a check of the formula, direct runs: 50 random user codes
//!   stored in the engine, the greedy attacker until the door opens.
//! * **before**: the rules of `main` at ed633f1, modelled here (the old
//!   engine is gone from this tree): anti-peep accepted 32 digits (27 new
//!   codes per input), a failure counted once, 5 failures within 5 min
//!   locked for 3 min and cleared the count, nothing escalated. The model
//!   is the old `Lockout::fail` logic with the same pacing; its trace
//!   goes through the same formula.
use latchd::core::input::{AppCommand, AppRequest, BoltPosition, Channel, DoorPosition, Principal};
use latchd::core::passcode::{check_rules, Macer};
use latchd::core::time::Validity;
use latchd::core::types::{
    AppKey, AppKeyId, AppKeyRole, Credential, CredentialId, CredentialKind, CredentialSecret,
    Handing, Key, Persisted, Role, User, UserNumber,
};
use latchd::core::{Action, Engine, EngineConfig, EventKind, Input, Now, PairingCodes};

/// A robot finger's pace: 5 keys a second.
const KEY_MS: u64 = 200;
const DAY_MS: u64 = 24 * 3600 * 1000;
const WALL0: i64 = 1_795_500_000;
const KEY: [u8; 32] = [0x42; 32];

/// B(10, 6) as a linear sequence: every 6-digit string exactly once.
fn de_bruijn() -> Vec<u8> {
    const K: usize = 10;
    const N: usize = 6;
    fn db(t: usize, p: usize, a: &mut [usize; 7], out: &mut Vec<u8>) {
        if t > N {
            if N.is_multiple_of(p) {
                out.extend(a[1..=p].iter().map(|&d| d as u8));
            }
        } else {
            a[t] = a[t - p];
            db(t + 1, p, a, out);
            for j in a[t - p] + 1..K {
                a[t] = j;
                db(t + 1, t, a, out);
            }
        }
    }
    let mut out = Vec::with_capacity(1_000_005);
    db(1, 1, &mut [0; 7], &mut out);
    let head: Vec<u8> = out[..N - 1].to_vec();
    out.extend(head);
    out
}

/// One point of a trace: an input's ✓ at `t_ms`, `tested` valid codes so far.
#[derive(Clone, Copy)]
struct Point {
    t_ms: u64,
    tested: u64,
}

/// Expected days to open with `k` random codes among `n`, from a trace.
fn expected_days(trace: &[Point], n: u64, k: u64) -> f64 {
    // P(none of the k codes among the first w tested).
    let none = |w: u64| -> f64 {
        let mut p = 1.0;
        for j in 0..k {
            if w + j >= n {
                return 0.0;
            }
            p *= (n - w - j) as f64 / (n - j) as f64;
        }
        p
    };
    let mut prev = 1.0;
    let mut e = 0.0;
    for pt in trace {
        let now = none(pt.tested);
        e += pt.t_ms as f64 * (prev - now);
        prev = now;
    }
    e / DAY_MS as f64
}

/// Codes tested per day over the first `days` of a trace.
fn rate(trace: &[Point], days: u64) -> f64 {
    let end = days * DAY_MS;
    let tested = trace
        .iter()
        .take_while(|p| p.t_ms <= end)
        .last()
        .map_or(0, |p| p.tested);
    tested as f64 / days as f64
}

fn valid(w: &[u8]) -> bool {
    check_rules(w).is_ok()
}

// ----- after: the engine -----

struct Lock {
    engine: Engine,
    mono: u64,
    opened: bool,
    next_id: u64,
}

fn config() -> EngineConfig {
    EngineConfig {
        passcode_key: KEY,
        serial: "B".into(),
        firmware: "bench".into(),
        pairing_codes: PairingCodes::new(|_| "V".into()),
        low_battery_percent: 20,
        matter_code: None,
        one_time_code_ttl: EngineConfig::DEFAULT_ONE_TIME_CODE_TTL,
        weak_wifi_dbm: latchd::core::wifi_signal::DEFAULT_WEAK_DBM,
        update: latchd::core::update::UpdatePolicy::default(),
        default_language: latchd::core::Language::En,
        time_zone: latchd::core::schedule::LocalZone::utc(),
    }
}

fn n(u: u16) -> UserNumber {
    UserNumber::new(u).expect("user number")
}

/// An installed lock: administrator 001 with a fingerprint only, an owner
/// app key, and `codes` users with one passcode each.
fn lock(codes: &[[u8; 6]]) -> Lock {
    let macer = Macer::new(&KEY);
    let mut p = Persisted {
        handing: Some(Handing::RightHand),
        users: vec![User {
            number: n(1),
            role: Role::Admin,
            validity: Validity::ALWAYS,
        }],
        credentials: vec![Credential {
            id: CredentialId(1),
            user: n(1),
            kind: CredentialKind::Fingerprint,
            secret: CredentialSecret::ModuleSlot(0),
        }],
        app_keys: vec![AppKey {
            id: AppKeyId(1),
            role: AppKeyRole::Owner { admin: n(1) },
            public_key: [1; 32],
            validity: Validity::ALWAYS,
            label: "owner".into(),
        }],
        ..Persisted::default()
    };
    for (i, c) in codes.iter().enumerate() {
        let u = n(i as u16 + 2);
        p.users.push(User {
            number: u,
            role: Role::User,
            validity: Validity::ALWAYS,
        });
        p.credentials.push(Credential {
            id: CredentialId(i as u32 + 2),
            user: u,
            kind: CredentialKind::Passcode,
            secret: CredentialSecret::Passcode(macer.mac(c)),
        });
    }
    let mut l = Lock {
        engine: Engine::new(config(), p, Now::new(0, Some(WALL0))),
        mono: 0,
        opened: false,
        next_id: 1,
    };
    l.input(Input::PowerUp { set_held: false });
    l.input(Input::Door(DoorPosition::Closed));
    l.input(Input::Bolt(BoltPosition::Extended));
    l
}

impl Lock {
    fn now(&self, mono: u64) -> Now {
        Now::new(mono, Some(WALL0 + (mono / 1000) as i64))
    }

    /// Run every deadline up to `t`, then move the clock there.
    fn until(&mut self, t: u64) {
        while let Some(d) = self.engine.next_deadline() {
            if d.as_millis() > t {
                break;
            }
            let at = d.as_millis().max(self.mono);
            self.mono = at;
            self.engine.handle(self.now(at), Input::Tick);
        }
        self.mono = self.mono.max(t);
    }

    fn input(&mut self, i: Input) {
        let actions = self.engine.handle(self.now(self.mono), i);
        self.opened |= actions.iter().any(|a| {
            matches!(
                a,
                Action::Log(e) if matches!(e.kind, EventKind::Unlocked { .. })
            )
        });
    }

    fn type_input(&mut self, digits: &[u8]) {
        for &d in digits {
            self.until(self.mono + KEY_MS);
            self.input(Input::Key(Key::Digit(d)));
        }
        self.until(self.mono + KEY_MS);
        self.input(Input::Key(Key::Confirm));
    }

    /// The owner's app releases the lockout and the keypad.
    fn release(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        self.input(Input::App(AppRequest {
            id,
            via: Channel::Remote,
            principal: Principal::Owner {
                key: AppKeyId(1),
                admin: n(1),
            },
            command: AppCommand::ReleaseLockout,
        }));
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Strategy {
    /// As many codes as fast as lockouts allow (16-digit inputs, the last
    /// one before the disable level sized to land on 24 strikes, then one
    /// more full one); the owner releases a disabled keypad once a day.
    Greedy,
    /// Never disables the keypad: inputs sized to the strikes left below
    /// the disable level, waits for the leak; nobody releases.
    Careful,
}

/// Walk `seq` against `lock`; stop when it opens or `seq` ends. Returns
/// the trace and whether it opened.
fn attack(mut l: Lock, seq: &[u8], strategy: Strategy) -> (Vec<Point>, bool) {
    const OVERLAP: usize = 5;
    const MAX_NEW: usize = 11; // 16-digit inputs
    const DISABLE_AT: u32 = 25;
    let mut trace = Vec::new();
    let mut pos = OVERLAP; // digits of seq consumed
    let mut tested = 0u64;
    while pos < seq.len() {
        let st = l.engine.status();
        if let Some(left) = st.lockout_remaining {
            l.until(l.mono + left.as_millis() as u64 + 1);
            continue;
        }
        if st.keypad_disabled {
            // Greedy only: the owner releases at the next day boundary.
            let next_day = (l.mono / DAY_MS + 1) * DAY_MS;
            l.until(next_day);
            l.release();
            continue;
        }
        let left = (DISABLE_AT - 1).saturating_sub(st.strikes) as usize;
        let new = match strategy {
            Strategy::Greedy if left == 0 => MAX_NEW,
            Strategy::Greedy => left.min(MAX_NEW),
            Strategy::Careful => {
                if left == 0 {
                    // Wait for the next strike to leak away (one per 4 h
                    // of uptime).
                    l.until(l.mono + 3_600_000);
                    l.input(Input::Tick);
                    continue;
                }
                left.min(MAX_NEW)
            }
        };
        let end = (pos + new).min(seq.len());
        let input = &seq[pos - OVERLAP..end];
        tested += input.windows(6).filter(|w| valid(w)).count() as u64;
        l.type_input(input);
        pos = end;
        trace.push(Point {
            t_ms: l.mono,
            tested,
        });
        if l.opened {
            return (trace, true);
        }
    }
    (trace, false)
}

// ----- before: the rules of ed633f1, modelled -----

/// The old `Lockout`: failures expire 5 min after they happened; the fifth
/// within the window locks for 3 min and clears them.
fn before_trace(seq: &[u8]) -> Vec<Point> {
    const OVERLAP: usize = 5;
    const NEW: usize = 27; // 32-digit inputs
    const WINDOW: u64 = 5 * 60 * 1000;
    const LOCK: u64 = 3 * 60 * 1000;
    let mut t = 0u64;
    let mut failures: Vec<u64> = Vec::new();
    let mut locked_until = 0u64;
    let mut trace = Vec::new();
    let mut pos = OVERLAP;
    let mut tested = 0u64;
    while pos < seq.len() {
        t = t.max(locked_until);
        let end = (pos + NEW).min(seq.len());
        let input = &seq[pos - OVERLAP..end];
        tested += input.windows(6).filter(|w| valid(w)).count() as u64;
        t += (input.len() as u64 + 1) * KEY_MS;
        pos = end;
        trace.push(Point { t_ms: t, tested });
        failures.retain(|f| f + WINDOW > t);
        failures.push(t);
        if failures.len() >= 5 {
            failures.clear();
            locked_until = t + LOCK;
        }
    }
    trace
}

/// A small deterministic generator for the stored codes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn random_codes(rng: &mut Rng, k: usize) -> Vec<[u8; 6]> {
    let mut out: Vec<[u8; 6]> = Vec::new();
    while out.len() < k {
        let v = rng.next() % 1_000_000;
        let mut c = [0u8; 6];
        for (i, d) in c.iter_mut().enumerate() {
            *d = ((v / 10u64.pow(5 - i as u32)) % 10) as u8;
        }
        // B-2.3, and no code inside another (they are all 6 digits).
        if valid(&c) && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let started = std::time::Instant::now();
    let seq = de_bruijn();
    let n_valid = (0..1_000_000u32)
        .filter(|v| {
            let mut c = [0u8; 6];
            for (i, d) in c.iter_mut().enumerate() {
                *d = ((v / 10u32.pow(5 - i as u32)) % 10) as u8;
            }
            valid(&c)
        })
        .count() as u64;
    println!(
        "brute force at the keypad: robot finger {KEY_MS} ms/key, overlapping chunks of B(10,6) \
         ({} digits), {n_valid} valid 6-digit codes",
        seq.len()
    );
    println!();
    println!(
        "{:<8} {:<58} {:>12} {:>14} {:>14}",
        "rules", "attacker", "codes/day", "days, 1 code", "days, 50 codes"
    );
    let row = |rules: &str, who: &str, trace: &[Point]| {
        println!(
            "{:<8} {:<58} {:>12.0} {:>14.1} {:>14.1}",
            rules,
            who,
            rate(trace, 7),
            expected_days(trace, n_valid, 1),
            expected_days(trace, n_valid, 50),
        );
    };
    let before = before_trace(&seq);
    row(
        "before",
        "32-digit chunks, sits out each 3-min lockout",
        &before,
    );
    let (greedy, opened) = attack(lock(&[]), &seq, Strategy::Greedy);
    assert!(!opened, "a lock without passcodes opened");
    row(
        "after",
        "16-digit chunks; owner releases the keypad once a day",
        &greedy,
    );
    let (careful, opened) = attack(lock(&[]), &seq, Strategy::Careful);
    assert!(!opened);
    row(
        "after",
        "never disables the keypad, lives on the leak; no release",
        &careful,
    );
    // The formula checked against the engine opening for real.
    let runs = 20;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut days = Vec::new();
    for _ in 0..runs {
        let codes = random_codes(&mut rng, 50);
        let (trace, opened) = attack(lock(&codes), &seq, Strategy::Greedy);
        assert!(opened, "every code is in the sequence");
        days.push(trace.last().map_or(0, |p| p.t_ms) as f64 / DAY_MS as f64);
    }
    let mean = days.iter().sum::<f64>() / runs as f64;
    let sd = (days.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (runs - 1) as f64).sqrt();
    println!();
    println!(
        "check: {runs} engine runs with 50 random codes, greedy attacker, daily release: \
         opened after {mean:.0} days on average (sd {sd:.0}, min {:.0}, max {:.0})",
        days.iter().cloned().fold(f64::INFINITY, f64::min),
        days.iter().cloned().fold(0.0, f64::max)
    );
    println!(
        "(simulated {} + {} + {} inputs in {:.1} s)",
        before.len(),
        greedy.len(),
        careful.len(),
        started.elapsed().as_secs_f64()
    );
}
