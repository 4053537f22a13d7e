//! The human view: what a person scans in the middle of an incident.
//!
//! A kill is one line of facts in a fixed order that fits 120 columns for the common case
//! (time, where, who, RSS, the limit and its size, which kill this is), then one indented
//! line that says what it means, from facts only:
//!
//! ```text
//! 20:39:23  seed0  dd (pid 4242)  rss 63.3 MiB  limit 64.0 MiB
//!     not the container's main process (that is sh, pid 4100); entered the container from outside, as docker exec does
//! ```
//!
//! With `--verbose`, or when stdout is a terminal, a third line gives the limited cgroup's
//! memory breakdown and its biggest processes. The chosen victim of a `memory.oom.group` kill
//! says what the kernel is killing with it (the container, its pod, another cgroup), and the
//! members follow it as `+` lines of the same incident. Times are local (`TZ`, else
//! `/etc/localtime`), with the date when not today and the zone where the clock reading is
//! ambiguous; JSON keeps RFC 3339 UTC. Every untrusted string is escaped (see `escape`).

mod exit;
mod kill;
mod stall;
mod userspace;

// `explain` tells each exit it lists in the words the exit line uses.
pub use exit::{OOM_KILLER_DISABLED, named_victim, who_ended};

use std::{collections::HashMap, time::SystemTime};

use jiff::tz::TimeZone;

use crate::{
    output::{
        escape::visible,
        format::{clock, short_id},
    },
    report::{Container, Pod},
};

/// Renders reports and container exits, remembering what makes the next line say more:
/// how many kills each container has had, and the incident a group kill's member belongs to.
pub struct HumanView {
    tz: TimeZone,
    verbose: bool,
    kills: HashMap<String, (u32, SystemTime)>,
    last_incident: Option<u64>,
}

impl HumanView {
    /// `verbose`: the breakdown line under every kill.
    pub fn new(verbose: bool) -> Self {
        Self::in_zone(TimeZone::system(), verbose)
    }

    pub fn in_zone(tz: TimeZone, verbose: bool) -> Self {
        Self {
            tz,
            verbose,
            kills: HashMap::new(),
            last_incident: None,
        }
    }

    fn time(&self, time: Option<SystemTime>, now: SystemTime, out: &mut String) {
        out.push_str(&clock(&self.tz, time, now));
    }
}

/// A container's name, or its runtime and short id when it has none.
fn container_name(c: &Container) -> String {
    match &c.name {
        Some(name) => visible(name),
        None => format!("{} {}", c.runtime, visible(short_id(&c.id))),
    }
}

/// A pod as `namespace/name`, or by its uid when its names are not known.
fn pod_name(pod: &Pod) -> String {
    match (&pod.namespace, &pod.name) {
        (Some(ns), Some(name)) => format!("{}/{}", visible(ns), visible(name)),
        _ => visible(&pod.uid),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use jiff::tz::TimeZone;

    use super::*;
    use crate::{
        report::{ContainerExit, KillSummary, OomContext, Report, TopTask},
        testing as fixtures,
    };

    // The kill and the exit lines' tests share these.

    const ID: &str = "4f2c5e6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80";
    pub(super) const MIB: u64 = 1 << 20;

    pub(super) fn utc() -> HumanView {
        HumanView::in_zone(TimeZone::UTC, false)
    }

    /// The fixture's kill time, `2026-11-22T04:47:30.033410Z`, and the same day for "now".
    pub(super) fn today() -> SystemTime {
        fixtures::report().time.unwrap() + Duration::from_secs(60)
    }

    pub(super) fn render(view: &mut HumanView, report: &Report) -> String {
        let mut out = String::new();
        view.kill(report, today(), &mut out);
        out
    }

    pub(super) fn seed0(is_main: bool) -> Report {
        let mut report = fixtures::report();
        report.victim.is_container_init = Some(is_main);
        report.victim.is_container_main = Some(is_main);
        report.victim.ppid = Some(20000);
        report.victim.parent_in_container = Some(false);
        report.victim.rss_file_bytes = Some(0);
        report.victim.rss_anon_bytes = Some(63 * MIB);
        report.trigger.pid = report.victim.pid;
        report.trigger.tid = report.victim.tid;
        report.oom = Some(OomContext {
            kind: Some("killed"),
            memcg: Some("/docker/4f2c".into()),
            memcg_limit_bytes: Some(64 * MIB),
            global: Some(false),
            ..OomContext::default()
        });
        report.container = Some(Container {
            runtime: "docker",
            id: ID.into(),
            name: Some("seed0".into()),
            main_pid: Some(10000),
            main_command: Some("sh".into()),
            memory_limit_bytes: Some(64 * MIB),
            ..Container::default()
        });
        report
    }

    /// Issue 16: the kill line escaped a name's bytes that are not UTF-8, the "biggest" part
    /// showed U+FFFD. Every line shows the same bytes the same way, live and read back from JSON.
    #[test]
    fn names_that_are_not_utf8_are_escaped_alike_on_every_line() {
        let mut report = fixtures::report();
        report.container = None;
        let name: &[u8] = b"\x1b[31mEV\xffIL";
        let lossy = String::from_utf8_lossy(name).into_owned();
        report.victim.comm = Some(lossy.clone());
        report.victim.comm_bytes = Some(name.to_vec());
        report.trigger.pid = Some(7);
        report.trigger.tid = Some(7);
        report.trigger.comm = Some("tr\u{fffd}g".into());
        report.trigger.comm_bytes = Some(b"tr\xfeg".to_vec());
        report.cgroup.path = Some("/a\u{fffd}/b".into());
        report.cgroup.path_bytes = Some(b"/a\xff/b".to_vec());
        report.oom = Some(OomContext {
            memcg: Some("/a\u{fffd}".into()),
            memcg_bytes: Some(b"/a\xfe".to_vec()),
            top_tasks: Some(vec![TopTask {
                pid: 10390,
                comm: lossy,
                comm_bytes: Some(name.to_vec()),
                rss_bytes: 63 * MIB,
            }]),
            ..OomContext::default()
        });
        let mut line = Vec::new();
        crate::output::json::write_line(&report, &mut line);
        let back: Report = serde_json::from_slice(&line).unwrap();

        for report in [&report, &back] {
            let shown = render(&mut HumanView::in_zone(TimeZone::UTC, true), report);
            let want = [
                "cgroup /a\\xff/b  \\x1b[31mEV\\xffIL (pid 10390, thread 10391)",
                // `/a\xfe` and `/a\xff` read alike as strings; as bytes they are two cgroups.
                "limit of /a\\xfe hit, the victim lived in /a\\xff/b",
                "triggered by tr\\xfeg (pid 7)",
                "biggest: \\x1b[31mEV\\xffIL 63.0 MiB (pid 10390)",
            ];
            for part in want {
                assert!(shown.contains(part), "no {part:?} in {shown}");
            }
            assert!(
                !shown
                    .chars()
                    .any(|c| (c != '\n' && c.is_control()) || c == '\u{fffd}'),
                "{shown:?}"
            );
        }

        let exit = ContainerExit {
            schema: 1,
            event: "container_exit",
            time: report.time,
            container: Container::default(),
            exit_code: Some(137),
            runtime_oom_killed: Some(true),
            restart_count: None,
            restarting: None,
            kills: vec![None],
            killed_by: None,
            runtime_oom_killed_reason: None,
            host: None,
            last_kill: Some(KillSummary::of(&back)),
        };
        let mut out = String::new();
        utc().exit(&exit, today(), &mut out);
        assert!(
            out.contains(" \\x1b[31mEV\\xffIL (pid 10390) was OOM-killed"),
            "{out}"
        );
    }
}
