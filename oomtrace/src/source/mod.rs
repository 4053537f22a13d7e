//! The sources of reports: records from the kernel program, the kernel log, and what `/proc`
//! still says about a victim.

pub mod host;
pub mod journal;
pub mod kmsg;
pub mod past;
pub mod procfs;
