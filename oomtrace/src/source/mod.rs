//! The sources of reports, read from the running system: the kernel log ([`kmsg`]), what
//! `/proc` still says about a victim ([`procfs`]), the journal and the kernel log's past
//! ([`journal`], [`past`]), and the host ([`host`]). Their parsers are `oomtrace_core`'s.

pub mod host;
pub mod journal;
pub mod kmsg;
pub mod past;
pub mod procfs;
