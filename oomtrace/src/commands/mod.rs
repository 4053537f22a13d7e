//! The commands: `oomtrace` ([`watch`]), `oomtrace check`, `oomtrace history` and
//! `oomtrace explain`.

pub mod check;
pub mod explain;
pub mod history;
pub mod watch;
