//! The Linux board: every device of the board file behind the board
//! traits, with one task per event source.
//!
//! ```text
//!  GpioInputs edges ──► levels (shared) ──► SignalState ──► Input ──┐
//!  evdev keypad ──► Key / Touch / KeyHeld ──────────────────────────┤
//!  battery timer (sample_period_s) + USB-C edge ──► Input::Power ───┼─► engine
//!  motor thread ("latchd-motor"): MotorDriver::drive ──► Input::Motor ┘
//! ```
//!
//! The motor runs on a thread of its own (`drivers::motor_thread`): its
//! samples of the limit switches and the motor current never wait for an
//! async worker, so a slow commit or a busy runtime cannot delay the stop
//! at the end of travel or at a stall.
//!
//! Start-up order matters for safety: the motor bridge is requested (and
//! coasted) first, so whatever a previous process left energised stops
//! before anything else happens. That is a step of its own,
//! [`coast_motor`], so the caller can build the peripherals (camera, face
//! worker, UART modules) after it and hand them to [`build`], which
//! returns the board complete.
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use linux_embedded_hal::spidev::{SpiModeFlags, SpidevOptions};
use linux_embedded_hal::SpidevDevice;
use tokio::task::JoinHandle;

use crate::board::drivers::battery::pack_millivolts;
use crate::board::drivers::buttons::{HoldDetector, FACTORY_RESET_HOLD};
use crate::board::drivers::mcp3008::{count_to_millivolts, Mcp3008};
use crate::board::drivers::motor::{CurrentSense, HBridge, LimitSwitches, MotorDriver};
use crate::board::drivers::motor_thread::{MotorThread, MotorThreadError};
use crate::board::{
    Alarm, Battery, Board, BoltSensor, Camera, DeviceError, DoorSensor, FaceSource,
    FingerprintModule, Keypad, Motor, PalmModule, Tamper, Voice,
};
use crate::core::input::{BoltPosition, DoorPosition, PowerReading, TamperState};
use crate::core::types::{Key, MotorDirection};
use crate::core::{AlarmKind, Input, KeypadView, Language, Prompt};
use crate::link::{InputSender, OrderedSender};

use super::config::BoardConfig;
use super::gpio::{GpioError, GpioInputs, GpioOutput, Signal};
use super::keypad::{self, ClassLed, KeyEdge, KeyMap};
use super::signals::SignalState;
use super::voice::AlsaVoice;

#[derive(Debug, thiserror::Error)]
pub enum LinuxBoardError {
    #[error(transparent)]
    Config(#[from] super::config::BoardConfigError),
    #[error(transparent)]
    Gpio(#[from] GpioError),
    #[error("cannot open the ADC on {path}: {source}; check `adc.spi_device`")]
    Adc {
        path: String,
        #[source]
        source: linux_embedded_hal::SPIError,
    },
    #[error(
        "cannot configure the ADC on {path}: {source}; check `adc.spi_device` and `adc.spi_hz`"
    )]
    AdcConfig {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Keypad(#[from] keypad::KeypadError),
    #[error(transparent)]
    Voice(#[from] super::voice::VoiceError),
    #[error(transparent)]
    MotorThread(#[from] MotorThreadError),
}

/// Devices that are not GPIO/SPI/evdev/ALSA: the UART biometric modules
/// and the camera, built by the caller from the board file.
pub struct Peripherals {
    pub fingerprint: Box<dyn FingerprintModule>,
    pub palm: Box<dyn PalmModule>,
    pub face: Box<dyn FaceSource>,
    pub camera: Box<dyn Camera>,
}

impl std::fmt::Debug for Peripherals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peripherals").finish_non_exhaustive()
    }
}

type Levels = Arc<Mutex<BTreeMap<Signal, bool>>>;
type SharedAdc = Arc<Mutex<Mcp3008<SpidevDevice>>>;

fn level(levels: &Levels, s: Signal) -> bool {
    levels
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&s)
        .copied()
        .unwrap_or(false)
}

fn bolt_of(levels: &Levels) -> BoltPosition {
    SignalState {
        bolt_extended: level(levels, Signal::BoltExtended),
        bolt_retracted: level(levels, Signal::BoltRetracted),
        ..Default::default()
    }
    .bolt()
}

/// The motor's H-bridge, requested and coasted: the first step of
/// bringing up the Linux board. Dropping it releases the lines coasted.
pub struct MotorBridge(HBridge<GpioOutput, GpioOutput>);

impl std::fmt::Debug for MotorBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotorBridge").finish_non_exhaustive()
    }
}

/// Check the board file against this machine, then request the motor
/// bridge: coasted the moment it is requested.
pub fn coast_motor(cfg: &BoardConfig) -> Result<MotorBridge, LinuxBoardError> {
    cfg.check_system()?;
    let o = &cfg.outputs;
    Ok(MotorBridge(HBridge::new(
        GpioOutput::request_with(cfg.gpio_provider, "outputs.motor_in1", &o.motor_in1)?,
        GpioOutput::request_with(cfg.gpio_provider, "outputs.motor_in2", &o.motor_in2)?,
    )))
}

/// Build the board around its coasted motor and the `peripherals`.
/// Returns it with whether SET was held for the whole factory-reset
/// window at power-up (B-10.6). Must run inside tokio.
pub async fn build(
    cfg: &BoardConfig,
    motor: MotorBridge,
    inputs: InputSender,
    peripherals: Peripherals,
) -> Result<(Board, bool), LinuxBoardError> {
    let o = &cfg.outputs;
    let bridge = motor.0;
    let mut gpio = GpioInputs::request_with(cfg.gpio_provider, &cfg.inputs)?;
    let levels: Levels = Arc::new(Mutex::new(gpio.initial.clone()));

    let adc = open_adc(cfg)?;
    let motor_driver = MotorDriver::new(
        bridge,
        AdcCurrent {
            adc: adc.clone(),
            channel: cfg.adc.motor_current_channel,
            vref_mv: cfg.adc.vref_mv,
            ma_per_mv: cfg.adc.motor_ma_per_mv,
        },
        GpioLimits(levels.clone()),
        cfg.motor_params(),
    );

    // B-10.6: SET already down at power-up; it must stay down 5 s.
    let mut set_held = level(&levels, Signal::SetButton);
    if set_held {
        let deadline = tokio::time::Instant::now() + FACTORY_RESET_HOLD;
        while set_held {
            match tokio::time::timeout_at(deadline, gpio.events.recv()).await {
                Err(_) => break, // held the whole time
                Ok(None) => set_held = false,
                Ok(Some((Signal::SetButton, false))) => set_held = false,
                Ok(Some((s, v))) => {
                    levels
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(s, v);
                }
            }
        }
    }

    let awake = Arc::new(AtomicBool::new(false));
    let battery = BatteryGauge {
        adc,
        channel: cfg.adc.battery_channel,
        vref_mv: cfg.adc.vref_mv,
        divider: cfg.adc.battery_divider,
        curve: cfg.battery.curve.clone(),
        levels: levels.clone(),
    };
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(signal_task(
        gpio,
        levels.clone(),
        battery.clone(),
        inputs.clone(),
    )));
    tasks.push(tokio::spawn(battery_task(
        battery.clone(),
        Duration::from_secs(cfg.battery.sample_period_s.max(1).into()),
        inputs.clone(),
    )));
    let keymap = KeyMap::from_config(&cfg.keypad.keymap)?;
    let stream = keypad::open(&cfg.keypad.device)?;
    tasks.push(tokio::spawn(keypad_task(
        stream,
        keymap,
        Duration::from_millis(cfg.keypad.hold_ms.into()),
        awake.clone(),
        inputs.clone(),
    )));

    let key_leds = cfg
        .keypad
        .key_leds
        .iter()
        .filter_map(|(k, dir)| keypad::lock_key(k).map(|key| (key, ClassLed::new(dir.clone()))))
        .collect();
    let voice = AlsaVoice::start(
        &cfg.voice.pcm,
        cfg.voice.assets.clone(),
        cfg.voice.volume,
        None,
    )?;

    // Motor reports go through an order-preserving queue: the thread never
    // waits on the engine's input queue.
    let reports = OrderedSender::spawn(inputs.clone());
    let motor = MotorThread::spawn(
        motor_driver,
        Box::new(move |r| {
            // `false` only when the engine has stopped (shutdown).
            let _ = reports.push(Input::Motor(r));
        }),
    )?;
    let board = Board {
        name: "linux",
        motor: Box::new(LinuxMotor {
            thread: motor,
            _tasks: Tasks(tasks),
        }),
        bolt: Box::new(LevelSensors(levels.clone())),
        door: Box::new(LevelSensors(levels.clone())),
        keypad: Box::new(LinuxKeypad {
            backlight: GpioOutput::request_with(
                cfg.gpio_provider,
                "outputs.keypad_backlight",
                &o.keypad_backlight,
            )?,
            low_battery: GpioOutput::request_with(
                cfg.gpio_provider,
                "outputs.low_battery_led",
                &o.low_battery_led,
            )?,
            key_leds,
            awake,
        }),
        voice: Box::new(LinuxVoice(voice)),
        battery: Box::new(battery),
        tamper: Box::new(LevelSensors(levels)),
        alarm: Box::new(Buzzer::new(GpioOutput::request_with(
            cfg.gpio_provider,
            "outputs.buzzer",
            &o.buzzer,
        )?)),
        fingerprint: peripherals.fingerprint,
        palm: peripherals.palm,
        face: peripherals.face,
        camera: peripherals.camera,
    };
    Ok((board, set_held))
}

fn open_adc(cfg: &BoardConfig) -> Result<SharedAdc, LinuxBoardError> {
    let path = || cfg.adc.spi_device.display().to_string();
    let mut dev =
        SpidevDevice::open(&cfg.adc.spi_device).map_err(|source| LinuxBoardError::Adc {
            path: path(),
            source,
        })?;
    let opts = SpidevOptions::new()
        .bits_per_word(8)
        .max_speed_hz(cfg.adc.spi_hz)
        .mode(SpiModeFlags::SPI_MODE_0)
        .build();
    dev.0
        .configure(&opts)
        .map_err(|source| LinuxBoardError::AdcConfig {
            path: path(),
            source,
        })?;
    Ok(Arc::new(Mutex::new(Mcp3008::new(dev))))
}

/// Aborts the board's tasks when the board is dropped.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn now_ms(origin: tokio::time::Instant) -> crate::core::time::Instant {
    crate::core::time::Instant(origin.elapsed().as_millis() as u64)
}

async fn signal_task(
    mut gpio: GpioInputs,
    levels: Levels,
    battery: BatteryGauge,
    inputs: InputSender,
) {
    let origin = tokio::time::Instant::now();
    let mut state = SignalState {
        bolt_extended: level(&levels, Signal::BoltExtended),
        bolt_retracted: level(&levels, Signal::BoltRetracted),
        ..Default::default()
    };
    loop {
        let deadline = state.set.deadline();
        let ev = tokio::select! {
            ev = gpio.events.recv() => ev,
            _ = sleep_until_ms(origin, deadline), if deadline.is_some() => {
                if let Some(p) = state.set.tick(now_ms(origin)) {
                    if !inputs.send(Input::Set(p)).await { return; }
                }
                continue;
            }
        };
        let Some((signal, asserted)) = ev else { return };
        levels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(signal, asserted);
        let mut out = state.edge(now_ms(origin), signal, asserted);
        if signal == Signal::ExternalPower {
            match battery.read() {
                Ok(p) => out.push(Input::Power(p)),
                Err(e) => tracing::warn!("battery: {e}"),
            }
        }
        for input in out {
            if !inputs.send(input).await {
                return;
            }
        }
    }
}

async fn sleep_until_ms(origin: tokio::time::Instant, at: Option<crate::core::time::Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(origin + Duration::from_millis(at.as_millis())).await;
    }
}

async fn battery_task(gauge: BatteryGauge, period: Duration, inputs: InputSender) {
    let mut last: Option<PowerReading> = None;
    loop {
        match gauge.read() {
            Ok(r) if last != Some(r) => {
                last = Some(r);
                if !inputs.send(Input::Power(r)).await {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("battery: {e}"),
        }
        tokio::time::sleep(period).await;
    }
}

async fn keypad_task(
    mut stream: evdev::EventStream,
    map: KeyMap,
    hold: Duration,
    awake: Arc<AtomicBool>,
    inputs: InputSender,
) {
    let origin = tokio::time::Instant::now();
    let mut holds: HoldDetector<Key> = HoldDetector::new(hold);
    loop {
        let deadline = holds.deadline();
        let ev = tokio::select! {
            ev = stream.next_event() => ev,
            _ = sleep_until_ms(origin, deadline), if deadline.is_some() => {
                if let Some(k) = holds.tick(now_ms(origin)) {
                    if !inputs.send(Input::KeyHeld(k)).await { return; }
                }
                continue;
            }
        };
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::error!("keypad device stopped: {e}");
                return;
            }
        };
        match keypad::key_edge(&map, &ev) {
            Some(KeyEdge::Down(k)) => {
                holds.down(k, now_ms(origin));
                // The first touch of a sleeping keypad wakes it (B-3.2).
                if !awake.swap(true, Ordering::SeqCst) && !inputs.send(Input::Touch).await {
                    return;
                }
                if !inputs.send(Input::Key(k)).await {
                    return;
                }
            }
            Some(KeyEdge::Up(k)) => holds.up(k),
            None => {}
        }
    }
}

struct AdcCurrent {
    adc: SharedAdc,
    channel: u8,
    vref_mv: u32,
    ma_per_mv: f32,
}

impl CurrentSense for AdcCurrent {
    type Error = crate::board::drivers::mcp3008::Mcp3008Error<linux_embedded_hal::SPIError>;
    fn milliamps(&mut self) -> Result<u32, Self::Error> {
        let count = self
            .adc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .read(self.channel)?;
        let mv = count_to_millivolts(count, self.vref_mv);
        Ok((mv as f32 * self.ma_per_mv).round() as u32)
    }
}

struct GpioLimits(Levels);

impl LimitSwitches for GpioLimits {
    type Error = std::convert::Infallible;
    fn position(&mut self) -> Result<BoltPosition, Self::Error> {
        Ok(bolt_of(&self.0))
    }
}

#[derive(Clone)]
struct BatteryGauge {
    adc: SharedAdc,
    channel: u8,
    vref_mv: u32,
    divider: f32,
    curve: crate::board::drivers::battery::DischargeCurve,
    levels: Levels,
}

impl Battery for BatteryGauge {
    fn read(&self) -> Result<PowerReading, DeviceError> {
        let count = self
            .adc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .read(self.channel)
            .map_err(|e| DeviceError::Unavailable {
                device: "battery ADC",
                detail: e.to_string(),
            })?;
        let mv = pack_millivolts(count_to_millivolts(count, self.vref_mv), self.divider);
        Ok(PowerReading {
            percent: self.curve.percent(mv),
            millivolts: mv,
            external: level(&self.levels, Signal::ExternalPower),
        })
    }
}

struct LevelSensors(Levels);

impl BoltSensor for LevelSensors {
    fn read(&self) -> Result<BoltPosition, DeviceError> {
        Ok(bolt_of(&self.0))
    }
}

impl DoorSensor for LevelSensors {
    fn read(&self) -> Result<DoorPosition, DeviceError> {
        Ok(if level(&self.0, Signal::DoorClosed) {
            DoorPosition::Closed
        } else {
            DoorPosition::Open
        })
    }
}

impl Tamper for LevelSensors {
    fn read(&self) -> Result<TamperState, DeviceError> {
        Ok(if level(&self.0, Signal::TamperIntact) {
            TamperState::Intact
        } else {
            TamperState::Opened
        })
    }
}

struct LinuxMotor {
    /// Declared first: dropped (joined, bridge coasted) before the tasks.
    thread: MotorThread,
    /// The board's event tasks live as long as the motor (the board).
    _tasks: Tasks,
}

fn motor_gone(e: MotorThreadError) -> DeviceError {
    DeviceError::Unavailable {
        device: "motor",
        detail: e.to_string(),
    }
}

impl Motor for LinuxMotor {
    fn drive(
        &mut self,
        target: BoltPosition,
        direction: MotorDirection,
    ) -> Result<(), DeviceError> {
        // A new move replaces one in progress: the thread coasts the
        // bridge before the new move starts.
        self.thread.drive(target, direction).map_err(motor_gone)
    }

    fn stop(&mut self) -> Result<(), DeviceError> {
        self.thread.stop().map_err(motor_gone)
    }

    fn is_moving(&self) -> bool {
        self.thread.is_moving()
    }

    fn settle(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(self.thread.settle())
    }
}

struct LinuxKeypad {
    backlight: GpioOutput,
    low_battery: GpioOutput,
    key_leds: BTreeMap<Key, ClassLed>,
    awake: Arc<AtomicBool>,
}

impl Keypad for LinuxKeypad {
    fn show(&mut self, view: &KeypadView) -> Result<(), DeviceError> {
        let gpio = |e: GpioError| DeviceError::Unavailable {
            device: "keypad lights",
            detail: e.to_string(),
        };
        self.awake.store(view.awake, Ordering::SeqCst);
        self.backlight.set(view.awake).map_err(gpio)?;
        self.low_battery.set(view.low_battery_led).map_err(gpio)?;
        // B-1.4: a number being shown lights its digits one by one.
        let digits = if view.awake {
            keypad::digit_patterns(&view.digits_shown)
        } else {
            Default::default()
        };
        for (key, led) in &self.key_leds {
            let r = if let Some(p) = match key {
                Key::Digit(d) => digits.get(d),
                _ => None,
            } {
                led.pattern(p)
            } else if !digits.is_empty() {
                // Only the number's keys, so it reads clearly.
                led.set(false)
            } else if view.awake && view.flashing.contains(key) {
                led.blink(250, 250)
            } else {
                led.set(view.awake && view.lit.contains(key))
            };
            r.map_err(|e| DeviceError::Unavailable {
                device: "keypad LED",
                detail: e.to_string(),
            })?;
        }
        Ok(())
    }
}

struct LinuxVoice(AlsaVoice);

impl Voice for LinuxVoice {
    fn say(&mut self, prompt: &Prompt, lang: Language) -> Result<(), DeviceError> {
        self.0
            .say(prompt, lang)
            .map_err(|e| DeviceError::Unavailable {
                device: "speaker",
                detail: e.to_string(),
            })
    }
}

/// The buzzer: on while any alarm sounds; each alarm ends by itself.
struct Buzzer {
    pin: Arc<Mutex<GpioOutput>>,
    sounding: Arc<Mutex<HashMap<AlarmKind, JoinHandle<()>>>>,
}

impl Buzzer {
    fn new(pin: GpioOutput) -> Self {
        Buzzer {
            pin: Arc::new(Mutex::new(pin)),
            sounding: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn apply(pin: &Mutex<GpioOutput>, on: bool) -> Result<(), DeviceError> {
        pin.lock()
            .unwrap_or_else(|p| p.into_inner())
            .set(on)
            .map_err(|e| DeviceError::Unavailable {
                device: "buzzer",
                detail: e.to_string(),
            })
    }
}

impl Alarm for Buzzer {
    fn sound(&mut self, kind: AlarmKind, duration: Duration) -> Result<(), DeviceError> {
        Self::apply(&self.pin, true)?;
        let pin = self.pin.clone();
        let sounding = self.sounding.clone();
        let ender = tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            let mut s = sounding.lock().unwrap_or_else(|p| p.into_inner());
            s.remove(&kind);
            if s.is_empty() {
                let _ = Buzzer::apply(&pin, false);
            }
        });
        let mut s = self.sounding.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = s.insert(kind, ender) {
            old.abort();
        }
        Ok(())
    }

    fn silence(&mut self, kind: AlarmKind) -> Result<(), DeviceError> {
        let mut s = self.sounding.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = s.remove(&kind) {
            t.abort();
        }
        if s.is_empty() {
            Self::apply(&self.pin, false)?;
        }
        Ok(())
    }
}
