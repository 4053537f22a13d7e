//! Who a kill is counted against: the labels of `oomtrace_oom_kills_total` and
//! `oomtrace_last_oom_kill_timestamp_seconds`, which name a workload the same way across
//! the container's recreations and restarts.

use std::{
    collections::HashSet,
    sync::{Mutex, PoisonError},
};

use prometheus_client::encoding::EncodeLabelSet;

use oomtrace_core::report::{Container, Report};

use super::MAX_WORKLOADS;

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
    /// Only where the pod's name is not known (no runtime named it): different pods must not
    /// share a series, and a container id would start a new one at every restart.
    k8s_pod_uid: String,
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
        Self::in_container(report.container.as_ref())
    }

    /// The workload of `container` (`None`: the host), or `None` if a label value is too long
    /// to keep.
    pub(super) fn in_container(container: Option<&Container>) -> Option<Self> {
        let Some(container) = container else {
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
        let k8s_pod_uid = if k8s_pod.is_empty() {
            pod.map(|p| p.uid.clone())
                .unwrap_or_else(|| label("io.kubernetes.pod.uid"))
        } else {
            String::new()
        };
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
            k8s_pod_uid,
            k8s_container: label("io.kubernetes.container.name"),
        };
        let values = [
            &workload.container,
            &workload.image,
            &workload.compose_project,
            &workload.compose_service,
            &workload.k8s_namespace,
            &workload.k8s_pod,
            &workload.k8s_pod_uid,
            &workload.k8s_container,
        ];
        values
            .iter()
            .all(|v| v.len() <= MAX_LABEL_BYTES)
            .then_some(workload)
    }
}

/// The workloads some families count, at most [`MAX_WORKLOADS`] of them, the overflow's
/// included. Each group of families keeps its own: the exits of thousands of short-lived
/// containers must not send the kills of the next workload to the overflow.
#[derive(Debug, Default)]
pub(super) struct Admitted(Mutex<HashSet<Workload>>);

impl Admitted {
    /// The series `workload`'s counts go to: its own, the overflow's past the cap, or the
    /// overflow's if its labels could not be kept (`None`).
    pub(super) fn admit(&self, workload: Option<Workload>) -> Workload {
        let workload = workload.unwrap_or_else(Workload::overflow);
        let mut admitted = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if admitted.contains(&workload) {
            return workload;
        }
        let workload = if admitted.len() >= MAX_WORKLOADS {
            Workload::overflow()
        } else {
            workload
        };
        admitted.insert(workload.clone());
        workload
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
                containers: None,
            });
        }
        metrics.record_kill(&report, SystemTime::now());
        let want = r#"oomtrace_oom_kills_total{scope="container",container="",image="shop/web:1.2",compose_project="",compose_service="",k8s_namespace="prod",k8s_pod="api-7d9f",k8s_pod_uid="",k8s_container="app",kind="killed"} 1"#;
        assert!(
            samples(&metrics).contains(&want.to_owned()),
            "{:#?}",
            samples(&metrics)
        );
    }

    #[test]
    fn pods_whose_names_are_unknown_are_told_apart_by_their_uid() {
        let metrics = metrics();
        for (uid, id) in [
            ("0b1c-uid", "aaaa"),
            ("0b1c-uid", "bbbb"),
            ("9f8e-uid", "cccc"),
        ] {
            let mut report = kill_in(None, id, &[]);
            if let Some(container) = report.container.as_mut() {
                container.pod = Some(Pod {
                    uid: uid.into(),
                    namespace: None,
                    name: None,
                    qos: Some("burstable"),
                    containers: None,
                });
            }
            metrics.record_kill(&report, SystemTime::now());
        }
        let series = |uid: &str, kills: u32| {
            format!(
                r#"oomtrace_oom_kills_total{{scope="container",container="",image="shop/web:1.2",compose_project="",compose_service="",k8s_namespace="",k8s_pod="",k8s_pod_uid="{uid}",k8s_container="",kind="killed"}} {kills}"#
            )
        };
        let samples = samples(&metrics);
        // Two containers of one pod (a restart makes a new id) are one series; another pod,
        // another series.
        for want in [series("0b1c-uid", 2), series("9f8e-uid", 1)] {
            assert!(samples.contains(&want), "{want}\n{samples:#?}");
        }
        assert!(
            !samples
                .iter()
                .any(|s| s.contains("aaaa") || s.contains("bbbb")),
            "a container id in the labels: {samples:#?}"
        );
    }
}
