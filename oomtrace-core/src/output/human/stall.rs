//! The line for a memory cgroup stuck at its limit with the OOM killer disabled.

use std::{fmt::Write as _, time::SystemTime};

use super::HumanView;
use crate::{
    output::{
        escape::visible,
        format::{bytes, short_id},
    },
    stall::OomStall,
};

impl HumanView {
    /// `22:00:36  container db stalled at its memory limit with the OOM killer disabled:
    /// 32.0 MiB of 32.0 MiB; nothing is killed and its processes wait for memory`
    pub fn stall(&mut self, stall: &OomStall, now: SystemTime, out: &mut String) {
        self.time(stall.time, now, out);
        out.push_str("  ");
        match &stall.container {
            Some(container) => {
                let name = match &container.name {
                    Some(name) => visible(name),
                    None => visible(short_id(&container.id)),
                };
                let _ = write!(out, "container {name}");
            }
            None => {
                let _ = write!(out, "cgroup {}", visible(&stall.cgroup));
            }
        }
        let seconds = stall.seconds.unwrap_or_default();
        let (at, how) = match stall.reason {
            Some("memory_high") => (
                "held at its memory.high",
                "the kernel throttles its allocations, and nothing is killed",
            ),
            Some("memory_max") => (
                "held at its memory.max",
                "the kernel makes it reclaim, and nothing is killed",
            ),
            _ => (
                "stalled at its memory limit with the OOM killer disabled",
                "nothing is killed and its processes wait for memory",
            ),
        };
        match stall.phase {
            "started" => {
                let _ = write!(out, " {at}");
            }
            "continues" => {
                let _ = write!(out, " still {at} after {seconds:.0} s");
            }
            _ => {
                let _ = write!(out, " no longer {at}, after {seconds:.1} s");
            }
        }
        if stall.phase != "ended" {
            if let (Some(usage), Some(limit)) = (stall.usage_bytes, stall.limit_bytes) {
                let _ = write!(out, ": {} of {}", bytes(usage), bytes(limit));
            }
            let _ = write!(out, "; {how}");
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{today, utc};
    use crate::{attribution::killer::SenderContainer, stall::OomStall};

    #[test]
    fn a_stall_is_told_when_it_starts_lasts_and_ends() {
        let stall = |phase, seconds, name: Option<&str>| OomStall {
            schema: 1,
            event: "oom_stall",
            time: Some(today() - Duration::from_secs(30)),
            phase,
            reason: Some("oom_killer_disabled"),
            since: Some(today() - Duration::from_secs(90)),
            seconds: Some(seconds),
            cgroup: "/docker/ab".into(),
            cgroup_mode: Some("v1"),
            container: Some(SenderContainer {
                id: "ab".repeat(32),
                name: name.map(str::to_owned),
            }),
            usage_bytes: Some(32 << 20),
            limit_bytes: Some(32 << 20),
            host: None,
        };
        let cases = [
            (
                stall("started", 0.0, Some("db")),
                "container db stalled at its memory limit with the OOM killer disabled: 32.0 MiB of 32.0 MiB; nothing is killed and its processes wait for memory",
            ),
            (
                stall("continues", 60.2, Some("d\u{7}b")),
                "container d\\x07b still stalled at its memory limit with the OOM killer disabled after 60 s: 32.0 MiB of 32.0 MiB; nothing is killed and its processes wait for memory",
            ),
            (
                stall("ended", 75.25, None),
                "container abababababab no longer stalled at its memory limit with the OOM killer disabled, after 75.2 s",
            ),
            (
                OomStall {
                    reason: Some("memory_high"),
                    ..stall("started", 0.0, Some("api"))
                },
                "container api held at its memory.high: 32.0 MiB of 32.0 MiB; the kernel throttles its allocations, and nothing is killed",
            ),
        ];
        for (stall, want) in cases {
            let mut out = String::new();
            utc().stall(&stall, today(), &mut out);
            assert_eq!(out, format!("04:48:00  {want}\n"));
        }
    }
}
