//! Whether a death ended the service: kills counted by the victim's role, and containers'
//! exits by who killed them. `oomtrace_oom_kills_total` says that a workload's processes were
//! killed; these tell an alert a killed main process, which ends the container's run, from a
//! child killed while the container stayed up, and a container the OOM killer ended from one
//! `docker stop`, a userspace OOM killer or a person did.
//!
//! Every label value comes from a fixed list, so the series stay bounded by the workloads.

use prometheus_client::encoding::EncodeLabelSet;

use oomtrace_core::{
    attribution::killer::exit_signal,
    report::{ContainerExit, Report},
};

use super::Workload;

/// `oomtrace_oom_kills_by_role_total`: a family of its own, not a label of
/// `oomtrace_oom_kills_total`, whose series a `sum without (kind)` (the shipped rules', and
/// any copy of them) must keep adding up to a workload's kills.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RoleLabels {
    #[prometheus(flatten)]
    pub(super) workload: Workload,
    /// `main`, `other` or `unknown`.
    pub(super) role: &'static str,
}

/// The victim's role, from `victim.is_container_main`; `None` for a kill not counted by role:
/// a victim only marked was already exiting, and its death is no kill of its own.
pub(super) fn role_of(report: &Report) -> Option<&'static str> {
    if report.oom.as_ref().and_then(|o| o.kind) == Some("marked") {
        return None;
    }
    Some(match report.victim.is_container_main {
        Some(true) => "main",
        Some(false) => "other",
        None => "unknown",
    })
}

/// `oomtrace_container_exits_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ExitLabels {
    #[prometheus(flatten)]
    pub(super) workload: Workload,
    /// `killed_by.kind`, `none` or `unknown`: see [`killed_by_of`].
    pub(super) killed_by: &'static str,
}

/// Who ended the container: the kind of sender of the signal its main process died of;
/// `none` where the exit code says it did not die of a signal; `unknown` where it says it did
/// and the kernel's record does not name the sender, or the code is not known.
pub(super) fn killed_by_of(exit: &ContainerExit) -> &'static str {
    if let Some(killer) = &exit.killed_by {
        return match killer.kind {
            Some(
                kind @ ("oom_killer"
                | "runtime"
                | "userspace_oom_killer"
                | "cgroup_kill"
                | "process"),
            ) => kind,
            _ => "unknown",
        };
    }
    match exit.exit_code {
        Some(code) if exit_signal(code).is_none() => "none",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use crate::output::metrics::{
        MAX_WORKLOADS,
        tests::{kill_in, metrics, samples},
    };
    use oomtrace_core::report::{ContainerExit, KilledBy, OomContext};

    const WEB: &str = r#"scope="container",container="web",image="shop/web:1.2",compose_project="",compose_service="",k8s_namespace="",k8s_pod="",k8s_pod_uid="",k8s_container="""#;

    fn exit(code: Option<i64>, kind: Option<Option<&'static str>>) -> ContainerExit {
        let container = kill_in(Some("web"), "aaaa", &[]).container.unwrap();
        ContainerExit {
            schema: 1,
            event: "container_exit",
            time: None,
            container,
            exit_code: code,
            runtime_oom_killed: Some(false),
            restart_count: None,
            restarting: None,
            kills: Vec::new(),
            killed_by: kind.map(|kind| KilledBy {
                kind,
                signal: Some("SIGKILL"),
                time: None,
                oom_id: None,
                sender: None,
                after: None,
            }),
            runtime_oom_killed_reason: None,
            host: None,
            last_kill: None,
        }
    }

    #[test]
    fn kills_are_counted_by_the_victim_s_role_marked_ones_left_out() {
        // (is_container_main, oom.kind, the role's series, or none)
        let rows: [(Option<bool>, &'static str, Option<&str>); 5] = [
            (Some(true), "killed", Some("main")),
            (Some(false), "killed", Some("other")),
            (None, "killed", Some("unknown")),
            (Some(false), "unknown", Some("other")),
            (Some(true), "marked", None),
        ];
        for (main, kind, role) in rows {
            let metrics = metrics();
            let mut report = kill_in(Some("web"), "aaaa", &[]);
            report.victim.is_container_main = main;
            report.oom.get_or_insert_with(OomContext::default).kind = Some(kind);
            metrics.record_kill(&report, SystemTime::now());
            let samples = samples(&metrics);
            let by_role: Vec<&String> = samples
                .iter()
                .filter(|s| s.starts_with("oomtrace_oom_kills_by_role_total"))
                .collect();
            let want = role.map(|role| {
                format!(r#"oomtrace_oom_kills_by_role_total{{{WEB},role="{role}"}} 1"#)
            });
            assert_eq!(by_role, want.iter().collect::<Vec<_>>(), "{main:?} {kind}");
            // The kill counter keeps its labels and counts the marked kill too.
            let kills = format!(r#"oomtrace_oom_kills_total{{{WEB},kind="{kind}"}} 1"#);
            assert!(samples.contains(&kills), "no {kills} in {samples:#?}");
        }
    }

    #[test]
    fn exits_are_counted_by_who_ended_the_container() {
        // (exit code, killed_by.kind, the series' killed_by)
        type Row = (Option<i64>, Option<Option<&'static str>>, &'static str);
        let rows: [Row; 10] = [
            (Some(137), Some(Some("oom_killer")), "oom_killer"),
            (Some(137), Some(Some("runtime")), "runtime"),
            (
                Some(137),
                Some(Some("userspace_oom_killer")),
                "userspace_oom_killer",
            ),
            (Some(137), Some(Some("cgroup_kill")), "cgroup_kill"),
            (Some(143), Some(Some("process")), "process"),
            // The sender's kind not told: a signal, from a sender not known.
            (Some(137), Some(None), "unknown"),
            (Some(137), None, "unknown"),
            (None, None, "unknown"),
            (Some(0), None, "none"),
            // Past 128 + 64 no signal number: the process exited with that code.
            (Some(255), None, "none"),
        ];
        for (code, kind, label) in rows {
            let metrics = metrics();
            metrics.record_exit(&exit(code, kind));
            let exits: Vec<String> = samples(&metrics)
                .into_iter()
                .filter(|s| s.starts_with("oomtrace_container_exits_total"))
                .collect();
            assert_eq!(
                exits,
                [format!(
                    r#"oomtrace_container_exits_total{{{WEB},killed_by="{label}"}} 1"#
                )],
                "{code:?} {kind:?}"
            );
        }
    }

    #[test]
    fn exits_have_a_cap_of_their_own() {
        let metrics = metrics();
        for n in 0..MAX_WORKLOADS + 5 {
            let mut exit = exit(Some(0), None);
            exit.container.name = Some(format!("job-{n}"));
            metrics.record_exit(&exit);
        }
        // A kill after a thousand exits of other containers still gets its workload's series.
        metrics.record_kill(&kill_in(Some("web"), "aaaa", &[]), SystemTime::now());
        metrics.record_exit(&exit(Some(137), Some(Some("oom_killer"))));
        let samples = samples(&metrics);
        let count = |prefix: &str| samples.iter().filter(|s| s.starts_with(prefix)).count();
        assert_eq!(
            count("oomtrace_container_exits_total{"),
            MAX_WORKLOADS + 2,
            "a thousand workloads and the overflow, with two kinds of exit"
        );
        let overflow = r#"scope="overflow",container="",image="",compose_project="",compose_service="",k8s_namespace="",k8s_pod="",k8s_pod_uid="",k8s_container="""#;
        for want in [
            format!(r#"oomtrace_container_exits_total{{{overflow},killed_by="none"}} 5"#),
            format!(r#"oomtrace_container_exits_total{{{overflow},killed_by="oom_killer"}} 1"#),
            format!(r#"oomtrace_oom_kills_total{{{WEB},kind="killed"}} 1"#),
        ] {
            assert!(samples.contains(&want), "no {want}");
        }
    }
}
