//! How many workload containers share a pod's cgroup: what "shared by 2 containers" is told
//! from. The pod's cgroup is read as it is when the report is made; which of its children is
//! the pod's sandbox only containerd says.

use std::path::Path;

use oomtrace_core::{
    attribution::cgroup_path::{cgroup_prefix, locate, pod_container_ids},
    report::Report,
};

use crate::attribution::runtime::Cache;

/// The pod's workload containers whose cgroups are in the pod's cgroup under `memory_root`
/// now, the victim's own always among them (its cgroup may be gone once its main process
/// died) and the sandbox never. `None` unless containerd describes every one of them: an id
/// it does not know might be the sandbox.
pub fn count(report: &Report, memory_root: &Path, containerd: &Cache) -> Option<u32> {
    let container = report.container.as_ref()?;
    container.pod.as_ref()?;
    let path = report.cgroup.path.as_deref()?;
    let located = locate(path)?;
    if located.container.pod.is_none() || located.container.id != container.id {
        return None;
    }
    let exact = report
        .cgroup
        .path_bytes
        .as_deref()
        .unwrap_or(path.as_bytes());
    // The kubelet names pod cgroups in ASCII; one that is not is none of its pods.
    let pod_cgroup = std::str::from_utf8(cgroup_prefix(exact, located.depth - 1)?).ok()?;
    let children: Vec<String> = std::fs::read_dir(memory_root.join(&pod_cgroup[1..]))
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            entry.file_type().ok()?.is_dir().then_some(())?;
            entry.file_name().into_string().ok()
        })
        .collect();
    let mut ids = pod_container_ids(pod_cgroup, &children)?;
    if !ids.contains(&container.id) {
        ids.push(container.id.clone());
    }
    let mut workloads = 0;
    for id in ids {
        if !containerd.lookup(&id)?.pod_sandbox {
            workloads += 1;
        }
    }
    Some(workloads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::runtime::ContainerMeta;
    use oomtrace_core::report::{Container, Pod};

    const UID: &str = "0c6a8f47-2b8e-4a5c-9d1e-3f2a1b0c9d8e";

    fn id(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn report_in(pod_cgroup: &str, own: &str) -> Report {
        let mut report = oomtrace_core::testing::report();
        report.cgroup.path = Some(format!("{pod_cgroup}/{own}"));
        report.container = Some(Container {
            runtime: "containerd",
            id: own.to_owned(),
            pod: Some(Pod {
                uid: UID.into(),
                namespace: None,
                name: None,
                qos: Some("burstable"),
                containers: None,
            }),
            ..Container::default()
        });
        report
    }

    fn known(cache: &Cache, id: &str, sandbox: bool) {
        cache.insert(
            id,
            ContainerMeta {
                pod_sandbox: sandbox,
                ..ContainerMeta::default()
            },
        );
    }

    /// A pod cgroup made for real in a scratch directory: the sandbox, two workloads and a
    /// stray directory, then read the way a report is made.
    #[test]
    fn the_sandbox_is_not_counted_and_an_unknown_child_makes_the_count_unknown() {
        let root = tempfile::tempdir().unwrap();
        let pod_cgroup = format!("/kubepods/burstable/pod{UID}");
        let dir = root.path().join(&pod_cgroup[1..]);
        for child in [id(1), id(2), id(3), "not-a-container".into()] {
            std::fs::create_dir_all(dir.join(child)).unwrap();
        }
        let cache = Cache::new("containerd");
        known(&cache, &id(1), true);
        known(&cache, &id(2), false);
        let report = report_in(&pod_cgroup, &id(2));
        assert_eq!(
            count(&report, root.path(), &cache),
            None,
            "{} could be the sandbox",
            id(3)
        );
        known(&cache, &id(3), false);
        assert_eq!(count(&report, root.path(), &cache), Some(2));
        // The victim's container cgroup already removed: still counted.
        std::fs::remove_dir(dir.join(id(2))).unwrap();
        assert_eq!(count(&report, root.path(), &cache), Some(2));
        // The pod's cgroup gone: nothing to count.
        let gone = report_in(
            &format!("/kubepods/burstable/pod{}", "1".repeat(32)),
            &id(2),
        );
        assert_eq!(count(&gone, root.path(), &cache), None);
    }
}
