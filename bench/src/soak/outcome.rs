//! What the soak saw: the containers Docker killed and the reports oomtrace made, oomtrace's
//! end and memory; `checks` judges it.

use std::collections::HashMap;
use std::time::Duration;

use super::memory::Memory;

/// The bench's budget for RSS at rest (bench/report.rs); the peak's is in `checks`.
pub const END_RSS_KIB: u64 = 4 * 1024;

/// A hog as Docker saw it.
pub struct DockerHog {
    pub name: String,
    pub id: String,
    /// Whether it ran after the `--output` disk had filled.
    pub after_fill: bool,
    pub oom_killed: bool,
    pub exit_code: String,
}

/// What the soak saw, for the checks and the report.
#[derive(Default)]
pub struct Outcome {
    pub containers: usize,
    pub waves: usize,
    pub hogs: Vec<DockerHog>,
    pub idle_ids: Vec<String>,
    /// Every kill report about a container, by container id: its names, in order.
    pub reports: HashMap<String, Vec<Option<String>>>,
    pub restart_after: usize,
    pub downtime: Duration,
    pub fill_after: usize,
    pub filler_bytes: u64,
    /// The `--output` file's length when its disk filled.
    pub output_at_fill: u64,
    pub output_path: String,
    /// The `--output` file as the disk filled it.
    pub output: String,
    /// The wave at whose end oomtrace was found gone, counted from 1.
    pub died: Option<usize>,
    pub exit: String,
    pub exited_cleanly: bool,
    pub stderr: Vec<String>,
    pub memory: Memory,
    /// VmRSS once oomtrace was quiet after each wave (or [`SETTLE_WAIT`] passed), in KiB.
    pub rss_by_wave: Vec<u64>,
    /// VmRSS once oomtrace was quiet after the last wave (or [`SETTLE_WAIT`] passed), in KiB.
    pub settled_rss: Option<u64>,
    pub stdout_lines: usize,
}
