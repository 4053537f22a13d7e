use std::time::{Duration, SystemTime};

use jiff::tz::TimeZone;

use super::{
    evidence::{DockerView, Evidence, JournalRead},
    render::render,
    resolve::{Known, Resolution, resolve},
    runs::{End, split},
    story::build,
};
use crate::attribution::docker::ContainerMeta;
use oomtrace_core::{
    output::escape::visible_bytes,
    report::{Container, ContainerExit, MemcgStat, OomContext, Report, TopTask},
    testing,
};

const ID: &str = "4f2c5e6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80";
const MIB: u64 = 1 << 20;

fn at(secs: u64) -> Option<SystemTime> {
    testing::report()
        .time
        .map(|t| t + Duration::from_secs(secs))
}

fn container() -> Container {
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
fn kill(pid: u32, secs: u64, main: Option<bool>) -> Report {
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

fn exec_child(pid: u32, secs: u64) -> Report {
    let mut r = kill(pid, secs, Some(false));
    r.victim.parent_in_container = Some(false);
    r
}

fn exit(secs: u64, code: i64, restarts: u32, kills: usize) -> ContainerExit {
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
        host: None,
        last_kill: None,
    }
}

fn docker(running: bool, code: i64, oom: bool, restarts: u32) -> DockerView {
    DockerView::Present(ContainerMeta {
        name: Some("web".into()),
        image: Some("oomtrace-busybox:latest".into()),
        main_pid: running.then_some(4100),
        memory_limit: Some(64 * MIB),
        main_command: Some("sh".into()),
        running: Some(running),
        last_exit: Some(code),
        last_oom_killed: Some(oom),
        restart_count: Some(restarts),
        ..ContainerMeta::default()
    })
}

fn evidence(kills: Vec<Report>, exits: Vec<ContainerExit>, docker: DockerView) -> Evidence {
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

fn human(evidence: Evidence) -> String {
    let now = at(3600).unwrap();
    render(&build(evidence, visible_bytes), &TimeZone::UTC, now)
}

fn restart_loop() -> Evidence {
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
        meta.restart_policy = Some("on-failure".into());
        meta.restart_max_retries = Some(3);
    }
    e
}

/// The restart loop, seen while Docker's count is `restarts` and the container runs or not.
fn restart_loop_at(restarts: u32, running: bool) -> Evidence {
    let mut e = restart_loop();
    e.kills.truncate(restarts as usize + 1);
    e.exits.truncate(restarts as usize);
    e.docker = docker(running, 137, true, restarts);
    if let DockerView::Present(meta) = &mut e.docker {
        meta.restart_policy = Some("on-failure".into());
        meta.restart_max_retries = Some(3);
    }
    e
}

/// A kill of `comm`, not the container's main process.
fn kill_of(comm: &str, pid: u32, secs: u64) -> Report {
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
            &["Docker says OOMKilled=true, yet the journal and the kernel log hold no OOM kill"],
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
    // Sentences wrap: compared with every run of white space as one space.
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
fn a_run_s_kills_are_known_only_where_no_boundary_can_be_missing() {
    let killed = |main| End {
        exit_code: Some(if main { 137 } else { 0 }),
        oom_killed: Some(true),
    };
    let e = restart_loop();
    let runs = split(&e);
    assert_eq!(
        runs.len(),
        4,
        "Docker's state is the last exit recorded: {runs:?}"
    );
    assert_eq!(runs[1].kills, Some(vec![1]));
    assert_eq!(runs[3].end, Some(killed(true)));

    // Never restarted, no exit recorded: every kill is in the one run Docker ended.
    let e = evidence(vec![kill(1, 0, None)], vec![], docker(false, 0, true, 0));
    let runs = split(&e);
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].end.clone(), runs[0].kills.clone()),
        (Some(killed(false)), Some(vec![0]))
    );

    // Restarted, nothing recorded: which run a kill ended is not known.
    let e = evidence(vec![kill(1, 0, None)], vec![], docker(false, 137, true, 2));
    assert_eq!(split(&e)[0].kills, None);

    // A recorded exit whose watch counted fewer kills than its window holds.
    let e = evidence(
        vec![kill(1, 0, None), kill(2, 3, Some(false))],
        vec![exit(5, 0, 0, 1)],
        DockerView::Gone,
    );
    assert_eq!(split(&e)[0].kills, None);
}

#[test]
fn a_container_is_found_as_docker_finds_it() {
    let other = "4f2c99".to_owned() + &"0".repeat(58);
    let old = "77".repeat(32);
    let k = |id: &str, name: Option<&str>, secs: Option<u64>, docker: bool| Known {
        id: id.into(),
        name: name.map(str::to_owned),
        seen: secs.and_then(at),
        docker,
    };
    let known = vec![
        k(ID, Some("web"), None, true),
        k(&old, Some("web"), Some(5), false),
        k(&other, Some("db"), Some(1), false),
        k(&"aa".repeat(32), Some("gone"), Some(1), false),
        k(&"ab".repeat(32), Some("gone"), Some(9), false),
    ];
    let one = |id: &str, same: &[&str]| Resolution::One {
        id: id.into(),
        same_name: same.iter().map(|s| s.to_string()).collect(),
    };
    let cases = [
        ("web", one(ID, &[&old])),
        ("/web", one(ID, &[&old])),
        ("db", one(&other, &[])),
        // Without Docker's, the newest container that had the name.
        ("gone", one(&"ab".repeat(32), &[&"aa".repeat(32)])),
        ("4f2c5", one(ID, &[])),
        (ID, one(ID, &[])),
        (
            "4f2c",
            Resolution::Ambiguous(vec![ID.into(), other.clone()]),
        ),
        ("77", one(&old, &[])),
        ("nosuch", Resolution::None),
        ("", Resolution::None),
    ];
    for (wanted, want) in cases {
        assert_eq!(resolve(wanted, &known), want, "{wanted:?}");
    }
}

#[test]
fn a_screen_wraps_at_100_columns() {
    let text = human(restart_loop());
    for line in text.lines() {
        assert!(line.chars().count() <= 100, "{line:?}");
        let first = line.split_whitespace().next().unwrap_or_default();
        assert!(
            !first.ends_with("iB"),
            "a size split from its unit: {line:?}"
        );
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
