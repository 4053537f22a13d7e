//! The counts read when Prometheus scrapes rather than when a kill is recorded: the events
//! dropped on the way, as the summary at exit counts them, and the kernel's own count of OOM
//! kills.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter},
};

/// Where the summary's dropped events come from, counted as they happen.
#[derive(Debug, Default)]
pub(super) struct Dropped {
    pub(super) ring_buffer_full: AtomicU64,
    pub(super) unreadable: AtomicU64,
    /// Lines each kind of destination (`stdout`, `output`, `journal`) refused or failed.
    pub(super) not_written: Vec<(&'static str, Arc<AtomicU64>)>,
}

/// `oomtrace_events_dropped_total` and `oomtrace_kernel_oom_kills_total`, read at scrape time.
#[derive(Debug)]
pub(super) struct Live {
    pub(super) dropped: Arc<Dropped>,
    pub(super) kernel_oom_kills: fn() -> Option<u64>,
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, atomic::AtomicU64};

    use crate::output::metrics::{BuildInfo, Metrics, tests::samples};

    #[test]
    fn drops_match_the_summary_s_reasons_and_the_kernel_count_may_be_absent() {
        let stdout = Arc::new(AtomicU64::new(3));
        let file_a = Arc::new(AtomicU64::new(1));
        let file_b = Arc::new(AtomicU64::new(2));
        let metrics = Metrics::new(
            BuildInfo {
                version: "0",
                backend: "kmsg",
                attach: "",
            },
            vec![("output", file_a), ("output", file_b), ("stdout", stdout)],
            || None,
        );
        metrics.set_ring_buffer_full(5);
        metrics.set_unreadable(7);
        let samples = samples(&metrics);
        for (reason, n) in [
            ("ring_buffer_full", 5),
            ("unreadable", 7),
            ("not_written_stdout", 3),
            ("not_written_output", 3),
            ("not_written_journal", 0),
        ] {
            let want = format!(r#"oomtrace_events_dropped_total{{reason="{reason}"}} {n}"#);
            assert!(samples.contains(&want), "no {want} in {samples:#?}");
        }
        assert!(
            !samples.iter().any(|s| s.contains("kernel_oom_kills")),
            "no /proc/vmstat, no count: {samples:#?}"
        );
    }
}
