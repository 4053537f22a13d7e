//! The parsers under fuzzing, compiled from oomtrace's own sources. They use only std, so the
//! fuzz build does not drag aya, tokio and bollard through the sanitizers.

#[path = "../../oomtrace/src/kmsg.rs"]
pub mod kmsg;
#[path = "../../oomtrace/src/kernel/tracefs.rs"]
pub mod tracefs;
