//! The code under fuzzing, compiled from oomtrace's own sources by `#[path]`, each module at
//! the crate path oomtrace gives it so their `crate::` and `super::` paths resolve as they do
//! there. They need only std, serde, serde_json, humantime and jiff, so the fuzz build does not
//! drag aya, tokio and bollard through the sanitizers, nor build the eBPF program a second time
//! (depending on the `oomtrace` crate would run its build.rs: five minutes on a cold cache).
//!
//! Besides the modules, [`reports`] builds reports from fuzz bytes and [`unescape`] reads the
//! human view's escapes back, for the renderers' target.

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

/// `oomtrace::attribution` with only the path-based attribution, which needs no runtime.
#[path = "../../oomtrace/src/attribution"]
pub mod attribution {
    pub mod cgroup_path;
}

/// The renderers and the escaping they share; `sink`, `filter` and `journal` do I/O.
#[path = "../../oomtrace/src/output"]
pub mod output {
    pub mod escape;
    pub mod human;
    pub mod json;
}

#[path = "../../oomtrace/src/report.rs"]
pub mod report;

pub mod reports;
pub mod unescape;
