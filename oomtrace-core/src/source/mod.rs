//! Parsers of what the kernel writes: the kernel program's records ([`ebpf`]) and the kernel
//! log's OOM reports ([`kmsg`]).

pub mod ebpf;
pub mod kmsg;
pub mod signal;
