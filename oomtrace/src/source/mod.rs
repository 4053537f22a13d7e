//! The sources of reports, read from the running system: the kernel log ([`kmsg`]), what
//! `/proc` still says about a victim ([`procfs`]), the journal and the kernel log's past
//! ([`journal`], [`past`]), the host ([`host`]), memory cgroups stalled at their limit
//! ([`stall`]), and userspace OOM killers' logs ([`killer_log`]). Their parsers are `oomtrace_core`'s.

pub mod host;
pub mod journal;
pub mod killer_log;
pub mod kmsg;
pub mod past;
pub mod procfs;
pub mod stall;
