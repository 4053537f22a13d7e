//! What the facts mean, in plain words, and what to change. Each sentence is stated only
//! when the facts it rests on are known: a role the kernel log does not give, a run whose
//! kills cannot be told apart, a limit nobody printed, each leaves its sentence out. Nothing
//! here says what will happen next.

use super::{
    evidence::{DockerView, Evidence, JournalRead, Show},
    limit::LimitFacts,
    runs::Run,
};
use oomtrace_core::{
    output::{
        facts::{
            INIT_SHIMS, Role, only_marked, program, retries_allowed, retries_used_up, victim_name,
            victim_rss,
        },
        format::{abbreviate_id_bytes, at_most_retries, bytes, plural},
        human::{OOM_KILLER_DISABLED, who_ended},
    },
    report::{Container, Report, exact},
};

pub struct Facts<'a> {
    pub evidence: &'a Evidence,
    pub container: &'a Container,
    pub docker_oom_killed: Option<bool>,
    pub docker_running: Option<bool>,
    pub limit: Option<&'a LimitFacts>,
    pub runs: &'a [Run],
    pub show: Show,
}

/// The victims' names, each once, in the order they were killed.
fn names<'a>(kills: &[&'a Report]) -> Vec<&'a [u8]> {
    let mut names: Vec<&[u8]> = Vec::new();
    for kill in kills {
        if !names.contains(&victim_name(kill)) {
            names.push(victim_name(kill));
        }
    }
    names
}

/// `is` for `dd (3 kills)`, `are` for `dd and python3 (5 kills)`: the verb agrees with the
/// names [`victims`] joins, not with the count of kills.
fn is_are(kills: &[&Report]) -> &'static str {
    if names(kills).len() > 1 { "are" } else { "is" }
}

/// `dd (pid 4242)`, or `dd (3 kills)`, or `dd and python3 (5 kills)`.
fn victims(kills: &[&Report], show: Show) -> String {
    if let [one] = kills {
        return match one.victim.pid {
            Some(pid) => format!("{} (pid {pid})", show(victim_name(one))),
            None => show(victim_name(one)),
        };
    }
    let names = names(kills);
    let shown: Vec<String> = names.iter().take(3).map(|n| show(n)).collect();
    let mut text = match shown.as_slice() {
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
        [] => String::new(),
    };
    if names.len() > 3 {
        text.push_str(" and others");
    }
    format!("{text} ({} kills)", kills.len())
}

fn main_name(c: &Container, show: Show) -> String {
    c.main_command.as_deref().map_or_else(String::new, |m| {
        format!(" ({})", show(program(m).as_bytes()))
    })
}

pub fn tell(f: &Facts, meaning: &mut Vec<String>, advice: &mut Vec<String>) {
    let e = f.evidence;
    let show = f.show;
    let all: Vec<&Report> = e.kills.iter().collect();
    // The sources, and the verb endings that agree with them.
    let (sources, hold, go) = if e.journal == JournalRead::Read {
        ("the journal and the kernel log", "hold", "go")
    } else {
        ("the kernel log", "holds", "goes")
    };
    let since = e.since.map_or("", |_| " since the time asked for");
    let reason = |r: &str| {
        e.exits
            .iter()
            .filter(|x| x.runtime_oom_killed_reason == Some(r))
            .count()
    };
    let disabled = reason("oom_killer_disabled");
    if all.is_empty() {
        if disabled > 0 {
            meaning.push(nothing_killed(disabled));
        }
        // Docker's flag is the last recorded exit's where no later run has ended since.
        let latest_told =
            f.runs.last().and_then(|run| run.exit).is_some_and(|i| {
                e.exits[i].runtime_oom_killed_reason == Some("oom_killer_disabled")
            });
        if f.docker_oom_killed == Some(true) && !latest_told {
            meaning.push(format!(
                "Docker says OOMKilled=true, yet {sources} {hold} no OOM kill of this container{since}: Docker sets the flag on the kernel's OOM event, which on cgroup v1 also comes when the limit is reached and nothing is killed (--oom-kill-disable); or the kill is older than what the kernel log still holds."
            ));
        } else {
            let unless = if e.unattributed > 0 {
                ", unless it was one of the kills the kernel log names no cgroup for"
            } else {
                ""
            };
            meaning.push(if e.since.is_some() {
                format!(
                    "This container was not OOM-killed since the time asked for, as far as {sources} {go}{unless}."
                )
            } else {
                format!(
                    "This container was never OOM-killed as far back as {sources} {go}{unless}."
                )
            });
        }
        journal_advice(e, show, advice);
        return;
    }
    let role = |r: &Report| Role::of(&r.victim);
    let main_kills: Vec<&Report> = all.iter().copied().filter(|r| role(r).is_main()).collect();
    let mut child_kills: Vec<&Report> = all
        .iter()
        .copied()
        .filter(|r| matches!(role(r), Role::Other { .. }))
        .collect();
    // Victims of runs that ended with exit 0: not the main process, whatever the record says.
    let mut not_main: Vec<&Report> = Vec::new();
    let mut exit0 = 0;
    let mut unkilled = 0;
    for run in f.runs {
        let (Some(end), Some(indices)) = (&run.end, &run.kills) else {
            continue;
        };
        let kills: Vec<&Report> = indices.iter().map(|&i| &e.kills[i]).collect();
        let none_main = kills.iter().all(|r| !role(r).is_main());
        if end.oom_killed != Some(true) {
            continue;
        }
        let exit = run.exit.map(|i| &e.exits[i]);
        match end.exit_code {
            // Counted with the other runs whose exit says so.
            _ if kills.is_empty()
                && exit.is_some_and(|x| {
                    x.runtime_oom_killed_reason == Some("oom_killer_disabled")
                }) => {}
            _ if kills.is_empty() => unkilled += 1,
            // Exit 0 means the main process called exit: it was not killed, whatever the
            // victims' recorded roles say; a role saying otherwise leaves the sentence out.
            Some(0) if none_main => {
                exit0 += 1;
                not_main.extend(kills.iter().copied());
                if exit0 == 1 {
                    meaning.push(format!(
                        "Exit code 0 and OOMKilled=true hold at once: the OOM killer killed {}, not the container's main process; the main process{} went on and exited 0 by itself. Docker sets OOMKilled when any process in the container is OOM-killed, and reports the main process's exit code.",
                        victims(&kills, show),
                        main_name(f.container, show),
                    ));
                }
            }
            Some(code)
                if code != 0 && kills.iter().all(|r| matches!(role(r), Role::Other { .. })) =>
            {
                // The watch's record of the signal, where there is one, over what 137 can be.
                let killer = exit.and_then(|x| {
                    let killer = x
                        .killed_by
                        .as_ref()
                        .filter(|k| k.kind != Some("oom_killer"))?;
                    let mut text = String::from(": ");
                    who_ended(killer, x.container.runtime, show, &mut text);
                    Some(text)
                });
                meaning.push(format!(
                    "Exit code {code} with OOMKilled=true: the OOM kills recorded in that run hit {}, not the main process, so OOMKilled is about them; the exit code is how the main process itself ended{}.",
                    victims(&kills, show),
                    match killer {
                        Some(killer) => killer,
                        None if code == 137 => " (137 is a SIGKILL, as docker kill sends, or docker stop after its timeout)".into(),
                        None => String::new(),
                    }
                ));
            }
            _ => {}
        }
    }
    if disabled > 0 {
        meaning.push(nothing_killed(disabled));
    }
    if unkilled > 0 {
        meaning.push(format!(
            "Docker says OOMKilled=true for {} in which {sources} {hold} no OOM kill of this container: Docker sets the flag on the kernel's OOM event, which on cgroup v1 also comes when the limit is reached and nothing is killed.",
            if unkilled == 1 {
                "a run".to_owned()
            } else {
                format!("{unkilled} runs")
            }
        ));
    }
    if exit0 > 1 {
        meaning.push(format!("{exit0} runs ended that way."));
    }
    if !main_kills.is_empty() {
        let all_init = main_kills.iter().all(|r| role(r) == Role::MainPid1);
        let shim = f
            .container
            .main_command
            .as_deref()
            .map(program)
            .filter(|p| INIT_SHIMS.contains(p));
        let role = match (all_init, shim) {
            (true, _) => ", its PID 1".to_owned(),
            (false, Some(shim)) => format!(", the app {} runs as PID 1", show(shim.as_bytes())),
            _ => String::new(),
        };
        let n = main_kills.len();
        let unflagged = reason("oom_kill_not_flagged");
        meaning.push(format!(
            "The OOM killer killed the container's main process{role}: {}{}. Such a kill ends the container's run, and Docker reports it as exit code 137 (128 + SIGKILL) with OOMKilled=true{}.",
            victims(&main_kills, show),
            if n < all.len() {
                format!(", {n} of the {} kills", all.len())
            } else {
                String::new()
            },
            match unflagged {
                0 => String::new(),
                1 => ", though not always: it said OOMKilled=false for a run the OOM killer ended".into(),
                n => format!(", though not always: it said OOMKilled=false for {n} runs the OOM killer ended"),
            }
        ));
    }
    restarts(f, !main_kills.is_empty(), meaning);
    let exec: Vec<&Report> = child_kills
        .iter()
        .copied()
        .filter(|r| role(r) == Role::Other { from_outside: true })
        .collect();
    if !exec.is_empty() {
        meaning.push(format!(
            "{} {} entered the container from outside, as docker exec does: not one the container's own processes started.",
            // Begins with a word of ours: a sentence capitalised would change a process's name.
            if names(&exec).len() > 1 { "The processes" } else { "The process" },
            victims(&exec, show)
        ));
    }
    let marked = all.iter().filter(|r| only_marked(r)).count();
    if marked > 0 {
        meaning.push(format!(
            "{marked} of the victims {} already exiting, so the kernel only marked {}: no SIGKILL, and the kernel does not count {}.",
            if marked == 1 { "was" } else { "were" },
            if marked == 1 { "it" } else { "them" },
            if marked == 1 { "it" } else { "them" },
        ));
    }
    for kill in not_main {
        if !child_kills.iter().any(|k| std::ptr::eq(*k, kill)) {
            child_kills.push(kill);
        }
    }
    limits(
        f,
        &all,
        &main_kills,
        &child_kills,
        exit0 > 0,
        meaning,
        advice,
    );
    journal_advice(e, show, advice);
}

/// Runs Docker flagged though the kernel killed nothing: the watch saw the container reach its
/// limit with the OOM killer disabled.
fn nothing_killed(runs: usize) -> String {
    format!(
        "Docker said OOMKilled=true for {} in which nothing was killed: {OOM_KILLER_DISABLED} (--oom-kill-disable), and Docker sets the flag on that OOM event too. Neither the flag nor exit code 137 proves an OOM kill.",
        if runs == 1 {
            "a run".to_owned()
        } else {
            format!("{runs} runs")
        }
    )
}

/// The restarts Docker made, and its policy: facts, not what it will do next.
fn restarts(f: &Facts, main_killed: bool, meaning: &mut Vec<String>) {
    let c = f.container;
    let Some(count) = c.restart_count.filter(|&n| n > 0) else {
        return;
    };
    let mut text = format!(
        "Docker restarted the container {count} time{}",
        plural(u64::from(count))
    );
    // Docker keeps `Running` true while it restarts a container: stopped, it is not.
    let restarting = (f.docker_running == Some(false)).then_some(false);
    let last_exit = match &f.evidence.docker {
        DockerView::Present(meta) if meta.running == Some(false) => meta.last_exit,
        _ => None,
    };
    if let Some(used) = retries_used_up(c, Some(count), restarting, last_exit) {
        text.push_str(&format!(", then stopped restarting it: {used}"));
    } else if let Some(policy) = &c.restart_policy {
        text.push_str(&format!(" (restart policy {}", (f.show)(policy.as_bytes())));
        if let Some(max) = retries_allowed(c) {
            text.push_str(&format!(", {})", at_most_retries(max)));
        } else {
            text.push(')');
        }
    }
    if main_killed {
        text.push_str("; a restart keeps the same memory limit");
    }
    text.push('.');
    meaning.push(text);
}

fn limits(
    f: &Facts,
    all: &[&Report],
    main_kills: &[&Report],
    child_kills: &[&Report],
    exited_0: bool,
    meaning: &mut Vec<String>,
    advice: &mut Vec<String>,
) {
    let show = f.show;
    let Some(limit) = f.limit else { return };
    let memcg = limit
        .memcg
        .as_deref()
        .map(|m| show(&abbreviate_id_bytes(exact(m, limit.memcg_bytes.as_deref()))))
        .unwrap_or_default();
    let largest = all
        .iter()
        .filter_map(|r| victim_rss(r).map(|rss| (rss, *r)))
        .max_by_key(|(rss, _)| *rss);
    let peak = match (limit.peak_usage_bytes, limit.limit_bytes) {
        (Some(peak), Some(max)) => Some(format!(
            "peak usage {} of the {} limit",
            bytes(peak),
            bytes(max)
        )),
        _ => match (largest, limit.limit_bytes) {
            (Some((rss, r)), Some(max)) => Some(format!(
                "the largest victim, {}, held {} of the {} limit",
                show(victim_name(r)),
                bytes(rss),
                bytes(max)
            )),
            _ => None,
        },
    };
    match limit.whose {
        "host" => {
            meaning.push(format!(
                "The whole host ran out of memory, not a cgroup's limit: the kernel chose {} by OOM score among all the host's processes.",
                victims(all, show)
            ));
            advice.push(
                "Give every container a memory limit, so that one cannot take the whole host, or give the host more memory.".into(),
            );
            return;
        }
        "parent" => {
            meaning.push(format!(
                "The limit hit was that of {memcg}, a cgroup above the container's own: the container's own limit was not the one reached."
            ));
            advice.push(format!(
                "Raise the limit of {memcg}{}, or lower what the other cgroups under it use: this container's own limit is not the one that was reached.",
                peak.map(|p| format!(" ({p})")).unwrap_or_default()
            ));
            return;
        }
        _ => {}
    }
    // Every kill's role known, from its record or from the exit 0 that ended its run.
    if main_kills.is_empty() && child_kills.len() == all.len() {
        let several = is_are(child_kills) == "are";
        advice.push(format!(
            "The service itself is not what gets killed: {} {}. Give the container room for {} next to the service{}, or limit or fix {}{}.",
            victims(child_kills, show),
            is_are(child_kills),
            if several { "them" } else { "it" },
            peak.map(|p| format!(" ({p})")).unwrap_or_default(),
            if several {
                "those processes"
            } else {
                "that process"
            },
            if exited_0 {
                "; and alert on OOMKilled or on oomtrace's reports, since the exit code stays 0"
            } else {
                ""
            }
        ));
        return;
    }
    advice.push(match peak {
        Some(peak) => format!(
            "Raise the memory limit above the peak seen ({peak}), or make the workload use less. The kernel stopped the workload at the limit, so how much more it needs is not known: leave room above the peak."
        ),
        None => "Raise the memory limit, or make the workload use less: how close to the limit it came is not recorded.".into(),
    });
}

/// Without a journal, the next incident will be as poorly known as this one.
fn journal_advice(e: &Evidence, e_show: Show, advice: &mut Vec<String>) {
    if let JournalRead::Absent(path) = &e.journal {
        advice.push(format!(
            "Keep oomtrace watching: it writes the journal ({}), so the next kill is recorded with its container, its OOM context and how the container exited.",
            (e_show)(path.as_os_str().as_encoded_bytes())
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        evidence::{DockerView, Evidence},
        tests::{assert_screens, at, docker, evidence, exit, kill},
    };
    use oomtrace_core::report::{ContainerExit, KilledBy, Sender};

    fn runc() -> KilledBy {
        KilledBy {
            kind: Some("runtime"),
            signal: Some("SIGKILL"),
            time: at(5),
            oom_id: None,
            sender: Some(Sender {
                pid: 5120,
                tid: 5120,
                comm: "runc".into(),
                uid: Some(0),
                host_process: Some(true),
                ..Sender::default()
            }),
            after: None,
        }
    }

    /// An exit without a kill: Docker's flag, and why it says so where the watch knew.
    fn unkilled(secs: u64, flag: bool, reason: Option<&'static str>) -> ContainerExit {
        let mut e = exit(secs, 137, 0, 0);
        e.runtime_oom_killed = Some(flag);
        e.killed_by = Some(runc());
        e.runtime_oom_killed_reason = reason;
        e
    }

    /// Every exit is journaled now, most without a kill: each case, what the story must say
    /// and what it must not.
    #[test]
    fn exits_without_kills_are_told_once_and_as_the_watch_knew_them() {
        let disabled = Some("oom_killer_disabled");
        let child_then_kill = {
            let mut e = exit(5, 137, 0, 1);
            e.killed_by = Some(runc());
            e.runtime_oom_killed_reason = Some("earlier_oom_kill");
            e
        };
        let not_flagged = {
            let mut e = exit(5, 137, 0, 1);
            e.runtime_oom_killed = Some(false);
            e.runtime_oom_killed_reason = Some("oom_kill_not_flagged");
            e
        };
        let cases: Vec<(&str, Evidence, &[&str], &[&str])> = vec![
            (
                "the OOM killer disabled, Docker's state that run's",
                evidence(
                    vec![],
                    vec![unkilled(5, true, disabled)],
                    docker(false, 137, true, 0),
                ),
                &[
                    "Docker said OOMKilled=true for a run in which nothing was killed: the container hit its memory limit with the OOM killer disabled (--oom-kill-disable)",
                    "This container was never OOM-killed as far back as the journal and the kernel log go.",
                ],
                &["Docker says OOMKilled=true, yet"],
            ),
            (
                "the OOM killer disabled in earlier runs, Docker's flag now of a later one",
                evidence(
                    vec![],
                    vec![unkilled(5, true, disabled), unkilled(15, true, disabled)],
                    docker(false, 137, true, 3),
                ),
                &[
                    "Docker said OOMKilled=true for 2 runs in which nothing was killed",
                    "Docker says OOMKilled=true, yet the journal and the kernel log hold no OOM kill",
                ],
                &["never OOM-killed"],
            ),
            (
                "stopped and started, never near the limit",
                evidence(
                    vec![],
                    vec![unkilled(5, false, None), unkilled(15, false, None)],
                    docker(true, 0, false, 0),
                ),
                &["This container was never OOM-killed"],
                &["OOMKilled=true for", "nothing was killed"],
            ),
            (
                "flagged runs without kills beside one with a kill: said once",
                evidence(
                    vec![kill(4100, 20, Some(true))],
                    vec![
                        unkilled(5, true, None),
                        unkilled(15, true, None),
                        unkilled(16, true, disabled),
                        exit(21, 137, 0, 1),
                    ],
                    DockerView::Gone,
                ),
                &[
                    "Docker says OOMKilled=true for 2 runs in which the journal and the kernel log hold no OOM kill",
                    "Docker said OOMKilled=true for a run in which nothing was killed",
                ],
                &["for a run in which the journal"],
            ),
            (
                "a child killed, then docker kill, the sender recorded",
                evidence(
                    vec![kill(4242, 0, Some(false))],
                    vec![child_then_kill],
                    DockerView::Gone,
                ),
                &[
                    "the exit code is how the main process itself ended: SIGKILL from the runtime (runc, pid 5120), as docker kill does.",
                ],
                &["137 is a SIGKILL"],
            ),
            (
                "the main process OOM-killed, Docker's flag false",
                evidence(
                    vec![kill(4100, 0, Some(true))],
                    vec![not_flagged],
                    DockerView::Gone,
                ),
                &[
                    "Docker reports it as exit code 137 (128 + SIGKILL) with OOMKilled=true, though not always: it said OOMKilled=false for a run the OOM killer ended.",
                ],
                &[],
            ),
        ];
        assert_screens(cases);
    }
}
