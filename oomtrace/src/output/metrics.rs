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

mod http;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::SystemTime,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::Gauge,
        info::Info,
    },
    registry::{Registry, Unit},
};

use oomtrace_core::report::Report;

pub use http::{Listener, bind};

/// Distinct workloads counted; the kills of any further one go to the `overflow` series, so
/// thousands of short-lived, uniquely named containers cannot grow oomtrace.
pub const MAX_WORKLOADS: usize = 1000;
/// A longer label value (Kubernetes caps its names at 253) sends its kill to the `overflow`
/// series: cut short, it could name another workload, and it would weigh on every series.
pub const MAX_LABEL_BYTES: usize = 256;

/// Who was killed, as far as the labels go: `""` for what is not known or does not apply.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Workload {
    /// `container`, `host` (no container), or `overflow` (a workload past the cap).
    scope: &'static str,
    container: String,
    image: String,
    compose_project: String,
    compose_service: String,
    // Prefixed: Prometheus attaches `namespace` and `pod` of the scraped oomtrace pod itself.
    k8s_namespace: String,
    k8s_pod: String,
    k8s_container: String,
}

impl Workload {
    fn overflow() -> Self {
        Self {
            scope: "overflow",
            ..Self::default()
        }
    }

    /// The workload `report` names, or `None` if a label value is too long to keep.
    fn of(report: &Report) -> Option<Self> {
        let Some(container) = &report.container else {
            return Some(Self {
                scope: "host",
                ..Self::default()
            });
        };
        let label = |key: &str| {
            container
                .labels
                .as_ref()
                .and_then(|labels| labels.get(key))
                .cloned()
                .unwrap_or_default()
        };
        let pod = container.pod.as_ref();
        let k8s_pod = pod
            .and_then(|p| p.name.clone())
            .unwrap_or_else(|| label("io.kubernetes.pod.name"));
        let workload = Self {
            scope: "container",
            // The kubelet names a Docker container after its pod's uid and restart attempt,
            // which would start a new series at every restart: the pod labels name it instead.
            container: if k8s_pod.is_empty() {
                container.name.clone().unwrap_or_default()
            } else {
                String::new()
            },
            image: container.image.clone().unwrap_or_default(),
            compose_project: label("com.docker.compose.project"),
            compose_service: label("com.docker.compose.service"),
            k8s_namespace: pod
                .and_then(|p| p.namespace.clone())
                .unwrap_or_else(|| label("io.kubernetes.pod.namespace")),
            k8s_pod,
            k8s_container: label("io.kubernetes.container.name"),
        };
        let values = [
            &workload.container,
            &workload.image,
            &workload.compose_project,
            &workload.compose_service,
            &workload.k8s_namespace,
            &workload.k8s_pod,
            &workload.k8s_container,
        ];
        values
            .iter()
            .all(|v| v.len() <= MAX_LABEL_BYTES)
            .then_some(workload)
    }
}

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

/// Where the summary's dropped events come from, counted as they happen.
#[derive(Debug, Default)]
struct Dropped {
    ring_buffer_full: AtomicU64,
    unreadable: AtomicU64,
    /// Lines each kind of destination (`stdout`, `output`, `journal`) refused or failed.
    not_written: Vec<(&'static str, Arc<AtomicU64>)>,
}

/// `oomtrace_events_dropped_total` and `oomtrace_kernel_oom_kills_total`, read at scrape time.
#[derive(Debug)]
struct Live {
    dropped: Arc<Dropped>,
    kernel_oom_kills: fn() -> Option<u64>,
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let d = &self.dropped;
        let mut reasons = vec![
            (
                "ring_buffer_full",
                d.ring_buffer_full.load(Ordering::Relaxed),
            ),
            ("unreadable", d.unreadable.load(Ordering::Relaxed)),
        ];
        for (kind, reason) in [
            ("stdout", "not_written_stdout"),
            ("output", "not_written_output"),
            ("journal", "not_written_journal"),
        ] {
            let lost = d.not_written.iter().filter(|(k, _)| *k == kind);
            reasons.push((reason, lost.map(|(_, n)| n.load(Ordering::Relaxed)).sum()));
        }
        let mut family = encoder.encode_descriptor(
            "oomtrace_events_dropped",
            "Events lost, by reason, as the summary at exit counts them: the kernel's ring buffer was full, a record or kernel log line could not be read, or a line was not written to stdout, an --output file or the journal",
            None,
            MetricType::Counter,
        )?;
        for (reason, count) in reasons {
            let labels = [("reason", reason)];
            ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
        }
        // Right or absent: without /proc/vmstat there is no count to give.
        if let Some(count) = (self.kernel_oom_kills)() {
            let counter = ConstCounter::new(count);
            counter.encode(encoder.encode_descriptor(
                "oomtrace_kernel_oom_kills",
                "OOM kills the kernel counted since boot (oom_kill in /proc/vmstat), filtered or not, seen by oomtrace or not",
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
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
#[path = "metrics_tests.rs"]
mod tests;
