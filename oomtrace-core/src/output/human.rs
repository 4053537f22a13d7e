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

use jiff::{Timestamp, tz::TimeZone};

use crate::{
    output::escape::{push_visible_bytes, visible, visible_bytes},
    report::{Container, ContainerExit, Report, TopTask, exact},
};

/// Kills remembered per container or cgroup, for "3rd kill in 40 s"; bounded.
const MAX_TRACKED: usize = 4096;

/// Programs that run as a container's PID 1 to start the app, which decides its exit.
pub const INIT_SHIMS: [&str; 6] = [
    "docker-init",
    "tini",
    "tini-static",
    "dumb-init",
    "s6-svscan",
    "catatonit",
];

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
                    let _ = write!(out, "; {count} restart{} so far", plural(count as u64));
                }
            },
            (_, None) => {}
        }
        out.push('\n');
    }

    /// Counts the kill in its container (or cgroup); `(n, time of the first)`.
    fn count(&mut self, report: &Report) -> Option<(u32, SystemTime)> {
        let key = match (&report.container, &report.cgroup.path) {
            (Some(c), _) => c.id.clone(),
            // Escaped, which reads back one way: two names that differ only in bytes that are
            // not UTF-8 stay two cgroups.
            (None, Some(path)) => visible_bytes(exact(path, report.cgroup.path_bytes.as_deref())),
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
        let Some(ts) = time.and_then(|t| Timestamp::try_from(t).ok()) else {
            out.push_str("??:??:??");
            return;
        };
        let zoned = ts.to_zoned(self.tz.clone());
        let today = Timestamp::try_from(now)
            .map(|now| now.to_zoned(self.tz.clone()).date())
            .ok();
        if today != Some(zoned.date()) {
            let _ = write!(out, "{} ", zoned.strftime("%Y-%m-%d"));
        }
        let _ = write!(out, "{}", zoned.strftime("%H:%M:%S"));
        // A clock reading repeated by a DST change says which one it was.
        if self.tz.to_ambiguous_zoned(zoned.datetime()).is_ambiguous() {
            let _ = write!(out, " {}", zoned.strftime("%Z"));
        }
    }
}

/// Where: the container (with its compose service or pod), else the cgroup, else the host.
fn place(report: &Report, out: &mut String) {
    match (&report.container, &report.cgroup.path) {
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
            out.push_str(&shown_path(exact(
                path,
                report.cgroup.path_bytes.as_deref(),
            )));
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

fn short_id(id: &str) -> &str {
    id.get(..12).filter(|_| id.len() == 64).unwrap_or(id)
}

/// Who: the process name and pid (and thread, where another thread was marked).
fn who(report: &Report, out: &mut String) {
    let v = &report.victim;
    match (&v.comm, &v.thread_comm) {
        (Some(name), _) => push_visible_bytes(out, exact(name, v.comm_bytes.as_deref())),
        (None, Some(name)) => push_visible_bytes(out, exact(name, v.thread_comm_bytes.as_deref())),
        (None, None) => out.push('?'),
    }
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
    let v = &report.victim;
    if let Some(anon) = v.rss_anon_bytes {
        let total = anon + v.rss_file_bytes.unwrap_or(0) + v.rss_shmem_bytes.unwrap_or(0);
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
    let oom = report.oom.as_ref();
    if let (Some(oom), Some(own)) = (oom, &report.cgroup.path)
        && let Some(memcg) = &oom.memcg
    {
        let memcg = exact(memcg, oom.memcg_bytes.as_deref());
        let own = exact(own, report.cgroup.path_bytes.as_deref());
        if memcg != own {
            said.push(format!(
                "limit of {} hit, the victim lived in {}",
                shown_path(memcg),
                shown_path(own)
            ));
        }
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
    if oom.and_then(|o| o.kind) == Some("marked") {
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
    match (v.is_container_main, v.is_container_init) {
        (Some(true), Some(true)) => "the container's main process (PID 1)".into(),
        (Some(true), _) => match &c.main_command {
            Some(shim) => format!(
                "the container's main process, run by {} as PID 1",
                visible(program(shim))
            ),
            None => "the container's main process".into(),
        },
        (Some(false), _) => {
            let mut text = String::from("not the container's main process");
            if let Some(main) = main {
                let _ = write!(text, " (that is {main})");
            }
            match (v.ppid, c.main_pid, v.parent_in_container) {
                (Some(ppid), Some(main_pid), _) if ppid == main_pid => {
                    text.push_str("; forked by the main process");
                }
                (_, _, Some(false)) => {
                    text.push_str("; entered the container from outside, as docker exec does");
                }
                _ => {}
            }
            text
        }
        (None, _) => "whether it was the container's main process is unknown".into(),
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

/// The program's file name.
fn program(command: &str) -> &str {
    command.rsplit('/').next().unwrap_or(command)
}

/// The restart policy as Docker has it, and the restarts it has made: facts, not what the
/// runtime will do next.
fn restart_facts(c: &Container) -> Option<String> {
    let policy = c.restart_policy.as_deref()?;
    let mut text = format!("restart policy {}", visible(policy));
    match c.restart_max_retries {
        Some(max) if policy == "on-failure" && max > 0 => {
            let _ = write!(
                text,
                " with at most {max} retr{}",
                if max == 1 { "y" } else { "ies" }
            );
        }
        _ => {}
    }
    if let Some(count) = c.restart_count {
        let _ = write!(text, ", {count} restart{} so far", plural(count as u64));
    }
    Some(text)
}

/// `on-failure:3 used all 3 retries`, why Docker stopped restarting a container, when its
/// state says so: it is not restarting the container after a failed run (exit code not 0),
/// and its `on-failure` policy's retries are all used. `None` otherwise: a count below the
/// maximum says nothing of what Docker will do.
pub fn retries_used_up(
    c: &Container,
    restart_count: Option<u32>,
    restarting: Option<bool>,
    exit_code: Option<i64>,
) -> Option<String> {
    let max = c
        .restart_max_retries
        .filter(|&max| max > 0 && c.restart_policy.as_deref() == Some("on-failure"))?;
    let failed = exit_code.is_some_and(|code| code != 0);
    let used_up = restart_count.is_some_and(|count| count >= max);
    (restarting == Some(false) && failed && used_up).then(|| {
        format!(
            "on-failure:{max} used {}",
            if max == 1 {
                "its 1 retry".to_owned()
            } else {
                format!("all {max} retries")
            }
        )
    })
}

/// The limited cgroup's breakdown and biggest processes, for `--verbose`.
fn detail(report: &Report) -> Option<String> {
    let oom = report.oom.as_ref()?;
    let mut parts = Vec::new();
    if let Some(stat) = &oom.memcg_stat {
        let mut memory = Vec::new();
        for (name, value) in [
            ("anon", stat.anon_bytes),
            ("file", stat.file_bytes),
            ("kernel", stat.kernel_bytes),
            ("shmem", stat.shmem_bytes),
            ("sock", stat.sock_bytes),
        ] {
            if let Some(value) = value {
                memory.push(format!("{name} {}", bytes(value)));
            }
        }
        if !memory.is_empty() {
            parts.push(format!("memory: {}", memory.join(", ")));
        }
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

pub fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `209715200` → `200.0 MiB`.
/// The biggest processes at a kill, as `comm 12.0 MiB (pid 42), ...`.
pub fn top_tasks(tasks: &[TopTask]) -> String {
    let top: Vec<String> = tasks
        .iter()
        .map(|t| {
            format!(
                "{} {} (pid {})",
                visible_bytes(exact(&t.comm, t.comm_bytes.as_deref())),
                bytes(t.rss_bytes),
                t.pid
            )
        })
        .collect();
    top.join(", ")
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A cgroup path given as its exact bytes, container ids shortened, escaped for the terminal.
pub fn shown_path(path: &[u8]) -> String {
    visible_bytes(&abbreviate_id_bytes(path))
}

/// Shortens every run of 64 hex digits (container ids) to its first 12, as `docker ps` does.
pub fn abbreviate_ids(path: &str) -> String {
    // Only ASCII runs are replaced, by ASCII and `…`: valid UTF-8 stays valid.
    String::from_utf8_lossy(&abbreviate_id_bytes(path.as_bytes())).into_owned()
}

/// [`abbreviate_ids`] on a path's exact bytes, which need not be UTF-8.
pub fn abbreviate_id_bytes(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let run = path[i..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        let starts_word = i == 0 || !path[i - 1].is_ascii_alphanumeric();
        if run == 64 && starts_word {
            out.extend_from_slice(&path[i..i + 12]);
            out.extend_from_slice("…".as_bytes());
            i += 64;
        } else {
            let step = run.max(1);
            out.extend_from_slice(&path[i..i + step]);
            i += step;
        }
    }
    out
}

#[cfg(test)]
#[path = "human_tests.rs"]
mod tests;
