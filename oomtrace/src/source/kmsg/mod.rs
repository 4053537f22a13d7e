//! The kernel log, read: [`device`] reads `/dev/kmsg` once (for `history` and the watch's
//! start), [`follow`] follows it during a watch. What its records say is parsed by
//! `oomtrace_core::source::kmsg`, which needs no kernel.

pub mod device;
pub mod follow;
