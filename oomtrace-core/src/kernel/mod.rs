//! What the kernel publishes as text, read without a kernel program: tracefs event formats,
//! the cgroup hierarchy, `/proc/vmstat`; the modes the kernel program attaches in, and what
//! the stack it records says.

pub mod attach_mode;
pub mod cgroups;
pub mod stack;
pub mod tracefs;
pub mod vmstat;
