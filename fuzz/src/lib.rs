//! The parsers under fuzzing, compiled from oomtrace's own sources. They use only std, so the
//! fuzz build does not drag aya, tokio and bollard through the sanitizers.

/// `oomtrace::source::kmsg` without `device.rs`, so the parsers' `super::` paths resolve as
/// they do in oomtrace. The `path` on the inline module sets the directory its children are
/// read from (a `#[path]` on each child would be relative to `src/kmsg/`, which does not
/// exist).
#[path = "../../oomtrace/src/source/kmsg"]
pub mod kmsg {
    pub mod assembler;
    pub mod context;
    pub mod lines;
    pub mod record;

    pub use assembler::fuzz_one;
}

#[path = "../../oomtrace/src/kernel/tracefs.rs"]
pub mod tracefs;
