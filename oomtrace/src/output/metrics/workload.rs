//! Who a kill is counted against: the labels of `oomtrace_oom_kills_total` and
//! `oomtrace_last_oom_kill_timestamp_seconds`, which name a workload the same way across
//! the container's recreations and restarts.

use prometheus_client::encoding::EncodeLabelSet;

use oomtrace_core::report::Report;

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
    pub(super) fn overflow() -> Self {
        Self {
            scope: "overflow",
            ..Self::default()
        }
    }

    /// The workload `report` names, or `None` if a label value is too long to keep.
    pub(super) fn of(report: &Report) -> Option<Self> {
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

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use crate::output::metrics::tests::{kill_in, metrics, samples};
    use oomtrace_core::report::Pod;

    #[test]
    fn pods_are_named_by_their_kubernetes_labels_not_the_kubelet_s_container_name() {
        let metrics = metrics();
        let mut report = kill_in(
            Some("k8s_app_api-7d9f_prod_0b1c-uid_3"),
            "cccc",
            &[("io.kubernetes.container.name", "app")],
        );
        if let Some(container) = report.container.as_mut() {
            container.pod = Some(Pod {
                uid: "0b1c-uid".into(),
                namespace: Some("prod".into()),
                name: Some("api-7d9f".into()),
                qos: Some("burstable"),
            });
        }
        metrics.record_kill(&report, SystemTime::now());
        let want = r#"oomtrace_oom_kills_total{scope="container",container="",image="shop/web:1.2",compose_project="",compose_service="",k8s_namespace="prod",k8s_pod="api-7d9f",k8s_container="app",kind="killed"} 1"#;
        assert!(
            samples(&metrics).contains(&want.to_owned()),
            "{:#?}",
            samples(&metrics)
        );
    }
}
