//! Scenario tests: one test per behaviour item of `BEHAVIOUR.md`, named
//! after it (`b7_1_…` proves B-7.1), driving the pure engine with simulated
//! time through [`harness::Sim`]. `grep -rn "b7_1" tests/spec` finds them.
mod harness;

mod attacker;

mod b1;
mod b10;
mod b11;
mod b2;
mod b3;
mod b4;
mod b5;
mod b6;
mod b7;
mod b8;
mod b9;
mod clock_jumps;
mod credentials;
mod door;
mod lang;
mod matter;
mod modes;
mod robustness;
mod schedules;
mod update;
