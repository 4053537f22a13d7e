//! containerd's record of a container in the report's words. Pure: tested on records built
//! the way containerd's CRI plugin and `ctr` write them.

use std::collections::BTreeMap;

use containerd_client::services::v1::Container;
use serde_json::Value;

use crate::attribution::runtime::ContainerMeta;

/// The labels a report carries: who owns the container. The CRI plugin copies kubelet's
/// labels onto the container and adds its kind; nerdctl's compose adds the compose ones.
pub(super) const LABELS: [&str; 8] = [
    "io.kubernetes.pod.name",
    "io.kubernetes.pod.namespace",
    "io.kubernetes.pod.uid",
    "io.kubernetes.container.name",
    KIND_LABEL,
    "com.docker.compose.project",
    "com.docker.compose.service",
    "nerdctl/name",
];
/// `sandbox` for a pod's sandbox ("pause") container, `container` for a workload.
const KIND_LABEL: &str = "io.cri-containerd.kind";
/// Where the CRI plugin keeps its own record of a container: the CRI request kubelet made,
/// annotations included.
const CRI_METADATA: &str = "io.cri-containerd.container.metadata";
/// The annotation in which kubelet passes the container's restart count.
const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";

/// What `container`, held in `namespace`, tells a report.
pub(super) fn meta_of(container: &Container, namespace: &str) -> ContainerMeta {
    let labels: BTreeMap<String, String> = LABELS
        .iter()
        .filter_map(|&key| Some((key.to_owned(), container.labels.get(key)?.clone())))
        .collect();
    let label = |key: &str| container.labels.get(key).filter(|v| !v.is_empty()).cloned();
    let spec = container
        .spec
        .as_ref()
        .and_then(|any| serde_json::from_slice::<Value>(&any.value).ok());
    let mut meta = ContainerMeta {
        pod_sandbox: label(KIND_LABEL).as_deref() == Some("sandbox"),
        namespace: Some(namespace.to_owned()),
        ..ContainerMeta::default()
    };
    let described = &mut meta.container;
    described.runtime = "containerd";
    described.id = container.id.clone();
    described.name = label("io.kubernetes.container.name").or_else(|| label("nerdctl/name"));
    described.image = Some(container.image.clone()).filter(|i| !i.is_empty());
    described.labels = Some(labels).filter(|l| !l.is_empty());
    described.memory_limit_bytes = spec.as_ref().and_then(memory_limit);
    described.main_command = spec.as_ref().and_then(main_program);
    described.restart_count = container
        .extensions
        .get(CRI_METADATA)
        .and_then(|any| restart_count(&any.value));
    meta
}

/// The OCI spec's memory limit, where it sets one (`-1` and `0` set none).
fn memory_limit(spec: &Value) -> Option<u64> {
    let limit = spec.pointer("/linux/resources/memory/limit")?.as_i64()?;
    u64::try_from(limit).ok().filter(|&l| l > 0)
}

/// The program the container's init process runs.
fn main_program(spec: &Value) -> Option<String> {
    let program = spec.pointer("/process/args/0")?.as_str()?;
    Some(program.to_owned()).filter(|p| !p.is_empty())
}

/// kubelet's restart count, from the CRI plugin's record of the request that created the
/// container (JSON: `{"Version":"v1","Metadata":{..,"Config":{..,"annotations":{..}}}}`).
fn restart_count(record: &[u8]) -> Option<u32> {
    let record: Value = serde_json::from_slice(record).ok()?;
    let annotations = record.pointer("/Metadata/Config/annotations")?;
    annotations.get(RESTART_COUNT)?.as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_client::services::v1::Container;
    use prost_types::Any;

    fn any(json: &str) -> Option<Any> {
        Some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
            value: json.as_bytes().to_vec(),
        })
    }

    fn container(labels: &[(&str, &str)], spec: &str) -> Container {
        Container {
            id: "ab".repeat(32),
            image: "docker.io/library/oomtrace-busybox:latest".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            spec: any(spec),
            ..Container::default()
        }
    }

    const KUBELET: [(&str, &str); 6] = [
        ("io.kubernetes.pod.name", "web-0"),
        ("io.kubernetes.pod.namespace", "shop"),
        (
            "io.kubernetes.pod.uid",
            "0c6a8f47-2b8e-4a5c-9d1e-3f2a1b0c9d8e",
        ),
        ("io.kubernetes.container.name", "web"),
        ("io.cri-containerd.kind", "container"),
        ("io.kubernetes.container.logpath", "/var/log/pods/x"),
    ];

    #[test]
    fn a_kubernetes_container_is_named_as_the_pod_spec_names_it() {
        let spec = r#"{"process":{"args":["/usr/bin/tini","--","app"]},
            "linux":{"resources":{"memory":{"limit":209715200}}}}"#;
        let meta = meta_of(&container(&KUBELET, spec), "k8s.io");
        let c = &meta.container;
        assert_eq!(c.runtime, "containerd");
        assert_eq!(c.name.as_deref(), Some("web"));
        assert_eq!(
            c.image.as_deref(),
            Some("docker.io/library/oomtrace-busybox:latest")
        );
        assert_eq!(c.memory_limit_bytes, Some(200 << 20));
        assert_eq!(c.main_command.as_deref(), Some("/usr/bin/tini"));
        let labels = c.labels.as_ref().unwrap();
        assert_eq!(
            labels.len(),
            5,
            "only the labels that say who owns it: {labels:?}"
        );
        assert_eq!(labels["io.kubernetes.pod.namespace"], "shop");
        assert!(!meta.pod_sandbox);
        assert_eq!(meta.namespace.as_deref(), Some("k8s.io"));
        assert_eq!(c.restart_count, None, "no CRI record, no count");
    }

    #[test]
    fn the_sandbox_is_the_pod_s_own_and_has_no_container_name() {
        let mut labels = KUBELET.to_vec();
        labels.retain(|(k, _)| *k != "io.kubernetes.container.name");
        labels[3] = ("io.cri-containerd.kind", "sandbox");
        let meta = meta_of(&container(&labels, "{}"), "k8s.io");
        assert!(meta.pod_sandbox);
        assert_eq!(meta.container.name, None);
    }

    #[test]
    fn limits_that_set_nothing_are_no_limit() {
        for (spec, want) in [
            (r#"{"linux":{"resources":{"memory":{"limit":-1}}}}"#, None),
            (r#"{"linux":{"resources":{"memory":{"limit":0}}}}"#, None),
            (r#"{"linux":{"resources":{"memory":{}}}}"#, None),
            (r#"{"linux":{"resources":{"memory":{"limit":"1"}}}}"#, None),
            ("not json", None),
            (
                r#"{"linux":{"resources":{"memory":{"limit":1048576}}}}"#,
                Some(1 << 20),
            ),
        ] {
            let meta = meta_of(&container(&[], spec), "default");
            assert_eq!(meta.container.memory_limit_bytes, want, "{spec}");
        }
    }

    #[test]
    fn a_plain_containerd_container_has_no_kubernetes_name() {
        let meta = meta_of(&container(&[], "{}"), "default");
        assert_eq!(meta.container.name, None);
        assert_eq!(meta.container.labels, None);
        let meta = meta_of(&container(&[("nerdctl/name", "db")], "{}"), "default");
        assert_eq!(meta.container.name.as_deref(), Some("db"));
    }

    #[test]
    fn the_restart_count_comes_only_from_the_cri_record() {
        let record = |json: &str| Any {
            type_url: "github.com/containerd/cri/pkg/store/container/Metadata".into(),
            value: json.as_bytes().to_vec(),
        };
        let cases = [
            (
                r#"{"Version":"v1","Metadata":{"ID":"x","Name":"web","Config":{"metadata":{"name":"web","attempt":2},"annotations":{"io.kubernetes.container.restartCount":"2"}}}}"#,
                Some(2),
            ),
            // The attempt alone is not kubelet's count.
            (
                r#"{"Version":"v1","Metadata":{"Config":{"metadata":{"attempt":2}}}}"#,
                None,
            ),
            (
                r#"{"Version":"v1","Metadata":{"Config":{"annotations":{"io.kubernetes.container.restartCount":"two"}}}}"#,
                None,
            ),
            ("garbage", None),
        ];
        for (json, want) in cases {
            let mut c = container(&KUBELET, "{}");
            c.extensions.insert(CRI_METADATA.into(), record(json));
            assert_eq!(
                meta_of(&c, "k8s.io").container.restart_count,
                want,
                "{json}"
            );
        }
    }
}
