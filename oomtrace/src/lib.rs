//! oomtrace as a library: the pieces behind the `oomtrace` command, one module per concern.
//! The binary in `main.rs` only parses the command line and dispatches.

pub mod btf;
pub mod check;
pub mod cli;
pub mod container;
pub mod docker;
pub mod enrich;
pub mod filter;
pub mod history;
pub mod kmsg;
pub mod kmsg_source;
pub mod layout;
pub mod loader;
pub mod plan;
pub mod preflight;
pub mod procfs;
pub mod render;
pub mod report;
pub mod sink;
pub mod tracefs;
pub mod watch;
