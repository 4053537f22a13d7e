//! The Kubernetes-shaped tests' harness, tested for real: its own containerd puts tasks exactly
//! where kubelet's calls put them, with the limits and labels asked for, survives a stop and a
//! restart under running tasks, and leaves nothing behind: no task, shim, cgroup, mount or
//! daemon.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use oomtrace_tests::{
    CgroupMode, Containerd, IMAGE_REF, Pod, Qos, Task, containerd_ready,
    docker::{DD_SH, IDLE_MAIN, KILLED, MIB},
    memory_hierarchy, memory_number,
    pods::cgroup_hierarchies,
    poll_until, process_alive, serial,
};
use serde_json::Value;

/// A deleted task's processes, shims and cgroups go within milliseconds; this bounds a bug.
const GONE_TIMEOUT: Duration = Duration::from_secs(10);

/// The memory cgroup `/proc/PID/cgroup` names for a process.
fn memory_cgroup_of(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/cgroup: {e}"));
    let v1 = memory_hierarchy().0 == CgroupMode::V1;
    text.lines()
        .find_map(|line| {
            let (_, rest) = line.split_once(':')?;
            let (controllers, path) = rest.split_once(':')?;
            let wanted = if v1 {
                controllers.split(',').any(|c| c == "memory")
            } else {
                controllers.is_empty()
            };
            wanted.then(|| path.to_owned())
        })
        .unwrap_or_else(|| panic!("/proc/{pid}/cgroup names no memory cgroup: {text}"))
}

/// What `ctr containers info` says of a container.
fn info(containerd: &Containerd, task: &Task) -> Value {
    let out = containerd.ctr(&["containers", "info", &task.id]);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("ctr containers info is not JSON ({e}): {out}"))
}

/// The pod's cgroup, in every hierarchy, where runc made it.
fn pod_dirs(pod_cgroup: &str) -> Vec<PathBuf> {
    cgroup_hierarchies()
        .into_iter()
        .map(|root| root.join(&pod_cgroup[1..]))
        .collect()
}

/// After the pod and containerd are dropped: no process, shim, cgroup, socket or directory left.
fn assert_nothing_left(pids: &[u32], shims: &[u32], pod_cgroup: &str, daemon: u32, dir: &Path) {
    for &pid in pids.iter().chain(shims).chain([&daemon]) {
        assert!(
            poll_until(GONE_TIMEOUT, || !process_alive(pid)),
            "process {pid} outlived the harness"
        );
    }
    for dir in pod_dirs(pod_cgroup) {
        assert!(!dir.exists(), "{} outlived the pod", dir.display());
    }
    assert!(!dir.exists(), "{} outlived containerd", dir.display());
}

/// A burstable pod with a pod limit, a sandbox and a workload container: each task in its own
/// cgroup under the pod's, as kubelet's cgroupfs driver lays them out, with the OCI limit in
/// the container's cgroup and the pod's limit in the pod's; labelled as kubelet and the CRI
/// plugin label them; exec'd into with the process's own exit status; deleted at once.
#[test]
fn tasks_run_in_kubelets_cgroups_with_their_limits_and_labels() {
    let test = "tasks_run_in_kubelets_cgroups_with_their_limits_and_labels";
    if !containerd_ready(test) {
        return;
    }
    let _serial = serial();
    let containerd = Containerd::start();
    let daemon = containerd.pid().expect("containerd runs");
    let dir = containerd.dir().to_path_buf();
    let pod = Pod::build(Qos::Burstable, "harness", "web")
        .memory_limit(256 * MIB)
        .create(&containerd);
    let sandbox = pod.run_sandbox();
    let app = pod.run_container("app", Some(64 * MIB), IDLE_MAIN);
    let pod_cgroup = pod.cgroup.clone();

    assert_eq!(pod_cgroup, format!("/kubepods/burstable/pod{}", pod.uid));
    for task in [&sandbox, &app] {
        assert_eq!(task.cgroup, format!("{pod_cgroup}/{}", task.id));
        assert_eq!(memory_cgroup_of(task.pid), task.cgroup, "task {}", task.id);
    }
    assert_ne!(sandbox.id, app.id);
    assert_eq!(
        memory_number(&app.cgroup, "memory.limit_in_bytes"),
        64 * MIB
    );
    assert_eq!(
        memory_number(&pod_cgroup, "memory.limit_in_bytes"),
        256 * MIB
    );
    let mut tasks = containerd.tasks();
    tasks.sort_by_key(|t| t.pid);
    let mut expected = [(&sandbox.id, sandbox.pid), (&app.id, app.pid)];
    expected.sort_by_key(|(_, pid)| *pid);
    assert_eq!(
        tasks.iter().map(|t| (&t.id, t.pid)).collect::<Vec<_>>(),
        expected,
        "{tasks:?}"
    );
    assert!(tasks.iter().all(|t| t.status == "RUNNING"), "{tasks:?}");

    let app_info = info(&containerd, &app);
    assert_eq!(app_info["Image"], IMAGE_REF);
    let labels = &app_info["Labels"];
    assert_eq!(labels["io.kubernetes.pod.name"], "web");
    assert_eq!(labels["io.kubernetes.pod.namespace"], "harness");
    assert_eq!(labels["io.kubernetes.pod.uid"], pod.uid.as_str());
    assert_eq!(labels["io.kubernetes.container.name"], "app");
    assert_eq!(labels["io.cri-containerd.kind"], "container");
    assert_eq!(
        app_info["Spec"]["linux"]["resources"]["memory"]["limit"],
        64 * MIB,
        "the OCI spec's limit"
    );
    let sandbox_labels = &info(&containerd, &sandbox)["Labels"];
    assert_eq!(sandbox_labels["io.cri-containerd.kind"], "sandbox");
    assert_eq!(sandbox_labels["io.kubernetes.pod.uid"], pod.uid.as_str());
    assert!(sandbox_labels["io.kubernetes.container.name"].is_null());

    assert_eq!(pod.exec(&app, "exit 3").code(), Some(3));
    assert_eq!(
        pod.exec(&app, DD_SH).code(),
        Some(KILLED),
        "dd is OOM-killed in a 64 MiB container"
    );
    assert_eq!(
        memory_number(&app.cgroup, "memory.max_usage_in_bytes") / MIB,
        64,
        "the container's own limit held dd"
    );

    pod.delete(&app);
    assert!(!containerd.containers().contains(&app.id));
    assert!(containerd.tasks().iter().all(|t| t.id != app.id));
    assert!(poll_until(GONE_TIMEOUT, || !process_alive(app.pid)));
    for dir in pod_dirs(&app.cgroup) {
        assert!(!dir.exists(), "{} outlived its task", dir.display());
    }

    let shims = containerd.shim_pids();
    assert!(!shims.is_empty(), "the sandbox's shim serves containerd");
    drop(pod);
    drop(containerd);
    assert_nothing_left(&[sandbox.pid, app.pid], &shims, &pod_cgroup, daemon, &dir);
}

/// containerd stopped under running tasks: they run on under their shims, and a command still
/// reaches a commanded container; started again on the same socket, root and state, it finds
/// them, and they can be exec'd into again.
#[test]
fn stopped_containerd_leaves_tasks_running_and_finds_them_again() {
    let test = "stopped_containerd_leaves_tasks_running_and_finds_them_again";
    if !containerd_ready(test) {
        return;
    }
    let _serial = serial();
    let containerd = Containerd::start();
    let pod = Pod::build(Qos::BestEffort, "harness", "restart").create(&containerd);
    let mut commanded = pod.run_commanded("app", Some(64 * MIB));
    let task = commanded.task.clone();
    assert_eq!(commanded.run("(exit 4)"), 4);

    containerd.stop();
    assert!(containerd.pid().is_none());
    assert!(!containerd.answers(), "a stopped containerd answers");
    assert!(process_alive(task.pid), "the task died with containerd");
    assert_eq!(
        commanded.run(DD_SH),
        KILLED,
        "dd is OOM-killed while containerd is down"
    );
    assert_eq!(memory_cgroup_of(task.pid), task.cgroup);

    containerd.restart();
    let tasks = containerd.tasks();
    let found = tasks.iter().find(|t| t.id == task.id);
    assert_eq!(
        found.map(|t| (t.pid, t.status.as_str())),
        Some((task.pid, "RUNNING")),
        "{tasks:?}"
    );
    assert_eq!(pod.exec(&task, "exit 5").code(), Some(5));
}

/// `ctr run --rm`: the task's end is its exit status, and its container is gone by then; a
/// containerd dropped while stopped is started again to delete what it ran, then stopped.
#[test]
fn removed_runs_and_a_stopped_containerd_leave_nothing_behind() {
    let test = "removed_runs_and_a_stopped_containerd_leave_nothing_behind";
    if !containerd_ready(test) {
        return;
    }
    let _serial = serial();
    let containerd = Containerd::start();
    let dir = containerd.dir().to_path_buf();
    let pod = Pod::build(Qos::Guaranteed, "harness", "removed")
        .memory_limit(128 * MIB)
        .create(&containerd);
    assert_eq!(pod.cgroup, format!("/kubepods/pod{}", pod.uid));
    let (removed, status) = pod.run_container_removed("once", Some(64 * MIB), "exit 6");
    assert_eq!(status.code(), Some(6));
    assert!(!containerd.containers().contains(&removed.id));
    for dir in pod_dirs(&removed.cgroup) {
        assert!(!dir.exists(), "{} outlived its task", dir.display());
    }

    let running = pod.run_container("left", Some(64 * MIB), IDLE_MAIN);
    let daemon = containerd.pid().expect("containerd runs");
    let shims = containerd.shim_pids();
    let pod_cgroup = pod.cgroup.clone();
    containerd.stop();
    // Dropped with containerd down, the pod cannot have its container deleted: it still kills
    // what runs in its cgroups and removes them.
    drop(pod);
    assert!(poll_until(GONE_TIMEOUT, || !process_alive(running.pid)));
    drop(containerd);
    assert_nothing_left(
        &[removed.pid, running.pid],
        &shims,
        &pod_cgroup,
        daemon,
        &dir,
    );
}
