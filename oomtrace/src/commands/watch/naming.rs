//! From the cgroup to the container for the watch's reports, and how long a report may wait
//! for the name a runtime is about to give: which runtime is asked about which id.

use std::time::Duration;

use super::pipeline::Context;
use crate::attribution::{
    enrich::{self, Caches},
    pod_members,
    runtime::Status,
};
use oomtrace_core::{output::filter::Verdict, report::Report};

/// How long a report waits for a runtime to name a container it has not seen yet. A healthy
/// daemon answers an inspect in milliseconds.
pub const NAME_WAIT: Duration = Duration::from_millis(250);
/// How long a report that only its container's name can filter waits for the runtime.
pub const FILTER_NAME_WAIT: Duration = Duration::from_secs(10);

/// From the cgroup to the container. A kill seen live is attributed from its cgroup and what
/// the runtimes say now; a replayed one keeps what the journal recorded (a removed container's
/// name, whether the victim was its main process), and the runtimes fill only what it lacks.
pub fn attribute(report: &mut Report, context: &Context) {
    let caches = caches(context);
    match (report.past, caches.docker.or(caches.containerd)) {
        (false, _) => {
            enrich::annotate(report, caches);
            if let (Some(root), Some(containerd)) = (&context.cgroup_root, caches.containerd) {
                let members = pod_members::count(report, root, containerd);
                if let Some(pod) = report.container.as_mut().and_then(|c| c.pod.as_mut()) {
                    pod.containers = members;
                }
            }
        }
        (true, Some(_)) => enrich::fill_missing(report, caches),
        (true, None) => {}
    }
}

pub fn caches(context: &Context) -> Caches<'_> {
    Caches {
        docker: context.docker.as_ref().map(|d| &d.cache),
        containerd: context.containerd.as_ref().map(|c| &c.cache),
    }
}

/// The runtime a report's container name is asked of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    Docker,
    Containerd,
}

pub fn answers(context: &Context, asked: Asked) -> bool {
    let status = match asked {
        Asked::Docker => context.docker.as_ref().map(|d| &d.status),
        Asked::Containerd => context.containerd.as_ref().map(|c| &c.status),
    };
    status.is_some_and(|s| *s.borrow() != Status::Unavailable)
}

/// The runtime that could still name `report`'s container, and the id to ask it about: a
/// Docker container without a name or, while it may run, without its main pid; an id in a
/// cgroup path that only Docker can say is a container (`--cgroup-parent`); or a Kubernetes
/// container containerd has not described, or whose main pid it has not given yet.
fn unnamed<'r>(context: &Context, report: &'r Report) -> Option<(Asked, &'r str)> {
    match &report.container {
        Some(c) if c.runtime == "docker" => {
            // A kill can also come before the start's inspect has given PID 1, which tells
            // whether the victim's death ends the container.
            let cache = &context.docker.as_ref()?.cache;
            (c.name.is_none() || cache.awaits_main_pid(&c.id)).then_some((Asked::Docker, &c.id))
        }
        Some(c) if matches!(c.runtime, "kubernetes" | "containerd") => {
            // Unknown, or known before its task's start was followed: a kill can come first.
            let cache = &context.containerd.as_ref()?.cache;
            cache
                .awaits_main_pid(&c.id)
                .then_some((Asked::Containerd, &c.id))
        }
        Some(_) => None,
        None => {
            context.docker.as_ref()?;
            let id = report
                .cgroup
                .path
                .as_deref()
                .and_then(oomtrace_core::attribution::cgroup_path::unclaimed_id)?;
            Some((Asked::Docker, id))
        }
    }
}

/// How long `report` may wait for its container's name, if it lacks one a runtime could
/// give; the runtime, and the id to ask it about.
pub fn name_wait<'r>(context: &Context, report: &'r Report) -> Option<(Duration, Asked, &'r str)> {
    let (asked, id) = unnamed(context, report)?;
    if report.container.is_none() {
        // Not confirmed yet: until Docker answers, a `--container` filter cannot decide.
        let wait = if context.filter.containers.is_empty() {
            NAME_WAIT
        } else {
            FILTER_NAME_WAIT
        };
        return Some((wait, asked, id));
    }
    let wait = match context.filter.verdict(report) {
        Verdict::NeedsName => FILTER_NAME_WAIT,
        Verdict::Shown | Verdict::Hidden => NAME_WAIT,
    };
    Some((wait, asked, id))
}
