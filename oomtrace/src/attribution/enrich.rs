//! From cgroup to container: attributes a report to the container that owns its cgroup, then
//! adds what the runtime's cache knows. Reads the caches only; never waits on a runtime.

use crate::attribution::runtime::{Cache, ContainerMeta};
use oomtrace_core::{
    attribution::cgroup_path::{self as container, ContainerRef, QosClass, Runtime},
    output::facts::INIT_SHIMS,
    report::{Container, Pod, Report, Victim},
};

/// The runtimes' caches a report is attributed with; `None` for a runtime not asked.
#[derive(Clone, Copy, Default)]
pub struct Caches<'a> {
    pub docker: Option<&'a Cache>,
    pub containerd: Option<&'a Cache>,
}

impl<'a> Caches<'a> {
    /// Docker's cache alone: for what only Docker is asked about (`history`, `explain`).
    pub fn docker_only(docker: Option<&'a Cache>) -> Self {
        Self {
            docker,
            containerd: None,
        }
    }

    /// What the runtime that may own a container of this shape says about `id`, and that
    /// runtime. The kubelet's cgroupfs shape does not say which runtime made the container:
    /// containerd is asked first, then Docker (cri-dockerd).
    pub fn lookup(&self, runtime: Runtime, id: &str) -> Option<(Runtime, ContainerMeta)> {
        let ask = |cache: Option<&Cache>, runtime| Some((runtime, cache?.lookup(id)?));
        match runtime {
            Runtime::Docker => ask(self.docker, Runtime::Docker),
            Runtime::Containerd => ask(self.containerd, Runtime::Containerd),
            Runtime::Kubernetes => ask(self.containerd, Runtime::Containerd)
                .or_else(|| ask(self.docker, Runtime::Docker)),
            _ => None,
        }
    }

    /// Whichever cache knows `id`.
    pub fn any(&self, id: &str) -> Option<ContainerMeta> {
        [self.docker, self.containerd]
            .into_iter()
            .flatten()
            .find_map(|cache| cache.lookup(id))
    }
}

/// Fills `report.container` and `victim.is_container_init` from the cgroup path and what the
/// runtime that owns the container says.
pub fn annotate(report: &mut Report, caches: Caches) {
    let path = report.cgroup.path.as_deref();
    let (mut reference, meta) = match path.and_then(container::attribute) {
        Some(reference) => {
            let meta = caches.lookup(reference.runtime, &reference.id);
            (reference, meta)
        }
        // An id under a parent of the user's choosing is Docker's only if Docker says so.
        None => match (path.and_then(container::unclaimed_id), caches.docker) {
            (Some(id), Some(cache)) if let Some(meta) = cache.lookup(id) => (
                ContainerRef {
                    runtime: Runtime::Docker,
                    id: id.to_owned(),
                    pod: None,
                },
                Some((Runtime::Docker, meta)),
            ),
            _ => {
                // Outside a container, where a parent lives says nothing.
                report.victim.parent_in_container = None;
                return;
            }
        },
    };
    // The runtime that answered made the container.
    let meta = meta.map(|(runtime, meta)| {
        reference.runtime = runtime;
        meta
    });
    let main_pid = meta.as_ref().and_then(|m| m.container.main_pid);
    let victim = &mut report.victim;
    victim.is_container_init = is_container_init(victim, main_pid);
    let main_command = meta
        .as_ref()
        .and_then(|m| m.container.main_command.as_deref());
    victim.is_container_main = is_container_main(victim, main_pid, main_command);
    let mut container = describe(reference, meta);
    // Docker's count is read when a run starts, and a kill can come before the cache has seen
    // that start: the count is the victim's run's only if that run's PID 1 is the victim or
    // its parent.
    let same_run = main_pid.is_some() && (main_pid == victim.pid || main_pid == victim.ppid);
    if !same_run {
        container.restart_count = None;
    }
    report.container = Some(container);
}

/// Whether the victim's death ends its container: it is PID 1, or PID 1 is an init shim and
/// the victim the app it started, whose exit status it exits with. `None` when the runtime
/// does not say what PID 1 runs and the victim is its child.
pub fn is_container_main(
    victim: &Victim,
    main_pid: Option<u32>,
    main_command: Option<&str>,
) -> Option<bool> {
    if victim.is_container_init == Some(true) {
        return Some(true);
    }
    let is_shim = |command: &str| {
        let program = command.rsplit('/').next().unwrap_or(command);
        INIT_SHIMS.contains(&program)
    };
    match (victim.ppid, main_pid) {
        (Some(ppid), Some(main)) if ppid == main => main_command.map(is_shim),
        // Neither PID 1 nor a child of it.
        (Some(_), Some(_)) if victim.is_container_init == Some(false) => Some(false),
        _ => None,
    }
}

/// Whether the victim is its container's PID 1: pid 1 in its own namespace, or the pid the
/// runtime started. `None` when neither can tell (a `--pid=host` container whose main pid is
/// not known).
pub fn is_container_init(victim: &Victim, main_pid: Option<u32>) -> Option<bool> {
    if victim.ns_pid == Some(1) {
        return Some(true);
    }
    if let (Some(main), Some(pid)) = (main_pid, victim.pid) {
        return Some(main == pid);
    }
    match (victim.ns_pid, victim.pid) {
        // In a pid namespace of its own, the container's init would be pid 1 there.
        (Some(ns_pid), Some(pid)) if ns_pid != pid => Some(false),
        _ => None,
    }
}

fn qos_name(qos: QosClass) -> &'static str {
    match qos {
        QosClass::Guaranteed => "guaranteed",
        QosClass::Burstable => "burstable",
        QosClass::BestEffort => "besteffort",
    }
}

/// Fills what a report read back from the journal or the kernel log lacks about its container
/// from what the runtimes say now; what it already has stays.
pub fn fill_missing(report: &mut Report, caches: Caches) {
    if report.container.is_none() {
        annotate(report, caches);
        return;
    }
    let Some(container) = report.container.as_mut() else {
        return;
    };
    let Some(meta) = caches.any(&container.id) else {
        return;
    };
    let said = meta.container;
    container.name = container.name.take().or(said.name);
    container.image = container.image.take().or(said.image);
    container.labels = container.labels.take().or(said.labels);
    container.restart_policy = container.restart_policy.take().or(said.restart_policy);
    container.restart_max_retries = container.restart_max_retries.or(said.restart_max_retries);
    container.memory_limit_bytes = container.memory_limit_bytes.or(said.memory_limit_bytes);
    container.main_command = container.main_command.take().or(said.main_command);
}

/// Brings what the runtime said into a container already described: for an exit line, the
/// restart count and the rest as they are now.
pub fn refresh(container: &mut Container, meta: ContainerMeta) {
    let Container {
        runtime, id, pod, ..
    } = std::mem::take(container);
    let mut fresh = describe(
        ContainerRef {
            runtime: Runtime::Docker,
            id,
            pod: None,
        },
        Some(meta),
    );
    fresh.runtime = runtime;
    fresh.pod = pod;
    *container = fresh;
}

fn describe(reference: ContainerRef, meta: Option<ContainerMeta>) -> Container {
    let said = meta.map(|meta| meta.container).unwrap_or_default();
    let label = |key: &str| said.labels.as_ref().and_then(|l| l.get(key)).cloned();
    let pod = reference.pod.map(|pod| Pod {
        uid: pod.uid,
        namespace: label("io.kubernetes.pod.namespace"),
        name: label("io.kubernetes.pod.name"),
        qos: Some(qos_name(pod.qos)),
        // Counted where the pod's cgroup is read, not from one container's description.
        containers: None,
    });
    Container {
        runtime: reference.runtime.as_str(),
        id: reference.id,
        pod,
        ..said
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ID: &str = "6a3ad1b3b2a5f0e9d7c4b1a8f5e2d9c6b3a0f7e4d1c8b5a2f9e6d3c0b7a4f1e8";

    fn report_in(path: &str, pid: u32, ns_pid: u32) -> Report {
        let mut report = oomtrace_core::testing::report();
        report.cgroup.path = Some(path.to_owned());
        report.victim.pid = Some(pid);
        report.victim.ns_pid = Some(ns_pid);
        report
    }

    #[test]
    fn init_is_pid_one_or_the_main_pid() {
        let victim = |pid, ns_pid| Victim {
            pid,
            ns_pid,
            ..Victim::default()
        };
        let cases = [
            (victim(Some(900), Some(1)), None, Some(true)),
            (victim(Some(900), Some(7)), None, Some(false)),
            (victim(Some(900), Some(7)), Some(900), Some(true)),
            (victim(Some(900), Some(900)), Some(900), Some(true)),
            (victim(Some(900), Some(900)), Some(800), Some(false)),
            // --pid=host and no main pid known: cannot tell.
            (victim(Some(900), Some(900)), None, None),
            (victim(None, None), None, None),
        ];
        for (victim, main_pid, want) in cases {
            assert_eq!(
                is_container_init(&victim, main_pid),
                want,
                "{victim:?} {main_pid:?}"
            );
        }
    }

    #[test]
    fn the_main_process_is_pid_1_or_the_app_of_an_init_shim() {
        let victim = |init, ppid| Victim {
            is_container_init: init,
            ppid,
            ..Victim::default()
        };
        let cases = [
            // (victim, main pid, PID 1's program, answer)
            (
                victim(Some(true), Some(50)),
                Some(900),
                Some("sh"),
                Some(true),
            ),
            (
                victim(Some(false), Some(900)),
                Some(900),
                Some("docker-init"),
                Some(true),
            ),
            (
                victim(Some(false), Some(900)),
                Some(900),
                Some("/sbin/tini"),
                Some(true),
            ),
            (
                victim(Some(false), Some(900)),
                Some(900),
                Some("sh"),
                Some(false),
            ),
            (victim(Some(false), Some(900)), Some(900), None, None),
            // A grandchild of the shim, a docker exec: not what decides the exit.
            (
                victim(Some(false), Some(950)),
                Some(900),
                Some("docker-init"),
                Some(false),
            ),
            (victim(Some(false), None), Some(900), Some("sh"), None),
            (victim(None, Some(900)), None, Some("tini"), None),
        ];
        for (victim, main_pid, command, want) in cases {
            assert_eq!(
                is_container_main(&victim, main_pid, command),
                want,
                "{victim:?} {main_pid:?} {command:?}"
            );
        }
    }

    #[test]
    fn a_docker_kill_gets_the_cached_name() {
        let cache = Cache::new("docker");
        let attributes: HashMap<String, String> = [
            ("name", "data-processor"),
            ("image", "oomtrace-busybox:latest"),
            ("com.docker.compose.project", "etl"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        crate::attribution::docker::apply_event(&cache, "create", ID, &attributes);
        let mut report = report_in(&format!("/docker/{ID}"), 4321, 12);
        annotate(&mut report, Caches::docker_only(Some(&cache)));
        let container = report.container.unwrap();
        assert_eq!(container.runtime, "docker");
        assert_eq!(container.id, ID);
        assert_eq!(container.name.as_deref(), Some("data-processor"));
        assert_eq!(
            container.labels.unwrap()["com.docker.compose.project"],
            "etl"
        );
        assert_eq!(report.victim.is_container_init, Some(false));
    }

    #[test]
    fn a_cgroup_parent_container_is_named_only_once_docker_confirms_it() {
        let path = format!("/oomtrace-shared/{ID}");
        let mut report = report_in(&path, 4321, 12);
        annotate(
            &mut report,
            Caches::docker_only(Some(&Cache::new("docker"))),
        );
        assert_eq!(
            report.container, None,
            "an id Docker does not know names nothing"
        );
        let mut report = report_in(&path, 4321, 12);
        annotate(&mut report, Caches::docker_only(None));
        assert_eq!(
            report.container, None,
            "without Docker, nothing confirms it"
        );

        let cache = Cache::new("docker");
        let attributes: HashMap<String, String> =
            [("name".to_owned(), "shared-a".to_owned())].into();
        crate::attribution::docker::apply_event(&cache, "create", ID, &attributes);
        let mut report = report_in(&path, 4321, 12);
        annotate(&mut report, Caches::docker_only(Some(&cache)));
        let container = report.container.expect("Docker knows the id");
        assert_eq!((container.runtime, container.id.as_str()), ("docker", ID));
        assert_eq!(container.name.as_deref(), Some("shared-a"));
    }

    #[test]
    fn the_restart_count_is_given_only_for_the_run_it_was_read_in() {
        let meta = |main_pid| ContainerMeta {
            container: Container {
                main_pid,
                restart_count: Some(3),
                restart_policy: Some("on-failure".into()),
                restart_max_retries: Some(3),
                ..Container::default()
            },
            ..ContainerMeta::default()
        };
        // (main pid in the cache, victim pid, victim's parent, the count reported)
        let cases = [
            (Some(100), 100, Some(1), Some(3)),
            (Some(100), 200, Some(100), Some(3)),
            // A `docker exec` process: nothing ties it to the run the count was read in.
            (Some(100), 300, Some(50), None),
            // The cache has not seen this run's start yet.
            (None, 100, Some(1), None),
        ];
        for (main_pid, pid, ppid, want) in cases {
            let cache = Cache::new("docker");
            cache.insert(ID, meta(main_pid));
            let mut report = report_in(&format!("/docker/{ID}"), pid, 7);
            report.victim.ppid = ppid;
            annotate(&mut report, Caches::docker_only(Some(&cache)));
            let container = report.container.expect("a container");
            assert_eq!(container.restart_count, want, "{main_pid:?} {pid} {ppid:?}");
            assert_eq!(
                container.restart_max_retries,
                Some(3),
                "a setting, always given"
            );
        }
    }

    #[test]
    fn without_docker_the_id_still_comes_from_the_path() {
        let mut report = report_in(&format!("/docker/{ID}"), 4321, 1);
        annotate(&mut report, Caches::docker_only(None));
        let container = report.container.unwrap();
        assert_eq!((container.id.as_str(), container.name), (ID, None));
        assert_eq!(report.victim.is_container_init, Some(true));
    }

    #[test]
    fn host_processes_and_unknown_shapes_get_no_container() {
        for path in [
            "/",
            "/user.slice/user-0.slice/session-3.scope",
            "/oomtrace-e2e-x-1",
            "/docker/notanid",
        ] {
            let mut report = report_in(path, 4321, 4321);
            annotate(
                &mut report,
                Caches::docker_only(Some(&Cache::new("docker"))),
            );
            assert_eq!(report.container, None, "{path}");
            assert_eq!(report.victim.is_container_init, None, "{path}");
        }
    }

    #[test]
    fn kubernetes_pods_carry_uid_and_qos() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0c6a8f47_2b8e_4a5c_9d1e_3f2a1b0c9d8e.slice/cri-containerd-{ID}.scope"
        );
        let mut report = report_in(&path, 4321, 1);
        annotate(&mut report, Caches::docker_only(None));
        let container = report.container.unwrap();
        assert_eq!(container.runtime, "containerd");
        let pod = container.pod.unwrap();
        assert_eq!(pod.uid, "0c6a8f47-2b8e-4a5c-9d1e-3f2a1b0c9d8e");
        assert_eq!(pod.qos, Some("burstable"));
        assert_eq!((pod.namespace, pod.name), (None, None));
    }

    #[test]
    fn containerd_names_a_kubernetes_container_docker_does_not_know() {
        let uid = "0c6a8f47-2b8e-4a5c-9d1e-3f2a1b0c9d8e";
        let path = format!("/kubepods/burstable/pod{uid}/{ID}");
        let labels = [
            ("io.kubernetes.pod.name", "web-0"),
            ("io.kubernetes.pod.namespace", "shop"),
            ("io.kubernetes.container.name", "web"),
        ];
        let containerd = Cache::new("containerd");
        containerd.insert(
            ID,
            ContainerMeta {
                container: Container {
                    name: Some("web".into()),
                    main_pid: Some(4000),
                    memory_limit_bytes: Some(200 << 20),
                    labels: Some(
                        labels
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                    ),
                    ..Container::default()
                },
                ..ContainerMeta::default()
            },
        );
        let docker = Cache::new("docker");
        // (caches asked, runtime, name, pod name)
        let cases = [
            (Caches::docker_only(Some(&docker)), "kubernetes", None, None),
            (
                Caches {
                    docker: Some(&docker),
                    containerd: Some(&containerd),
                },
                "containerd",
                Some("web"),
                Some("web-0"),
            ),
        ];
        for (caches, runtime, name, pod_name) in cases {
            let mut report = report_in(&path, 4000, 1);
            annotate(&mut report, caches);
            let container = report.container.expect("a container");
            assert_eq!(container.runtime, runtime);
            assert_eq!(container.name.as_deref(), name);
            let pod = container.pod.expect("its pod");
            assert_eq!(pod.uid, uid);
            assert_eq!(pod.name.as_deref(), pod_name);
            assert_eq!(pod.qos, Some("burstable"));
        }
    }

    #[test]
    fn a_docker_container_is_named_by_docker_even_where_containerd_knows_it_too() {
        // Docker runs its containers in containerd's `moby` namespace: containerd knows the
        // same id, without Docker's name.
        let docker = Cache::new("docker");
        let attributes: HashMap<String, String> = [("name".to_owned(), "web".to_owned())].into();
        crate::attribution::docker::apply_event(&docker, "create", ID, &attributes);
        let containerd = Cache::new("containerd");
        containerd.insert(ID, ContainerMeta::default());
        let mut report = report_in(&format!("/docker/{ID}"), 4321, 12);
        annotate(
            &mut report,
            Caches {
                docker: Some(&docker),
                containerd: Some(&containerd),
            },
        );
        let container = report.container.expect("a container");
        assert_eq!(container.runtime, "docker");
        assert_eq!(container.name.as_deref(), Some("web"));
    }
}
