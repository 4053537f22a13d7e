//! The kernel side: what the running kernel offers (its BTF, tracefs, cgroup hierarchy), the
//! layout and plan derived from it, and loading and attaching the kernel program.

pub mod attach;
pub mod btf;
pub mod layout;
pub mod loader;
pub mod plan;
pub mod preflight;
pub mod symbols;
