//! `oomtrace explain CONTAINER`: one container's OOM story on one screen, from what Docker
//! says now, the journal a watch kept and the kernel log: what Docker says, what the kernel
//! did, why, what it means and what to change, and what is missing for want of a source.
//! It works for a container long removed (the journal keeps its name; the kernel log alone
//! knows it by id) and without a journal, saying what it therefore cannot know.
//!
//! Exit status: 0 when the story is told, a container never OOM-killed included; 1 when no
//! container matches, or no source (Docker, the journal, the kernel log) could be asked; 2
//! when CONTAINER is empty or the start of several containers' ids: the command as written
//! cannot be carried out, and giving more of the id fixes it.

mod ending;
mod evidence;
mod limit;
mod meaning;
mod render;
mod resolve;
mod runs;
mod story;

use std::{io::Write as _, path::PathBuf, process::ExitCode, time::SystemTime};

use jiff::tz::TimeZone;

use self::{
    evidence::{DockerView, Evidence, JournalRead},
    resolve::{Known, Resolution},
};
use crate::{
    attribution::{docker, enrich, runtime},
    cli::Args,
    commands::watch::journal_path,
    source::past::{self, Past},
};
use oomtrace_core::output::{
    escape::{visible, visible_bytes},
    format::short_id,
};

pub fn run(args: &Args, container: &str) -> ExitCode {
    let wanted = container.trim_start_matches('/');
    if wanted.is_empty() {
        crate::say!("explain needs a container: its name, or its id or the start of it");
        return ExitCode::from(2);
    }
    let now = SystemTime::now();
    let journal = journal_path(args);
    // Every record, whatever --since says: a container is found by its whole history.
    let past = past::gather(journal.as_deref(), None);
    let journal = past.journal.clone();
    let listing = list_docker(args);
    let known = known(&past, &listing);
    let (id, same_name) = match resolve::resolve(wanted, &known) {
        Resolution::One { id, mut same_name } => {
            same_name.retain(|other| oom_killed(&past, other));
            (id, same_name)
        }
        Resolution::None => {
            crate::say!("{}", unknown(wanted, &listing, &journal, &past));
            return ExitCode::FAILURE;
        }
        Resolution::Ambiguous(ids) => {
            let shown: Vec<&str> = ids
                .iter()
                .take(5)
                .map(|id| if wanted.len() >= 12 { id } else { short_id(id) })
                .collect();
            crate::say!(
                "\"{}\" is the start of the ids of {} containers ({}{}): give more of the id, or the container's name",
                visible(wanted),
                ids.len(),
                shown.join(", "),
                if ids.len() > 5 { ", …" } else { "" }
            );
            return ExitCode::from(2);
        }
    };
    let (view, cache) = docker_view(&listing, &id, &past);
    let since = args.since.map(|since| since.moment(now));
    let evidence = gather(past, &id, view, cache, journal, same_name, since);
    let explanation = story::build(evidence, if args.json { lossy } else { visible_bytes });
    let out = if args.json {
        let mut out = serde_json::to_vec(&explanation).unwrap_or_default();
        out.push(b'\n');
        out
    } else {
        render::render(&explanation, &TimeZone::system(), now).into_bytes()
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&out).and_then(|()| stdout.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            crate::say!("cannot write to stdout: {err}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

/// A name in a JSON sentence: the string a report has for it (its exact bytes stay in the
/// report's `_hex` fields).
fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What Docker's list says, or why it could not be asked.
pub(crate) enum Listing {
    NotAsked,
    Unreachable(String),
    Listed {
        socket: PathBuf,
        /// Every container, running or not: its id and name.
        containers: Vec<(String, Option<String>)>,
    },
}

pub(crate) fn list_docker(args: &Args) -> Listing {
    if args.no_enrich {
        return Listing::NotAsked;
    }
    let docker_host = std::env::var("DOCKER_HOST").ok();
    let socket = match docker::socket_path(args.docker_socket.as_deref(), docker_host.as_deref()) {
        Ok(socket) => socket,
        Err(why) => return Listing::Unreachable(why),
    };
    match docker::ask(&socket, docker::WAIT, docker::containers(&socket)) {
        Ok(containers) => Listing::Listed { socket, containers },
        Err(why) => Listing::Unreachable(why),
    }
}

/// Every container a source knows of, for [`resolve::resolve`].
fn known(past: &Past, listing: &Listing) -> Vec<Known> {
    let mut known: Vec<Known> = past
        .kills
        .iter()
        .filter_map(|r| r.container.as_ref().map(|c| (c, r.time)))
        .chain(past.exits.iter().map(|e| (&e.container, e.time)))
        .map(|(c, seen)| Known {
            id: c.id.clone(),
            name: c.name.clone(),
            seen,
            docker: false,
        })
        .collect();
    if let Listing::Listed { containers, .. } = listing {
        known.extend(containers.iter().map(|(id, name)| Known {
            id: id.clone(),
            name: name.clone(),
            seen: None,
            docker: true,
        }));
    }
    known
}

/// Whether the records hold an OOM kill in the container `id`: every container's death is
/// journaled, so having had the name is not enough to be worth naming beside it.
fn oom_killed(past: &Past, id: &str) -> bool {
    past.kills
        .iter()
        .any(|r| r.container.as_ref().is_some_and(|c| c.id == id))
        || past
            .exits
            .iter()
            .any(|e| e.container.id == id && !e.kills.is_empty())
}

/// What Docker says about the container `id` now, and the answer to fill its kills from.
fn docker_view(listing: &Listing, id: &str, past: &Past) -> (DockerView, Option<runtime::Cache>) {
    match listing {
        Listing::NotAsked => (DockerView::NotAsked, None),
        Listing::Unreachable(why) => (DockerView::Unreachable(why.clone()), None),
        Listing::Listed { socket, containers } => {
            let runtime = past
                .kills
                .iter()
                .filter_map(|r| r.container.as_ref())
                .find(|c| c.id == id)
                .map(|c| c.runtime);
            if !containers.iter().any(|(known, _)| known == id) {
                let gone = runtime.is_none_or(|r| r == "docker");
                return (
                    if gone {
                        DockerView::Gone
                    } else {
                        DockerView::NotDocker
                    },
                    None,
                );
            }
            let ids = [id.to_owned()];
            match docker::ask(socket, docker::WAIT, docker::inspect_now(socket, &ids, &[])) {
                Ok(cache) => match cache.lookup(id) {
                    Some(meta) => (DockerView::Present(Box::new(meta)), Some(cache)),
                    // Listed a moment ago, removed since.
                    None => (DockerView::Gone, None),
                },
                Err(why) => (DockerView::Unreachable(why), None),
            }
        }
    }
}

/// The evidence about the container `id`: its kills and exits since `since`, and what the
/// sources could not give.
fn gather(
    past: Past,
    id: &str,
    docker: DockerView,
    cache: Option<runtime::Cache>,
    journal: JournalRead,
    same_name: Vec<String>,
    since: Option<SystemTime>,
) -> Evidence {
    let recent = |time: Option<SystemTime>| since.is_none_or(|s| time.is_some_and(|t| t >= s));
    let mut all = past.kills;
    if let Some(cache) = &cache {
        // Names what the records lack, and claims a `--cgroup-parent` container's kills,
        // which only Docker can say are its.
        for kill in &mut all {
            if kill.container.is_none() || kill.container.as_ref().is_some_and(|c| c.id == id) {
                enrich::fill_missing(kill, enrich::Caches::docker_only(Some(cache)));
            }
        }
    }
    let unattributed = all
        .iter()
        .filter(|r| r.container.is_none() && r.cgroup.path.is_none() && recent(r.time))
        .count();
    let kills: Vec<_> = all
        .into_iter()
        .filter(|r| r.container.as_ref().is_some_and(|c| c.id == id) && recent(r.time))
        .collect();
    let mut exits: Vec<_> = past
        .exits
        .into_iter()
        .filter(|e| e.container.id == id && recent(e.time))
        .collect();
    exits.sort_by_key(|e| e.time);
    Evidence {
        id: id.to_owned(),
        kills,
        exits,
        docker,
        journal,
        unattributed,
        gaps: past.gaps,
        same_name,
        since,
    }
}

/// One sentence: no source knows the container, and which sources could not be asked and
/// why; or, when none could be, that the container cannot be told.
fn unknown(wanted: &str, listing: &Listing, journal: &JournalRead, past: &Past) -> String {
    let mut asked = Vec::new();
    let mut not = Vec::new();
    match listing {
        Listing::Listed { .. } => asked.push("Docker".to_owned()),
        Listing::NotAsked => not.push("Docker was not asked (--no-enrich)".to_owned()),
        Listing::Unreachable(why) => not.push(format!("Docker does not answer ({why})")),
    }
    match journal {
        JournalRead::Read => asked.push("the journal".into()),
        JournalRead::Absent(path) => not.push(format!("there is no journal at {}", path.display())),
        JournalRead::Unreadable(denied) => not.push(denied.sentence()),
        JournalRead::NotRead => not.push("the journal was not read (--no-journal)".into()),
    }
    if past.kernel_log {
        asked.push("the kernel log".into());
    } else {
        // The gap says why, and what to do.
        let why = past
            .gaps
            .iter()
            .find(|g| g.starts_with("the kernel log cannot be read"))
            .cloned();
        not.push(why.unwrap_or_else(|| "the kernel log cannot be read".into()));
    }
    let wanted = visible(wanted);
    let Some((last, rest)) = asked.split_last() else {
        return format!(
            "no source could be asked about \"{wanted}\": {}",
            not.join("; ")
        );
    };
    let mut sentence = format!(
        "no container named \"{wanted}\" or with an id starting with \"{wanted}\" is known to "
    );
    if !rest.is_empty() {
        sentence.push_str(&rest.join(", "));
        sentence.push_str(" or ");
    }
    sentence.push_str(last);
    if !not.is_empty() {
        sentence.push_str("; ");
        sentence.push_str(&not.join("; "));
        if !journal.is_read() && past.kernel_log {
            sentence.push_str(" (the kernel log knows containers by id only)");
        }
    }
    sentence
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use jiff::tz::TimeZone;

    use super::{
        evidence::{DockerView, Evidence, JournalRead},
        render::render,
        story::build,
    };
    use crate::attribution::runtime::ContainerMeta;
    use oomtrace_core::{
        output::escape::visible_bytes,
        report::{Container, ContainerExit, MemcgStat, OomContext, Report, TopTask},
        testing,
    };

    // The fixtures of every explain test: a container `web` and its kills, exits and Docker.

    pub(super) const ID: &str = "4f2c5e6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80";
    pub(super) const MIB: u64 = 1 << 20;

    pub(super) fn at(secs: u64) -> Option<SystemTime> {
        testing::report()
            .time
            .map(|t| t + Duration::from_secs(secs))
    }

    pub(super) fn container() -> Container {
        Container {
            runtime: "docker",
            id: ID.into(),
            name: Some("web".into()),
            image: Some("oomtrace-busybox:latest".into()),
            main_pid: Some(4100),
            main_command: Some("sh".into()),
            memory_limit_bytes: Some(64 * MIB),
            ..Container::default()
        }
    }

    /// A kill in `web` at `secs`: `main` says whether it was the main process (`None`: as the
    /// kernel log tells it, without a role).
    pub(super) fn kill(pid: u32, secs: u64, main: Option<bool>) -> Report {
        let mut r = testing::report();
        r.time = at(secs);
        r.victim.pid = Some(pid);
        r.victim.tid = Some(pid);
        r.victim.comm = Some("dd".into());
        r.victim.rss_anon_bytes = Some(63 * MIB);
        r.victim.rss_file_bytes = Some(0);
        r.victim.is_container_main = main;
        r.victim.is_container_init = main;
        r.victim.parent_in_container = main.map(|_| true);
        r.cgroup.path = Some(format!("/docker/{ID}"));
        r.container = Some(container());
        r.oom = Some(OomContext {
            kind: Some("killed"),
            memcg: Some(format!("/docker/{ID}")),
            memcg_limit_bytes: Some(64 * MIB),
            memcg_usage_bytes: Some(64 * MIB - 4096 * (secs % 7)),
            global: Some(false),
            memcg_stat: Some(MemcgStat {
                anon_bytes: Some(63 * MIB),
                ..MemcgStat::default()
            }),
            top_tasks: Some(vec![TopTask {
                pid,
                comm: "dd".into(),
                comm_bytes: None,
                rss_bytes: 63 * MIB,
            }]),
            ..OomContext::default()
        });
        if main.is_none() {
            r.source = "kmsg";
        }
        r
    }

    pub(super) fn exec_child(pid: u32, secs: u64) -> Report {
        let mut r = kill(pid, secs, Some(false));
        r.victim.parent_in_container = Some(false);
        r
    }

    pub(super) fn exit(secs: u64, code: i64, restarts: u32, kills: usize) -> ContainerExit {
        ContainerExit {
            schema: 1,
            event: "container_exit",
            time: at(secs),
            container: container(),
            exit_code: Some(code),
            runtime_oom_killed: Some(true),
            restart_count: Some(restarts),
            restarting: None,
            kills: vec![None; kills],
            killed_by: None,
            runtime_oom_killed_reason: None,
            host: None,
            last_kill: None,
        }
    }

    pub(super) fn docker(running: bool, code: i64, oom: bool, restarts: u32) -> DockerView {
        DockerView::Present(Box::new(ContainerMeta {
            container: Container {
                runtime: "docker",
                id: ID.into(),
                name: Some("web".into()),
                image: Some("oomtrace-busybox:latest".into()),
                main_pid: running.then_some(4100),
                memory_limit_bytes: Some(64 * MIB),
                main_command: Some("sh".into()),
                restart_count: Some(restarts),
                ..Container::default()
            },
            running: Some(running),
            last_exit: Some(code),
            last_oom_killed: Some(oom),
            ..ContainerMeta::default()
        }))
    }

    pub(super) fn evidence(
        kills: Vec<Report>,
        exits: Vec<ContainerExit>,
        docker: DockerView,
    ) -> Evidence {
        Evidence {
            id: ID.into(),
            kills,
            exits,
            docker,
            journal: JournalRead::Read,
            unattributed: 0,
            gaps: Vec::new(),
            same_name: Vec::new(),
            since: None,
        }
    }

    pub(super) fn human(evidence: Evidence) -> String {
        let now = at(3600).unwrap();
        render(&build(evidence, visible_bytes), &TimeZone::UTC, now)
    }

    pub(super) fn restart_loop() -> Evidence {
        let mut e = evidence(
            (0..4)
                .map(|n| kill(100 + n, 10 * n as u64, Some(true)))
                .collect(),
            vec![
                exit(1, 137, 1, 1),
                exit(11, 137, 2, 1),
                exit(21, 137, 3, 1),
                exit(31, 137, 3, 1),
            ],
            docker(false, 137, true, 3),
        );
        if let DockerView::Present(meta) = &mut e.docker {
            meta.container.restart_policy = Some("on-failure".into());
            meta.container.restart_max_retries = Some(3);
        }
        e
    }

    /// The restart loop, seen while Docker's count is `restarts` and the container runs or not.
    pub(super) fn restart_loop_at(restarts: u32, running: bool) -> Evidence {
        let mut e = restart_loop();
        e.kills.truncate(restarts as usize + 1);
        e.exits.truncate(restarts as usize);
        e.docker = docker(running, 137, true, restarts);
        if let DockerView::Present(meta) = &mut e.docker {
            meta.container.restart_policy = Some("on-failure".into());
            meta.container.restart_max_retries = Some(3);
        }
        e
    }

    /// A kill of `comm`, not the container's main process.
    pub(super) fn kill_of(comm: &str, pid: u32, secs: u64) -> Report {
        let mut r = kill(pid, secs, Some(false));
        r.victim.comm = Some(comm.into());
        r
    }

    /// Each case: the evidence, what the screen must say, and what it must not.
    #[test]
    fn the_story_follows_from_the_facts() {
        let mut parent = kill(100, 0, Some(true));
        parent.oom.as_mut().unwrap().memcg = Some("/docker".into());
        let mut global = kill(100, 0, Some(true));
        global.oom.as_mut().unwrap().global = Some(true);
        let mut no_journal = evidence(vec![kill(4242, 0, None)], vec![], docker(false, 0, true, 0));
        no_journal.journal = JournalRead::Absent("/var/lib/oomtrace/journal.jsonl".into());
        let mut unattributed = evidence(vec![], vec![], docker(true, 0, false, 0));
        unattributed.unattributed = 3;
        let cases: Vec<(&str, Evidence, &[&str], &[&str])> = vec![
            (
                "seed 000, removed, from the journal",
                evidence(
                    vec![exec_child(4242, 0)],
                    vec![exit(5, 0, 0, 1)],
                    DockerView::Gone,
                ),
                &[
                    "web  (docker container 4f2c5e6a7b8c, image oomtrace-busybox:latest)",
                    "Docker no longer knows this container: it was removed.",
                    "04:47:35  exited 0, OOMKilled=true, 0 restarts so far",
                    "What the kernel did: 1 OOM kill\n  04:47:30  dd (pid 4242)  not the main process, entered from outside (docker exec)  rss 63.0 MiB\n",
                    "The container's own memory limit was hit: 64.0 MiB",
                    "Exit code 0 and OOMKilled=true hold at once: the OOM killer killed dd (pid 4242), not the container's main process; the main process (sh) went on and exited 0 by itself.",
                    // The name as the kernel gave it, never capitalised.
                    "The process dd (pid 4242) entered the container from outside, as docker exec does",
                    "The service itself is not what gets killed: dd (pid 4242) is.",
                    "since the exit code stays 0",
                ],
                &["Raise the memory limit above", "cannot know"],
            ),
            (
                "seed 000 from the kernel log and Docker",
                no_journal,
                &[
                    "Exited 0, OOMKilled=true.",
                    "main process or not: unknown",
                    "Exit code 0 and OOMKilled=true hold at once: the OOM killer killed dd (pid 4242), not the container's main process",
                    "Without the journal, how each earlier run ended",
                    "Keep oomtrace watching",
                    "The service itself is not what gets killed: dd (pid 4242) is.",
                ],
                &["Raise the memory limit above"],
            ),
            (
                "a restart loop",
                restart_loop(),
                &[
                    "Exited 137, OOMKilled=true.",
                    "Docker stopped restarting it: on-failure:3 used all 3 retries.",
                    "04:47:30  dd (pid 100)  PID 1, the main process",
                    "04:47:40  dd (pid 101)",
                    "04:47:50  dd (pid 102)",
                    "04:48:00  dd (pid 103)",
                    "A watch recorded 4 exits:",
                    "main process, its PID 1: dd (4 kills)",
                    "Docker restarted the container 3 times, then stopped restarting it: on-failure:3 used all 3 retries; a restart keeps the same memory limit.",
                    "Raise the memory limit above the peak seen (peak usage 64.0 MiB of the 64.0 MiB limit)",
                ],
                &["Exit code 0", "The service itself", "restarts so far."],
            ),
            (
                "a restart loop Docker is still in",
                restart_loop_at(2, true),
                &[
                    "Restart policy on-failure (at most 3 retries); 2 restarts so far.",
                    "Docker restarted the container 2 times (restart policy on-failure, at most 3 retries)",
                ],
                &["stopped restarting", "used all"],
            ),
            (
                "on-failure:3 used up by a run that exited 0",
                {
                    let mut e = restart_loop();
                    if let DockerView::Present(meta) = &mut e.docker {
                        meta.last_exit = Some(0);
                    }
                    e
                },
                &["Restart policy on-failure (at most 3 retries); 3 restarts so far."],
                &["stopped restarting", "used all"],
            ),
            (
                "several programs killed, none the main process",
                evidence(
                    vec![
                        kill_of("tail", 10, 0),
                        kill_of("dd", 11, 1),
                        kill_of("dd", 12, 2),
                    ],
                    vec![],
                    docker(true, 0, false, 0),
                ),
                &[
                    "The service itself is not what gets killed: tail and dd (3 kills) are. Give the container room for them next to the service (peak usage 64.0 MiB of the 64.0 MiB limit), or limit or fix those processes.",
                ],
                &[" is. ", "room for it ", "that process"],
            ),
            (
                "one program killed three times, not the main process",
                evidence(
                    (0..3).map(|n| kill_of("dd", 10 + n, n as u64)).collect(),
                    vec![],
                    docker(true, 0, false, 0),
                ),
                &[
                    "The service itself is not what gets killed: dd (3 kills) is. Give the container room for it next to the service",
                    "or limit or fix that process.",
                ],
                &[" are. "],
            ),
            (
                "never killed",
                evidence(vec![], vec![], docker(true, 0, false, 0)),
                &[
                    "Running, main process sh (pid 4100); OOMKilled=false for this run.",
                    "What the kernel did: no OOM kill of this container is recorded",
                    "never OOM-killed as far back as the journal and the kernel log go.",
                ],
                &["Why", "What to change"],
            ),
            (
                "never killed, as far as the log can tell",
                unattributed,
                &[
                    "unless it was one of the kills the kernel log names no cgroup for",
                    "3 kills in the kernel log name no cgroup",
                ],
                &[],
            ),
            (
                "OOMKilled without a kill",
                evidence(vec![], vec![], docker(false, 0, true, 0)),
                &[
                    "Docker says OOMKilled=true, yet the journal and the kernel log hold no OOM kill",
                ],
                &["never OOM-killed"],
            ),
            (
                "a child killed, then docker kill",
                evidence(
                    vec![kill(4242, 0, Some(false))],
                    vec![exit(5, 137, 0, 1)],
                    DockerView::Gone,
                ),
                &[
                    "Exit code 137 with OOMKilled=true: the OOM kills recorded in that run hit dd (pid 4242), not the main process",
                ],
                &["Exit code 0"],
            ),
            (
                "a parent's limit",
                evidence(vec![parent], vec![], DockerView::Gone),
                &[
                    "A parent cgroup's limit was hit, not the container's own: /docker",
                    "Raise the limit of /docker",
                ],
                &["Raise the memory limit"],
            ),
            (
                "the host out of memory",
                evidence(vec![global], vec![], DockerView::Gone),
                &[
                    "The whole host ran out of memory",
                    "Give every container a memory limit",
                ],
                &["limit was hit:"],
            ),
            (
                "Docker away",
                evidence(
                    vec![kill(1, 0, Some(true))],
                    vec![],
                    DockerView::Unreachable("connection refused at /x".into()),
                ),
                &[
                    "Docker does not answer (connection refused at /x).",
                    "As Docker said while it ran: no restart policy; memory limit 64.0 MiB.",
                ],
                &[],
            ),
        ];
        assert_screens(cases);
    }

    /// Each case's human screen holds every `want` sentence and none of the `unwanted`.
    /// Sentences wrap: compared with every run of white space as one space.
    pub(super) fn assert_screens(cases: Vec<(&str, Evidence, &[&str], &[&str])>) {
        let squash = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
        for (name, evidence, want, unwanted) in cases {
            let screen = human(evidence);
            let text = squash(&screen);
            for part in want {
                assert!(
                    text.contains(&squash(part)),
                    "{name}: no {part:?} in\n{screen}"
                );
            }
            for part in unwanted {
                assert!(
                    !text.contains(&squash(part)),
                    "{name}: {part:?} in\n{screen}"
                );
            }
        }
    }

    #[test]
    fn json_is_one_object_with_exact_strings() {
        let mut e = evidence(
            vec![exec_child(4242, 0)],
            vec![exit(5, 0, 0, 1)],
            DockerView::Gone,
        );
        e.kills[0].victim.comm = Some("\x1b[2Jevil".into());
        let screen = human(e.clone());
        assert!(!screen.contains('\x1b'), "{screen}");
        assert!(screen.contains("\\x1b[2Jevil (pid 4242)"), "{screen}");
        let text =
            serde_json::to_string(&build(e, |b| String::from_utf8_lossy(b).into_owned())).unwrap();
        assert!(!text.contains('\n'));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["schema"], 1);
        assert_eq!(json["event"], "explanation");
        assert_eq!(json["container"]["id"], ID);
        assert_eq!(json["docker"]["state"], "gone");
        assert_eq!(json["kills"][0]["victim"]["comm"], "\x1b[2Jevil");
        assert_eq!(json["exits"][0]["exit_code"], 0);
        assert_eq!(json["limit"]["whose"], "own");
        assert_eq!(json["limit"]["limit_bytes"], 64 * MIB);
        assert!(json["meaning"][0].as_str().unwrap().contains("\x1b[2Jevil"));
        assert!(json["since"].is_null());
    }

    #[test]
    fn only_containers_with_kills_are_named_as_sharing_the_name() {
        use super::oom_killed;
        use crate::source::past::Past;

        let other = |id: &str, kills: usize| {
            let mut e = exit(5, 0, 0, kills);
            e.container.id = id.into();
            e
        };
        let past = Past {
            kills: vec![kill(1, 0, Some(true))],
            exits: vec![other("stopped", 0), other("killed", 1)],
            ..Past::default()
        };
        for (id, want) in [
            (ID, true),
            ("killed", true),
            ("stopped", false),
            ("none", false),
        ] {
            assert_eq!(oom_killed(&past, id), want, "{id}");
        }
    }

    #[test]
    fn no_match_names_the_sources_asked_and_why_the_others_were_not() {
        use super::{Listing, unknown};
        use oomtrace_core::journal::Denied;

        use crate::source::past::Past;

        const JOURNAL: &str = "/var/lib/oomtrace/journal.jsonl";
        const LOG: &str = "the kernel log cannot be read: reading /dev/kmsg needs root or CAP_SYSLOG: run oomtrace with sudo";
        let denied = JournalRead::Unreadable(Denied {
            file: JOURNAL.into(),
            older: false,
            why: "permission denied (its directory /var/lib/oomtrace is root's, mode 0700): run oomtrace as root, or give --journal a copy you can read".into(),
        });
        let listed = || Listing::Listed {
            socket: "/run/docker.sock".into(),
            containers: Vec::new(),
        };
        let past = |log: bool| Past {
            kernel_log: log,
            gaps: if log { Vec::new() } else { vec![LOG.into()] },
            ..Past::default()
        };
        let none = "no container named \"x\" or with an id starting with \"x\" is known to";
        let cases = [
            (
                listed(),
                JournalRead::Read,
                true,
                format!("{none} Docker, the journal or the kernel log"),
            ),
            (
                listed(),
                denied.clone(),
                true,
                format!(
                    "{none} Docker or the kernel log; cannot read the journal at {JOURNAL}: permission denied (its directory /var/lib/oomtrace is root's, mode 0700): run oomtrace as root, or give --journal a copy you can read (the kernel log knows containers by id only)"
                ),
            ),
            (
                listed(),
                JournalRead::Absent(JOURNAL.into()),
                true,
                format!(
                    "{none} Docker or the kernel log; there is no journal at {JOURNAL} (the kernel log knows containers by id only)"
                ),
            ),
            (
                Listing::NotAsked,
                JournalRead::NotRead,
                true,
                format!(
                    "{none} the kernel log; Docker was not asked (--no-enrich); the journal was not read (--no-journal) (the kernel log knows containers by id only)"
                ),
            ),
            (
                listed(),
                JournalRead::Read,
                false,
                format!("{none} Docker or the journal; {LOG}"),
            ),
            (
                Listing::Unreachable("permission denied on /run/docker.sock".into()),
                denied.clone(),
                false,
                format!(
                    "no source could be asked about \"x\": Docker does not answer (permission denied on /run/docker.sock); cannot read the journal at {JOURNAL}: permission denied (its directory /var/lib/oomtrace is root's, mode 0700): run oomtrace as root, or give --journal a copy you can read; {LOG}"
                ),
            ),
        ];
        for (listing, journal, log, want) in cases {
            assert_eq!(unknown("x", &listing, &journal, &past(log)), want);
        }
    }
}
