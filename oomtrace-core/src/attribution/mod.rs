//! Attribution from facts alone: from the victim's cgroup path to the container that owns it
//! ([`cgroup_path`]), and which limit was hit and which OOM invocation a kill belongs to, from
//! the record and its stack ([`oom`]), and who ended a container ([`killer`]) or killed a process
//! from user space ([`userspace_killer`]); the kernel log's own account is `source::kmsg`'s.

pub mod acted_on;
pub mod cgroup_path;
pub mod killer;
pub mod oom;
pub mod userspace_killer;
