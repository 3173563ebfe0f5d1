//! Real Linux backends (feature `board-linux`): GPIO, spidev ADC, evdev
//! keypad, ALSA prompts, V4L2 cameras, described by one board file.
//!
//! ```text
//!  board.toml ──► config::BoardConfig (parse + check_system)
//!                   │
//!      gpio/     ◄──┤ inputs by line name (edges, kernel debounce) ──► signals.rs ──► Input
//!      gpio/     ◄──┤ outputs (motor IN1/IN2, backlight, IR, buzzer, LEDs)
//!                   │   provider: cdev.rs (any SoC) | rpi.rs (Raspberry Pi, rppal)
//!      spidev    ◄──┤ MCP3008 (drivers/mcp3008.rs): motor current, battery
//!      keypad.rs ◄──┤ evdev key codes ──► Key / KeyHeld
//!      voice.rs  ◄──┤ ALSA PCM ◄── WAV prompt assets
//!      camera.rs ◄──┤ V4L2 capture ──► board::frames::FrameRing
//!   ir_camera.rs ◄──┘ V4L2 IR frames on demand (face liveness)
//! ```
//!
//! A Raspberry Pi is this board with `gpio_provider = "rppal"` in its
//! board file (feature `board-rpi`).
pub mod board;
pub mod camera;
pub mod config;
pub mod gpio;
pub mod illuminator;
pub mod ir_camera;
pub mod keypad;
pub mod signals;
pub mod voice;
