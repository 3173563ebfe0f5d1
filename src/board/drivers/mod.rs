//! Board-independent device drivers, generic over `embedded-hal` 1.0.
//!
//! Each driver owns its pins and buses through `embedded-hal` traits and
//! never a concrete HAL type, so the same code runs on the Linux GPIO
//! character device and spidev (`linux-embedded-hal`, `gpiocdev`), on a
//! Raspberry Pi (`rppal`), and on `embedded-hal-mock` in tests.
pub mod battery;
pub mod buttons;
pub mod mcp3008;
pub mod motor;
pub mod motor_thread;
pub mod prompts;
