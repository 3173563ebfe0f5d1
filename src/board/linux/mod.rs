//! Real Linux backends (feature `board-linux`): GPIO character device,
//! spidev ADC, evdev keypad, ALSA prompts, described by one board file.
//!
//! ```text
//!  board.toml ──► config::BoardConfig (parse + check_system)
//!                   │
//!      gpio.rs   ◄──┤ inputs by line name (edges, kernel debounce) ──► signals.rs ──► Input
//!      gpio.rs   ◄──┤ outputs (motor IN1/IN2, backlight, IR, buzzer, LEDs)
//!      spidev    ◄──┤ MCP3008 (drivers/mcp3008.rs): motor current, battery
//!      keypad.rs ◄──┤ evdev key codes ──► Key / KeyHeld
//!      voice.rs  ◄──┘ ALSA PCM ◄── WAV prompt assets
//! ```
pub mod board;
pub mod camera;
pub mod config;
pub mod gpio;
pub mod ir_camera;
pub mod keypad;
pub mod signals;
pub mod voice;
