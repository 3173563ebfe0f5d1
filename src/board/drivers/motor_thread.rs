//! The motor on a thread of its own: a move's 5 ms samples never wait for
//! an async worker, a lock or the flash.
//!
//! ```text
//!   engine task ── Board::perform ── MotorThread::drive ──► std mpsc ──┐ (returns at once)
//!                                                                     ▼
//!   "latchd-motor" thread: owns the MotorDriver (bridge pins, current ADC, limits)
//!       recv ─► Drive ─► driver.drive(.., pace) ── every sample_period:
//!                        pace.wait = recv_timeout(period): a command arrives → interrupt
//!       ─► report(Done | Jammed | Fault) ──► the board's sink (an OrderedSender → engine)
//! ```
//!
//! Why a thread (issue 15): the runtime has two async workers. A commit
//! waiting on eMMC (hundreds of ms), a CPU-heavy face inference or any
//! task that blocks a worker would delay a tokio timer, and with it the
//! sample that sees the limit switch or a stalled motor — the bridge would
//! keep pushing against the bolt's end stop. Here the only things between
//! a sample and the bridge are the kernel's scheduler and the GPIO/SPI
//! calls themselves. Normal priority: the unit forbids real-time
//! scheduling (`RestrictRealtime=`), and a board that needs a hard bound
//! adds the hardware limit described in docs/motor-safety.md.
//!
//! Commands are handled in order. A `Drive` while a move runs interrupts
//! it (the bridge coasts) and starts the new one; `Stop` interrupts it.
//! An interrupted move reports nothing (the engine asked for what replaced
//! it). Dropping the [`MotorThread`] stops the thread, which drops the
//! driver, which coasts the bridge.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use embedded_hal::digital::OutputPin;
use tokio::sync::watch;

use super::motor::{CurrentSense, Drive, LimitSwitches, MotorDriver, Outcome, Pace};
use crate::core::input::{BoltPosition, MotorReport};
use crate::core::types::MotorDirection;

/// Where the thread's reports go (the board hands them to the engine).
pub type ReportFn = Box<dyn Fn(MotorReport) + Send>;

enum Command {
    Drive {
        target: BoltPosition,
        direction: MotorDirection,
    },
    Stop,
}

/// The handle the board keeps: commands in, state out.
pub struct MotorThread {
    commands: Option<mpsc::Sender<Command>>,
    /// A move is running (set by `drive`, cleared by the thread).
    moving: Arc<AtomicBool>,
    /// `Drive` commands sent so far.
    started: u64,
    /// `Drive` commands the thread has finished with (done, jammed,
    /// failed or interrupted).
    finished: watch::Receiver<u64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MotorThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotorThread")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

/// Errors of the thread itself (its moves report through `ReportFn`).
#[derive(Debug, thiserror::Error)]
pub enum MotorThreadError {
    #[error("cannot start the motor thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the motor thread has stopped (it panicked; see the log)")]
    Stopped,
}

impl MotorThread {
    /// Move `driver` onto a new thread named `latchd-motor`.
    pub fn spawn<A, B, C, L>(
        driver: MotorDriver<A, B, C, L>,
        report: ReportFn,
    ) -> Result<MotorThread, MotorThreadError>
    where
        A: OutputPin + Send + 'static,
        B: OutputPin + Send + 'static,
        C: CurrentSense + Send + 'static,
        L: LimitSwitches + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let moving = Arc::new(AtomicBool::new(false));
        let (finished_tx, finished) = watch::channel(0u64);
        let thread = std::thread::Builder::new()
            .name("latchd-motor".into())
            .spawn({
                let moving = moving.clone();
                move || serve(driver, rx, report, moving, finished_tx)
            })
            .map_err(MotorThreadError::Spawn)?;
        Ok(MotorThread {
            commands: Some(tx),
            moving,
            started: 0,
            finished,
            thread: Some(thread),
        })
    }

    /// Start a move (interrupting one in progress); returns at once.
    pub fn drive(
        &mut self,
        target: BoltPosition,
        direction: MotorDirection,
    ) -> Result<(), MotorThreadError> {
        self.moving.store(true, Ordering::SeqCst);
        self.send(Command::Drive { target, direction })?;
        self.started += 1;
        Ok(())
    }

    /// Interrupt the move in progress (the bridge coasts); returns at once.
    pub fn stop(&mut self) -> Result<(), MotorThreadError> {
        self.send(Command::Stop)
    }

    fn send(&self, c: Command) -> Result<(), MotorThreadError> {
        self.commands
            .as_ref()
            .and_then(|tx| tx.send(c).ok())
            .ok_or(MotorThreadError::Stopped)
    }

    pub fn is_moving(&self) -> bool {
        self.moving.load(Ordering::SeqCst)
    }

    /// Resolves once every move sent so far has ended (its report, if any,
    /// already handed to the sink) or the thread has stopped.
    pub fn settle(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let target = self.started;
        let mut finished = self.finished.clone();
        async move {
            while *finished.borrow_and_update() < target {
                if finished.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

impl Drop for MotorThread {
    fn drop(&mut self) {
        // Closing the channel interrupts a move at its next sample (≤ one
        // period) and ends the thread, which drops (coasts) the driver.
        drop(self.commands.take());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the motor thread panicked (the bridge was coasted by unwinding)");
            }
        }
    }
}

/// Waits by receiving: a command that arrives cuts the wait short and is
/// kept for the loop (the move ends, the command runs next).
struct ThreadPace<'a> {
    origin: Instant,
    rx: &'a mpsc::Receiver<Command>,
    pending: &'a mut Option<Command>,
    closed: &'a mut bool,
}

impl Pace for ThreadPace<'_> {
    fn now_ms(&mut self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn wait(&mut self, period: Duration) -> bool {
        match self.rx.recv_timeout(period) {
            Err(RecvTimeoutError::Timeout) => true,
            Ok(c) => {
                *self.pending = Some(c);
                false
            }
            Err(RecvTimeoutError::Disconnected) => {
                *self.closed = true;
                false
            }
        }
    }
}

fn serve<A, B, C, L>(
    mut driver: MotorDriver<A, B, C, L>,
    rx: mpsc::Receiver<Command>,
    report: ReportFn,
    moving: Arc<AtomicBool>,
    finished: watch::Sender<u64>,
) where
    A: OutputPin,
    B: OutputPin,
    C: CurrentSense,
    L: LimitSwitches,
{
    let origin = Instant::now();
    let mut pending: Option<Command> = None;
    let mut closed = false;
    while !closed {
        let command = match pending.take() {
            Some(c) => c,
            None => match rx.recv() {
                Ok(c) => c,
                Err(_) => break,
            },
        };
        match command {
            Command::Drive { target, direction } => {
                let mut pace = ThreadPace {
                    origin,
                    rx: &rx,
                    pending: &mut pending,
                    closed: &mut closed,
                };
                let result = driver.drive(target, direction, &mut pace);
                match result {
                    Ok(Drive::Finished(Outcome::Reached(p))) => report(MotorReport::Done(p)),
                    Ok(Drive::Finished(Outcome::Jammed { at, reason })) => {
                        tracing::warn!(?reason, "bolt jammed after one retry");
                        report(MotorReport::Jammed { at });
                    }
                    Ok(Drive::Interrupted) => {}
                    Err(e) => report(MotorReport::Fault {
                        detail: e.to_string(),
                    }),
                }
                if !matches!(pending, Some(Command::Drive { .. })) {
                    moving.store(false, Ordering::SeqCst);
                }
                finished.send_modify(|n| *n += 1);
            }
            Command::Stop => {
                // Idle already (a move would have taken the Stop as its
                // interruption): coast once more all the same.
                if let Err(e) = driver.coast() {
                    tracing::error!("{e}");
                }
                moving.store(false, Ordering::SeqCst);
            }
        }
    }
    // Dropping the driver coasts the bridge (HBridge's Drop).
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::drivers::motor::{HBridge, MotorParams};
    use std::sync::Mutex;

    /// A bridge input whose level the test can read from another thread.
    #[derive(Clone, Default)]
    struct Pin(Arc<AtomicBool>);

    impl embedded_hal::digital::ErrorType for Pin {
        type Error = std::convert::Infallible;
    }

    impl OutputPin for Pin {
        fn set_low(&mut self) -> Result<(), Self::Error> {
            self.0.store(false, Ordering::SeqCst);
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Self::Error> {
            self.0.store(true, Ordering::SeqCst);
            Ok(())
        }
    }

    /// The bolt reaches its end `travel` after the first sample, on the
    /// wall clock; with `stalled` it never moves and the motor draws stall
    /// current.
    struct Bolt {
        since: Mutex<Option<Instant>>,
        travel: Duration,
        stalled: bool,
    }

    #[derive(Clone)]
    struct Sensors(Arc<Bolt>);

    impl CurrentSense for Sensors {
        type Error = std::convert::Infallible;
        fn milliamps(&mut self) -> Result<u32, Self::Error> {
            Ok(if self.0.stalled { 2000 } else { 200 })
        }
    }

    impl LimitSwitches for Sensors {
        type Error = std::convert::Infallible;
        fn position(&mut self) -> Result<BoltPosition, Self::Error> {
            let mut since = self.0.since.lock().unwrap_or_else(|p| p.into_inner());
            let t0 = *since.get_or_insert_with(Instant::now);
            Ok(if !self.0.stalled && t0.elapsed() >= self.0.travel {
                BoltPosition::Retracted
            } else {
                BoltPosition::Between
            })
        }
    }

    /// A report, when the thread handed it over, and whether the bridge
    /// was coasting at that moment.
    type Seen = (Instant, bool, MotorReport);

    fn thread_with(
        travel: Duration,
        stalled: bool,
    ) -> (MotorThread, Pin, Pin, mpsc::Receiver<Seen>) {
        let (in1, in2) = (Pin::default(), Pin::default());
        let s = Sensors(Arc::new(Bolt {
            since: Mutex::new(None),
            travel,
            stalled,
        }));
        let driver = MotorDriver::new(
            HBridge::new(in1.clone(), in2.clone()),
            s.clone(),
            s,
            MotorParams::default(),
        );
        let (tx, rx) = mpsc::channel();
        let (p1, p2) = (in1.clone(), in2.clone());
        let report: ReportFn = Box::new(move |r| {
            let coasting = !p1.0.load(Ordering::SeqCst) && !p2.0.load(Ordering::SeqCst);
            let _ = tx.send((Instant::now(), coasting, r));
        });
        (MotorThread::spawn(driver, report).unwrap(), in1, in2, rx)
    }

    fn thread(travel: Duration) -> (MotorThread, Pin, Pin, mpsc::Receiver<MotorReport>) {
        let (m, in1, in2, seen) = thread_with(travel, false);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for (_, _, r) in seen {
                let _ = tx.send(r);
            }
        });
        (m, in1, in2, rx)
    }

    /// Issue 15: a store write that blocks the runtime's only worker for
    /// 2 s (a commit waiting on a slow fsync, done in the worst place)
    /// does not delay the stop at the limit switch nor at a stall: both
    /// are reported, the bridge already coasting, while the worker is
    /// still blocked. The old motor task slept on a tokio timer, which
    /// cannot fire while the worker is blocked.
    #[tokio::test(flavor = "current_thread")]
    async fn a_blocked_runtime_does_not_delay_the_stop() {
        const SLOW_FSYNC: Duration = Duration::from_secs(2);
        for (stalled, want) in [
            (false, MotorReport::Done(BoltPosition::Retracted)),
            (
                true,
                MotorReport::Jammed {
                    at: BoltPosition::Between,
                },
            ),
        ] {
            let (mut m, _in1, _in2, seen) = thread_with(Duration::from_millis(30), stalled);
            m.drive(BoltPosition::Retracted, MotorDirection::Clockwise)
                .unwrap();
            // The slow write, synchronously on this runtime's one worker.
            std::thread::sleep(SLOW_FSYNC);
            let unblocked = Instant::now();
            let (at, coasting, report) = seen.recv().unwrap();
            assert_eq!(report, want);
            assert!(coasting, "reported with the bridge still driven");
            assert!(
                at < unblocked,
                "stalled={stalled}: the stop waited for the blocked runtime"
            );
            m.settle().await;
        }
    }

    #[tokio::test]
    async fn a_move_reports_and_settles() {
        let (mut m, in1, in2, reports) = thread(Duration::from_millis(30));
        m.drive(BoltPosition::Retracted, MotorDirection::Clockwise)
            .unwrap();
        assert!(m.is_moving());
        m.settle().await;
        assert!(!m.is_moving());
        assert_eq!(
            reports.recv().unwrap(),
            MotorReport::Done(BoltPosition::Retracted)
        );
        assert!(!in1.0.load(Ordering::SeqCst) && !in2.0.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn stop_and_drop_coast_without_a_report() {
        let (mut m, in1, _in2, reports) = thread(Duration::from_secs(60));
        m.drive(BoltPosition::Retracted, MotorDirection::Clockwise)
            .unwrap();
        let t0 = Instant::now();
        while !in1.0.load(Ordering::SeqCst) {
            assert!(t0.elapsed() < Duration::from_secs(10), "never energised");
            std::thread::sleep(Duration::from_millis(1));
        }
        m.stop().unwrap();
        m.settle().await;
        assert!(!in1.0.load(Ordering::SeqCst), "stop coasted the bridge");
        assert!(
            reports.try_recv().is_err(),
            "an interrupted move reports nothing"
        );
        m.drive(BoltPosition::Retracted, MotorDirection::Clockwise)
            .unwrap();
        while !in1.0.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(m);
        assert!(!in1.0.load(Ordering::SeqCst), "drop coasted the bridge");
    }
}
