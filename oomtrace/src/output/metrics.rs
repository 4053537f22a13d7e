//! Prometheus metrics for `--metrics-addr`, exposed through the official `prometheus-client`
//! crate, which also escapes label values: container names and labels come from whoever runs a
//! container, and must not be able to break the exposition.
//!
//! Kills are counted per workload (container name, image, compose project and service,
//! Kubernetes namespace, pod and container) and never per pid, comm or container id, so a
//! container recreated under the same name keeps its series (cAdvisor's
//! `container_oom_events_total` starts a new one: cadvisor#3015). The metrics count what a
//! watch shows: kills seen live that pass the filters, as `--output` receives them; kills
//! replayed by `--since` are not counted, or a restarted oomtrace would count them twice.
//!
//! Beside them, every kill seen live is counted before the filters and without labels, with
//! the kills the kernel may count twice: held against the kernel's own count, that tells kills
//! the tracer missed from kills it hid (deploy/prometheus-rules.yaml does).
//!
//! Containers' exits are counted the same way, per workload, by who ended them.
//!
//! Here the metrics recorded as kills and exits come; [`workload`] names whom a kill is
//! counted against, [`deaths`] labels the deaths that end a service, [`live`] what is read at
//! each scrape, and [`http`] serves the exposition.

mod deaths;
pub mod http;
mod live;
mod workload;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, info::Info},
    registry::{Registry, Unit},
};

use oomtrace_core::{
    attribution::oom::{OomGroup, group_kill_possible, report_oom_group},
    report::{ContainerExit, Report},
};

pub use workload::{MAX_LABEL_BYTES, Workload};

use deaths::{ExitLabels, RoleLabels};
use live::{Dropped, Live};
use workload::Admitted;

/// Distinct workloads counted; the kills of any further one go to the `overflow` series, so
/// thousands of short-lived, uniquely named containers cannot grow oomtrace.
pub const MAX_WORKLOADS: usize = 1000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KillLabels {
    #[prometheus(flatten)]
    workload: Workload,
    /// `killed`, `marked` (already exiting: the kernel neither signals nor counts it) or
    /// `unknown`.
    kind: &'static str,
}

/// The kinds of kill, each with its own series from the start: a rule comparing the kernel's
/// count with the kills seen needs a zero to compare with before the first kill.
const KINDS: [&str; 3] = ["killed", "marked", "unknown"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KillerLabel {
    killer: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// What `oomtrace_build_info` says: the version, and how kills are seen.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildInfo {
    pub version: &'static str,
    /// `ebpf` or `kmsg`.
    pub backend: &'static str,
    /// The attach mode in eBPF (`tp_btf`, `raw_tp`, `tracepoint`); `""` with kmsg.
    pub attach: &'static str,
}

/// Every metric of one watch. The event loop records; the HTTP server renders.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    kills: Family<KillLabels, Counter>,
    last_kill: Family<Workload, Gauge<f64, AtomicU64>>,
    kills_by_role: Family<RoleLabels, Counter>,
    /// The workloads of `kills`, `last_kill` and `kills_by_role`.
    killed: Admitted,
    exits: Family<ExitLabels, Counter>,
    /// The workloads of `exits`.
    exited: Admitted,
    /// Every kill seen live, before the filters, by kind.
    seen: Family<KindLabel, Counter>,
    /// Of those, the ones the kernel's `oom_kill` may count twice.
    group_victims: Counter,
    /// Kills by userspace OOM killers, by killer: apart from the kernel's.
    userspace_kills: Family<KillerLabel, Counter>,
    dropped: Arc<Dropped>,
}

impl Metrics {
    /// `not_written`: each sink's live count of lines lost (see `Sinks::loss_counters`);
    /// `kernel_oom_kills`: reads the kernel's count, at each scrape.
    pub fn new(
        build: BuildInfo,
        not_written: Vec<(&'static str, Arc<AtomicU64>)>,
        kernel_oom_kills: fn() -> Option<u64>,
    ) -> Self {
        let mut registry = Registry::default();
        let kills = Family::<KillLabels, Counter>::default();
        registry.register(
            "oomtrace_oom_kills",
            "OOM kills oomtrace saw and showed (after --container, --pid and --comm), by workload and kind",
            kills.clone(),
        );
        let last_kill = Family::<Workload, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "oomtrace_last_oom_kill_timestamp",
            "When the workload's last OOM kill happened, in seconds since the Unix epoch",
            Unit::Seconds,
            last_kill.clone(),
        );
        let kills_by_role = Family::<RoleLabels, Counter>::default();
        registry.register(
            "oomtrace_oom_kills_by_role",
            "OOM kills oomtrace showed, by workload and the victim's role: main (the container's main process, whose death ends its run), other, or unknown; victims only marked (already exiting) left out",
            kills_by_role.clone(),
        );
        let exits = Family::<ExitLabels, Counter>::default();
        registry.register(
            "oomtrace_container_exits",
            "Container exits oomtrace showed, by workload and who sent the signal the main process died of: oom_killer, runtime, userspace_oom_killer, cgroup_kill, process; unknown (a signal from a sender not known, or no exit code), none (not a signal)",
            exits.clone(),
        );
        let seen = Family::<KindLabel, Counter>::default();
        for kind in KINDS {
            drop(seen.get_or_create(&KindLabel { kind }));
        }
        registry.register(
            "oomtrace_oom_kills_seen",
            "Every OOM kill the tracer saw live, before --container, --pid and --comm, by kind: the kills to hold against oomtrace_kernel_oom_kills_total",
            seen.clone(),
        );
        let group_victims = Counter::default();
        registry.register(
            "oomtrace_oom_group_victims_seen",
            "Of the kills seen, chosen victims whose cgroup v2 ancestors may have memory.oom.group set: the kernel kills such a victim again with its group, and counts it twice",
            group_victims.clone(),
        );
        let userspace_kills = Family::<KillerLabel, Counter>::default();
        for killer in oomtrace_common::USERSPACE_OOM_KILLERS {
            drop(userspace_kills.get_or_create(&KillerLabel { killer }));
        }
        registry.register(
            "oomtrace_userspace_oom_kills",
            "Kills by userspace OOM killers (earlyoom, systemd-oomd, oomd), by killer: never in oomtrace_kernel_oom_kills_total, so kept apart from the kernel's kills",
            userspace_kills.clone(),
        );
        let dropped = Arc::new(Dropped {
            not_written,
            ..Dropped::default()
        });
        registry.register_collector(Box::new(Live {
            dropped: Arc::clone(&dropped),
            kernel_oom_kills,
        }));
        registry.register(
            "oomtrace_build",
            "oomtrace's version, and where it sees kills",
            Info::new(build),
        );
        Self {
            registry,
            kills,
            last_kill,
            kills_by_role,
            killed: Admitted::default(),
            exits,
            exited: Admitted::default(),
            seen,
            group_victims,
            userspace_kills,
            dropped,
        }
    }

    /// Counts one kill by a userspace OOM killer (one of `USERSPACE_OOM_KILLERS`).
    pub fn record_userspace_kill(&self, killer: &str) {
        if let Some(killer) = oomtrace_common::USERSPACE_OOM_KILLERS
            .into_iter()
            .find(|k| *k == killer)
        {
            self.userspace_kills
                .get_or_create(&KillerLabel { killer })
                .inc();
        }
    }

    /// Counts one kill seen live, whether the filters show it or not.
    pub fn record_seen(&self, report: &Report) {
        self.seen
            .get_or_create(&KindLabel {
                kind: kind_of(report),
            })
            .inc();
        if may_be_counted_twice(report) {
            self.group_victims.inc();
        }
    }

    /// Counts one kill a watch showed.
    pub fn record_kill(&self, report: &Report, now: SystemTime) {
        let workload = self.killed.admit(Workload::of(report));
        let when = report.time.unwrap_or(now);
        let seconds = when
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let gauge = self.last_kill.get_or_create(&workload);
        // Kills held for their container's name can leave out of time order.
        if seconds > gauge.get() {
            gauge.set(seconds);
        }
        drop(gauge);
        if let Some(role) = deaths::role_of(report) {
            self.kills_by_role
                .get_or_create(&RoleLabels {
                    workload: workload.clone(),
                    role,
                })
                .inc();
        }
        self.kills
            .get_or_create(&KillLabels {
                workload,
                kind: kind_of(report),
            })
            .inc();
    }

    /// Counts one container exit a watch showed.
    pub fn record_exit(&self, exit: &ContainerExit) {
        let workload = self
            .exited
            .admit(Workload::in_container(Some(&exit.container)));
        self.exits
            .get_or_create(&ExitLabels {
                workload,
                killed_by: deaths::killed_by_of(exit),
            })
            .inc();
    }

    /// The kernel program's count of records it found no room for.
    pub fn set_ring_buffer_full(&self, count: u64) {
        self.dropped
            .ring_buffer_full
            .store(count, Ordering::Relaxed);
    }

    /// The watch's count of records and log lines it could not read.
    pub fn set_unreadable(&self, count: u64) {
        self.dropped.unreadable.store(count, Ordering::Relaxed);
    }

    /// The exposition: OpenMetrics when the scraper asks for it, else Prometheus' text format.
    pub fn render(&self, openmetrics: bool) -> String {
        let mut out = String::new();
        let encoded = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        // Writing to a String cannot fail, nor can any metric here.
        debug_assert!(encoded.is_ok());
        out
    }
}

fn kind_of(report: &Report) -> &'static str {
    match report.oom.as_ref().and_then(|o| o.kind) {
        Some("killed") => "killed",
        Some("marked") => "marked",
        _ => "unknown",
    }
}

/// Whether the kernel's `oom_kill` may count this kill twice: after killing its chosen victim,
/// the kernel kills every process of the highest cgroup with `memory.oom.group` set between
/// the victim's and the limited one, the victim again among them. That second kill is
/// counted, but the victim, marked already, is not marked again, so the tracer sees it once.
/// Only cgroup v2 has group kills. True where the victim's cgroups could not be read, or
/// whether it was a member could not be told: an upper bound, never an undercount.
fn may_be_counted_twice(report: &Report) -> bool {
    let oom = report.oom.as_ref();
    let possible = oom.and_then(|o| o.kind) != Some("marked")
        // A member other than the chosen victim is killed, and counted, once.
        && oom.and_then(|o| o.group_kill) != Some(true)
        && report.cgroup.mode != Some("v1")
        && group_kill_possible(report.facts.as_deref());
    // Where the kernel's walk to the group's cgroup can be retraced, it says which it is.
    possible && oom.is_none_or(|oom| !matches!(report_oom_group(report, oom), OomGroup::Alone))
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeMap,
        time::{Duration, SystemTime},
    };

    use super::*;
    use oomtrace_core::report::{Container, OomContext};

    pub(super) fn metrics() -> Metrics {
        Metrics::new(
            BuildInfo {
                version: "9.9.9",
                backend: "ebpf",
                attach: "tp_btf",
            },
            Vec::new(),
            || Some(42),
        )
    }

    pub(super) fn kill_in(name: Option<&str>, id: &str, labels: &[(&str, &str)]) -> Report {
        let mut report = oomtrace_core::testing::report();
        report.container = Some(Container {
            runtime: "docker",
            id: id.to_owned(),
            name: name.map(str::to_owned),
            image: Some("shop/web:1.2".into()),
            labels: (!labels.is_empty()).then(|| {
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>()
            }),
            ..Container::default()
        });
        report
    }

    fn kinded(mut report: Report, kind: &'static str) -> Report {
        report.oom.get_or_insert_with(OomContext::default).kind = Some(kind);
        report
    }

    /// The sample lines of the exposition (no comments), for exact comparison.
    pub(super) fn samples(metrics: &Metrics) -> Vec<String> {
        metrics
            .render(false)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    }

    const WEB: &str = r#"scope="container",container="shop-web-1",image="shop/web:1.2",compose_project="shop",compose_service="web",k8s_namespace="",k8s_pod="",k8s_pod_uid="",k8s_container="""#;

    #[test]
    fn userspace_kills_are_counted_by_killer_apart_from_the_kernel_s() {
        let metrics = metrics();
        let series = |metrics: &Metrics| -> Vec<String> {
            let mut series: Vec<String> = samples(metrics)
                .into_iter()
                .filter(|s| s.starts_with("oomtrace_userspace_oom_kills_total"))
                .collect();
            series.sort();
            series
        };
        // Every killer's series is there from the start, at 0.
        assert_eq!(
            series(&metrics),
            vec![
                r#"oomtrace_userspace_oom_kills_total{killer="earlyoom"} 0"#,
                r#"oomtrace_userspace_oom_kills_total{killer="oomd"} 0"#,
                r#"oomtrace_userspace_oom_kills_total{killer="systemd-oomd"} 0"#,
            ]
        );
        metrics.record_userspace_kill("earlyoom");
        metrics.record_userspace_kill("earlyoom");
        // A name that is no userspace OOM killer's makes no series of its own.
        metrics.record_userspace_kill("evil\"name");
        let after = series(&metrics);
        assert!(
            after
                .contains(&r#"oomtrace_userspace_oom_kills_total{killer="earlyoom"} 2"#.to_owned()),
            "{after:?}"
        );
        assert_eq!(after.len(), 3, "{after:?}");
        assert!(
            samples(&metrics)
                .iter()
                .any(|s| s.starts_with("oomtrace_oom_kills_seen_total") && s.ends_with(" 0")),
            "the kernel's kills are not touched"
        );
    }

    #[test]
    fn a_recreated_container_keeps_its_series() {
        let metrics = metrics();
        let compose = [
            ("com.docker.compose.project", "shop"),
            ("com.docker.compose.service", "web"),
        ];
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut first = kinded(kill_in(Some("shop-web-1"), "aaaa", &compose), "killed");
        first.time = Some(at);
        metrics.record_kill(&first, SystemTime::now());
        // Same name, new id: `docker compose up` recreated it.
        let mut second = kinded(kill_in(Some("shop-web-1"), "bbbb", &compose), "killed");
        second.time = Some(at + Duration::from_secs(60));
        metrics.record_kill(&second, SystemTime::now());
        let mut host = kinded(oomtrace_core::testing::report(), "marked");
        host.container = None;
        host.time = Some(at);
        metrics.record_kill(&host, SystemTime::now());

        let samples = samples(&metrics);
        let host_labels = r#"scope="host",container="",image="",compose_project="",compose_service="",k8s_namespace="",k8s_pod="",k8s_pod_uid="",k8s_container="""#;
        for want in [
            format!(r#"oomtrace_oom_kills_total{{{WEB},kind="killed"}} 2"#),
            format!(r#"oomtrace_oom_kills_total{{{host_labels},kind="marked"}} 1"#),
            format!("oomtrace_last_oom_kill_timestamp_seconds{{{WEB}}} 1700000060.0"),
            format!("oomtrace_last_oom_kill_timestamp_seconds{{{host_labels}}} 1700000000.0"),
            r#"oomtrace_events_dropped_total{reason="ring_buffer_full"} 0"#.to_owned(),
            "oomtrace_kernel_oom_kills_total 42".to_owned(),
            r#"oomtrace_build_info{version="9.9.9",backend="ebpf",attach="tp_btf"} 1"#.to_owned(),
        ] {
            assert!(samples.contains(&want), "no {want} in {samples:#?}");
        }
        assert_eq!(
            samples
                .iter()
                .filter(|s| s.starts_with("oomtrace_oom_kills_total"))
                .count(),
            2,
            "{samples:#?}"
        );
        let text = metrics.render(false);
        for id in ["aaaa", "bbbb", "10390", "dd-worker"] {
            assert!(!text.contains(id), "{id} must not be a label: {text}");
        }
    }

    #[test]
    fn every_kill_seen_is_counted_with_those_the_kernel_may_count_twice() {
        use oomtrace_core::report::{KernelFacts, MemcgReading};
        let metrics = metrics();
        let before = samples(&metrics);
        for want in [
            r#"oomtrace_oom_kills_seen_total{kind="killed"} 0"#,
            r#"oomtrace_oom_kills_seen_total{kind="marked"} 0"#,
            r#"oomtrace_oom_kills_seen_total{kind="unknown"} 0"#,
            "oomtrace_oom_group_victims_seen_total 0",
        ] {
            assert!(
                before.contains(&want.to_owned()),
                "no {want} in {before:#?}"
            );
        }

        // `oom_group` for each level of the victim's cgroups; `None`: not read at all.
        let kill = |mode: &'static str,
                    kind: Option<&'static str>,
                    member: Option<bool>,
                    oom_group: Option<&[Option<bool>]>| {
            let mut report = oomtrace_core::testing::report();
            report.container = None;
            report.cgroup.mode = Some(mode);
            let oom = report.oom.get_or_insert_with(OomContext::default);
            oom.kind = kind;
            oom.group_kill = member;
            report.facts = oom_group.map(|levels| {
                Box::new(KernelFacts {
                    memcgs: levels
                        .iter()
                        .map(|&oom_group| MemcgReading {
                            oom_group,
                            ..MemcgReading::default()
                        })
                        .collect(),
                    ..KernelFacts::default()
                })
            });
            report
        };
        let set = Some(true);
        let unset = Some(false);
        // memory.oom.group set above the cgroup whose limit was hit: the kernel's walk stops
        // at that cgroup, so no group is killed; set at the limited cgroup, the group is.
        let limited_at = |memcg: &str| {
            let mut report = kill("v2", Some("killed"), unset, None);
            report.cgroup.path = Some("/pod/app".into());
            report.facts = Some(Box::new(KernelFacts {
                memcgs: vec![
                    MemcgReading {
                        id: 20,
                        oom_group: unset,
                        ..MemcgReading::default()
                    },
                    MemcgReading {
                        id: 10,
                        oom_group: set,
                        ..MemcgReading::default()
                    },
                ],
                cgroup_ids: vec![20, 10],
                ..KernelFacts::default()
            }));
            report.oom.as_mut().unwrap().memcg = Some(memcg.to_owned());
            report
        };
        for (report, counted_twice) in [
            // cgroup v1 has no group kills, whatever could not be read.
            (kill("v1", Some("killed"), None, None), false),
            // The chosen victim of a group kill: killed, then killed again with its group.
            (kill("v2", Some("killed"), unset, Some(&[unset, set])), true),
            // A member beside it: killed once.
            (kill("v2", Some("killed"), set, Some(&[set])), false),
            // No level has memory.oom.group: no group kill.
            (
                kill("v2", Some("killed"), unset, Some(&[unset, unset])),
                false,
            ),
            // Not known: the kernel log's kills have no cgroup readings.
            (kill("v2", Some("killed"), None, None), true),
            (
                kill("v2", Some("killed"), unset, Some(&[unset, None])),
                true,
            ),
            // Whether the kernel counted it at all is not known either.
            (kill("v2", None, None, None), true),
            // Only marked: not counted, not even once.
            (kill("v2", Some("marked"), unset, Some(&[set])), false),
            (limited_at("/pod/app"), false),
            (limited_at("/pod"), true),
        ] {
            let group_before = metrics.group_victims.get();
            metrics.record_seen(&report);
            assert_eq!(
                metrics.group_victims.get() - group_before,
                u64::from(counted_twice),
                "{:?}, {:?}, {:?}",
                report.cgroup.mode,
                report.oom,
                report.facts
            );
        }
        let after = samples(&metrics);
        for want in [
            r#"oomtrace_oom_kills_seen_total{kind="killed"} 8"#,
            r#"oomtrace_oom_kills_seen_total{kind="marked"} 1"#,
            r#"oomtrace_oom_kills_seen_total{kind="unknown"} 1"#,
            "oomtrace_oom_group_victims_seen_total 5",
        ] {
            assert!(after.contains(&want.to_owned()), "no {want} in {after:#?}");
        }
        // Seen is not shown: nothing was recorded against a workload.
        assert!(
            !after
                .iter()
                .any(|s| s.starts_with("oomtrace_oom_kills_total")),
            "{after:#?}"
        );
    }

    #[test]
    fn openmetrics_when_asked_ends_with_eof() {
        let text = metrics().render(true);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE oomtrace_build info"), "{text}");
    }

    #[test]
    fn hostile_names_cannot_break_the_exposition() {
        let metrics = metrics();
        let evil = "x\"} 1\nevil_metric{a=\"b\\\r";
        metrics.record_kill(&kill_in(Some(evil), "dddd", &[]), SystemTime::now());
        for openmetrics in [false, true] {
            let text = metrics.render(openmetrics);
            assert!(
                text.contains(r#"container="x\"} 1\nevil_metric{a=\"b\\"#),
                "{text}"
            );
            for line in text.lines() {
                assert!(
                    line.starts_with("# ") || line.starts_with("oomtrace_"),
                    "a line not oomtrace's: {line:?}"
                );
            }
        }
    }

    #[test]
    fn workloads_past_the_cap_fold_into_overflow() {
        let metrics = metrics();
        for n in 0..MAX_WORKLOADS + 10 {
            let name = format!("c{n}");
            metrics.record_kill(&kill_in(Some(&name), &name, &[]), SystemTime::now());
        }
        // A workload counted before the cap keeps counting in its own series.
        metrics.record_kill(&kill_in(Some("c0"), "c0-new", &[]), SystemTime::now());
        let long = "n".repeat(MAX_LABEL_BYTES + 1);
        metrics.record_kill(&kill_in(Some(&long), "long", &[]), SystemTime::now());
        let samples = samples(&metrics);
        let count = |name: &str| samples.iter().filter(|s| s.starts_with(name)).count();
        assert_eq!(count("oomtrace_oom_kills_total{"), MAX_WORKLOADS + 1);
        assert_eq!(
            count("oomtrace_last_oom_kill_timestamp_seconds{"),
            MAX_WORKLOADS + 1
        );
        let overflow = r#"oomtrace_oom_kills_total{scope="overflow",container="",image="",compose_project="",compose_service="",k8s_namespace="",k8s_pod="",k8s_pod_uid="",k8s_container="",kind="killed"} 11"#;
        assert!(samples.contains(&overflow.to_owned()), "no overflow line");
        let c0 = r#"oomtrace_oom_kills_total{scope="container",container="c0",image="shop/web:1.2",compose_project="",compose_service="",k8s_namespace="",k8s_pod="",k8s_pod_uid="",k8s_container="",kind="killed"} 2"#;
        assert!(samples.contains(&c0.to_owned()), "c0 lost its series");
    }
}
