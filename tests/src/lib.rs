//! Shared pieces of oomtrace's privileged end-to-end tests, and of the soak and the bench that
//! drive oomtrace the same way: a running tracer, a real memory cgroup, the hog the kernel
//! OOM-kills in it, a containerd of the tests' own with pods laid out as kubelet lays them out,
//! a real Prometheus scraping it, child processes that cannot hang a run, and the rule that CI
//! never skips.
//!
//! Like aya's integration tests, helpers panic with a message instead of returning errors.
//! No sleep here stands in for synchronisation: a child's exit is awaited on its pidfd, a line
//! on its pipe with poll(2) or a Condvar the reading thread signals, each with a deadline. The
//! few sleeps left say why: re-checking what the kernel gives no notification of (a v1 cgroup
//! emptying), or waiting out wall-clock time itself (the kernel log's rate limit).
//!
//! Each concern has a module; the names the tests use most are also here at the root.

pub mod cgroups;
pub mod containerd;
pub mod docker;
pub mod hog;
pub mod kernel;
pub mod kubernetes;
pub mod metrics;
pub mod pipes;
pub mod pods;
pub mod preconditions;
pub mod process;
pub mod prometheus;
pub mod record;
pub mod scratch;
pub mod tracer;

pub use cgroups::{CgroupMode, MemCgroup, memory_hierarchy, memory_number};
pub use containerd::{Containerd, IMAGE_REF, containerd_ready};
pub use hog::{HOG_TIMEOUT, Hog, trace_one_kill};
pub use kernel::{
    CAP_SYS_RESOURCE, KernelLog, OomScoreAdj, capabilities, wait_out_oom_log_ratelimit,
};
pub use metrics::{Sample, http_get, metrics_addr, samples};
pub use pipes::{PipeLines, read_line_within};
pub use pods::{Commanded, Pod, Qos, Task};
pub use preconditions::{
    SKIPS_ENV, VM_ENV, hog_bin, in_kernel_matrix_vm, not_applicable, oomtrace_bin, privileged,
    serial, skip,
};
pub use process::{
    KillOnDrop, output_within, poll_until, process_alive, run_within, terminate, wait_timeout,
};
pub use scratch::{Staged, TempDir, temp_dir, temp_dir_in};
pub use tracer::{
    HumanWatch, Started, Stopped, Tracer, expect_summary, field, spawn_ready, spawn_until_ready,
    summary_line,
};
