//! The kill line: the facts in a fixed order, then the indented line that says what they
//! mean, then with `--verbose` the limited cgroup's memory and biggest processes; or, for
//! a member of a `memory.oom.group` kill, one `+` line under its chosen victim.

use std::{fmt::Write as _, time::SystemTime};

use super::{HumanView, container_name, pod_name};
use crate::{
    output::{
        escape::{push_visible_bytes, visible, visible_bytes},
        facts::{
            Role, container_cgroup, group_cgroup, limited_cgroup, only_marked, own_cgroup,
            pod_cgroup, pod_limit_hit, program, retries_allowed, victim_name, victim_rss,
        },
        format::{at_most_retries, bytes, memory, restarts_so_far, shown_path, top_tasks},
    },
    report::{Container, Report, exact},
};

/// Kills remembered per container or cgroup, for "3rd kill in 40 s"; bounded.
const MAX_TRACKED: usize = 4096;

impl HumanView {
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
}

/// Where: the container (with its compose service or pod), else the cgroup, else the host.
fn place(report: &Report, out: &mut String) {
    match (&report.container, own_cgroup(report)) {
        (Some(container), _) => {
            out.push_str(&container_name(container));
            let labels = container.labels.as_ref();
            let label = |key: &str| labels.and_then(|l| l.get(key));
            if let Some(pod) = &container.pod {
                let _ = write!(out, " (pod {})", pod_name(pod));
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
    // The runtime's limit is the container's own cgroup's: not the size of another one's.
    let limited = limited_cgroup(report);
    let containers_own =
        limited.is_none() || limited == own_cgroup(report) || limited == container_cgroup(report);
    let limit = oom.and_then(|o| o.memcg_limit_bytes).or_else(|| {
        let container = report.container.as_ref()?;
        container.memory_limit_bytes.filter(|_| containers_own)
    });
    if let Some(limit) = limit {
        let _ = write!(out, "  limit {}", bytes(limit));
    }
}

/// What the kill means, from facts only: whose limit, which process it was to its
/// container, what set it off, and whether the kernel killed or only marked it.
fn meaning(report: &Report) -> Vec<String> {
    let mut said = Vec::new();
    if pod_limit_hit(report)
        && let Some(container) = &report.container
    {
        said.extend(pod_limit(report, container));
    } else if let (Some(memcg), Some(own)) = (limited_cgroup(report), own_cgroup(report))
        && memcg != own
    {
        said.push(format!(
            "limit of {} hit, the victim lived in {}",
            shown_path(memcg),
            shown_path(own)
        ));
    }
    if let Some(group) = group_kill(report) {
        said.push(group);
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

/// The pod's limit, which its containers share, and the container's own: `the limit of pod
/// shop/web-0, 256.0 MiB, shared by 2 containers`, `this container's own limit is 200.0 MiB`.
/// Each part only where it is known: an unknown count or limit is left out, not taken for
/// none.
fn pod_limit(report: &Report, container: &Container) -> Vec<String> {
    let Some(pod) = &container.pod else {
        return Vec::new();
    };
    let mut pods = format!("the limit of pod {}", pod_name(pod));
    if let Some(limit) = report.oom.as_ref().and_then(|o| o.memcg_limit_bytes) {
        let _ = write!(pods, ", {}", bytes(limit));
    }
    // The count has the victim's own container in it, so 1 is this one alone.
    match pod.containers {
        Some(1) => pods.push_str(", which has no other container"),
        Some(n) if n > 1 => {
            let _ = write!(pods, ", shared by {n} containers");
        }
        _ => {}
    }
    let mut said = vec![pods];
    if let Some(own) = container.memory_limit_bytes {
        said.push(format!("this container's own limit is {}", bytes(own)));
    }
    said
}

/// What a `memory.oom.group` kill takes with the victim: the container, its pod, or another
/// cgroup, all of whose processes the kernel is killing. The kernel chose the group before it
/// killed the victim, so by the time this is read the rest are being killed: a fact, not a
/// forecast.
fn group_kill(report: &Report) -> Option<String> {
    // A victim only marked was already exiting: the kernel killed no group for it.
    if only_marked(report) {
        return None;
    }
    let member = report.oom.as_ref().and_then(|o| o.group_kill) == Some(true);
    let Some(group) = group_cgroup(report) else {
        return member.then(|| "killed with the rest of its memory.oom.group".to_owned());
    };
    let container = report.container.as_ref();
    let (on, whose) = if Some(group) == container_cgroup(report) {
        ("the container".to_owned(), "all its processes")
    } else if Some(group) == pod_cgroup(report)
        && let Some(pod) = container.and_then(|c| c.pod.as_ref())
    {
        (
            format!("pod {}", pod_name(pod)),
            "all its containers' processes",
        )
    } else {
        (shown_path(group), "all its processes")
    };
    Some(if member {
        // Shown in full when its chosen victim was not: one of the many.
        format!("memory.oom.group is set on {on}: {whose} are being killed, this one among them")
    } else {
        format!("memory.oom.group is set on {on}: {whose} are being killed with it")
    })
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
                    text.push_str("; entered the container from outside, as ");
                    text.push_str(match c.runtime {
                        "docker" => "docker exec does",
                        // kubelet's exec goes through the CRI to the runtime's own.
                        "containerd" | "kubernetes" | "cri-o" => "kubectl exec does",
                        _ => "an exec does",
                    });
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jiff::tz::TimeZone;

    use super::super::tests::{MIB, render, seed0, utc};
    use super::*;
    use crate::{
        kernel::cgroups::CgroupMode,
        report::{MemcgStat, OomContext, Pod, Report, TopTask},
        source::ebpf::decode,
        testing as fixtures,
    };
    use oomtrace_common::field;

    #[test]
    fn a_kill_in_a_container_is_facts_then_what_they_mean() {
        let line = render(&mut utc(), &seed0(false));
        assert_eq!(
            line,
            "04:47:30  seed0  dd (pid 10390, thread 10391)  rss 63.0 MiB  limit 64.0 MiB\n    \
             not the container's main process (that is sh, pid 10000); entered the container from \
             outside, as docker exec does\n"
        );
        let first = line.lines().next().unwrap();
        assert!(first.chars().count() <= 120, "{first}");
    }

    #[test]
    fn an_exec_is_named_by_the_tool_of_the_container_s_runtime() {
        for (runtime, tool) in [
            ("docker", "docker exec"),
            ("containerd", "kubectl exec"),
            ("kubernetes", "kubectl exec"),
            ("podman", "an exec"),
        ] {
            let mut report = seed0(false);
            report.container.as_mut().unwrap().runtime = runtime;
            let line = render(&mut utc(), &report);
            assert!(
                line.contains(&format!(
                    "entered the container from outside, as {tool} does"
                )),
                "{runtime}: {line}"
            );
        }
    }

    #[test]
    fn the_main_process_says_the_restart_policy_as_facts() {
        let mut report = seed0(true);
        let container = report.container.as_mut().unwrap();
        container.restart_policy = Some("on-failure".into());
        container.restart_max_retries = Some(3);
        container.restart_count = Some(3);
        let mut view = utc();
        let line = render(&mut view, &report);
        assert!(
            line.ends_with(
                "    the container's main process (PID 1); restart policy on-failure with at most \
                 3 retries, 3 restarts so far\n"
            ),
            "{line}"
        );
        assert!(!line.contains("restarts it"), "no forecast: {line}");
        // Kills repeat in one container: which one this is.
        report.time = report.time.map(|t| t + Duration::from_secs(40));
        let second = render(&mut view, &report);
        assert!(
            second
                .lines()
                .next()
                .unwrap()
                .ends_with("  2nd kill in 40 s"),
            "{second}"
        );
    }

    #[test]
    fn an_init_shim_s_app_is_the_main_process() {
        let mut report = seed0(false);
        report.victim.is_container_main = Some(true);
        report.container.as_mut().unwrap().main_command = Some("docker-init".into());
        let line = render(&mut utc(), &report);
        assert!(
            line.contains("the container's main process, run by docker-init as PID 1"),
            "{line}"
        );
    }

    #[test]
    fn a_parent_s_limit_and_the_trigger_are_said() {
        let mut report = seed0(false);
        report.container = None;
        report.cgroup.path = Some("/parent/child".into());
        let oom = report.oom.as_mut().unwrap();
        oom.memcg = Some("/parent".into());
        oom.memcg_limit_bytes = Some(32 * MIB);
        report.trigger.pid = Some(777);
        report.trigger.tid = Some(777);
        report.trigger.comm = Some("java".into());
        let line = render(&mut utc(), &report);
        assert_eq!(
            line,
            "04:47:30  cgroup /parent/child  dd (pid 10390, thread 10391)  rss 63.0 MiB  limit \
             32.0 MiB\n    limit of /parent hit, the victim lived in /parent/child; triggered by \
             java (pid 777)\n"
        );
    }

    #[test]
    fn compose_and_pods_name_the_workload() {
        let mut report = seed0(false);
        let container = report.container.as_mut().unwrap();
        container.labels = Some(
            [
                ("com.docker.compose.project", "shop"),
                ("com.docker.compose.service", "web"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        );
        let line = render(&mut utc(), &report);
        assert!(
            line.starts_with("04:47:30  seed0 (compose shop/web)  dd"),
            "{line}"
        );
        report.container.as_mut().unwrap().pod = Some(Pod {
            uid: "0c6a".into(),
            namespace: Some("prod".into()),
            name: Some("web-7f9".into()),
            qos: Some("burstable"),
            containers: None,
        });
        let line = render(&mut utc(), &report);
        assert!(
            line.starts_with("04:47:30  seed0 (pod prod/web-7f9)  dd"),
            "{line}"
        );
    }

    const POD_UID: &str = "b67e5888-667c-48fb-824e-7c2b4da2cb28";
    const POD_ID: &str = "14ee10eb9e4c160434bca9d4c8519d350d4b9158f9d7a291758c2e7811ec968a";

    /// The cgroupfs driver's pod cgroup, and its container's.
    fn pod_cgroup() -> String {
        format!("/kubepods/burstable/pod{POD_UID}")
    }

    /// The main process of a pod's container, killed at the pod's 256 MiB limit, which its
    /// two containers share; the container's own limit is 200 MiB.
    fn at_the_pod_s_limit() -> Report {
        let mut report = seed0(true);
        report.cgroup.path = Some(format!("{}/{POD_ID}", pod_cgroup()));
        let oom = report.oom.as_mut().unwrap();
        oom.memcg = Some(pod_cgroup());
        oom.memcg_limit_bytes = Some(256 * MIB);
        report.container = Some(Container {
            runtime: "kubernetes",
            id: POD_ID.into(),
            name: Some("web".into()),
            memory_limit_bytes: Some(200 * MIB),
            pod: Some(Pod {
                uid: POD_UID.into(),
                namespace: Some("shop".into()),
                name: Some("web-0".into()),
                qos: Some("burstable"),
                containers: Some(2),
            }),
            ..Container::default()
        });
        report
    }

    /// The line under the facts.
    fn meaning_line(report: &Report) -> String {
        let shown = render(&mut utc(), report);
        let mut lines = shown.lines();
        lines.next();
        lines.next().unwrap_or_default().to_owned()
    }

    #[test]
    fn a_pod_s_limit_is_said_as_the_pod_s_shared_by_its_containers() {
        type Edit = fn(&mut Report);
        fn pod(r: &mut Report) -> &mut Pod {
            r.container.as_mut().unwrap().pod.as_mut().unwrap()
        }
        let main = "; the container's main process (PID 1)";
        let the_pod_s = "the limit of pod shop/web-0, 256.0 MiB";
        let own = "; this container's own limit is 200.0 MiB";
        let cases: Vec<(&str, Edit, String)> = vec![
            (
                "everything known",
                |_| {},
                format!("{the_pod_s}, shared by 2 containers{own}{main}"),
            ),
            (
                "the pod's names unknown: its uid",
                |r| pod(r).name = None,
                format!("the limit of pod {POD_UID}, 256.0 MiB, shared by 2 containers{own}{main}"),
            ),
            (
                "the size unknown",
                |r| r.oom.as_mut().unwrap().memcg_limit_bytes = None,
                format!("the limit of pod shop/web-0, shared by 2 containers{own}{main}"),
            ),
            (
                "the count unknown",
                |r| pod(r).containers = None,
                format!("{the_pod_s}{own}{main}"),
            ),
            (
                "a count of none says nothing",
                |r| pod(r).containers = Some(0),
                format!("{the_pod_s}{own}{main}"),
            ),
            (
                "one container: this one",
                |r| pod(r).containers = Some(1),
                format!("{the_pod_s}, which has no other container{own}{main}"),
            ),
            (
                "the container's own limit unknown is left out, not said to be none",
                |r| r.container.as_mut().unwrap().memory_limit_bytes = None,
                format!("{the_pod_s}, shared by 2 containers{main}"),
            ),
            (
                "the victim in a cgroup below its container's",
                |r| r.cgroup.path = Some(format!("{}/{POD_ID}/worker", pod_cgroup())),
                format!("{the_pod_s}, shared by 2 containers{own}{main}"),
            ),
            (
                "the systemd driver",
                |r| {
                    let slice = format!(
                        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
                        POD_UID.replace('-', "_")
                    );
                    r.cgroup.path = Some(format!("{slice}/cri-containerd-{POD_ID}.scope"));
                    r.oom.as_mut().unwrap().memcg = Some(slice);
                },
                format!("{the_pod_s}, shared by 2 containers{own}{main}"),
            ),
            // Not the pod's limit: said as before.
            (
                "the container's own limit",
                |r| r.oom.as_mut().unwrap().memcg = r.cgroup.path.clone(),
                "the container's main process (PID 1)".to_owned(),
            ),
            (
                "the QoS class's slice above the pod",
                |r| r.oom.as_mut().unwrap().memcg = Some("/kubepods/burstable".into()),
                "limit of /kubepods/burstable hit, the victim lived in \
                 /kubepods/burstable/podb67e5888-667c-48fb-824e-7c2b4da2cb28/14ee10eb9e4c…{main}"
                    .replace("{main}", main),
            ),
            (
                "a name that reads as the pod's but is other bytes",
                |r| {
                    let oom = r.oom.as_mut().unwrap();
                    oom.memcg = Some(format!("{}\u{fffd}", pod_cgroup()));
                    oom.memcg_bytes = Some([pod_cgroup().as_bytes(), b"\xff"].concat());
                },
                format!(
                    "limit of /kubepods/burstable/pod{POD_UID}\\xff hit, the victim lived in \
                     /kubepods/burstable/pod{POD_UID}/14ee10eb9e4c…{main}"
                ),
            ),
            (
                "a container the path does not name",
                |r| r.container.as_mut().unwrap().id = "4f2c".repeat(16),
                format!(
                    "limit of /kubepods/burstable/pod{POD_UID} hit, the victim lived in \
                     /kubepods/burstable/pod{POD_UID}/14ee10eb9e4c…{main}"
                ),
            ),
            (
                "a pod the path does not name",
                |r| pod(r).uid = "0c6a".into(),
                format!(
                    "limit of /kubepods/burstable/pod{POD_UID} hit, the victim lived in \
                     /kubepods/burstable/pod{POD_UID}/14ee10eb9e4c…{main}"
                ),
            ),
        ];
        for (what, edit, want) in cases {
            let mut report = at_the_pod_s_limit();
            edit(&mut report);
            assert_eq!(meaning_line(&report), format!("    {want}"), "{what}");
        }
        // The pod's limit unknown: the container's own is not shown as the limit hit.
        let mut report = at_the_pod_s_limit();
        report.oom.as_mut().unwrap().memcg_limit_bytes = None;
        let first = render(&mut utc(), &report);
        assert!(first.contains("rss 63.0 MiB\n"), "{first}");
        report.oom.as_mut().unwrap().memcg = report.cgroup.path.clone();
        let first = render(&mut utc(), &report);
        assert!(first.contains("rss 63.0 MiB  limit 200.0 MiB\n"), "{first}");
        let first = render(&mut utc(), &at_the_pod_s_limit());
        assert!(
            first.starts_with(
                "04:47:30  web (pod shop/web-0)  dd (pid 10390, thread 10391)  rss 63.0 MiB  limit \
                 256.0 MiB\n"
            ),
            "{first}"
        );
    }

    #[test]
    fn a_pod_s_hostile_names_are_escaped_in_its_limit() {
        let mut report = at_the_pod_s_limit();
        let pod = report.container.as_mut().unwrap().pod.as_mut().unwrap();
        pod.namespace = Some("\x1b[2Jshop".into());
        pod.name = Some("web\u{202e}0\n".into());
        let line = meaning_line(&report);
        assert!(
            line.starts_with(
                "    the limit of pod \\x1b[2Jshop/web\\u{202e}0\\x0a, 256.0 MiB, shared by 2"
            ),
            "{line}"
        );
        let pod = report.container.as_mut().unwrap().pod.as_mut().unwrap();
        (pod.name, pod.uid) = (None, format!("{POD_UID}\x07"));
        // The uid the report has is not the one the path names: not said to be the pod's.
        assert!(!meaning_line(&report).contains("the limit of pod"));
    }

    #[test]
    fn a_group_kill_says_what_the_kernel_is_killing_with_the_victim() {
        type Edit = fn(&mut Report);
        fn oom(r: &mut Report) -> &mut OomContext {
            r.oom.as_mut().unwrap()
        }
        let own = format!("{}/{POD_ID}", pod_cgroup());
        let pod_limit = "the limit of pod shop/web-0, 256.0 MiB, shared by 2 containers; this \
                         container's own limit is 200.0 MiB; ";
        let main = "; the container's main process (PID 1)";
        // (what, the group: the container's own cgroup, the pod's or one below the
        // container's; an edit, what the line says between the limit and the role)
        let cases: Vec<(&str, Option<&str>, Edit, &str)> = vec![
            (
                "the container's",
                Some("OWN"),
                |_| {},
                "memory.oom.group is set on the container: all its processes are being killed \
                 with it",
            ),
            (
                "the pod's",
                Some("POD"),
                |_| {},
                "memory.oom.group is set on pod shop/web-0: all its containers' processes are \
                 being killed with it",
            ),
            (
                "a cgroup below the container's",
                Some("BELOW"),
                |r| r.cgroup.path = r.oom.as_ref().unwrap().group_memcg.clone(),
                "memory.oom.group is set on \
                 /kubepods/burstable/podb67e5888-667c-48fb-824e-7c2b4da2cb28/14ee10eb9e4c…/app: \
                 all its processes are being killed with it",
            ),
            (
                "a member shown in full, its chosen victim not shown",
                Some("OWN"),
                |r| oom(r).group_kill = Some(true),
                "memory.oom.group is set on the container: all its processes are being killed, \
                 this one among them",
            ),
            (
                "a member whose group is not known",
                None,
                |r| oom(r).group_kill = Some(true),
                "killed with the rest of its memory.oom.group",
            ),
        ];
        for (what, group, edit, want) in cases {
            let mut report = at_the_pod_s_limit();
            let oom = report.oom.as_mut().unwrap();
            oom.id = Some(5);
            oom.group_kill = Some(false);
            oom.group_memcg = group.map(|g| match g {
                "OWN" => own.clone(),
                "POD" => pod_cgroup(),
                _ => format!("{own}/app"),
            });
            edit(&mut report);
            let line = meaning_line(&report);
            assert_eq!(line, format!("    {pod_limit}{want}{main}"), "{what}");
        }

        // Said nowhere else: no group, and a victim only marked (no group was killed for it).
        let mut report = at_the_pod_s_limit();
        assert!(!meaning_line(&report).contains("oom.group"));
        let oom = report.oom.as_mut().unwrap();
        (oom.group_memcg, oom.kind) = (Some(pod_cgroup()), Some("marked"));
        assert!(!meaning_line(&report).contains("oom.group"));

        // Docker's container, on cgroup v2.
        let mut report = seed0(true);
        report.cgroup.path = Some(format!("/system.slice/docker-{POD_ID}.scope"));
        report.container.as_mut().unwrap().id = POD_ID.into();
        let oom = report.oom.as_mut().unwrap();
        (oom.memcg, oom.group_memcg) = (report.cgroup.path.clone(), report.cgroup.path.clone());
        assert_eq!(
            meaning_line(&report),
            "    memory.oom.group is set on the container: all its processes are being killed \
             with it; the container's main process (PID 1)"
        );
    }

    #[test]
    fn a_group_kill_s_hostile_names_are_escaped() {
        let mut report = at_the_pod_s_limit();
        let container = report.container.as_mut().unwrap();
        container.pod.as_mut().unwrap().name = Some("web\x1b]0;x\x07".into());
        report.oom.as_mut().unwrap().group_memcg = Some(pod_cgroup());
        let line = meaning_line(&report);
        assert!(
            line.contains(
                "memory.oom.group is set on pod shop/web\\x1b]0;x\\x07: all its containers'"
            ),
            "{line}"
        );
        // A cgroup whose name is not UTF-8, and one that reads like the pod's but is not.
        let oom = report.oom.as_mut().unwrap();
        oom.group_memcg = Some(format!("{}\u{fffd}", pod_cgroup()));
        oom.group_memcg_bytes = Some([pod_cgroup().as_bytes(), b"\x9b"].concat());
        let line = meaning_line(&report);
        assert!(
            line.contains(&format!(
                "memory.oom.group is set on {}\\x9b: all its processes are being killed with it",
                pod_cgroup()
            )),
            "{line}"
        );
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }

    #[test]
    fn a_group_kill_s_members_follow_their_own_incident() {
        let mut view = utc();
        let kill = |id: u64, pid: u32, member: bool| {
            let mut report = at_the_pod_s_limit();
            (report.victim.pid, report.victim.tid) = (Some(pid), Some(pid));
            report.victim.comm = Some(if member { "sleep" } else { "java" }.into());
            let oom = report.oom.as_mut().unwrap();
            (oom.id, oom.group_kill) = (Some(id), Some(member));
            oom.group_memcg = Some(pod_cgroup());
            report
        };
        let lines: Vec<String> = [
            kill(5, 100, false),
            kill(5, 101, true),
            kill(5, 102, true),
            kill(6, 200, false),
            kill(6, 201, true),
            // A member whose chosen victim was not shown: in full, then the rest under it.
            kill(7, 301, true),
            kill(7, 302, true),
        ]
        .iter()
        .map(|report| render(&mut view, report))
        .collect();
        let plus = |pid| {
            format!(
                "  + sleep (pid {pid})  rss 63.0 MiB  killed with the rest of its \
                 memory.oom.group\n"
            )
        };
        let chosen_says = "memory.oom.group is set on pod shop/web-0: all its containers' \
                           processes are being killed with it";
        assert!(lines[0].contains("java (pid 100)"), "{}", lines[0]);
        assert!(lines[0].contains(chosen_says), "{}", lines[0]);
        assert_eq!(lines[1], plus(101));
        assert_eq!(lines[2], plus(102));
        assert!(lines[3].contains("java (pid 200)") && lines[3].contains(chosen_says));
        assert_eq!(lines[4], plus(201));
        assert!(lines[5].contains("sleep (pid 301)"), "{}", lines[5]);
        assert!(lines[5].contains("this one among them"), "{}", lines[5]);
        assert_eq!(lines[6], plus(302));
    }

    #[test]
    fn a_group_kill_s_members_are_one_incident() {
        let mut chosen = seed0(true);
        let oom = chosen.oom.as_mut().unwrap();
        oom.id = Some(5);
        oom.group_kill = Some(false);
        let mut member = chosen.clone();
        member.victim.comm = Some("sleep".into());
        member.victim.pid = Some(10400);
        member.victim.tid = Some(10400);
        member.oom.as_mut().unwrap().group_kill = Some(true);
        let mut view = utc();
        render(&mut view, &chosen);
        assert_eq!(
            render(&mut view, &member),
            "  + sleep (pid 10400)  rss 63.0 MiB  killed with the rest of its memory.oom.group\n"
        );
    }

    #[test]
    fn verbose_adds_the_breakdown_and_the_biggest_processes() {
        let mut report = seed0(false);
        let oom = report.oom.as_mut().unwrap();
        oom.memcg_stat = Some(MemcgStat {
            anon_bytes: Some(60 * MIB),
            file_bytes: Some(2 * MIB),
            kernel_bytes: Some(MIB),
            shmem_bytes: Some(0),
            sock_bytes: None,
        });
        oom.top_tasks = Some(vec![
            TopTask {
                pid: 10390,
                comm: "dd".into(),
                comm_bytes: None,
                rss_bytes: 63 * MIB,
            },
            TopTask {
                pid: 10000,
                comm: "sh".into(),
                comm_bytes: None,
                rss_bytes: 68 << 10,
            },
        ]);
        let mut view = HumanView::in_zone(TimeZone::UTC, true);
        let line = render(&mut view, &report);
        assert!(
            line.ends_with(
                "    memory: anon 60.0 MiB, file 2.0 MiB, kernel 1.0 MiB, shmem 0 B; biggest: dd \
                 63.0 MiB (pid 10390), sh 68.0 KiB (pid 10000)\n"
            ),
            "{line}"
        );
        assert!(!render(&mut utc(), &report).contains("biggest"));
    }

    #[test]
    fn a_marked_victim_and_a_global_oom_are_said() {
        let mut report = seed0(true);
        let oom = report.oom.as_mut().unwrap();
        oom.kind = Some("marked");
        oom.global = Some(true);
        oom.memcg = None;
        let line = render(&mut utc(), &report);
        assert!(line.contains("  system out of memory\n"), "{line}");
        assert!(line.contains("the kernel only marked it"), "{line}");
    }

    #[test]
    fn what_is_not_known_is_left_out() {
        let mut event = fixtures::raw_event();
        event.fields = field::TID | field::THREAD_COMM | field::CGROUP_ID;
        let report = decode(&event, &fixtures::decoding(CgroupMode::V1)).unwrap();
        assert_eq!(
            render(&mut utc(), &report),
            "04:47:30  cgroup id 4242  dd-worker (tid 10391)\n"
        );
    }

    #[test]
    fn untrusted_strings_reach_the_terminal_escaped() {
        let mut report = seed0(false);
        report.victim.comm = Some("\x1b]0;pwned\x07evil".into());
        let container = report.container.as_mut().unwrap();
        container.name = Some("web\x1b[2Jx".into());
        container.main_command = Some("/bin/\u{202e}sh".into());
        let line = render(&mut utc(), &report);
        assert!(
            !line.chars().any(|c| c != '\n' && c.is_control()),
            "{line:?}"
        );
        assert!(line.contains("\\x1b]0;pwned\\x07evil"), "{line}");
        assert!(line.contains("web\\x1b[2Jx"), "{line}");
        assert!(line.contains("\\u{202e}sh"), "{line}");

        let mut report = fixtures::report();
        report.cgroup.path = Some("/a\u{fffd}b".into());
        report.cgroup.path_bytes = Some(b"/a\xffb".to_vec());
        let line = render(&mut utc(), &report);
        assert!(line.contains("cgroup /a\\xffb"), "{line}");
    }

    #[test]
    fn ordinals() {
        for (n, want) in [
            (1, "1st"),
            (2, "2nd"),
            (3, "3rd"),
            (4, "4th"),
            (11, "11th"),
            (12, "12th"),
            (13, "13th"),
            (21, "21st"),
            (102, "102nd"),
        ] {
            assert_eq!(ordinal(n), want);
        }
    }
}
