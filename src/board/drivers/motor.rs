//! Bolt motor driver: a DC gear motor on an H-bridge, stopped by the bolt's
//! limit switches, with jam detection from the motor current.
//!
//! # Hardware
//!
//! ```text
//!   IN1 ──┐   ┌──────────┐        ┌─────────┐      limit switches
//!   IN2 ──┴──►│ H-bridge │──M+/M-►│  motor  │──► bolt ──► EXTENDED / RETRACTED
//!             │ (DRV8833)│        └─────────┘
//!             └────┬─────┘
//!               shunt ──► amplifier ──► ADC channel (motor current)
//! ```
//!
//! | IN1 | IN2 | bridge                          |
//! |-----|-----|---------------------------------|
//! |  0  |  0  | coast: motor de-energised        |
//! |  1  |  0  | clockwise                        |
//! |  0  |  1  | counter-clockwise                |
//!
//! Brake (1/1) is never used: it keeps the bridge powered. Direction
//! changes always pass through coast.
//!
//! # Control law
//!
//! ```text
//!  start ──► Driving ──limit reached──────────────────────► Reached
//!              │  current > stall for stall_after,
//!              │  or max_travel elapsed
//!              ▼
//!           Pausing (coast, retry_pause) ──► Driving (attempt 2)
//!                                              │ fails again
//!                                              ▼
//!                                            Jammed (coast)
//! ```
//!
//! The first `inrush` of every attempt ignores current: a starting motor
//! draws stall-level current for a few milliseconds. [`MotorControl`] is
//! the law as a pure state machine (time comes in); [`MotorDriver`] runs it
//! on real pins, sampling only while the motor moves — an idle lock
//! samples nothing. It is synchronous: the time between samples comes from
//! a [`Pace`] — a thread of its own in the daemon
//! ([`motor_thread`](super::motor_thread)), so that no async worker, lock
//! or fsync stands between a limit switch and the coast; virtual time in
//! tests.
//!
//! # Never left energised
//!
//! The bridge is set to coast when a move ends, when any pin or ADC access
//! fails, when the move is interrupted (a new command, SIGTERM), during a
//! panic's unwinding, and when the driver is dropped. Deaths that run no
//! code at all (SIGKILL) are covered outside the process: `board::coast`
//! and the unit's `ExecStopPost=` (docs/motor-safety.md).
use core::time::Duration;

use embedded_hal::digital::OutputPin;

use crate::core::input::BoltPosition;
use crate::core::types::MotorDirection;

/// Tuning for one motor and gearbox; from the board file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MotorParams {
    /// Hard stop for one attempt.
    pub max_travel: Duration,
    /// Current above which the motor is considered stalled.
    pub stall_milliamps: u32,
    /// How long the current must stay above `stall_milliamps`.
    pub stall_after: Duration,
    /// Start-up current spike ignored at the beginning of each attempt.
    pub inrush: Duration,
    /// Coast time between the failed attempt and the retry.
    pub retry_pause: Duration,
    /// How often the driver samples current and limit switches.
    pub sample_period: Duration,
}

impl Default for MotorParams {
    fn default() -> Self {
        MotorParams {
            max_travel: Duration::from_millis(1500),
            stall_milliamps: 800,
            stall_after: Duration::from_millis(60),
            inrush: Duration::from_millis(80),
            retry_pause: Duration::from_millis(300),
            sample_period: Duration::from_millis(5),
        }
    }
}

/// The bridge state the control law asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bridge {
    Coast,
    Turn(MotorDirection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JamReason {
    OverCurrent,
    Timeout,
}

/// How a move ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Reached(BoltPosition),
    /// Both attempts failed; the bridge is coasting.
    Jammed {
        at: BoltPosition,
        reason: JamReason,
    },
}

/// What the driver does after a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Set(Bridge),
    Finished(Outcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Driving {
        attempt: u8,
        since_ms: u64,
        over_since_ms: Option<u64>,
    },
    Pausing {
        until_ms: u64,
        reason: JamReason,
    },
}

/// The motor control law, without IO: feed it samples, apply its steps.
#[derive(Debug, Clone)]
pub struct MotorControl {
    params: MotorParams,
    target: BoltPosition,
    direction: MotorDirection,
    phase: Phase,
}

/// Attempts per move: the first and one retry.
const ATTEMPTS: u8 = 2;

impl MotorControl {
    pub fn new(params: MotorParams) -> Self {
        MotorControl {
            params,
            target: BoltPosition::Extended,
            direction: MotorDirection::Clockwise,
            phase: Phase::Idle,
        }
    }

    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Idle
    }

    /// Begin a move at `now_ms`. A bolt already at `target` finishes at
    /// once without energising anything.
    pub fn start(
        &mut self,
        now_ms: u64,
        target: BoltPosition,
        direction: MotorDirection,
        position: BoltPosition,
    ) -> Step {
        self.target = target;
        self.direction = direction;
        if position == target {
            self.phase = Phase::Idle;
            return Step::Finished(Outcome::Reached(target));
        }
        self.phase = Phase::Driving {
            attempt: 1,
            since_ms: now_ms,
            over_since_ms: None,
        };
        Step::Set(Bridge::Turn(direction))
    }

    /// One sample of the motor current and the limit switches.
    pub fn sample(&mut self, now_ms: u64, milliamps: u32, position: BoltPosition) -> Step {
        let p = self.params;
        match self.phase {
            Phase::Idle => Step::Set(Bridge::Coast),
            Phase::Driving {
                attempt,
                since_ms,
                over_since_ms,
            } => {
                if position == self.target {
                    self.phase = Phase::Idle;
                    return Step::Finished(Outcome::Reached(position));
                }
                let elapsed = now_ms.saturating_sub(since_ms);
                let past_inrush = elapsed >= p.inrush.as_millis() as u64;
                let over = past_inrush && milliamps > p.stall_milliamps;
                let over_since = if over {
                    Some(over_since_ms.unwrap_or(now_ms))
                } else {
                    None
                };
                let stalled = over_since
                    .is_some_and(|t| now_ms.saturating_sub(t) >= p.stall_after.as_millis() as u64);
                let timed_out = elapsed >= p.max_travel.as_millis() as u64;
                if stalled || timed_out {
                    let reason = if stalled {
                        JamReason::OverCurrent
                    } else {
                        JamReason::Timeout
                    };
                    if attempt >= ATTEMPTS {
                        self.phase = Phase::Idle;
                        return Step::Finished(Outcome::Jammed {
                            at: position,
                            reason,
                        });
                    }
                    self.phase = Phase::Pausing {
                        until_ms: now_ms + p.retry_pause.as_millis() as u64,
                        reason,
                    };
                    return Step::Set(Bridge::Coast);
                }
                self.phase = Phase::Driving {
                    attempt,
                    since_ms,
                    over_since_ms: over_since,
                };
                Step::Set(Bridge::Turn(self.direction))
            }
            Phase::Pausing { until_ms, reason } => {
                if position == self.target {
                    // The bolt got there while coasting (it was just stiff).
                    self.phase = Phase::Idle;
                    return Step::Finished(Outcome::Reached(position));
                }
                if now_ms < until_ms {
                    let _ = reason;
                    return Step::Set(Bridge::Coast);
                }
                self.phase = Phase::Driving {
                    attempt: ATTEMPTS,
                    since_ms: now_ms,
                    over_since_ms: None,
                };
                Step::Set(Bridge::Turn(self.direction))
            }
        }
    }

    /// Abandon the move (SIGTERM, error): the bridge must coast.
    pub fn abort(&mut self) -> Bridge {
        self.phase = Phase::Idle;
        Bridge::Coast
    }
}

/// How a move waits between samples, and what time it is: the driver's
/// only contact with the outside while the motor turns.
pub trait Pace {
    /// Milliseconds since any fixed origin, monotonic.
    fn now_ms(&mut self) -> u64;
    /// Wait `period` (one sample period). `false` interrupts the move: the
    /// bridge coasts and [`MotorDriver::drive`] returns
    /// [`Drive::Interrupted`].
    fn wait(&mut self, period: Duration) -> bool;
}

/// How [`MotorDriver::drive`] ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drive {
    Finished(Outcome),
    /// [`Pace::wait`] asked to stop; the bridge is coasting.
    Interrupted,
}

/// Reads the motor current.
pub trait CurrentSense {
    type Error: core::fmt::Debug;
    fn milliamps(&mut self) -> Result<u32, Self::Error>;
}

/// Reads the bolt's limit switches.
pub trait LimitSwitches {
    type Error: core::fmt::Debug;
    fn position(&mut self) -> Result<BoltPosition, Self::Error>;
}

#[derive(Debug, thiserror::Error)]
pub enum MotorError {
    #[error("motor bridge pin {pin} could not be set: {detail}; the bridge was set to coast")]
    Pin { pin: &'static str, detail: String },
    #[error("motor current could not be read: {0}; the bridge was set to coast")]
    CurrentSense(String),
    #[error("bolt limit switches could not be read: {0}; the bridge was set to coast")]
    LimitSwitches(String),
}

/// The two bridge inputs. Dropping it coasts the motor.
pub struct HBridge<A: OutputPin, B: OutputPin> {
    /// `None` only after [`HBridge::release`] handed the pins back.
    pins: Option<(A, B)>,
}

impl<A: OutputPin, B: OutputPin> std::fmt::Debug for HBridge<A, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HBridge").finish_non_exhaustive()
    }
}

impl<A: OutputPin, B: OutputPin> HBridge<A, B> {
    pub fn new(in1: A, in2: B) -> Self {
        HBridge {
            pins: Some((in1, in2)),
        }
    }

    fn set(&mut self, bridge: Bridge) -> Result<(), MotorError> {
        let Some((in1, in2)) = self.pins.as_mut() else {
            return Ok(());
        };
        let res = match bridge {
            Bridge::Coast => return self.coast(),
            Bridge::Turn(MotorDirection::Clockwise) => in2
                .set_low()
                .map_err(|e| pin_err("IN2", e))
                .and_then(|_| in1.set_high().map_err(|e| pin_err("IN1", e))),
            Bridge::Turn(MotorDirection::CounterClockwise) => in1
                .set_low()
                .map_err(|e| pin_err("IN1", e))
                .and_then(|_| in2.set_high().map_err(|e| pin_err("IN2", e))),
        };
        if res.is_err() {
            let _ = self.coast();
        }
        res
    }

    /// Both inputs low. Tries both pins even if the first fails.
    fn coast(&mut self) -> Result<(), MotorError> {
        let Some((in1, in2)) = self.pins.as_mut() else {
            return Ok(());
        };
        let a = in1.set_low().map_err(|e| pin_err("IN1", e));
        let b = in2.set_low().map_err(|e| pin_err("IN2", e));
        a.and(b)
    }

    /// Take the pins back, coasting first.
    pub fn release(mut self) -> (A, B) {
        let _ = self.coast();
        // Always Some here: only this method takes the pins, and it
        // consumes the bridge.
        self.pins.take().expect("pins present until release")
    }
}

impl<A: OutputPin, B: OutputPin> Drop for HBridge<A, B> {
    fn drop(&mut self) {
        let _ = self.coast();
    }
}

fn pin_err(pin: &'static str, e: impl core::fmt::Debug) -> MotorError {
    MotorError::Pin {
        pin,
        detail: format!("{e:?}"),
    }
}

/// Coasts the bridge when a move ends in any way: return, error, `?`,
/// interruption, or a panic unwinding through it.
struct CoastGuard<'a, A: OutputPin, B: OutputPin>(&'a mut HBridge<A, B>);

impl<A: OutputPin, B: OutputPin> Drop for CoastGuard<'_, A, B> {
    fn drop(&mut self) {
        let _ = self.0.coast();
    }
}

/// The motor on real (or mock) pins.
pub struct MotorDriver<A: OutputPin, B: OutputPin, C: CurrentSense, L: LimitSwitches> {
    bridge: HBridge<A, B>,
    sense: C,
    limits: L,
    params: MotorParams,
    /// Completed moves, for diagnostics.
    pub cycles: u64,
}

impl<A: OutputPin, B: OutputPin, C: CurrentSense, L: LimitSwitches> std::fmt::Debug
    for MotorDriver<A, B, C, L>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotorDriver")
            .field("cycles", &self.cycles)
            .finish_non_exhaustive()
    }
}

impl<A, B, C, L> MotorDriver<A, B, C, L>
where
    A: OutputPin,
    B: OutputPin,
    C: CurrentSense,
    L: LimitSwitches,
{
    /// Takes the pins and coasts the bridge at once: whatever state the
    /// pins were left in by a previous process, the motor stops here.
    pub fn new(bridge: HBridge<A, B>, sense: C, limits: L, params: MotorParams) -> Self {
        let mut bridge = bridge;
        let _ = bridge.coast();
        MotorDriver {
            bridge,
            sense,
            limits,
            params,
            cycles: 0,
        }
    }

    /// Drive the bolt to `target`, sampling every `sample_period` as
    /// `pace` waits. Returns when it got there, jammed, or `pace`
    /// interrupted the move; the bridge coasts in every case.
    pub fn drive(
        &mut self,
        target: BoltPosition,
        direction: MotorDirection,
        pace: &mut dyn Pace,
    ) -> Result<Drive, MotorError> {
        let mut law = MotorControl::new(self.params);
        let position = self
            .limits
            .position()
            .map_err(|e| MotorError::LimitSwitches(format!("{e:?}")))?;
        let guard = CoastGuard(&mut self.bridge);
        let mut step = law.start(pace.now_ms(), target, direction, position);
        loop {
            match step {
                Step::Finished(outcome) => {
                    drop(guard);
                    self.cycles += 1;
                    return Ok(Drive::Finished(outcome));
                }
                Step::Set(bridge) => guard.0.set(bridge)?,
            }
            if !pace.wait(self.params.sample_period) {
                law.abort();
                return Ok(Drive::Interrupted);
            }
            let ma = self
                .sense
                .milliamps()
                .map_err(|e| MotorError::CurrentSense(format!("{e:?}")))?;
            let pos = self
                .limits
                .position()
                .map_err(|e| MotorError::LimitSwitches(format!("{e:?}")))?;
            step = law.sample(pace.now_ms(), ma, pos);
        }
    }

    /// Set the bridge to coast now (an idle driver asked to stop).
    pub fn coast(&mut self) -> Result<(), MotorError> {
        self.bridge.coast()
    }

    /// Take everything back (the bridge coasts).
    pub fn release(self) -> (HBridge<A, B>, C, L) {
        (self.bridge, self.sense, self.limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::digital::{Mock as Pin, State, Transaction as T};
    use std::cell::RefCell;
    use std::rc::Rc;

    fn params() -> MotorParams {
        MotorParams {
            max_travel: Duration::from_millis(1000),
            stall_milliamps: 500,
            stall_after: Duration::from_millis(50),
            inrush: Duration::from_millis(20),
            retry_pause: Duration::from_millis(100),
            sample_period: Duration::from_millis(10),
        }
    }

    const CW: MotorDirection = MotorDirection::Clockwise;
    const RETRACTED: BoltPosition = BoltPosition::Retracted;
    const BETWEEN: BoltPosition = BoltPosition::Between;

    #[test]
    fn reaching_the_limit_switch_finishes() {
        let mut m = MotorControl::new(params());
        assert!(m.is_idle());
        assert_eq!(
            m.start(0, RETRACTED, CW, BoltPosition::Extended),
            Step::Set(Bridge::Turn(CW))
        );
        assert!(!m.is_idle(), "a move in progress");
        assert_eq!(m.sample(10, 300, BETWEEN), Step::Set(Bridge::Turn(CW)));
        assert_eq!(
            m.sample(20, 300, RETRACTED),
            Step::Finished(Outcome::Reached(RETRACTED))
        );
        assert!(m.is_idle());
    }

    #[test]
    fn already_there_energises_nothing() {
        let mut m = MotorControl::new(params());
        assert_eq!(
            m.start(0, RETRACTED, CW, RETRACTED),
            Step::Finished(Outcome::Reached(RETRACTED))
        );
    }

    #[test]
    fn inrush_is_ignored() {
        let mut m = MotorControl::new(params());
        m.start(0, RETRACTED, CW, BETWEEN);
        for t in (0..20).step_by(5) {
            assert_eq!(m.sample(t, 2000, BETWEEN), Step::Set(Bridge::Turn(CW)));
        }
    }

    #[test]
    fn stall_retries_once_then_jams() {
        let mut m = MotorControl::new(params());
        m.start(0, RETRACTED, CW, BETWEEN);
        assert_eq!(m.sample(30, 900, BETWEEN), Step::Set(Bridge::Turn(CW)));
        // 50 ms over the stall current: coast and pause.
        assert_eq!(m.sample(80, 900, BETWEEN), Step::Set(Bridge::Coast));
        assert_eq!(m.sample(150, 0, BETWEEN), Step::Set(Bridge::Coast));
        // Pause over: second attempt.
        assert_eq!(m.sample(180, 0, BETWEEN), Step::Set(Bridge::Turn(CW)));
        assert_eq!(m.sample(210, 900, BETWEEN), Step::Set(Bridge::Turn(CW)));
        assert_eq!(
            m.sample(260, 900, BETWEEN),
            Step::Finished(Outcome::Jammed {
                at: BETWEEN,
                reason: JamReason::OverCurrent
            })
        );
        assert!(m.is_idle());
    }

    #[test]
    fn a_short_spike_is_not_a_stall() {
        let mut m = MotorControl::new(params());
        m.start(0, RETRACTED, CW, BETWEEN);
        assert_eq!(m.sample(30, 900, BETWEEN), Step::Set(Bridge::Turn(CW)));
        assert_eq!(m.sample(60, 100, BETWEEN), Step::Set(Bridge::Turn(CW)));
        assert_eq!(m.sample(90, 900, BETWEEN), Step::Set(Bridge::Turn(CW)));
        assert_eq!(m.sample(130, 900, BETWEEN), Step::Set(Bridge::Turn(CW)));
    }

    /// The stall current is a bound the motor may run at: only a current
    /// above it, held, is a stall (a bolt turning stiffly at exactly the
    /// bound ends at the travel timeout instead).
    #[test]
    fn the_stall_current_itself_is_not_a_stall() {
        let mut m = MotorControl::new(params());
        m.start(0, RETRACTED, CW, BETWEEN);
        for t in (30..1000).step_by(10) {
            assert_eq!(
                m.sample(t, 500, BETWEEN),
                Step::Set(Bridge::Turn(CW)),
                "{t} ms"
            );
        }
        assert_eq!(m.sample(1000, 500, BETWEEN), Step::Set(Bridge::Coast));
    }

    #[test]
    fn travel_timeout_retries_then_jams() {
        let mut m = MotorControl::new(params());
        m.start(0, RETRACTED, CW, BETWEEN);
        assert_eq!(m.sample(1000, 100, BETWEEN), Step::Set(Bridge::Coast));
        assert_eq!(m.sample(1100, 0, BETWEEN), Step::Set(Bridge::Turn(CW)));
        assert_eq!(
            m.sample(2100, 100, BETWEEN),
            Step::Finished(Outcome::Jammed {
                at: BETWEEN,
                reason: JamReason::Timeout
            })
        );
    }

    #[test]
    fn retry_succeeds_when_the_bolt_frees() {
        let mut m = MotorControl::new(params());
        m.start(0, RETRACTED, CW, BETWEEN);
        m.sample(30, 900, BETWEEN);
        m.sample(80, 900, BETWEEN);
        m.sample(180, 0, BETWEEN);
        assert_eq!(
            m.sample(300, 300, RETRACTED),
            Step::Finished(Outcome::Reached(RETRACTED))
        );
    }

    /// Scripted current and limit switches: our own traits, fed by the test.
    #[derive(Clone)]
    struct Script(Rc<RefCell<Vec<(u32, BoltPosition)>>>, Rc<RefCell<bool>>);

    impl Script {
        fn new(samples: Vec<(u32, BoltPosition)>) -> Self {
            Script(Rc::new(RefCell::new(samples)), Rc::new(RefCell::new(false)))
        }
        fn current(&self) -> (u32, BoltPosition) {
            let v = self.0.borrow();
            *v.first().unwrap_or(&(0, BETWEEN))
        }
    }
    impl CurrentSense for Script {
        type Error = &'static str;
        fn milliamps(&mut self) -> Result<u32, &'static str> {
            if *self.1.borrow() {
                return Err("adc gone");
            }
            Ok(self.current().0)
        }
    }
    impl LimitSwitches for Script {
        type Error = &'static str;
        fn position(&mut self) -> Result<BoltPosition, &'static str> {
            let p = self.current().1;
            let mut v = self.0.borrow_mut();
            if v.len() > 1 {
                v.remove(0);
            }
            Ok(p)
        }
    }

    /// Pins expecting: new → coast; drive → IN2 low, IN1 high; the move
    /// ends early (error or cancellation) → coast; release → coast.
    fn one_turn_then_coast() -> (Pin, Pin) {
        let in1 = Pin::new(&[
            T::set(State::Low),
            T::set(State::High),
            T::set(State::Low),
            T::set(State::Low),
        ]);
        let in2 = Pin::new(&vec![T::set(State::Low); 4]);
        (in1, in2)
    }

    /// Release the driver (coasting once more) and check every expected
    /// pin transaction happened.
    fn assert_pins_done<C: CurrentSense, L: LimitSwitches>(d: MotorDriver<Pin, Pin, C, L>) {
        let (bridge, _, _) = d.release();
        let (mut a, mut b) = bridge.release();
        a.done();
        b.done();
    }

    /// Virtual time: each wait advances the clock by the period; the move
    /// is interrupted once the clock reaches `stop_at_ms`.
    struct VirtualPace {
        now: u64,
        stop_at_ms: Option<u64>,
    }

    impl VirtualPace {
        fn new() -> Self {
            VirtualPace {
                now: 0,
                stop_at_ms: None,
            }
        }
    }

    impl Pace for VirtualPace {
        fn now_ms(&mut self) -> u64 {
            self.now
        }
        fn wait(&mut self, period: Duration) -> bool {
            self.now += period.as_millis() as u64;
            self.stop_at_ms.is_none_or(|s| self.now < s)
        }
    }

    #[test]
    fn driver_turns_then_coasts_at_the_limit() {
        let in1 = Pin::new(&[
            T::set(State::Low), // new(): coast
            T::set(State::High),
            T::set(State::High),
            T::set(State::Low), // guard: coast at the limit
            T::set(State::Low), // release(): coast
        ]);
        let in2 = Pin::new(&[
            T::set(State::Low),
            T::set(State::Low),
            T::set(State::Low),
            T::set(State::Low),
            T::set(State::Low),
        ]);
        let s = Script::new(vec![(0, BETWEEN), (300, BETWEEN), (300, RETRACTED)]);
        let mut d = MotorDriver::new(HBridge::new(in1, in2), s.clone(), s, params());
        let out = d.drive(RETRACTED, CW, &mut VirtualPace::new()).unwrap();
        assert_eq!(out, Drive::Finished(Outcome::Reached(RETRACTED)));
        assert_eq!(d.cycles, 1);
        assert_pins_done(d);
    }

    /// A bridge dropped while turning (its driver torn down without
    /// `release`) coasts: the motor never keeps the last drive it had.
    #[test]
    fn a_bridge_dropped_while_turning_coasts() {
        let in1 = Pin::new(&[
            T::set(State::High), // turn
            T::set(State::Low),  // drop: coast
        ]);
        let in2 = Pin::new(&[T::set(State::Low), T::set(State::Low)]);
        let (mut a, mut b) = (in1.clone(), in2.clone());
        let mut bridge = HBridge::new(in1, in2);
        bridge.set(Bridge::Turn(CW)).unwrap();
        drop(bridge);
        a.done();
        b.done();
    }

    /// An idle driver asked to stop sets both inputs low.
    #[test]
    fn an_idle_driver_asked_to_coast_sets_both_inputs_low() {
        let in1 = Pin::new(&[T::set(State::Low), T::set(State::Low), T::set(State::Low)]);
        let in2 = Pin::new(&[T::set(State::Low), T::set(State::Low), T::set(State::Low)]);
        let s = Script::new(vec![(0, BETWEEN)]);
        let mut d = MotorDriver::new(HBridge::new(in1, in2), s.clone(), s, params());
        d.coast().unwrap();
        assert_pins_done(d);
    }

    #[test]
    fn adc_failure_leaves_the_motor_coasting() {
        let (in1, in2) = one_turn_then_coast();
        let s = Script::new(vec![(0, BETWEEN)]);
        *s.1.borrow_mut() = true;
        let mut d = MotorDriver::new(HBridge::new(in1, in2), s.clone(), s, params());
        let err = d.drive(RETRACTED, CW, &mut VirtualPace::new()).unwrap_err();
        assert!(matches!(err, MotorError::CurrentSense(_)), "{err}");
        assert_pins_done(d);
    }

    #[test]
    fn interrupted_move_coasts() {
        let (in1, in2) = one_turn_then_coast();
        let s = Script::new(vec![(100, BETWEEN)]);
        let mut d = MotorDriver::new(HBridge::new(in1, in2), s.clone(), s, params());
        // A new command (or SIGTERM) interrupts the move at its first wait.
        let mut pace = VirtualPace {
            now: 0,
            stop_at_ms: Some(5),
        };
        assert_eq!(
            d.drive(RETRACTED, CW, &mut pace).unwrap(),
            Drive::Interrupted
        );
        assert_eq!(d.cycles, 0, "an interrupted move is not a cycle");
        assert_pins_done(d);
    }

    #[test]
    fn a_panic_mid_move_coasts() {
        let rec = Recorder::default();
        let s = Script::new(vec![(100, BETWEEN)]);
        let mut d = MotorDriver::new(HBridge::new(rec.pin(0), rec.pin(1)), s.clone(), s, params());
        struct Panics(u32);
        impl Pace for Panics {
            fn now_ms(&mut self) -> u64 {
                0
            }
            fn wait(&mut self, _: Duration) -> bool {
                self.0 += 1;
                assert!(self.0 < 3, "boom");
                true
            }
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = d.drive(RETRACTED, CW, &mut Panics(0));
        }));
        assert!(r.is_err());
        assert_eq!(rec.energised_runs(), 1);
        assert_eq!(rec.levels(), [false, false], "unwinding coasted the bridge");
    }

    #[test]
    fn jam_is_reported_after_one_retry_and_the_bridge_coasts() {
        // Current stays at stall level, bolt never moves.
        let s = Script::new(vec![(900, BETWEEN)]);
        let rec = Recorder::default();
        let mut d = MotorDriver::new(HBridge::new(rec.pin(0), rec.pin(1)), s.clone(), s, params());
        let out = d.drive(RETRACTED, CW, &mut VirtualPace::new()).unwrap();
        assert_eq!(
            out,
            Drive::Finished(Outcome::Jammed {
                at: BETWEEN,
                reason: JamReason::OverCurrent
            })
        );
        assert_eq!(rec.levels(), [false, false], "bridge left energised");
        assert_eq!(rec.energised_runs(), 2, "one try and one retry");
    }

    /// Records pin levels to check end states of long sequences.
    #[derive(Clone, Default)]
    struct Recorder(Rc<RefCell<RecState>>);

    #[derive(Default)]
    struct RecState {
        levels: [bool; 2],
        runs: usize,
    }

    impl Recorder {
        fn pin(&self, i: usize) -> RecPin {
            RecPin(self.clone(), i)
        }
        fn levels(&self) -> [bool; 2] {
            self.0.borrow().levels
        }
        /// Number of transitions from coast to driven.
        fn energised_runs(&self) -> usize {
            self.0.borrow().runs
        }
    }

    struct RecPin(Recorder, usize);

    impl embedded_hal::digital::ErrorType for RecPin {
        type Error = core::convert::Infallible;
    }

    impl OutputPin for RecPin {
        fn set_low(&mut self) -> Result<(), Self::Error> {
            let mut r = (self.0).0.borrow_mut();
            r.levels[self.1] = false;
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Self::Error> {
            let mut r = (self.0).0.borrow_mut();
            if !r.levels[0] && !r.levels[1] {
                r.runs += 1;
            }
            r.levels[self.1] = true;
            Ok(())
        }
    }
}
