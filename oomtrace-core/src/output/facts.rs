//! What a kill means beyond its fields, decided once for every text that tells it: who the
//! victim was to its container, which cgroup's limit it hit, whether the kernel only marked
//! it, and what the container's restart policy allows. The kill line and `oomtrace explain`
//! word these facts each their own way; what the facts are is settled here.

use crate::{
    attribution::cgroup_path::{cgroup_prefix, locate},
    report::{Container, Report, Victim, exact},
};

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

/// The cgroup the kernel kills whole with the victim (`memory.oom.group`), as its exact bytes.
pub fn group_cgroup(report: &Report) -> Option<&[u8]> {
    let oom = report.oom.as_ref()?;
    Some(exact(
        oom.group_memcg.as_deref()?,
        oom.group_memcg_bytes.as_deref(),
    ))
}

/// The report's container's own cgroup, as its exact bytes: where the victim's cgroup path
/// names that container (the victim may live in a cgroup below it).
pub fn container_cgroup(report: &Report) -> Option<&[u8]> {
    let (depth, _) = container_depth(report)?;
    cgroup_prefix(own_cgroup(report)?, depth)
}

/// The cgroup of the report's container's pod, as its exact bytes: the parent of the
/// container's own cgroup, where the path names that container in that pod.
pub fn pod_cgroup(report: &Report) -> Option<&[u8]> {
    let (depth, in_pod) = container_depth(report)?;
    in_pod.then(|| cgroup_prefix(own_cgroup(report)?, depth - 1))?
}

/// The limit hit was the pod's: `oom.memcg` is exactly the report's container's pod cgroup.
pub fn pod_limit_hit(report: &Report) -> bool {
    pod_cgroup(report).is_some_and(|pod| limited_cgroup(report) == Some(pod))
}

/// How many components the report's container's own cgroup has, and whether it sits in the
/// report's pod: read off the victim's path by the rules that name containers, and only when
/// they name the container (and pod) the report has, so that a report whose container came
/// from elsewhere is never cut at another container's cgroup.
fn container_depth(report: &Report) -> Option<(usize, bool)> {
    let container = report.container.as_ref()?;
    let found = locate(report.cgroup.path.as_deref()?)?;
    if found.container.id != container.id {
        return None;
    }
    let in_pod = match (&found.container.pod, &container.pod) {
        (Some(found), Some(pod)) => found.uid == pod.uid,
        _ => false,
    };
    Some((found.depth, in_pod))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{OomContext, Pod};

    const UID: &str = "b67e5888-667c-48fb-824e-7c2b4da2cb28";
    const ID: &str = "14ee10eb9e4c160434bca9d4c8519d350d4b9158f9d7a291758c2e7811ec968a";

    /// A report of a kill in `path`, by a container `id` of pod `uid` (if any), at `memcg`'s limit.
    fn kill(path: &[u8], id: &str, uid: Option<&str>, memcg: &str) -> Report {
        let mut report = crate::testing::report();
        let (text, bytes) = crate::report::kernel_text(path);
        (report.cgroup.path, report.cgroup.path_bytes) = (Some(text), bytes);
        report.container = Some(Container {
            runtime: "kubernetes",
            id: id.to_owned(),
            pod: uid.map(|uid| Pod {
                uid: uid.to_owned(),
                namespace: None,
                name: None,
                qos: None,
                containers: None,
            }),
            ..Container::default()
        });
        report.oom = Some(OomContext {
            memcg: Some(memcg.to_owned()),
            ..OomContext::default()
        });
        report
    }

    #[test]
    fn the_container_s_and_the_pod_s_cgroups_are_read_off_the_victim_s_path() {
        let pod = format!("/kubepods/pod{UID}");
        let own = format!("{pod}/{ID}");
        let below = format!("{own}/worker");
        let docker = format!("/docker/{ID}");
        let other = "4f2c".repeat(16);
        let not_utf8 = [own.as_bytes(), b"/a\xff"].concat();
        // (path, container id, pod uid, limited cgroup; the container's cgroup, the pod's, and
        // whether the limit hit was the pod's)
        type Case<'a> = (
            &'a [u8],
            &'a str,
            Option<&'a str>,
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            bool,
        );
        let cases: Vec<Case> = vec![
            (
                own.as_bytes(),
                ID,
                Some(UID),
                &pod,
                Some(&own),
                Some(&pod),
                true,
            ),
            (
                below.as_bytes(),
                ID,
                Some(UID),
                &pod,
                Some(&own),
                Some(&pod),
                true,
            ),
            (
                own.as_bytes(),
                ID,
                Some(UID),
                &own,
                Some(&own),
                Some(&pod),
                false,
            ),
            (
                own.as_bytes(),
                ID,
                Some(UID),
                "/kubepods",
                Some(&own),
                Some(&pod),
                false,
            ),
            // The report's pod or container is not the one the path names.
            (
                own.as_bytes(),
                ID,
                Some("0c6a"),
                &pod,
                Some(&own),
                None,
                false,
            ),
            (own.as_bytes(), ID, None, &pod, Some(&own), None, false),
            (own.as_bytes(), &other, Some(UID), &pod, None, None, false),
            // No pod at all.
            (
                docker.as_bytes(),
                ID,
                None,
                "/docker",
                Some(&docker),
                None,
                false,
            ),
            (
                b"/system.slice/sshd.service",
                ID,
                Some(UID),
                &pod,
                None,
                None,
                false,
            ),
            // A name that is not UTF-8 below the container: its cgroup is still whole bytes.
            (&not_utf8, ID, Some(UID), &pod, Some(&own), Some(&pod), true),
        ];
        for (path, id, uid, memcg, container, pod, pod_s) in cases {
            let report = kill(path, id, uid, memcg);
            let what = String::from_utf8_lossy(path);
            assert_eq!(
                container_cgroup(&report),
                container.map(str::as_bytes),
                "{what}"
            );
            assert_eq!(pod_cgroup(&report), pod.map(str::as_bytes), "{what}");
            assert_eq!(pod_limit_hit(&report), pod_s, "{what} at {memcg}");
        }
    }
}
