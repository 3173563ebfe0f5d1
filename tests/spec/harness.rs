//! The scenario harness: one engine, simulated time, and an in-memory
//! store to which every `Action::Persist` is applied, so a restart test
//! rebuilds the engine from exactly what it asked to store.
#![allow(dead_code)]

use std::time::Duration;

use latchd::core::action::{AlarmCmd, ModuleCmd, MotorCmd, Notice, Trace};
use latchd::core::input::{
    BoltPosition, DoorPosition, EnrolStep, ModuleReport, MotorReport, SetPress,
};
use latchd::core::schedule::Holder;
use latchd::core::types::{
    AppKey, AppKeyId, AppKeyRole, Change, Key, Modality, Persisted, Settings, UserNumber,
};
use latchd::core::{
    Action, AlarmKind, AppCommand, AppRequest, AppResult, Channel, Engine, EngineConfig, Event,
    EventKind, Input, KeypadView, Language, Now, PairingCodes, Principal, Prompt, Validity,
};

/// The first administrator's passcode in [`Sim::installed`].
pub const ADMIN_CODE: &str = "135790";
pub const KEY: [u8; 32] = [0x5a; 32];
/// A wall clock that is known (Tuesday 2026-11-24 06:00 UTC).
pub const WALL0: i64 = 1_795_500_000;

pub fn config() -> EngineConfig {
    EngineConfig {
        passcode_key: KEY,
        serial: "LD-0001".into(),
        firmware: "0.1.0".into(),
        pairing_codes: PairingCodes::new(code_of),
        low_battery_percent: 20,
        matter_code: None,
        one_time_code_ttl: EngineConfig::DEFAULT_ONE_TIME_CODE_TTL,
        weak_wifi_dbm: latchd::core::wifi_signal::DEFAULT_WEAK_DBM,
        update: latchd::core::update::UpdatePolicy::default(),
        default_language: latchd::core::Language::En,
        time_zone: latchd::core::schedule::LocalZone::utc(),
    }
}

/// The verification code of pairing generation `g` in these tests: the
/// label's is "482913".
pub fn code_of(g: u32) -> String {
    if g == 0 {
        "482913".into()
    } else {
        format!("482913-{g}")
    }
}

pub fn n(u: u16) -> UserNumber {
    UserNumber::new(u).expect("valid user number")
}

/// Apply one change to a store image, the way the real store does.
pub fn apply(store: &mut Persisted, c: &Change) {
    match c {
        Change::SetHanding(h) => store.handing = Some(*h),
        Change::PutUser(u) => {
            store.users.retain(|x| x.number != u.number);
            store.users.push(u.clone());
        }
        Change::DeleteUser(n) => {
            store.users.retain(|x| x.number != *n);
            store.credentials.retain(|c| c.user != *n);
            store
                .app_keys
                .retain(|k| k.role != AppKeyRole::Owner { admin: *n });
            store
                .schedules
                .retain(|x| x.key().holder() != Some(Holder::User(*n)));
        }
        Change::PutCredential(cr) => {
            store.credentials.retain(|x| x.id != cr.id);
            store.credentials.push(cr.clone());
        }
        Change::DeleteCredential(id) => store.credentials.retain(|x| x.id != *id),
        Change::PutSettings(s) => store.settings = s.clone(),
        Change::PutLockout(l) | Change::PutAttempt(l) => store.lockout = l.clone(),
        Change::PutTimeFloor(w) => store.time_floor = store.time_floor.max(Some(*w)),
        Change::SetPairingGeneration(g) => store.pairing_generation = *g,
        Change::PutTempPasscode(t) => {
            store.temp_passcodes.retain(|x| x.id != t.id);
            store.temp_passcodes.push(t.clone());
        }
        Change::DeleteTempPasscode(id) => {
            store.temp_passcodes.retain(|x| x.id != *id);
            store
                .schedules
                .retain(|x| x.key().holder() != Some(Holder::TempPasscode(*id)));
        }
        Change::PutAppKey(k) => {
            store.app_keys.retain(|x| x.id != k.id);
            store.app_keys.push(k.clone());
        }
        Change::DeleteAppKey(id) => {
            store.app_keys.retain(|x| x.id != *id);
            store
                .schedules
                .retain(|x| x.key().holder() != Some(Holder::GuestKey(*id)));
        }
        Change::PutGuestInvite(i) => {
            store.guest_invites.retain(|x| x.slot != i.slot);
            store.guest_invites.push(i.clone());
        }
        Change::DeleteGuestInvite(id) => store.guest_invites.retain(|x| x.slot != *id),
        Change::PutPendingUpdate(p) => store.pending_update = p.clone(),
        Change::PutSchedule(sch) => {
            store.schedules.retain(|x| x.key() != sch.key());
            store.schedules.push(*sch);
        }
        Change::DeleteSchedule(k) => store.schedules.retain(|x| x.key() != *k),
        Change::FactoryReset => {
            *store = Persisted {
                settings: Settings::default(),
                time_floor: store.time_floor,
                ..Persisted::default()
            }
        }
    }
}

pub struct Sim {
    pub engine: Engine,
    /// Monotonic milliseconds.
    pub mono: u64,
    /// Wall clock in seconds; `None` = unknown.
    pub wall: Option<i64>,
    /// `wall = wall_origin + mono / 1000` while time flows (a restart
    /// moves the origin so that the wall clock goes on, as the real one
    /// does while the monotonic clock starts over).
    pub wall_origin: i64,
    pub store: Persisted,
    /// `[prompts] language` of the config the engine is (re)built with.
    pub default_language: Language,
    /// `[lock] time_zone` of the config the engine is (re)built with.
    pub time_zone: latchd::core::schedule::LocalZone,
    /// The actions of the last call (or of the last helper's calls).
    pub last: Vec<Action>,
    /// Every action since the start.
    pub all: Vec<Action>,
    next_req: u64,
}

impl Sim {
    /// A lock fresh from the factory, powered up.
    pub fn new() -> Sim {
        Sim::with_store(Persisted::default())
    }

    /// An engine over a given store image, powered up, door closed and
    /// bolt out.
    pub fn with_store(store: Persisted) -> Sim {
        let now = Now::new(1_000, Some(WALL0));
        let engine = Engine::new(config(), store.clone(), now);
        let mut s = Sim {
            engine,
            mono: 1_000,
            wall: Some(WALL0),
            wall_origin: WALL0,
            store,
            default_language: Language::En,
            time_zone: latchd::core::schedule::LocalZone::utc(),
            last: Vec::new(),
            all: Vec::new(),
            next_req: 1,
        };
        s.input(Input::PowerUp { set_held: false });
        let first = std::mem::take(&mut s.last);
        s.input(Input::Door(DoorPosition::Closed));
        s.input(Input::Bolt(BoltPosition::Extended));
        s.last = first;
        s
    }

    /// A lock installed the way B-2 says: right-hand door, administrator
    /// 001 with [`ADMIN_CODE`]; the keypad is asleep again.
    pub fn installed() -> Sim {
        let mut s = Sim::new();
        s.press("✓1");
        s.expect_prompt(Prompt::DirectionSet);
        s.press("✓");
        s.expect_prompt(Prompt::UserNumber(n(1)));
        s.press(&format!("{ADMIN_CODE}✓"));
        s.expect_prompt(Prompt::RepeatPasscode);
        s.press(&format!("{ADMIN_CODE}✓"));
        s.expect_prompt(Prompt::Success);
        s.press("↩↩");
        assert_eq!(s.engine.status().step, "idle");
        s.advance(30);
        s.last.clear();
        s
    }

    pub fn now(&self) -> Now {
        Now::new(self.mono, self.wall)
    }

    /// Feed one input; persists are applied to the store image.
    pub fn input(&mut self, input: Input) -> Vec<Action> {
        let actions = self.engine.handle(self.now(), input);
        for a in &actions {
            if let Action::Persist(changes) = a {
                for c in changes {
                    apply(&mut self.store, c);
                }
            }
        }
        self.last = actions.clone();
        self.all.extend(actions.iter().cloned());
        actions
    }

    /// Several inputs; `last` holds all their actions.
    pub fn inputs(&mut self, inputs: impl IntoIterator<Item = Input>) {
        let mut acc = Vec::new();
        for i in inputs {
            acc.extend(self.input(i));
        }
        self.last = acc;
    }

    /// Type on the front keypad: digits, "✓", "↩", "a" (away), "b" (bell).
    pub fn press(&mut self, keys: &str) {
        let keys: Vec<Key> = keys
            .chars()
            .map(|c| match c {
                '0'..='9' => Key::Digit(c as u8 - b'0'),
                '✓' => Key::Confirm,
                '↩' => Key::Back,
                'a' => Key::Away,
                'b' => Key::Doorbell,
                other => panic!("no key {other:?}"),
            })
            .collect();
        self.inputs(keys.into_iter().map(Input::Key));
    }

    /// Let `secs` seconds pass, ticking at every deadline on the way.
    pub fn advance(&mut self, secs: u64) {
        self.advance_ms(secs * 1000);
    }

    pub fn advance_ms(&mut self, ms: u64) {
        let target = self.mono + ms;
        let mut acc = Vec::new();
        while let Some(d) = self.engine.next_deadline() {
            if d.as_millis() > target {
                break;
            }
            self.mono = self.mono.max(d.as_millis());
            if let Some(w) = self.wall.as_mut() {
                *w = self.wall_origin + (self.mono / 1000) as i64;
            }
            acc.extend(self.input(Input::Tick));
        }
        self.mono = target;
        if self.wall.is_some() {
            self.wall = Some(self.wall_origin + (self.mono / 1000) as i64);
        }
        self.last = acc;
    }

    /// Rebuild the engine from the store image, as after a daemon restart
    /// (the monotonic clock starts again from a small value).
    pub fn restart(&mut self) {
        // The wall clock goes on where it was.
        if let Some(w) = self.wall {
            self.wall_origin = w;
        }
        self.mono = 500;
        let mut config = config();
        config.default_language = self.default_language;
        config.time_zone = self.time_zone.clone();
        self.engine = Engine::new(config, self.store.clone(), self.now());
        self.input(Input::PowerUp { set_held: false });
        let first = std::mem::take(&mut self.last);
        self.input(Input::Door(DoorPosition::Closed));
        self.input(Input::Bolt(BoltPosition::Extended));
        self.last = first;
    }

    /// Set the wall clock to `t` (time flows on from there).
    pub fn set_wall(&mut self, t: i64) {
        self.wall_origin = t - (self.mono / 1000) as i64;
        self.wall = Some(t);
    }

    /// A restart with `[lock] time_zone` set to `zone`.
    pub fn restart_in_zone(&mut self, zone: latchd::core::schedule::LocalZone) {
        self.time_zone = zone;
        self.restart();
    }

    /// A restart with `[prompts] language = lang` in the config.
    pub fn restart_with_default_language(&mut self, lang: Language) {
        self.default_language = lang;
        self.restart();
    }

    // ----- people at the door -----

    pub fn present(&mut self, modality: Modality, slot: u16) {
        self.input(Input::Module(ModuleReport::Recognised { modality, slot }));
    }

    pub fn present_finger(&mut self, slot: u16) {
        self.present(Modality::Fingerprint, slot);
    }

    pub fn present_unknown(&mut self, modality: Modality) {
        self.input(Input::Module(ModuleReport::NotRecognised { modality }));
    }

    /// The motor finishes whatever it was last asked to do.
    pub fn finish_motor(&mut self) {
        let target = self
            .all
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::Motor(MotorCmd::Drive { target, .. }) => Some(*target),
                _ => None,
            })
            .expect("the motor was asked to move");
        self.input(Input::Motor(MotorReport::Done(target)));
    }

    /// SET, then the administrator's passcode: the menu is open.
    pub fn enter_menu(&mut self) {
        self.input(Input::Set(SetPress::Short));
        self.expect_prompt(Prompt::VerifyAdmin);
        self.press(&format!("{ADMIN_CODE}✓"));
        self.expect_prompt(Prompt::MenuMain);
    }

    /// In the menu: add a user (`role_key` "1" admin / "2" user) whose
    /// first credential is `code`; leaves the menu. Returns the number.
    pub fn add_passcode_user(&mut self, role_key: &str, code: &str) -> UserNumber {
        self.enter_menu();
        self.press(role_key);
        let user = self.shown_user().expect("a user number is announced");
        self.press("4");
        self.expect_prompt(Prompt::EnterPasscode);
        self.press(&format!("{code}✓"));
        self.expect_prompt(Prompt::RepeatPasscode);
        self.press(&format!("{code}✓"));
        self.expect_prompt(Prompt::Success);
        self.press("↩↩");
        self.last.clear();
        user
    }

    /// Drive a module enrolment to success after the engine asked for it.
    pub fn complete_enrolment(&mut self, modality: Modality) -> u16 {
        let slot = self.enrol_slot().expect("an enrolment was started");
        for i in 1..=3u8 {
            self.input(Input::Module(ModuleReport::EnrolProgress {
                modality,
                step: EnrolStep::PresentAgain { n: i, of: 3 },
            }));
        }
        let template = (modality == Modality::Face).then(|| vec![1, 2, 3, 4]);
        self.input(Input::Module(ModuleReport::Enrolled {
            modality,
            slot,
            template,
        }));
        slot
    }

    pub fn app(&mut self, via: Channel, principal: Principal, command: AppCommand) -> AppResult {
        let id = self.next_req;
        self.next_req += 1;
        let out = self.input(Input::App(AppRequest {
            id,
            via,
            principal,
            command,
        }));
        out.iter()
            .find_map(|a| match a {
                Action::Reply { id: rid, result } if *rid == id => Some(result.clone()),
                _ => None,
            })
            .expect("every app request gets a reply")
    }

    /// Pair an owner app the way B-5.1 says (SET held, then the pairing
    /// principal registers its key) and return the principal to use. The
    /// batch of the pairing is left in `last`.
    pub fn owner(&mut self) -> Principal {
        self.input(Input::Set(SetPress::Long));
        let r = self.app(
            Channel::Ble,
            Principal::Pairing,
            AppCommand::AddAppKey(AppKey {
                id: AppKeyId(0),
                role: AppKeyRole::Owner { admin: n(1) },
                public_key: [7; 32],
                validity: Validity::ALWAYS,
                label: "owner phone".into(),
            }),
        );
        let Ok(latchd::core::AppOk::AppKeyAdded(key)) = r else {
            panic!("pairing failed: {r:?}")
        };
        Principal::Owner { key, admin: n(1) }
    }

    /// The owner's app sets `user`'s duress passcode (B-6.9).
    pub fn set_duress_passcode(&mut self, owner: Principal, user: UserNumber, digits: &str) {
        self.app(
            Channel::Ble,
            owner,
            AppCommand::SetDuressPasscode {
                user,
                digits: digits.into(),
            },
        )
        .expect("duress code");
    }

    /// A temporary code the owner's app adds (B-6.10); its id.
    pub fn add_temp_passcode(
        &mut self,
        owner: Principal,
        digits: &str,
        validity: Validity,
        one_time: bool,
    ) -> latchd::core::types::TempPasscodeId {
        let r = self.app(
            Channel::Ble,
            owner,
            AppCommand::AddTempPasscode {
                digits: digits.into(),
                validity,
                one_time,
            },
        );
        let Ok(latchd::core::AppOk::TempPasscodeAdded(id)) = r else {
            panic!("temporary code {digits}: {r:?}")
        };
        id
    }

    /// The owner adds a guest key (public key `[4; 32]`) valid in
    /// `validity`: its slot.
    pub fn add_guest_key(&mut self, owner: Principal, validity: Validity, label: &str) -> AppKeyId {
        let r = self.app(
            Channel::Ble,
            owner,
            AppCommand::AddAppKey(AppKey {
                id: AppKeyId(0),
                role: AppKeyRole::Guest,
                public_key: [4; 32],
                validity,
                label: label.into(),
            }),
        );
        let Ok(latchd::core::AppOk::AppKeyAdded(key)) = r else {
            panic!("adding a guest key failed: {r:?}")
        };
        key
    }

    // ----- what came out -----

    /// Prompts spoken in the last batch.
    pub fn prompts(&self) -> Vec<Prompt> {
        self.last
            .iter()
            .filter_map(|a| match a {
                Action::Prompt(p, _) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    /// Prompts traced to the diagnostics stream in the last batch
    /// (spoken or muted; issue 14 item 4: prompts are not log events).
    pub fn logged_prompts(&self) -> Vec<String> {
        self.last
            .iter()
            .filter_map(|a| match a {
                Action::Trace(Trace::Prompt { text, .. }) => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn events(&self) -> Vec<Event> {
        self.last
            .iter()
            .filter_map(|a| match a {
                Action::Log(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn has_event(&self, kind: &EventKind) -> bool {
        self.events().iter().any(|e| &e.kind == kind)
    }

    #[track_caller]
    pub fn expect_prompt(&self, p: Prompt) {
        assert!(
            self.prompts().contains(&p),
            "expected prompt {p:?}, got {:?}",
            self.prompts()
        );
    }

    #[track_caller]
    pub fn expect_no_prompt(&self, p: Prompt) {
        assert!(
            !self.prompts().contains(&p),
            "did not expect prompt {p:?} in {:?}",
            self.prompts()
        );
    }

    /// The changes persisted in the last batch (all `Persist` actions).
    #[track_caller]
    pub fn expect_persist(&self) -> Vec<Change> {
        let v = self.persisted();
        assert!(!v.is_empty(), "expected a Persist in {:?}", self.last);
        v
    }

    pub fn persisted(&self) -> Vec<Change> {
        self.last
            .iter()
            .filter_map(|a| match a {
                Action::Persist(c) => Some(c.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Position of the first action matching `f` in the last batch.
    pub fn position(&self, f: impl Fn(&Action) -> bool) -> Option<usize> {
        self.last.iter().position(f)
    }

    /// The motor move asked for in the last batch.
    pub fn drive(&self) -> Option<MotorCmd> {
        self.last.iter().find_map(|a| match a {
            Action::Motor(m @ MotorCmd::Drive { .. }) => Some(*m),
            _ => None,
        })
    }

    /// A code at the door, after the keypad went back to sleep (30 s
    /// pass): whether it opened (the bolt is thrown again after).
    pub fn code_opens(&mut self, code: &str) -> bool {
        self.advance(30);
        self.all.clear();
        self.input(Input::Touch);
        self.press(&format!("{code}✓"));
        let opened = self.unlocked();
        if opened {
            self.finish_motor();
            self.input(Input::LockButton);
            self.finish_motor();
        }
        opened
    }

    pub fn unlocked(&self) -> bool {
        self.events()
            .iter()
            .any(|e| matches!(e.kind, EventKind::Unlocked { .. }))
    }

    pub fn notices(&self) -> Vec<Notice> {
        self.last
            .iter()
            .filter_map(|a| match a {
                Action::Notify(n) => Some(n.clone()),
                _ => None,
            })
            .collect()
    }

    /// Whether the engine holds `alarm` active now.
    pub fn alarm_active(&self, alarm: AlarmKind) -> bool {
        self.engine.status().active_alarms.contains(&alarm)
    }

    pub fn alarms(&self) -> Vec<AlarmCmd> {
        self.last
            .iter()
            .filter_map(|a| match a {
                Action::Alarm(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    pub fn module_cmds(&self) -> Vec<ModuleCmd> {
        self.last
            .iter()
            .filter_map(|a| match a {
                Action::Module(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    pub fn enrol_slot(&self) -> Option<u16> {
        self.all.iter().rev().find_map(|a| match a {
            Action::Module(ModuleCmd::Enrol { slot, .. }) => Some(*slot),
            _ => None,
        })
    }

    /// The user number announced in the last batch.
    pub fn shown_user(&self) -> Option<UserNumber> {
        self.prompts().into_iter().find_map(|p| match p {
            Prompt::UserNumber(u) => Some(u),
            _ => None,
        })
    }

    pub fn keypad(&self) -> KeypadView {
        self.engine.status().keypad
    }

    pub fn lit(&self) -> Vec<Key> {
        self.keypad().lit
    }
}

/// An installed lock whose second administrator (002) enrolled a face
/// (menu 1, 1), the keypad asleep again; and the face's slot.
pub fn with_admin_face() -> (Sim, u16) {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("11");
    let slot = s.complete_enrolment(Modality::Face);
    s.press("↩↩");
    s.advance(30);
    (s, slot)
}

/// A visitor code's window: from now for a day (every visitor code has an
/// end, issue 13).
pub fn a_day() -> Validity {
    Validity {
        from: None,
        until: Some(latchd::core::WallTime(WALL0 + 86_400)),
    }
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
