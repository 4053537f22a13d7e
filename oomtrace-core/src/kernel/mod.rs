//! What the kernel publishes as text, read without a kernel program: tracefs event formats,
//! the cgroup hierarchy, `/proc/vmstat`; and the modes the kernel program attaches in.

pub mod attach_mode;
pub mod cgroups;
pub mod tracefs;
pub mod vmstat;
