//! The pure core of oomtrace: everything that turns what the kernel wrote into a report and a
//! report into text, with no kernel program, no async runtime and no container runtime client.
//! It needs only std, libc, serde, serde_json, humantime, jiff and the record layout shared with
//! the kernel program, so the fuzzers, the end-to-end tests and the benchmarks depend on it
//! without building the eBPF program.
//!
//! - [`report`]: the one model every source builds and every output renders; [`identity`]
//!   says when two records are one event; [`time`]: the kernel's clocks and `--since`;
//! - [`kernel`]: readers of what the kernel publishes as text (tracefs formats, the cgroup
//!   hierarchy, `/proc/vmstat`), the attach modes and what a recorded stack says;
//! - [`source`]: the parsers of kernel output (eBPF records, kernel-log lines) and of
//!   userspace OOM killers' own lines about their kills;
//! - [`attribution`]: from a cgroup path to a container, and what the OOM was;
//! - [`output`]: the human and JSON renderers, their escaping, filters, and what a kill means;
//! - [`journal`]: the journal's line format, read back.
//! - [`stall`]: a memory cgroup stuck at its limit with the OOM killer disabled.

pub mod attribution;
pub mod identity;
pub mod journal;
pub mod kernel;
pub mod output;
pub mod report;
pub mod source;
pub mod stall;
pub mod time;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
