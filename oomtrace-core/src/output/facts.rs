//! What a kill means beyond its fields, decided once for every text that tells it: who the
//! victim was to its container, which cgroup's limit it hit, whether the kernel only marked
//! it, and what the container's restart policy allows. The kill line and `oomtrace explain`
//! word these facts each their own way; what the facts are is settled here.

use crate::report::{Container, Report, Victim, exact};

/// Programs that run as a container's PID 1 to start the app, which decides its exit.
pub const INIT_SHIMS: [&str; 6] = [
    "docker-init",
    "tini",
    "tini-static",
    "dumb-init",
    "s6-svscan",
    "catatonit",
];

/// The victim's place in its container, as far as its record tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The container's main process, and its PID 1.
    MainPid1,
    /// The main process, run by an init shim, or not known to be PID 1.
    Main,
    /// Another process; `from_outside`: its parent is not in the container, as with
    /// `docker exec`.
    Other { from_outside: bool },
    /// The record does not say (the kernel log does not).
    Unknown,
}

impl Role {
    pub fn of(victim: &Victim) -> Self {
        match (victim.is_container_main, victim.is_container_init) {
            (Some(true), Some(true)) => Self::MainPid1,
            (Some(true), _) => Self::Main,
            (Some(false), _) => Self::Other {
                from_outside: victim.parent_in_container == Some(false),
            },
            (None, _) => Self::Unknown,
        }
    }

    pub fn is_main(self) -> bool {
        matches!(self, Self::MainPid1 | Self::Main)
    }
}

/// The program's file name.
pub fn program(command: &str) -> &str {
    command.rsplit('/').next().unwrap_or(command)
}

/// The victim's name, as its exact bytes.
pub fn victim_name(report: &Report) -> &[u8] {
    let v = &report.victim;
    match (&v.comm, &v.thread_comm) {
        (Some(comm), _) => exact(comm, v.comm_bytes.as_deref()),
        (None, Some(comm)) => exact(comm, v.thread_comm_bytes.as_deref()),
        (None, None) => b"?",
    }
}

/// The victim's total RSS, when the kernel gave its anonymous part.
pub fn victim_rss(report: &Report) -> Option<u64> {
    let v = &report.victim;
    v.rss_anon_bytes
        .map(|anon| anon + v.rss_file_bytes.unwrap_or(0) + v.rss_shmem_bytes.unwrap_or(0))
}

/// The cgroup whose limit the kill hit, as its exact bytes.
pub fn limited_cgroup(report: &Report) -> Option<&[u8]> {
    let oom = report.oom.as_ref()?;
    Some(exact(oom.memcg.as_deref()?, oom.memcg_bytes.as_deref()))
}

/// The cgroup the victim lived in, as its exact bytes.
pub fn own_cgroup(report: &Report) -> Option<&[u8]> {
    let path = report.cgroup.path.as_deref()?;
    Some(exact(path, report.cgroup.path_bytes.as_deref()))
}

/// The victim was already exiting: the kernel marked it, sent no SIGKILL and did not count it.
pub fn only_marked(report: &Report) -> bool {
    report.oom.as_ref().and_then(|o| o.kind) == Some("marked")
}

/// How many retries an `on-failure` policy allows; `None` for another policy or no maximum.
pub fn retries_allowed(c: &Container) -> Option<u32> {
    c.restart_max_retries
        .filter(|&max| max > 0 && c.restart_policy.as_deref() == Some("on-failure"))
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
    let max = retries_allowed(c)?;
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
