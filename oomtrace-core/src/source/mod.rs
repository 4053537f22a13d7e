//! Parsers of what the kernel writes: the kernel program's records ([`ebpf`]), the kernel
//! log's OOM reports ([`kmsg`]) and the signals it saw sent ([`signal`]); and of what
//! userspace OOM killers write about their own kills ([`userspace_log`]).

pub mod ebpf;
pub mod kmsg;
pub mod signal;
pub mod userspace_log;
