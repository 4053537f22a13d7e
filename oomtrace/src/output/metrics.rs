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
//! Here the metrics recorded as kills come; [`workload`] names whom a kill is counted
//! against, [`live`] what is read at each scrape, and [`http`] serves the exposition.

pub mod http;
mod live;
mod workload;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::SystemTime,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, info::Info},
    registry::{Registry, Unit},
};

use oomtrace_core::report::Report;

pub use workload::{MAX_LABEL_BYTES, Workload};

use live::{Dropped, Live};

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
    /// Series in `last_kill`: one per workload, the overflow's included.
    workloads: AtomicUsize,
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
            workloads: AtomicUsize::new(0),
            dropped,
        }
    }

    /// Counts one kill a watch showed.
    pub fn record_kill(&self, report: &Report, now: SystemTime) {
        let mut workload = Workload::of(report).unwrap_or_else(Workload::overflow);
        if self.last_kill.get(&workload).is_none() {
            // Only the event loop records, so the count cannot change under this check.
            if self.workloads.load(Ordering::Relaxed) >= MAX_WORKLOADS {
                workload = Workload::overflow();
            }
            if self.last_kill.get(&workload).is_none() {
                self.workloads.fetch_add(1, Ordering::Relaxed);
            }
        }
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
        let kind = match report.oom.as_ref().and_then(|o| o.kind) {
            Some("killed") => "killed",
            Some("marked") => "marked",
            _ => "unknown",
        };
        self.kills
            .get_or_create(&KillLabels { workload, kind })
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
