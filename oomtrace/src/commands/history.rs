//! `oomtrace history`: past OOM kills, oldest first: the journal a watch kept merged with
//! the kernel log, one entry per kill, including the ones from before any watch ran. Docker
//! is asked about the containers it still knows, as a watch would; a container long removed
//! keeps the name the journal recorded.

use std::{io::Write as _, process::ExitCode, time::SystemTime};

use crate::{
    attribution::{docker, enrich, runtime},
    cli::Args,
    commands::{
        explain::{Listing, list_docker},
        watch::journal_path,
    },
    source::past,
};
use oomtrace_core::{
    attribution::cgroup_path,
    journal::State as JournalState,
    output::{
        escape::visible,
        filter::{Filter, names_container},
        human::HumanView,
        json,
    },
    report::{Container, ContainerExit, KillSummary, Report},
};

pub fn run(args: &Args) -> ExitCode {
    let now = SystemTime::now();
    let since = args.since.map(|since| since.moment(now));
    let journal = journal_path(args);
    // Every record, whatever --since says: a --container value is checked against every
    // container the sources know, not only the ones with kills in range.
    let past = past::gather(journal.as_deref(), None);
    let read = Read {
        journal: &past.journal,
        kernel_log: past.kernel_log,
    };
    if let Some(nothing) = read.nothing() {
        for gap in &past.gaps {
            crate::say!("{gap}");
        }
        crate::say!("{nothing}");
        return ExitCode::FAILURE;
    }
    let mut kills = past.kills;
    let cache = ask_docker(args, &mut kills);
    let unmatched = unmatched(
        &args.containers,
        &kills,
        &past.exits,
        cache.as_ref(),
        || match list_docker(args) {
            Listing::Listed { containers, .. } => containers,
            _ => Vec::new(),
        },
    );
    kills.retain(|r| since.is_none_or(|s| r.time.is_some_and(|t| t >= s)));

    let filter = Filter {
        containers: args.containers.clone(),
        pids: args.pids.clone(),
        comms: args.comms.clone(),
    };
    let total = kills.len();
    kills.retain(|report| filter.accepts(report));
    let mut exits = past.exits;
    exits.retain(|e| since.is_none_or(|s| e.time.is_some_and(|t| t >= s)));
    let exits = exits_of(exits, &kills);

    let mut out = Vec::with_capacity(kills.len() * 512);
    let mut human = HumanView::new(args.verbose);
    let mut line = String::new();
    for event in in_order(&kills, &exits) {
        match (event, args.json) {
            (Event::Kill(report), true) => json::write_line(report, &mut out),
            (Event::Exit(exit), true) => json::write_exit(exit, &mut out),
            (Event::Kill(report), false) => {
                line.clear();
                human.kill(report, now, &mut line);
                out.extend_from_slice(line.as_bytes());
            }
            (Event::Exit(exit), false) => {
                line.clear();
                human.exit(exit, now, &mut line);
                out.extend_from_slice(line.as_bytes());
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout.write_all(&out).and_then(|()| stdout.flush()) {
        if err.kind() != std::io::ErrorKind::BrokenPipe {
            crate::say!("cannot write to stdout: {err}");
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    for gap in &past.gaps {
        crate::say!("{gap}");
    }
    let searched = read.searched(cache.is_some());
    for value in &unmatched {
        crate::say!(
            "--container {} matches no container in {searched}",
            visible(value)
        );
    }
    if !args.containers.is_empty() && unmatched.len() == args.containers.len() {
        return ExitCode::FAILURE;
    }
    let shown = kills.len();
    let filtered = if filter.is_active() {
        format!(", {} filtered out", total - shown)
    } else {
        String::new()
    };
    crate::say!(
        "{shown} OOM kill{} in {}{filtered}",
        oomtrace_core::output::format::plural(shown as u64),
        read.sources()
    );
    ExitCode::SUCCESS
}

/// One line of history.
enum Event<'a> {
    Kill(&'a Report),
    Exit(&'a ContainerExit),
}

/// The exits of the containers whose kills are listed: a watch recorded an exit only after a
/// kill, and history tells it after them, as the watch did.
fn exits_of(exits: Vec<ContainerExit>, kills: &[Report]) -> Vec<ContainerExit> {
    let listed: std::collections::HashSet<&str> = kills
        .iter()
        .filter_map(|r| r.container.as_ref().map(|c| c.id.as_str()))
        .collect();
    let mut exits: Vec<ContainerExit> = exits
        .into_iter()
        .filter(|e| listed.contains(e.container.id.as_str()))
        .collect();
    for exit in &mut exits {
        // The human line names the kill before the exit, as a watch's does.
        exit.last_kill = kills
            .iter()
            .rfind(|r| {
                r.container
                    .as_ref()
                    .is_some_and(|c| c.id == exit.container.id)
                    && r.time.zip(exit.time).is_some_and(|(k, e)| k <= e)
            })
            .map(KillSummary::of);
    }
    exits
}

/// Kills and exits by time, a kill before an exit of the same moment; oldest first.
fn in_order<'a>(kills: &'a [Report], exits: &'a [ContainerExit]) -> Vec<Event<'a>> {
    let mut events: Vec<(Option<SystemTime>, u8, Event<'a>)> = kills
        .iter()
        .map(|k| (k.time, 0, Event::Kill(k)))
        .chain(exits.iter().map(|e| (e.time, 1, Event::Exit(e))))
        .collect();
    events.sort_by_key(|(time, rank, _)| (*time, *rank));
    events.into_iter().map(|(_, _, event)| event).collect()
}

/// Which sources history could read.
struct Read<'a> {
    journal: &'a JournalState,
    kernel_log: bool,
}

impl Read<'_> {
    /// The sources the count comes from: `the journal and the kernel log`.
    fn sources(&self) -> &'static str {
        match (self.journal.is_read(), self.kernel_log) {
            (true, true) => "the journal and the kernel log",
            (true, false) => "the journal",
            _ => "the kernel log",
        }
    }

    /// The sources a `--container` value was looked for in, Docker's answer among them.
    fn searched(&self, docker: bool) -> String {
        let mut names: Vec<&str> = Vec::new();
        if self.journal.is_read() {
            names.push("the journal");
        }
        if self.kernel_log {
            names.push("the kernel log");
        }
        if docker {
            names.push("Docker");
        }
        match names.split_last() {
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => "any source".to_owned(),
        }
    }

    /// One sentence when there was nothing to read at all: no count can be given then.
    fn nothing(&self) -> Option<String> {
        if self.kernel_log || self.journal.is_read() {
            return None;
        }
        let why = match self.journal {
            JournalState::NotRead => {
                "the kernel log cannot be read, and the journal is not read (--no-journal)"
            }
            JournalState::Absent(_) => "the kernel log cannot be read, and there is no journal",
            _ => "neither the journal nor the kernel log can be read",
        };
        Some(format!("no OOM kills can be listed: {why}"))
    }
}

/// The `--container` values that name no container the journal, the kernel log or Docker
/// knows: not among the kills (all of them, whatever --since says) or the exits, not in
/// Docker's answer, and, when Docker answered, not in `docker_list` of every container.
fn unmatched<'a>(
    wanted: &'a [String],
    kills: &[Report],
    exits: &[ContainerExit],
    answer: Option<&runtime::Cache>,
    docker_list: impl FnOnce() -> Vec<(String, Option<String>)>,
) -> Vec<&'a str> {
    let recorded: Vec<&Container> = kills
        .iter()
        .filter_map(|r| r.container.as_ref())
        .chain(exits.iter().map(|e| &e.container))
        .collect();
    let answered = answer.map(runtime::Cache::all).unwrap_or_default();
    let mut unmatched: Vec<&str> = wanted
        .iter()
        .map(String::as_str)
        .filter(|wanted| {
            !recorded
                .iter()
                .any(|c| names_container(wanted, &c.id, c.name.as_deref()))
                && !answered
                    .iter()
                    .any(|(id, meta)| names_container(wanted, id, meta.container.name.as_deref()))
        })
        .collect();
    // An id prefix of several containers is not in an inspect's answer: Docker's list says.
    if !unmatched.is_empty() && answer.is_some() {
        let listed = docker_list();
        unmatched.retain(|wanted| {
            !listed
                .iter()
                .any(|(id, name)| names_container(wanted, id, name.as_deref()))
        });
    }
    unmatched
}

/// What Docker says about the containers it still knows, for reports without names; and
/// for `--container NAME`, which container that name is now. Returns Docker's answer, `None`
/// when it was not asked or did not answer.
pub fn ask_docker(args: &Args, kills: &mut [Report]) -> Option<runtime::Cache> {
    if args.no_enrich {
        return None;
    }
    let docker_host = std::env::var("DOCKER_HOST").ok();
    let socket = docker::socket_path(args.docker_socket.as_deref(), docker_host.as_deref()).ok()?;
    let mut ids: Vec<String> = kills
        .iter()
        .filter_map(|r| match &r.container {
            Some(c) => (c.runtime == "docker").then(|| c.id.clone()),
            // `--cgroup-parent`: Docker's if Docker says so.
            None => r
                .cgroup
                .path
                .as_deref()
                .and_then(cgroup_path::unclaimed_id)
                .map(str::to_owned),
        })
        .collect();
    ids.sort();
    ids.dedup();
    let cache = docker_answer(&socket, &ids, &args.containers)?;
    for report in kills.iter_mut() {
        enrich::fill_missing(report, enrich::Caches::docker_only(Some(&cache)));
    }
    Some(cache)
}

/// Docker's answer, within a few seconds; `None` (said once) if it does not answer.
pub fn docker_answer(
    socket: &std::path::Path,
    ids: &[String],
    names: &[String],
) -> Option<runtime::Cache> {
    match docker::ask(
        socket,
        docker::WAIT,
        docker::inspect_now(socket, ids, names),
    ) {
        Ok(cache) => Some(cache),
        Err(why) => {
            crate::say!(
                "Docker does not answer ({why}): containers are named from the journal only"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oomtrace_core::journal::{Denied, State};

    #[test]
    fn the_sources_named_are_the_ones_read() {
        let denied = State::Unreadable(Denied {
            file: "/j".into(),
            older: false,
            why: "permission denied".into(),
        });
        let absent = State::Absent("/j".into());
        // (journal, kernel log, Docker answered): the count's sources, where a --container
        // value was looked for, and the sentence when nothing could be read.
        let cases = [
            (
                &State::Read,
                true,
                true,
                "the journal and the kernel log",
                "the journal, the kernel log or Docker",
                None,
            ),
            (
                &State::Read,
                false,
                false,
                "the journal",
                "the journal",
                None,
            ),
            (
                &denied,
                true,
                true,
                "the kernel log",
                "the kernel log or Docker",
                None,
            ),
            (
                &absent,
                true,
                false,
                "the kernel log",
                "the kernel log",
                None,
            ),
            (
                &denied,
                false,
                true,
                "the kernel log",
                "Docker",
                Some(
                    "no OOM kills can be listed: neither the journal nor the kernel log can be read",
                ),
            ),
            (
                &absent,
                false,
                false,
                "the kernel log",
                "any source",
                Some(
                    "no OOM kills can be listed: the kernel log cannot be read, and there is no journal",
                ),
            ),
            (
                &State::NotRead,
                false,
                false,
                "the kernel log",
                "any source",
                Some(
                    "no OOM kills can be listed: the kernel log cannot be read, and the journal is not read (--no-journal)",
                ),
            ),
        ];
        for (journal, kernel_log, docker, sources, searched, nothing) in cases {
            let read = Read {
                journal,
                kernel_log,
            };
            let case = format!("{journal:?}, kernel log {kernel_log}, Docker {docker}");
            assert_eq!(read.sources(), sources, "{case}");
            assert_eq!(read.searched(docker), searched, "{case}");
            assert_eq!(read.nothing().as_deref(), nothing, "{case}");
        }
    }

    #[test]
    fn a_container_value_matches_what_any_source_knows() {
        const OLD: &str = "4f2c5e6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80";
        const EXITED: &str = "9a0b1c2d3e4f";
        let mut killed = oomtrace_core::testing::report();
        killed.container = Some(Container {
            runtime: "docker",
            id: OLD.into(),
            name: Some("web".into()),
            ..Container::default()
        });
        let exit = ContainerExit {
            schema: 1,
            event: "container_exit",
            time: killed.time,
            container: Container {
                runtime: "docker",
                id: EXITED.into(),
                name: Some("batch".into()),
                ..Container::default()
            },
            exit_code: Some(0),
            runtime_oom_killed: Some(false),
            restart_count: None,
            restarting: None,
            kills: Vec::new(),
            killed_by: None,
            runtime_oom_killed_reason: None,
            host: None,
            last_kill: None,
        };
        let wanted: Vec<String> = [
            "web", "/web", "4f2c", "batch", "9a0b", "db", "ab12", "nosuch", "",
        ]
        .iter()
        .map(|v| v.to_string())
        .collect();
        let listed = || {
            vec![
                ("ab12".to_owned() + &"0".repeat(60), Some("x".to_owned())),
                ("ab12".to_owned() + &"1".repeat(60), Some("db".to_owned())),
            ]
        };
        let kills = std::slice::from_ref(&killed);
        let exits = std::slice::from_ref(&exit);
        // Docker away: its list is not asked, and what only it knows stays unmatched.
        assert_eq!(
            unmatched(&wanted, kills, exits, None, || panic!("Docker is away")),
            ["db", "ab12", "nosuch", ""]
        );
        let answer = runtime::Cache::new("docker");
        assert_eq!(
            unmatched(&wanted, kills, exits, Some(&answer), listed),
            ["nosuch", ""]
        );
        // Everything matched: Docker's list is not needed.
        assert!(
            unmatched(&wanted[..5], kills, exits, Some(&answer), || panic!(
                "asked"
            ))
            .is_empty()
        );
    }
}
