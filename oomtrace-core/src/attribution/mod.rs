//! Attribution from facts alone: from the victim's cgroup path to the container that owns it
//! ([`cgroup_path`]), and what the OOM was, from the record, its stack and the kernel log
//! ([`oom`]).

pub mod cgroup_path;
pub mod oom;
