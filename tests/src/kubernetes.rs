//! What oomtrace's reports say about a container in a pod: read from the cgroup path alone, or
//! named by containerd. Shared by the Kubernetes-shaped tests, with containerd answering or not.

use serde_json::Value;

use crate::{
    containerd::IMAGE_REF,
    docker::reports_about,
    pods::{Pod, Task},
    tracer::field,
};

/// What oomtrace reads from the cgroup path alone, with or without containerd: kubelet's shape,
/// the container's id, the pod's uid and QoS class.
pub fn assert_kubelet_shape(report: &Value, pod: &Pod, task: &Task) {
    assert_eq!(
        field(report, "cgroup.path"),
        task.cgroup.as_str(),
        "{report}"
    );
    assert_eq!(field(report, "container.id"), task.id.as_str(), "{report}");
    assert_eq!(
        field(report, "container.pod.uid"),
        pod.uid.as_str(),
        "{report}"
    );
    assert_eq!(
        field(report, "container.pod.qos"),
        pod.qos.json_name(),
        "{report}"
    );
}

/// What oomtrace reports without containerd: the path's facts, and no names.
pub fn assert_unnamed(report: &Value, pod: &Pod, task: &Task) {
    assert_kubelet_shape(report, pod, task);
    assert_eq!(field(report, "container.runtime"), "kubernetes", "{report}");
    for key in [
        "container.name",
        "container.image",
        "container.pod.name",
        "container.pod.namespace",
    ] {
        assert!(
            field(report, key).is_null(),
            "{key} without containerd: {report}"
        );
    }
}

/// What containerd adds: the runtime, the container's name, image and OCI limit, its main
/// process, the pod's names, and how many workload containers the pod's cgroup held.
pub fn assert_named_by_containerd(
    report: &Value,
    pod: &Pod,
    task: &Task,
    name: &str,
    limit: u64,
    containers: u64,
) {
    assert_eq!(field(report, "container.runtime"), "containerd", "{report}");
    assert_eq!(field(report, "container.name"), name, "{report}");
    assert_eq!(field(report, "container.image"), IMAGE_REF, "{report}");
    assert_eq!(
        field(report, "container.memory_limit_bytes"),
        limit,
        "{report}"
    );
    assert_eq!(field(report, "container.main_pid"), task.pid, "{report}");
    assert_eq!(
        field(report, "container.pod.namespace"),
        pod.namespace.as_str(),
        "{report}"
    );
    assert_eq!(
        field(report, "container.pod.name"),
        pod.name.as_str(),
        "{report}"
    );
    assert_eq!(
        field(report, "container.pod.containers"),
        containers,
        "{report}"
    );
}

/// The one report about `task` among `reports`.
pub fn only_report<'a>(reports: &'a [Value], task: &Task) -> &'a Value {
    let ours = reports_about(reports, &task.id);
    assert_eq!(ours.len(), 1, "one kill in {}: {reports:#?}", task.id);
    ours[0]
}
