//! The commands: `oomtrace` ([`watch`]), `oomtrace check` and `oomtrace history`.

pub mod check;
pub mod history;
pub mod watch;
