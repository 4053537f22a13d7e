//! Which limit a container's kills hit, its size and how close the cgroup came to it: the
//! fact the story's meaning, advice and screen all rest on.

use serde::Serialize;

use oomtrace_core::{
    output::facts::{limited_cgroup, own_cgroup, victim_rss},
    report::{Container, Report},
};

/// The limit the kills hit, for `explain --json`'s `limit`.
#[derive(Debug, Serialize)]
pub struct LimitFacts {
    /// The cgroup whose limit the latest kill hit, as the kernel names it.
    pub memcg: Option<String>,
    /// Its exact bytes, where they are not UTF-8, as a report's `oom.memcg_hex`.
    #[serde(
        rename = "memcg_hex",
        skip_serializing_if = "Option::is_none",
        serialize_with = "oomtrace_core::report::hex::serialize"
    )]
    pub memcg_bytes: Option<Vec<u8>>,
    pub whose: &'static str,
    pub limit_bytes: Option<u64>,
    pub peak_usage_bytes: Option<u64>,
    pub peak_rss_bytes: Option<u64>,
}

impl LimitFacts {
    /// The limit the kills hit: the latest kill's, its peak usage over the kills that hit the
    /// same cgroup, and the largest victim.
    pub fn of(kills: &[Report], container: &Container) -> Option<Self> {
        let latest = kills.last()?;
        let whose = whose(latest);
        let oom = latest.oom.as_ref();
        let (memcg_text, memcg_bytes) = (
            oom.and_then(|o| o.memcg.clone()),
            oom.and_then(|o| o.memcg_bytes.clone()),
        );
        let same = kills
            .iter()
            .filter(|r| limited_cgroup(r) == limited_cgroup(latest));
        let limit_bytes = same
            .clone()
            .rev()
            .find_map(|r| r.oom.as_ref().and_then(|o| o.memcg_limit_bytes))
            // Docker's limit is the container's own cgroup's, and only that one.
            .or(container.memory_limit_bytes.filter(|_| whose == "own"));
        let peak_usage_bytes = if whose == "host" {
            None
        } else {
            same.filter_map(|r| r.oom.as_ref().and_then(|o| o.memcg_usage_bytes))
                .max()
        };
        Some(Self {
            memcg: memcg_text.filter(|_| whose != "host"),
            memcg_bytes: memcg_bytes.filter(|_| whose != "host"),
            whose,
            limit_bytes,
            peak_usage_bytes,
            peak_rss_bytes: kills.iter().filter_map(victim_rss).max(),
        })
    }
}

/// Whose limit a kill hit: its container's own cgroup, one above it, or the host's memory.
fn whose(report: &Report) -> &'static str {
    let oom = report.oom.as_ref();
    if oom.and_then(|o| o.global) == Some(true) {
        return "host";
    }
    match (limited_cgroup(report), own_cgroup(report)) {
        (Some(memcg), Some(own)) if memcg == own => "own",
        (Some(memcg), Some(own))
            if own.starts_with(memcg)
                && (memcg.ends_with(b"/") || own[memcg.len()..].starts_with(b"/")) =>
        {
            "parent"
        }
        _ => "unknown",
    }
}
