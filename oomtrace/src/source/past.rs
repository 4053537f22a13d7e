//! Kills from before: the journal a watch kept, merged with the kernel log, one entry per
//! kill. The journal has what the kernel program saw (the container's name, the OOM context,
//! the kills the log's rate limit cut short); the log has the kills from while no watch ran.
//! A kill in both is the journal's report, completed with what only the log printed.

use std::{path::Path, time::SystemTime};

use crate::source::{host, journal, kmsg::device as kmsg_device};
use oomtrace_core::{
    identity::{self, same_kill},
    journal as journal_format,
    kernel::cgroups::CgroupMode,
    report::{Container, ContainerExit, Host, Report},
};

/// The kills and container exits from before, oldest first, and what could not be read.
#[derive(Debug, Default)]
pub struct Past {
    pub kills: Vec<Report>,
    pub exits: Vec<ContainerExit>,
    /// What this account lacks, each one sentence: no journal, no kernel log, records lost.
    pub gaps: Vec<String>,
    /// What became of reading the journal.
    pub journal: journal_format::State,
    /// Whether the kernel log could be read.
    pub kernel_log: bool,
}

/// Reads the journal at `journal` (unless `None`) and the kernel log, keeping what happened
/// at or after `since`.
pub fn gather(journal: Option<&Path>, since: Option<SystemTime>) -> Past {
    let mut past = Past::default();
    let mut logged = Vec::new();
    match kmsg_device::logged_kills() {
        Ok((kills, lost)) => {
            past.kernel_log = true;
            let clock = kmsg_device::log_clock();
            let cgroups = CgroupMode::of_host();
            logged = kills
                .iter()
                .map(|kill| kmsg_device::report_from_kill(kill, &clock, cgroups))
                .collect();
            if lost > 0 {
                past.gaps.push(format!(
                    "{lost} kernel log records were overwritten while being read; kills among them are missing"
                ));
            }
        }
        Err(why) => past
            .gaps
            .push(format!("the kernel log cannot be read: {why}")),
    }
    let mut entries = journal_format::Entries::default();
    match journal {
        None => past
            .gaps
            .push("the journal is not read (--no-journal)".into()),
        Some(path) => {
            entries = journal::read(path);
            past.journal = journal_format::State::of(path, &entries);
            if let journal_format::State::Absent(_) = past.journal {
                past.gaps.push(if past.kernel_log {
                    format!(
                        "there is no journal at {}: only the kernel log tells, without container names for containers Docker no longer knows, or the kills its rate limit cut short",
                        path.display()
                    )
                } else {
                    format!("there is no journal at {}", path.display())
                });
            }
            past.gaps
                .extend(entries.denied.iter().map(journal_format::Denied::sentence));
            if entries.unreadable > 0 {
                past.gaps.push(format!(
                    "{} journal lines were not reports and are left out",
                    entries.unreadable
                ));
            }
        }
    }
    past.kills = merge(entries.kills, logged, &host::current());
    past.exits = identity::dedupe_exits(entries.exits);
    if let Some(since) = since {
        past.kills.retain(|r| r.time.is_some_and(|t| t >= since));
        past.exits.retain(|e| e.time.is_some_and(|t| t >= since));
    }
    past
}

/// One report per kill: the journal's records of one kill are one report (however many
/// watches wrote it); a log kill the journal has too is the journal's report, with what only
/// the log printed added; the rest of the log, which is this boot's on this `host`, is named
/// where the journal knew its container. Oldest first.
pub fn merge(journaled: Vec<Report>, logged: Vec<Report>, host: &Host) -> Vec<Report> {
    let journaled = identity::dedupe_kills(journaled);
    let names: Vec<Container> = journaled
        .iter()
        .filter_map(|r| r.container.clone())
        .filter(|c| c.name.is_some())
        .collect();
    let mut kills = journaled;
    let journal_len = kills.len();
    for log in logged {
        let twin = kills[..journal_len].iter_mut().find(|j| same_kill(j, &log));
        match twin {
            Some(journal) => complete_from_log(journal, &log),
            None => {
                let mut log = named(log, &names);
                log.host = Some(host.clone());
                kills.push(log);
            }
        }
    }
    kills.sort_by_key(|r| r.time);
    kills
}

/// What only the log has: the report it printed when the journal's has none.
fn complete_from_log(journal: &mut Report, log: &Report) {
    let (Some(oom), Some(logged)) = (journal.oom.as_mut(), log.oom.as_ref()) else {
        return;
    };
    oom.constraint = oom.constraint.take().or(logged.constraint.clone());
    if oom.memcg.is_none() {
        // The name and its exact bytes come together, or not at all.
        oom.memcg = logged.memcg.clone();
        oom.memcg_bytes = logged.memcg_bytes.clone();
    }
    oom.memcg_limit_bytes = oom.memcg_limit_bytes.or(logged.memcg_limit_bytes);
    oom.memcg_usage_bytes = oom.memcg_usage_bytes.or(logged.memcg_usage_bytes);
    oom.memcg_stat = oom.memcg_stat.take().or(logged.memcg_stat.clone());
    oom.top_tasks = oom.top_tasks.take().or(logged.top_tasks.clone());
    oom.global = oom.global.or(logged.global);
}

/// A kill only the log has, named after the container the journal knew by its id.
fn named(mut log: Report, names: &[Container]) -> Report {
    crate::attribution::enrich::annotate(&mut log, Default::default());
    if let Some(container) = log.container.as_mut()
        && let Some(known) = names.iter().rev().find(|c| c.id == container.id)
    {
        let pod = container.pod.take();
        *container = known.clone();
        container.pod = container.pod.take().or(pod);
    }
    log
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use oomtrace_core::{report::OomContext, testing::report};

    const ID: &str = "4f2c5e6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80";

    fn at(secs: u64) -> Option<SystemTime> {
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs))
    }

    fn journaled(tid: u32, secs: u64) -> Report {
        let mut r = report();
        r.victim.tid = Some(tid);
        r.victim.pid = Some(tid);
        r.time = at(secs);
        r.cgroup.path = Some(format!("/docker/{ID}"));
        r.container = Some(Container {
            runtime: "docker",
            id: ID.into(),
            name: Some("web".into()),
            ..Container::default()
        });
        r.oom = Some(OomContext {
            kind: Some("killed"),
            ..OomContext::default()
        });
        r
    }

    fn logged(pid: u32, secs: u64, path: Option<&str>) -> Report {
        let mut r = report();
        r.source = "kmsg";
        r.victim = Default::default();
        r.victim.pid = Some(pid);
        r.time = at(secs);
        r.cgroup.path = path.map(str::to_owned);
        r.container = None;
        r.oom = Some(OomContext {
            constraint: Some("CONSTRAINT_MEMCG".into()),
            memcg: path.map(str::to_owned),
            ..OomContext::default()
        });
        r
    }

    #[test]
    fn each_kill_once_the_journal_s_report_completed_by_the_log() {
        let path = format!("/docker/{ID}");
        let kills = merge(
            vec![journaled(100, 10), journaled(101, 20)],
            vec![
                logged(100, 10, Some(&path)),
                // Rate-limited: no summary, so no cgroup in the log.
                logged(101, 21, None),
                // While no watch ran, in the same container: named from the journal.
                logged(102, 30, Some(&path)),
                // A host process.
                logged(103, 40, Some("/user.slice")),
            ],
            &Host::default(),
        );
        let pids: Vec<Option<u32>> = kills.iter().map(|r| r.victim.pid).collect();
        assert_eq!(pids, [Some(100), Some(101), Some(102), Some(103)]);
        assert_eq!(kills[0].source, "tp_btf", "the journal's report");
        assert_eq!(
            kills[0].oom.as_ref().unwrap().constraint.as_deref(),
            Some("CONSTRAINT_MEMCG"),
            "with what only the log printed"
        );
        assert_eq!(
            kills[1].container.as_ref().unwrap().name.as_deref(),
            Some("web")
        );
        assert_eq!(kills[2].source, "kmsg");
        assert_eq!(
            kills[2].container.as_ref().unwrap().name.as_deref(),
            Some("web"),
            "a removed container keeps its name"
        );
        assert!(kills[3].container.is_none());
    }

    /// A journal the version before identities wrote (03b6e59), as it wrote it: two watches
    /// on it, each appending every kill (their kernel programs' `boot_ns` 50 us apart) and
    /// every exit; then a `--since 1h` watch appending every kill it replayed, the kills only
    /// the kernel log told (`boot_ns` null) and the `--rm` container's without its name.
    /// 43 lines for 23 kills and 4 exits.
    const OLD_JOURNAL: &[u8] =
        include_bytes!("../../tests/fixtures/journal-03b6e59-two-watches-and-a-replay.jsonl");

    #[test]
    fn a_journal_older_versions_wrote_twice_is_each_kill_and_exit_once() {
        let mut entries = journal_format::Entries::default();
        journal_format::parse_into(OLD_JOURNAL, &mut entries, &mut Default::default());
        assert_eq!((entries.kills.len(), entries.exits.len()), (35, 8));
        let kills = merge(entries.kills, Vec::new(), &Host::default());
        let exits = identity::dedupe_exits(entries.exits);
        assert_eq!(
            kills.len(),
            23,
            "4 seen by the watches, 19 by the kernel log alone"
        );
        assert!(kills.iter().all(|k| !k.past), "a record is not a replay");
        let named = |name: &str| -> Vec<u32> {
            kills
                .iter()
                .filter(|k| k.container.as_ref().and_then(|c| c.name.as_deref()) == Some(name))
                .filter_map(|k| k.victim.tid)
                .collect()
        };
        assert_eq!(
            named("nt-loop"),
            [20301, 20456],
            "a restart loop's two kills"
        );
        assert_eq!(
            named("nt-rm"),
            [20394],
            "the removed container keeps its name"
        );
        assert_eq!(named("nt-seed0"), [20619]);
        let seed0 = kills.iter().find(|k| k.victim.tid == Some(20619)).unwrap();
        assert_eq!(seed0.victim.is_container_main, Some(false));
        let exits_of = |name: &str| {
            exits
                .iter()
                .filter(|e| e.container.name.as_deref() == Some(name))
                .count()
        };
        assert_eq!(
            (exits_of("nt-loop"), exits_of("nt-rm"), exits_of("nt-seed0")),
            (2, 1, 1)
        );
    }

    #[test]
    fn the_log_s_limited_cgroup_comes_with_its_exact_bytes() {
        let mut log = logged(100, 10, Some("/a\u{fffd}b"));
        log.oom.as_mut().unwrap().memcg_bytes = Some(b"/a\xffb".to_vec());
        let kills = merge(vec![journaled(100, 10)], vec![log], &Host::default());
        let oom = kills[0].oom.as_ref().unwrap();
        assert_eq!(oom.memcg.as_deref(), Some("/a\u{fffd}b"));
        assert_eq!(oom.memcg_bytes.as_deref(), Some(&b"/a\xffb"[..]));
    }

    #[test]
    fn the_same_pid_far_apart_is_two_kills() {
        let kills = merge(
            vec![journaled(100, 10)],
            vec![logged(100, 500, None)],
            &Host::default(),
        );
        assert_eq!(kills.len(), 2);
    }
}
