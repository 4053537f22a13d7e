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
//! memory breakdown and its biggest processes. The members of a `memory.oom.group` kill
//! follow their chosen victim as `+` lines of the same incident. Times are local (`TZ`, else
//! `/etc/localtime`), with the date when not today and the zone where the clock reading is
//! ambiguous; JSON keeps RFC 3339 UTC. Every untrusted string is escaped (see `escape`).

use std::{
    collections::HashMap,
    fmt::Write as _,
    time::{Duration, SystemTime},
};

use jiff::tz::TimeZone;

use crate::{
    output::{
        escape::{push_visible_bytes, visible, visible_bytes},
        facts::{
            Role, limited_cgroup, only_marked, own_cgroup, program, retries_allowed,
            retries_used_up, victim_name, victim_rss,
        },
        format::{
            at_most_retries, bytes, clock, memory, restarts_so_far, short_id, shown_path, top_tasks,
        },
    },
    report::{Container, ContainerExit, Report, exact},
};

/// Kills remembered per container or cgroup, for "3rd kill in 40 s"; bounded.
const MAX_TRACKED: usize = 4096;

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

    /// Appends a kill's lines.
    pub fn kill(&mut self, report: &Report, now: SystemTime, out: &mut String) {
        let oom = report.oom.as_ref();
        let incident = oom.and_then(|o| o.id);
        let member = oom.and_then(|o| o.group_kill) == Some(true)
            && incident.is_some()
            && incident == self.last_incident;
        self.last_incident = incident;
        let nth = self.count(report);
        if member {
            out.push_str("  + ");
            who(report, out);
            rss(report, out);
            out.push_str("  killed with the rest of its memory.oom.group\n");
            return;
        }
        if report.past {
            out.push_str("past ");
        }
        self.time(report.time, now, out);
        out.push_str("  ");
        place(report, out);
        out.push_str("  ");
        who(report, out);
        rss(report, out);
        limit(report, out);
        if let Some((n, first)) = nth.filter(|(n, _)| *n > 1) {
            let _ = write!(out, "  {} kill in {}", ordinal(n), span(first, report.time));
        }
        out.push('\n');
        let meaning = meaning(report);
        if !meaning.is_empty() {
            out.push_str("    ");
            out.push_str(&meaning.join("; "));
            out.push('\n');
        }
        if self.verbose
            && let Some(detail) = detail(report)
        {
            out.push_str("    ");
            out.push_str(&detail);
            out.push('\n');
        }
    }

    /// Appends a container exit's line: the fact Docker gives, and the kill before it.
    pub fn exit(&mut self, exit: &ContainerExit, now: SystemTime, out: &mut String) {
        self.time(exit.time, now, out);
        out.push_str("  container ");
        out.push_str(&container_name(&exit.container));
        match exit.exit_code {
            Some(code) => {
                let _ = write!(out, " exited {code}");
            }
            None => out.push_str(" exited"),
        }
        match exit.runtime_oom_killed {
            Some(flag) => {
                let _ = write!(out, " (Docker: OOMKilled={flag})");
            }
            None => out.push_str(" (Docker's OOMKilled unknown)"),
        }
        if let Some(last) = &exit.last_kill {
            if let (Some(exited), Some(killed)) = (exit.time, last.time) {
                let _ = write!(out, " {} after", seconds(exited, killed));
            } else {
                out.push_str(" after");
            }
            let comm = exact(&last.comm, last.comm_bytes.as_deref());
            let _ = write!(out, " {} (pid ", visible_bytes(comm));
            match last.pid {
                Some(pid) => {
                    let _ = write!(out, "{pid}");
                }
                None => out.push('?'),
            }
            out.push_str(") was OOM-killed");
            match last.is_container_main {
                Some(false) => out.push_str("; its main process survived the kill"),
                Some(true) => out.push_str(", the container's main process"),
                None => {}
            }
        }
        match (exit.restarting, exit.restart_count) {
            (Some(true), Some(count)) => {
                let _ = write!(out, "; Docker is restarting it (restart {count})");
            }
            (Some(true), None) => out.push_str("; Docker is restarting it"),
            (_, Some(count)) => match retries_used_up(
                &exit.container,
                Some(count),
                exit.restarting,
                exit.exit_code,
            ) {
                Some(used) => {
                    let _ = write!(out, "; Docker stopped restarting it: {used}");
                }
                None => {
                    out.push_str("; ");
                    out.push_str(&restarts_so_far(count));
                }
            },
            (_, None) => {}
        }
        out.push('\n');
    }

    /// Counts the kill in its container (or cgroup); `(n, time of the first)`.
    fn count(&mut self, report: &Report) -> Option<(u32, SystemTime)> {
        let key = match (&report.container, own_cgroup(report)) {
            (Some(c), _) => c.id.clone(),
            // Escaped, which reads back one way: two names that differ only in bytes that are
            // not UTF-8 stay two cgroups.
            (None, Some(path)) => visible_bytes(path),
            (None, None) => return None,
        };
        let time = report.time?;
        if self.kills.len() >= MAX_TRACKED && !self.kills.contains_key(&key) {
            self.kills.clear();
        }
        let entry = self.kills.entry(key).or_insert((0, time));
        entry.0 += 1;
        Some(*entry)
    }

    fn time(&self, time: Option<SystemTime>, now: SystemTime, out: &mut String) {
        out.push_str(&clock(&self.tz, time, now));
    }
}

/// Where: the container (with its compose service or pod), else the cgroup, else the host.
fn place(report: &Report, out: &mut String) {
    match (&report.container, own_cgroup(report)) {
        (Some(container), _) => {
            out.push_str(&container_name(container));
            let labels = container.labels.as_ref();
            let label = |key: &str| labels.and_then(|l| l.get(key));
            if let Some(pod) = &container.pod {
                match (&pod.namespace, &pod.name) {
                    (Some(ns), Some(name)) => {
                        let _ = write!(out, " (pod {}/{})", visible(ns), visible(name));
                    }
                    _ => {
                        let _ = write!(out, " (pod {})", visible(&pod.uid));
                    }
                }
            } else if let (Some(project), Some(service)) = (
                label("com.docker.compose.project"),
                label("com.docker.compose.service"),
            ) {
                let _ = write!(out, " (compose {}/{})", visible(project), visible(service));
            }
        }
        (None, Some(path)) => {
            out.push_str("cgroup ");
            out.push_str(&shown_path(path));
        }
        (None, None) => match report.cgroup.id {
            Some(id) => {
                let _ = write!(out, "cgroup id {id}");
            }
            None => out.push_str("cgroup unknown"),
        },
    }
}

/// A container's name, or its runtime and short id when it has none.
fn container_name(c: &Container) -> String {
    match &c.name {
        Some(name) => visible(name),
        None => format!("{} {}", c.runtime, visible(short_id(&c.id))),
    }
}

/// Who: the process name and pid (and thread, where another thread was marked).
fn who(report: &Report, out: &mut String) {
    push_visible_bytes(out, victim_name(report));
    let v = &report.victim;
    match (v.pid, v.tid) {
        (Some(pid), Some(tid)) if pid != tid => {
            let _ = write!(out, " (pid {pid}, thread {tid})");
        }
        (Some(pid), _) => {
            let _ = write!(out, " (pid {pid})");
        }
        (None, Some(tid)) => {
            let _ = write!(out, " (tid {tid})");
        }
        (None, None) => out.push_str(" (pid ?)"),
    }
}

fn rss(report: &Report, out: &mut String) {
    if let Some(total) = victim_rss(report) {
        let _ = write!(out, "  rss {}", bytes(total));
    }
}

/// The limit hit and its size: whose, when it is not the victim's own cgroup.
fn limit(report: &Report, out: &mut String) {
    let oom = report.oom.as_ref();
    if oom.and_then(|o| o.global) == Some(true) {
        out.push_str("  system out of memory");
        return;
    }
    let limit = oom
        .and_then(|o| o.memcg_limit_bytes)
        .or_else(|| report.container.as_ref().and_then(|c| c.memory_limit_bytes));
    if let Some(limit) = limit {
        let _ = write!(out, "  limit {}", bytes(limit));
    }
}

/// What the kill means, from facts only: whose limit, which process it was to its
/// container, what set it off, and whether the kernel killed or only marked it.
fn meaning(report: &Report) -> Vec<String> {
    let mut said = Vec::new();
    if let (Some(memcg), Some(own)) = (limited_cgroup(report), own_cgroup(report))
        && memcg != own
    {
        said.push(format!(
            "limit of {} hit, the victim lived in {}",
            shown_path(memcg),
            shown_path(own)
        ));
    }
    if let Some(container) = &report.container {
        said.push(role(report, container));
        if let Some(restart) = restart_facts(container) {
            said.push(restart);
        }
    }
    let v = &report.victim;
    let trigger = &report.trigger;
    if trigger.pid.is_some() && trigger.pid != v.pid && trigger.tid != v.tid {
        let mut text = String::from("triggered by ");
        match &trigger.comm {
            Some(comm) => push_visible_bytes(&mut text, exact(comm, trigger.comm_bytes.as_deref())),
            None => text.push('?'),
        }
        if let Some(pid) = trigger.pid {
            let _ = write!(text, " (pid {pid})");
        }
        said.push(text);
    }
    if only_marked(report) {
        said.push(
            "it was already exiting, so the kernel only marked it: no SIGKILL, not counted".into(),
        );
    }
    said
}

/// The victim's place in its container.
fn role(report: &Report, c: &Container) -> String {
    let v = &report.victim;
    let main = main_process(c);
    match Role::of(v) {
        Role::MainPid1 => "the container's main process (PID 1)".into(),
        Role::Main => match &c.main_command {
            Some(shim) => format!(
                "the container's main process, run by {} as PID 1",
                visible(program(shim))
            ),
            None => "the container's main process".into(),
        },
        Role::Other { from_outside } => {
            let mut text = String::from("not the container's main process");
            if let Some(main) = main {
                let _ = write!(text, " (that is {main})");
            }
            match (v.ppid, c.main_pid) {
                (Some(ppid), Some(main_pid)) if ppid == main_pid => {
                    text.push_str("; forked by the main process");
                }
                _ if from_outside => {
                    text.push_str("; entered the container from outside, as docker exec does");
                }
                _ => {}
            }
            text
        }
        Role::Unknown => "whether it was the container's main process is unknown".into(),
    }
}

/// `sh, pid 4100`: the container's PID 1 as Docker names it.
fn main_process(c: &Container) -> Option<String> {
    let pid = c.main_pid?;
    Some(match &c.main_command {
        Some(command) => format!("{}, pid {pid}", visible(program(command))),
        None => format!("pid {pid}"),
    })
}

/// The restart policy as Docker has it, and the restarts it has made: facts, not what the
/// runtime will do next.
fn restart_facts(c: &Container) -> Option<String> {
    let policy = c.restart_policy.as_deref()?;
    let mut text = format!("restart policy {}", visible(policy));
    if let Some(max) = retries_allowed(c) {
        let _ = write!(text, " with {}", at_most_retries(max));
    }
    if let Some(count) = c.restart_count {
        let _ = write!(text, ", {}", restarts_so_far(count));
    }
    Some(text)
}

/// The limited cgroup's breakdown and biggest processes, for `--verbose`.
fn detail(report: &Report) -> Option<String> {
    let oom = report.oom.as_ref()?;
    let mut parts = Vec::new();
    if let Some(memory) = oom.memcg_stat.as_ref().and_then(memory) {
        parts.push(format!("memory: {memory}"));
    }
    if let Some(tasks) = oom.top_tasks.as_ref().filter(|t| !t.is_empty()) {
        parts.push(format!("biggest: {}", top_tasks(tasks)));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// How long after the first kill: `40 s`, `3 min`, `2 h`.
fn span(first: SystemTime, now: Option<SystemTime>) -> String {
    let elapsed = now
        .and_then(|now| now.duration_since(first).ok())
        .unwrap_or_default();
    let secs = elapsed.as_secs();
    match secs {
        0..=99 => format!("{secs} s"),
        100..=5999 => format!("{} min", secs / 60),
        _ => format!("{} h", secs / 3600),
    }
}

/// `4.2 s`: how long `later` came after `earlier`.
fn seconds(later: SystemTime, earlier: SystemTime) -> String {
    let d = later.duration_since(earlier).unwrap_or(Duration::ZERO);
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
#[path = "human_tests.rs"]
mod tests;
