//! oomtrace as a library: the pieces behind the `oomtrace` command, one folder per concern.
//! The binary in `main.rs` only parses the command line and dispatches.
//!
//! - [`kernel`]: what the running kernel offers (BTF, tracefs, cgroups), the plan, loading
//!   and attaching the kernel program;
//! - [`source`]: where kills are seen: eBPF records, the kernel log, `/proc`;
//! - [`attribution`]: from a cgroup to a container, and what its runtime says about it;
//! - [`report`]: the one model every source builds and every output renders;
//! - [`output`]: rendering, filters and sinks;
//! - [`commands`]: `oomtrace`, `oomtrace check`, `oomtrace history`, `oomtrace explain`.

pub mod attribution;
pub mod cli;
pub mod commands;
pub mod kernel;
pub mod output;
pub mod source;

#[cfg(test)]
mod readme_tests;
