//! The explanation as one screen for a person: a heading, then what Docker says, what the
//! kernel did, why, what it means, what to change and what is missing. Times are local as
//! in the human view; every untrusted string is escaped (the sentences were built with
//! [`visible`]).

use std::{fmt::Write as _, time::SystemTime};

use jiff::tz::TimeZone;

use super::{ending, story::Explanation};
use oomtrace_core::{
    output::{
        escape::{visible, visible_bytes},
        facts::{
            Role, only_marked, program, retries_allowed, retries_used_up, victim_name, victim_rss,
        },
        format::{
            at_most_retries, bytes, clock, memory, plural, restarts_so_far, short_id, shown_path,
            top_tasks,
        },
    },
    report::{Report, exact},
};

/// Kills listed one by one; past this, the first and the last few.
const MAX_LISTED: usize = 12;
/// Where sentences wrap.
const WIDTH: usize = 100;

pub fn render(x: &Explanation, tz: &TimeZone, now: SystemTime) -> String {
    let time = |t: Option<SystemTime>| clock(tz, t, now);
    let mut out = String::with_capacity(4096);
    heading(x, &mut out);
    out.push_str("\nWhat Docker says\n");
    for line in docker_lines(x, &time) {
        wrap(&line, &mut out);
    }
    let n = x.kills.len();
    let _ = write!(out, "\nWhat the kernel did: ");
    if n == 0 {
        out.push_str("no OOM kill of this container is recorded");
    } else {
        let _ = write!(out, "{n} OOM kill{}", plural(n as u64));
    }
    if x.since.is_some() {
        out.push_str(" since the time asked for");
    }
    out.push('\n');
    for (i, kill) in x.kills.iter().enumerate() {
        if n > MAX_LISTED && (5..n - 5).contains(&i) {
            if i == 5 {
                let _ = writeln!(
                    out,
                    "  … {} more (oomtrace history --container {} lists every one)",
                    n - 10,
                    short_id(&x.container.id)
                );
            }
            continue;
        }
        kill_line(kill, &time, &mut out);
    }
    let why = why_lines(x, &time);
    for (title, lines) in [
        ("Why", &why),
        ("What it means", &x.meaning),
        (
            "What to change (a recommendation, from the facts above)",
            &x.advice,
        ),
        ("What oomtrace cannot know here", &x.missing),
    ] {
        if lines.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}");
        for line in lines {
            wrap(&capitalized(line), &mut out);
        }
    }
    out
}

fn heading(x: &Explanation, out: &mut String) {
    let c = &x.container;
    match &c.name {
        Some(name) => {
            let _ = write!(
                out,
                "{}  ({} container {}",
                visible(name),
                c.runtime,
                short_id(&c.id)
            );
        }
        None => {
            let _ = write!(
                out,
                "{} container {} (name not known",
                c.runtime,
                short_id(&c.id)
            );
        }
    }
    if let Some(image) = &c.image {
        let _ = write!(out, ", image {}", visible(image));
    }
    out.push_str(")\n");
    if !x.same_name.is_empty() {
        let ids: Vec<&str> = x.same_name.iter().map(|id| short_id(id)).collect();
        wrap(
            &format!(
                "Earlier containers with this name had OOM kills too: {} (oomtrace explain ID tells theirs).",
                ids.join(", ")
            ),
            out,
        );
    }
}

fn docker_lines(x: &Explanation, time: &dyn Fn(Option<SystemTime>) -> String) -> Vec<String> {
    let d = &x.docker;
    let c = &x.container;
    let mut lines = Vec::new();
    let policy = |count: Option<u32>| {
        let mut text = match &c.restart_policy {
            Some(policy) => format!("restart policy {}", visible(policy)),
            None => "no restart policy".to_owned(),
        };
        if let Some(max) = retries_allowed(c) {
            let _ = write!(text, " ({})", at_most_retries(max));
        }
        if let Some(count) = count {
            let _ = write!(text, "; {}", restarts_so_far(count));
        }
        text
    };
    let limit = |bytes_: Option<u64>| match bytes_ {
        Some(b) => format!("memory limit {}", bytes(b)),
        None => "no memory limit".to_owned(),
    };
    match d.state {
        "present" => {
            match d.running {
                Some(true) => {
                    let mut text = String::from("Running");
                    if let (Some(main), Some(pid)) = (&c.main_command, c.main_pid) {
                        let _ = write!(
                            text,
                            ", main process {} (pid {pid})",
                            visible(program(main))
                        );
                    }
                    if let Some(flag) = d.oom_killed {
                        let _ = write!(text, "; OOMKilled={flag} for this run");
                    }
                    lines.push(text + ".");
                }
                _ => lines.push(format!(
                    "Exited {}, OOMKilled={}.",
                    d.exit_code
                        .map_or("with an unknown code".into(), |c| c.to_string()),
                    d.oom_killed.map_or("unknown".into(), |f| f.to_string()),
                )),
            }
            // Docker keeps `Running` true while it restarts a container: stopped, it is not.
            let restarting = (d.running == Some(false)).then_some(false);
            match retries_used_up(c, d.restart_count, restarting, d.exit_code) {
                Some(used) => lines.push(format!("Docker stopped restarting it: {used}.")),
                None => lines.push(capitalized(&policy(d.restart_count)) + "."),
            }
            lines.push(capitalized(&limit(d.memory_limit_bytes)) + ".");
        }
        state => {
            lines.push(match state {
                "gone" => "Docker no longer knows this container: it was removed.".to_owned(),
                "not_docker" => format!(
                    "Not a Docker container (runtime {}): Docker has nothing to say about it.",
                    c.runtime
                ),
                "unreachable" => format!(
                    "Docker does not answer ({}).",
                    visible(d.error.as_deref().unwrap_or("no reason given"))
                ),
                _ => "Docker was not asked (--no-enrich).".to_owned(),
            });
            if c.restart_policy.is_some() || c.memory_limit_bytes.is_some() {
                lines.push(format!(
                    "As Docker said while it ran: {}; {}.",
                    policy(None),
                    limit(c.memory_limit_bytes)
                ));
            }
        }
    }
    // Listed even where Docker's state repeats the one exit: the watch knows who ended it.
    if !x.exits.is_empty() {
        let n = x.exits.len();
        lines.push(format!("A watch recorded {n} exit{}:", plural(n as u64)));
        if n > 5 {
            lines.push(format!("  … {} earlier", n - 5));
        }
        for exit in x.exits.iter().skip(n.saturating_sub(5)) {
            let mut text = format!(
                "  {}  exited {}",
                time(exit.time),
                exit.exit_code.map_or("?".into(), |c| c.to_string()),
            );
            // Only Docker keeps the flag: another runtime's exit has none to be unknown.
            if exit.container.runtime == "docker" {
                let flag = exit.runtime_oom_killed;
                let _ = write!(
                    text,
                    ", OOMKilled={}",
                    flag.map_or("unknown".into(), |f| f.to_string())
                );
            }
            let used = retries_used_up(
                &exit.container,
                exit.restart_count,
                exit.restarting,
                exit.exit_code,
            );
            match (used, exit.restart_count) {
                (Some(used), _) => {
                    let _ = write!(text, ", Docker stopped restarting it: {used}");
                }
                (None, Some(count)) => {
                    let _ = write!(text, ", {}", restarts_so_far(count));
                }
                (None, None) => {}
            }
            let told = ending::told(exit, &x.kills, visible_bytes);
            if !told.is_empty() {
                text.push_str(". ");
                text.push_str(&told);
            }
            lines.push(text);
        }
    }
    lines
}

fn kill_line(kill: &Report, time: &dyn Fn(Option<SystemTime>) -> String, out: &mut String) {
    let v = &kill.victim;
    let _ = write!(
        out,
        "  {}  {}",
        time(kill.time),
        visible_bytes(victim_name(kill))
    );
    match v.pid.or(v.tid) {
        Some(pid) => {
            let _ = write!(out, " (pid {pid})");
        }
        None => out.push_str(" (pid ?)"),
    }
    out.push_str("  ");
    out.push_str(match Role::of(v) {
        Role::MainPid1 => "PID 1, the main process",
        Role::Main => "the main process",
        Role::Other { from_outside: true } => {
            "not the main process, entered from outside (docker exec)"
        }
        Role::Other { .. } => "not the main process",
        Role::Unknown => "main process or not: unknown",
    });
    if let Some(rss) = victim_rss(kill) {
        let _ = write!(out, "  rss {}", bytes(rss));
    }
    if only_marked(kill) {
        out.push_str("  (already exiting: only marked)");
    }
    out.push('\n');
}

fn why_lines(x: &Explanation, time: &dyn Fn(Option<SystemTime>) -> String) -> Vec<String> {
    let mut lines = Vec::new();
    let Some(limit) = &x.limit else {
        return lines;
    };
    let memcg = limit
        .memcg
        .as_deref()
        .map(|m| shown_path(exact(m, limit.memcg_bytes.as_deref())));
    let usage = limit.peak_usage_bytes.map(|u| {
        if x.kills.len() == 1 {
            format!(", {} in use at the kill", bytes(u))
        } else {
            format!(", peak usage at the kills {}", bytes(u))
        }
    });
    let usage = usage.unwrap_or_default();
    lines.push(match (limit.whose, memcg) {
        ("host", _) => "The whole host ran out of memory (a global OOM), not a cgroup's limit.".into(),
        ("own", Some(m)) => format!(
            "The container's own memory limit was hit: {} (cgroup {m}){usage}.",
            size(limit.limit_bytes)
        ),
        ("parent", Some(m)) => format!(
            "A parent cgroup's limit was hit, not the container's own: {m}, {}{usage}.",
            size(limit.limit_bytes)
        ),
        (_, Some(m)) => format!("The limit of {m} was hit: {}{usage}.", size(limit.limit_bytes)),
        (_, None) => {
            let mut text = String::from(
                "Which limit was hit is not recorded: the kernel log printed no OOM cgroup for the latest kill",
            );
            if let Some(max) = x.container.memory_limit_bytes {
                let _ = write!(text, "; the container's memory limit is {}", bytes(max));
            }
            text + "."
        }
    });
    // The breakdown of the kill nearest the peak says the most; else the latest that has one.
    let detailed = |has: fn(&Report) -> bool| {
        x.kills
            .iter()
            .filter(|r| has(r))
            .max_by_key(|r| (r.oom.as_ref().and_then(|o| o.memcg_usage_bytes), r.time))
    };
    if let Some(kill) = detailed(|r| r.oom.as_ref().is_some_and(|o| o.top_tasks.is_some())) {
        let tasks = kill.oom.as_ref().and_then(|o| o.top_tasks.as_deref());
        if let Some(tasks) = tasks.filter(|t| !t.is_empty()) {
            lines.push(format!(
                "Biggest processes at the kill at {}: {}.",
                time(kill.time),
                top_tasks(tasks)
            ));
        }
    }
    if let Some(kill) = detailed(|r| r.oom.as_ref().is_some_and(|o| o.memcg_stat.is_some())) {
        let stat = kill.oom.as_ref().and_then(|o| o.memcg_stat.as_ref());
        if let Some(memory) = stat.and_then(memory) {
            lines.push(format!(
                "Memory of the limited cgroup at the kill at {}: {memory}.",
                time(kill.time),
            ));
        }
    }
    lines
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// `64.0 MiB`, or `an unknown amount`.
fn size(value: Option<u64>) -> String {
    value.map_or_else(|| "an unknown amount".into(), bytes)
}

/// Appends `text` as lines of at most [`WIDTH`] columns, indented by two; a line that starts
/// indented keeps its indent, and continuation lines go two further.
fn wrap(text: &str, out: &mut String) {
    let body = text.trim_start_matches(' ');
    let first = 2 + (text.len() - body.len());
    let mut column = 0;
    let mut pad = first;
    // A size stays on one line with its unit.
    let mut words: Vec<String> = Vec::new();
    for word in body.split(' ') {
        let unit = ["B", "KiB", "MiB", "GiB", "TiB"]
            .iter()
            .any(|u| word.trim_end_matches([',', '.', ')', ';', ':']) == *u);
        match words.last_mut() {
            Some(last) if unit && last.ends_with(|c: char| c.is_ascii_digit()) => {
                last.push(' ');
                last.push_str(word);
            }
            _ => words.push(word.to_owned()),
        }
    }
    for word in &words {
        let width = word.chars().count();
        if column > 0 && column + 1 + width > WIDTH {
            out.push('\n');
            column = 0;
            pad = first + 2;
        }
        if column == 0 {
            out.extend(std::iter::repeat_n(' ', pad));
            column = pad;
        } else {
            out.push(' ');
            column += 1;
        }
        out.push_str(word);
        column += width;
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::super::{
        evidence::DockerView,
        tests::{at, docker, evidence, exit, human, restart_loop},
    };
    use oomtrace_core::report::{KilledBy, Sender};

    /// Each exit a watch recorded is listed with who ended it, even the one Docker's state
    /// repeats; another runtime's, which has no OOMKilled flag, claims none.
    #[test]
    fn each_recorded_exit_is_listed_with_who_ended_it() {
        let sent = |comm: &str| {
            let mut e = exit(5, 137, 2, 0);
            e.runtime_oom_killed = Some(false);
            e.killed_by = Some(KilledBy {
                kind: Some("process"),
                signal: Some("SIGKILL"),
                time: at(5),
                oom_id: None,
                sender: Some(Sender {
                    pid: 777,
                    tid: 777,
                    comm: comm.into(),
                    uid: Some(1000),
                    host_process: Some(true),
                    ..Sender::default()
                }),
                after: None,
            });
            e
        };
        let mut containerd = sent("kill");
        containerd.container.runtime = "containerd";
        containerd.runtime_oom_killed = None;
        let cases = [
            (
                sent("bash"),
                docker(false, 137, false, 2),
                "    04:47:35  exited 137, OOMKilled=false, 2 restarts so far. The container was ended by SIGKILL\n      from bash (pid 777, uid 1000), a process on the host.\n",
            ),
            (
                sent("x\x1b]0;pwned\x07"),
                DockerView::Gone,
                "    04:47:35  exited 137, OOMKilled=false, 2 restarts so far. The container was ended by SIGKILL\n      from x\\x1b]0;pwned\\x07 (pid 777, uid 1000), a process on the host.\n",
            ),
            (
                containerd,
                DockerView::NotDocker,
                "    04:47:35  exited 137, 2 restarts so far. The container was ended by SIGKILL from kill (pid 777,\n      uid 1000), a process on the host.\n",
            ),
        ];
        for (exit, docker, want) in cases {
            let screen = human(evidence(vec![], vec![exit], docker));
            let listed = screen
                .split_once("  A watch recorded 1 exit:\n")
                .map(|(_, rest)| rest.split_once("\n\n").map_or(rest, |(list, _)| list));
            assert_eq!(
                listed.map(|l| format!("{l}\n")).as_deref(),
                Some(want),
                "{screen}"
            );
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
}
