//! The terminal front panel: the simulated lock drawn with crossterm, and
//! its buttons on the keyboard.
//!
//! ```text
//!   keyboard ─► reader thread (crossterm::event::read, blocking) ─► mpsc ─┐
//!   sim board changes (watch) ────────────────────────────────────────────┼─► redraw
//!   engine status (watch), logged events (broadcast) ─────────────────────┘
//!   key ─► SimControl (press, finger, door...) ─► engine
//! ```
//!
//! The panel redraws only when something changed (and twice a second while
//! a key is flashing), so an idle lock with the panel open stays idle. The
//! terminal is restored on exit and on panic (a panic hook runs before the
//! default one prints).
use std::io::{self, Write};
use std::sync::Once;
use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::style::{Print, Stylize};
use crossterm::terminal::{self, ClearType};
use crossterm::{cursor, execute, queue};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::board::sim::{key_label, SimControl, SimSnapshot};
use crate::core::input::{BoltPosition, DoorPosition, SetPress, TamperState};
use crate::core::types::Key;
use crate::link::{EventRecord, Published};

const HELP: &[&str] = &[
    "keys 0-9 · Enter ✓ · Backspace/Esc ↩ · a away · b bell · t touch · H<key> hold (H0 mute)",
    "s SET · S SET long · l lock button · i inside handle · k mech. key · o door · x tamper",
    "f<N> finger · p<N> palm · c<N> face (c0 leaves) of person N · +/- battery · u USB-C · j jam · q quit",
];

/// Restores the terminal when dropped.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> io::Result<Self> {
        install_panic_hook();
        terminal::enable_raw_mode()?;
        execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
        Ok(TerminalGuard)
    }
}

fn restore_terminal() {
    let _ = execute!(io::stdout(), cursor::Show, terminal::LeaveAlternateScreen);
    let _ = terminal::disable_raw_mode();
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Leave raw mode first so the panic message is readable.
            restore_terminal();
            previous(info);
        }));
    });
}

/// A key that waits for a second one (`f3` = person 3's finger).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Finger,
    Palm,
    Face,
    Hold,
}

struct Panel {
    sim: SimControl,
    pending: Option<Pending>,
    message: String,
    events: Vec<EventRecord>,
    blink_on: bool,
}

/// Run the front panel until `shutdown` (or until "q" cancels it).
pub async fn run(
    sim: SimControl,
    mut published: watch::Receiver<Published>,
    mut events: Option<broadcast::Receiver<EventRecord>>,
    shutdown: CancellationToken,
) {
    let guard = match TerminalGuard::enter() {
        Ok(g) => g,
        Err(e) => {
            tracing::error!("cannot draw the front panel on this terminal: {e}");
            return;
        }
    };
    let (key_tx, mut key_rx) = mpsc::channel::<TermEvent>(32);
    // crossterm's reader blocks; it lives on its own thread and ends when
    // the channel closes (after the next key) or at process exit.
    std::thread::spawn(move || {
        while let Ok(ev) = crossterm::event::read() {
            if key_tx.blocking_send(ev).is_err() {
                break;
            }
        }
    });
    let mut changes = sim.subscribe();
    let mut panel = Panel {
        sim,
        pending: None,
        message: String::new(),
        events: Vec::new(),
        blink_on: true,
    };
    loop {
        let snap = panel.sim.snapshot();
        let status = published.borrow_and_update().clone();
        if let Err(e) = panel.draw(&snap, &status) {
            tracing::error!("front panel: {e}");
            break;
        }
        let flashing = !snap.keypad.flashing.is_empty();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = key_rx.recv() => match ev {
                Some(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => {
                    if panel.key(k) {
                        shutdown.cancel();
                        break;
                    }
                }
                Some(_) => {}
                None => break,
            },
            r = changes.changed() => if r.is_err() { break },
            r = published.changed() => if r.is_err() { break },
            Some(ev) = recv_event(&mut events) => {
                panel.events.push(ev);
                let excess = panel.events.len().saturating_sub(6);
                panel.events.drain(..excess);
            },
            _ = tokio::time::sleep(Duration::from_millis(500)), if flashing => {
                panel.blink_on = !panel.blink_on;
            },
        }
    }
    drop(guard);
}

async fn recv_event(rx: &mut Option<broadcast::Receiver<EventRecord>>) -> Option<EventRecord> {
    match rx {
        Some(r) => loop {
            match r.recv().await {
                Ok(ev) => return Some(ev),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        },
        None => std::future::pending().await,
    }
}

impl Panel {
    /// Handle one terminal key; `true` = quit.
    fn key(&mut self, k: KeyEvent) -> bool {
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            return true;
        }
        let sim = &self.sim;
        if let Some(p) = self.pending.take() {
            let result = match (p, k.code) {
                (Pending::Hold, code) => match code_key(code) {
                    Some(key) => sim.hold(key).map(|_| format!("held {}", key_label(key))),
                    None => Ok("hold: press a keypad key".into()),
                },
                (_, KeyCode::Char(c)) if c.is_ascii_digit() => {
                    let n = u32::from(c as u8 - b'0');
                    match p {
                        Pending::Finger => {
                            sim.finger(n.max(1)).map(|_| format!("person {n}'s finger"))
                        }
                        Pending::Palm => sim.palm(n.max(1)).map(|_| format!("person {n}'s palm")),
                        _ => sim
                            .face((n != 0).then_some(n))
                            .map(|_| format!("face: person {n}")),
                    }
                }
                _ => Ok("cancelled: give a person number 1-9".into()),
            };
            self.message = result.unwrap_or_else(|e| e.to_string());
            return false;
        }
        let snap = sim.snapshot();
        let result: Result<String, crate::board::sim::SimError> = match k.code {
            KeyCode::Char('q') => return true,
            KeyCode::Char(c) if c.is_ascii_digit() => sim
                .press(&[Key::Digit(c as u8 - b'0')])
                .map(|_| String::new()),
            KeyCode::Enter => sim.press(&[Key::Confirm]).map(|_| String::new()),
            KeyCode::Backspace | KeyCode::Esc => sim.press(&[Key::Back]).map(|_| String::new()),
            KeyCode::Char('a') => sim.press(&[Key::Away]).map(|_| "away".into()),
            KeyCode::Char('b') => sim.press(&[Key::Doorbell]).map(|_| "ding dong".into()),
            KeyCode::Char('t') => sim.touch().map(|_| "touched the keypad".into()),
            KeyCode::Char('s') => sim.set(SetPress::Short).map(|_| "SET".into()),
            KeyCode::Char('S') => sim.set(SetPress::Long).map(|_| "SET held".into()),
            KeyCode::Char('l') => sim.lock_button().map(|_| "lock button".into()),
            KeyCode::Char('i') => sim.inside_handle().map(|_| "inside handle".into()),
            KeyCode::Char('k') => sim.mechanical_key().map(|_| "mechanical key turned".into()),
            KeyCode::Char('o') => {
                let open = snap.door == DoorPosition::Closed;
                sim.door(open)
                    .map(|_| if open { "door opened" } else { "door closed" }.into())
            }
            KeyCode::Char('x') => {
                let open = snap.tamper == TamperState::Intact;
                sim.tamper(open).map(|_| {
                    if open {
                        "front panel removed"
                    } else {
                        "front panel back"
                    }
                    .into()
                })
            }
            KeyCode::Char('+') => sim.battery_step(10).map(|_| String::new()),
            KeyCode::Char('-') => sim.battery_step(-10).map(|_| String::new()),
            KeyCode::Char('u') => sim
                .power(None, Some(!snap.power.external))
                .map(|_| String::new()),
            KeyCode::Char('j') => {
                sim.jam(1);
                Ok("the next motor move will jam".into())
            }
            KeyCode::Char('f') => self.wait(Pending::Finger, "finger of person (1-9)?"),
            KeyCode::Char('p') => self.wait(Pending::Palm, "palm of person (1-9)?"),
            KeyCode::Char('c') => self.wait(Pending::Face, "face of person (1-9, 0 = leave)?"),
            KeyCode::Char('H') => self.wait(Pending::Hold, "hold which key?"),
            _ => Ok(String::new()),
        };
        self.message = result.unwrap_or_else(|e| e.to_string());
        false
    }

    fn wait(&mut self, p: Pending, ask: &str) -> Result<String, crate::board::sim::SimError> {
        self.pending = Some(p);
        Ok(ask.into())
    }

    fn draw(&self, s: &SimSnapshot, p: &Published) -> io::Result<()> {
        let mut out = io::stdout().lock();
        queue!(out, terminal::Clear(ClearType::All), cursor::MoveTo(0, 0))?;
        let e = &p.engine;
        let mut lines: Vec<String> = vec![
            format!(
                "latchd — simulated lock      lock: {:?}   step: {}",
                e.lock, e.step
            ),
            String::new(),
        ];
        lines.extend(self.front_lines(s));
        lines.push(String::new());
        lines.extend(back_lines(s, e));
        lines.push(String::new());
        lines.extend(self.log_lines(p));
        for (i, line) in lines.iter().enumerate() {
            queue!(out, cursor::MoveTo(0, i as u16), Print(line))?;
        }
        let (_, rows) = terminal::size().unwrap_or((80, 40));
        let help_row = rows.saturating_sub(HELP.len() as u16 + 1);
        if !self.message.is_empty() {
            queue!(
                out,
                cursor::MoveTo(0, help_row.saturating_sub(1)),
                Print(format!("> {}", self.message).bold())
            )?;
        }
        for (i, h) in HELP.iter().enumerate() {
            queue!(out, cursor::MoveTo(0, help_row + i as u16), Print(h.dim()))?;
        }
        out.flush()
    }

    /// The outside: keypad, digits shown, camera.
    fn front_lines(&self, s: &SimSnapshot) -> Vec<String> {
        let mut lines = Vec::new();
        lines.push(format!(
            "FRONT (outside)  keypad {}{}",
            if s.keypad.awake { "awake" } else { "asleep" },
            if s.keypad.low_battery_led {
                "  [LOW BATTERY LED]"
            } else {
                ""
            }
        ));
        for row in [
            [Key::Digit(1), Key::Digit(2), Key::Digit(3)],
            [Key::Digit(4), Key::Digit(5), Key::Digit(6)],
            [Key::Digit(7), Key::Digit(8), Key::Digit(9)],
            [Key::Back, Key::Digit(0), Key::Confirm],
        ] {
            let cells: Vec<String> = row.iter().map(|k| self.cell(*k, s)).collect();
            lines.push(format!("   {}", cells.join(" ")));
        }
        lines.push(format!(
            "   {} {}",
            self.cell(Key::Away, s),
            self.cell(Key::Doorbell, s)
        ));
        if !s.keypad.digits_shown.is_empty() {
            let d: Vec<String> = s
                .keypad
                .digits_shown
                .iter()
                .map(|d| d.to_string())
                .collect();
            lines.push(format!("   digits shown: {}", d.join(" ")));
        }
        lines.push(format!(
            "   camera: {}   snapshots: {}",
            s.face_present
                .map(|p| format!("person {p}"))
                .unwrap_or_else(|| "nobody".into()),
            s.snapshots
        ));
        lines
    }

    /// Prompts spoken (their text in the language each was said in, issue
    /// 17 item 4), events logged, the daemon's counters.
    fn log_lines(&self, p: &Published) -> Vec<String> {
        let mut lines = prompt_lines(p.engine.language, &self.sim.prompts(5));
        if !self.events.is_empty() {
            lines.push("events:".into());
            for ev in &self.events {
                lines.push(format!("   #{} {} {}", ev.id, ev.kind, ev.detail));
            }
        }
        lines.push(String::new());
        lines.push(format!(
            "daemon: wake-ups {}   inputs {}",
            p.daemon.wakeups, p.daemon.processed
        ));
        lines
    }

    fn cell(&self, key: Key, s: &SimSnapshot) -> String {
        let label = format!("[{}]", key_label(key));
        let flashing = s.keypad.flashing.contains(&key);
        let lit = s.keypad.awake && s.keypad.lit.contains(&key);
        if flashing && self.blink_on {
            label.reverse().bold().to_string()
        } else if lit {
            label.bold().to_string()
        } else {
            label.dim().to_string()
        }
    }
}

fn code_key(code: KeyCode) -> Option<Key> {
    match code {
        KeyCode::Char(c) if c.is_ascii_digit() => Some(Key::Digit(c as u8 - b'0')),
        KeyCode::Enter => Some(Key::Confirm),
        KeyCode::Backspace | KeyCode::Esc => Some(Key::Back),
        KeyCode::Char('a') => Some(Key::Away),
        KeyCode::Char('b') => Some(Key::Doorbell),
        _ => None,
    }
}

/// The inside: bolt, motor, door, tamper, power, alarms, counts.
/// The prompts block of the panel: the language in force, then each
/// prompt's words as it was said.
fn prompt_lines(
    lang: crate::core::Language,
    prompts: &[crate::board::sim::PromptRecord],
) -> Vec<String> {
    let mut lines = vec![format!("prompts ({lang}):")];
    for pr in prompts {
        lines.push(format!(
            "   {:>8.1}s  {}",
            pr.at_ms as f64 / 1000.0,
            pr.text
        ));
    }
    lines
}

fn back_lines(s: &SimSnapshot, e: &crate::core::Status) -> Vec<String> {
    let mut lines = Vec::new();
    lines.push(format!(
        "BACK (inside)   bolt: {}   motor: {}   door: {}   tamper: {}",
        bolt_word(s.bolt),
        match s.motor {
            crate::board::sim::MotorState::Idle => "idle".to_string(),
            crate::board::sim::MotorState::Moving { target } =>
                format!("moving → {}", bolt_word(target)),
        },
        match s.door {
            DoorPosition::Open => "open",
            DoorPosition::Closed => "closed",
        },
        match s.tamper {
            TamperState::Intact => "intact",
            TamperState::Opened => "OPENED",
        },
    ));
    lines.push(format!(
        "   battery: {}% {} mV{}   motor cycles: {}   jams: {} (pending {})",
        s.power.percent,
        s.power.millivolts,
        if s.power.external {
            "  USB-C power"
        } else {
            ""
        },
        s.motor_cycles,
        s.jams,
        s.jams_pending
    ));
    let alarms: Vec<String> = s
        .alarms
        .iter()
        .map(|a| format!("{:?} {}s", a.kind, a.remaining_ms / 1000))
        .collect();
    lines.push(format!(
        "   alarms: {}   lockout: {}   pairing: {}   away: {}   mute: {}",
        if alarms.is_empty() {
            "none".into()
        } else {
            alarms.join(", ")
        },
        match (e.lockout_active, e.lockout_remaining) {
            (true, Some(r)) => format!("{}s left", r.as_secs()),
            (true, None) => "yes".into(),
            _ => format!("no ({} recent failures)", e.recent_failures),
        },
        yes_no(e.pairing_mode),
        yes_no(e.away_armed),
        yes_no(e.muted),
    ));
    lines.push(format!(
        "   users: {} (admins {})   fingerprints: {}   palms: {}   faces: {}   passcodes: {}",
        e.counts.users,
        e.counts.admins,
        e.counts.fingerprints,
        e.counts.palms,
        e.counts.faces,
        e.counts.passcodes
    ));
    lines.push(schedule_line(e));
    lines.push(String::new());
    lines
}

/// The schedules in force and the holiday running now (issue 17 item 2).
fn schedule_line(e: &crate::core::Status) -> String {
    format!("   schedules: {}", e.schedules.text())
}

fn bolt_word(b: BoltPosition) -> &'static str {
    match b {
        BoltPosition::Extended => "extended",
        BoltPosition::Retracted => "retracted",
        BoltPosition::Between => "between",
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::sim::PromptRecord;
    use crate::core::{Language, Prompt};

    /// Issue 17 item 2: the panel shows the schedules and a running
    /// holiday's mode.
    #[test]
    fn the_panel_shows_the_schedules_and_the_holiday_now() {
        use crate::core::schedule::ScheduleStatus;
        use crate::core::types::OperatingMode;
        use crate::core::{Engine, EngineConfig, Now};
        let engine = Engine::new(
            EngineConfig::for_tests("LD-1"),
            crate::core::types::Persisted::default(),
            Now::new(0, None),
        );
        let mut status = engine.status();
        assert_eq!(
            schedule_line(&status),
            "   schedules: 0 week-day, 0 year-day, 0 holidays; holiday now: none; zone UTC"
        );
        status.schedules = ScheduleStatus {
            week_day: 2,
            year_day: 1,
            holidays: 1,
            holiday_now: Some(OperatingMode::Vacation),
            time_zone: "Asia/Taipei".into(),
        };
        assert_eq!(
            schedule_line(&status),
            "   schedules: 2 week-day, 1 year-day, 1 holiday; holiday now: vacation; zone Asia/Taipei"
        );
    }

    /// Issue 17 item 4: the panel shows what the sim's voice logged, in the
    /// language it was said in, under the language in force.
    #[test]
    fn the_panel_shows_prompts_in_their_language() {
        let said = |p: Prompt, lang: Language, at_ms| PromptRecord {
            at_ms,
            asset: p.asset(),
            language: lang,
            text: p.text(lang),
        };
        let lines = prompt_lines(
            Language::ZhTw,
            &[
                said(Prompt::LanguageSet, Language::ZhTw, 1500),
                said(Prompt::Unlocked, Language::ZhTw, 2000),
            ],
        );
        assert_eq!(
            lines,
            [
                "prompts (zh-TW):",
                "        1.5s  已切換為中文。",
                "        2.0s  已開鎖。"
            ]
        );
    }
}
