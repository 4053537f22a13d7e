//! oomtrace as a library: the pieces behind the `oomtrace` command that touch the running
//! system, one folder per concern. What needs no kernel, no async runtime and no container
//! runtime (the report model, the parsers, the renderers) is `oomtrace_core`'s. The binary in
//! `main.rs` only parses the command line and dispatches.
//!
//! - [`kernel`]: what the running kernel offers (BTF, tracefs, kernel symbols), the plan,
//!   loading and attaching the kernel program;
//! - [`source`]: where kills are seen: the kernel program's ring buffer, the kernel log,
//!   `/proc`, the journal, the host;
//! - [`attribution`]: what a container's runtime says about it, and the cgroup's own files;
//! - [`output`]: sinks, the journal writer and metrics;
//! - [`commands`]: `oomtrace`, `oomtrace check`, `oomtrace history`, `oomtrace explain`.

pub mod attribution;
pub mod cli;
pub mod commands;
pub mod kernel;
pub mod output;
pub mod source;
