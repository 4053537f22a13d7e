//! End to end on a Kubernetes-shaped node: pods laid out as kubelet's cgroupfs driver lays them
//! out, run by a containerd of the tests' own (never the host's), with the labels kubelet and
//! containerd's CRI plugin leave. busybox `dd` runs into a container's or a pod's limit, and
//! every report `oomtrace --json --containerd-socket SOCKET` writes must name the container,
//! its pod and the limit that fired, as containerd and the kernel know them.
//!
//! oomtrace reads the id, the pod's uid and its QoS class from the cgroup path alone; the names,
//! image, limit, main pid, the pod's container count and the exits come from containerd.

use std::time::Duration;

use oomtrace_tests::{
    Containerd, HumanWatch, IMAGE_REF, Pod, Qos, Task, Tracer, containerd_ready,
    docker::{DD_SH, IDLE_MAIN, KILLED, MIB, about, reports_about},
    field,
    kubernetes::{assert_kubelet_shape, assert_named_by_containerd, only_report},
    memory_number, poll_until, process_alive, serial,
};
use serde_json::Value;

/// dd's 200 MiB cannot fit in it.
const LIMIT: u64 = 32 * MIB;
/// A report follows its kill within milliseconds; this only bounds a bug.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// An exit event follows the main process's death within milliseconds; this bounds a bug, and
/// is waited out whole by an oomtrace that sends none.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// A main process killed, or told to stop, is gone within milliseconds.
const GONE_TIMEOUT: Duration = Duration::from_secs(10);

/// The one `container_exit` event about `task`.
fn only_exit<'a>(exits: &'a [Value], task: &Task) -> &'a Value {
    let ours: Vec<&Value> = exits
        .iter()
        .filter(|e| e["container"]["id"] == task.id.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "one exit of {}: {exits:#?}", task.id);
    ours[0]
}

/// The human view's kill line for `victim_pid`, and the line under it.
fn human_kill(lines: &[String], victim_pid: u64) -> (&str, Option<&str>) {
    let process = format!("dd (pid {victim_pid})");
    let at = lines
        .iter()
        .position(|l| l.contains(&process) && !l.starts_with(' '))
        .unwrap_or_else(|| panic!("no kill line for {process}: {lines:#?}"));
    (&lines[at], lines.get(at + 1).map(String::as_str))
}

/// A pod of each QoS class, each with one container whose main process is dd, killed by the
/// container's own limit: kubelet's three cgroup shapes, each named, each exit told.
#[test]
fn each_qos_shape_names_the_container_whose_own_limit_fired() {
    let test = "each_qos_shape_names_the_container_whose_own_limit_fired";
    if !containerd_ready(test) {
        return;
    }
    let _serial = serial();
    let containerd = Containerd::start();
    let socket = ["--containerd-socket", containerd.socket()];
    let tracer = Tracer::start(&socket);
    let human = HumanWatch::start(&socket);
    let script = format!("exec {DD_SH}");
    let cases: Vec<(Pod, Task)> = Qos::ALL
        .into_iter()
        .map(|qos| {
            let pod = Pod::build(qos, "shapes", &format!("web-{}", qos.json_name()));
            // kubelet limits a guaranteed pod to the sum of its containers' limits; twice the
            // container's here, so the container's own limit is the one that fires, not the
            // pod's, whose usage also counts the runtime's share.
            let pod = if qos == Qos::Guaranteed {
                pod.memory_limit(2 * LIMIT)
            } else {
                pod
            };
            let pod = pod.create(&containerd);
            // Kubernetes gives a besteffort container no limit; this one has one all the same,
            // as only a limit makes a kill without running the node out of memory. Its
            // cgroup's place is what the case is about.
            let task = pod.run_container("app", Some(LIMIT), &script);
            (pod, task)
        })
        .collect();
    let ours = |r: &Value| cases.iter().any(|(_, task)| about(r, &task.id));
    tracer.wait_for(3, REPORT_TIMEOUT, ours);
    for (_, task) in &cases {
        assert!(poll_until(GONE_TIMEOUT, || !process_alive(task.pid)));
    }
    tracer.wait_for_exit(3, EXIT_TIMEOUT, ours);
    human.wait_until(REPORT_TIMEOUT, |lines| {
        lines.iter().filter(|l| l.contains("dd (pid ")).count() >= 3
    });
    let stopped = tracer.stop();
    let (lines, _) = human.stop();
    stopped.assert_success();

    for (pod, task) in &cases {
        let report = only_report(&stopped.reports, task);
        assert_kubelet_shape(report, pod, task);
        assert_eq!(field(report, "victim.comm"), "dd");
        assert_eq!(field(report, "victim.pid"), task.pid, "{report}");
        assert_eq!(field(report, "victim.ns_pid"), 1, "{report}");
        assert_eq!(field(report, "victim.is_container_init"), true, "{report}");
        assert_eq!(field(report, "oom.memcg"), task.cgroup.as_str(), "{report}");
        assert_eq!(field(report, "oom.memcg_limit_bytes"), LIMIT, "{report}");
        assert_eq!(field(report, "victim.is_container_main"), true, "{report}");
    }
    for (pod, task) in &cases {
        let report = only_report(&stopped.reports, task);
        assert_named_by_containerd(report, pod, task, "app", LIMIT, 1);
        let exit = only_exit(&stopped.exits, task);
        assert_eq!(field(exit, "exit_code"), KILLED, "{exit}");
        assert!(field(exit, "time").is_string(), "{exit}");
        let (line, _) = human_kill(&lines, u64::from(task.pid));
        let place = format!("app (pod {})", pod.full_name());
        assert!(line.contains(&place), "{place} in {line}");
    }
}

/// Two containers share their pod's 256 MiB; each may use 200 MiB. One holds 100 MiB, the
/// other's dd grows until the pod's limit, not its own, fires: the kernel's counters say so,
/// and oomtrace must name the pod's limit, its size, the containers that share it, and the
/// container's own limit that was not the one hit.
#[test]
fn pod_limit_shared_by_two_containers_is_the_limit_named() {
    let test = "pod_limit_shared_by_two_containers_is_the_limit_named";
    if !containerd_ready(test) {
        return;
    }
    let _serial = serial();
    const POD_LIMIT: u64 = 256 * MIB;
    const CONTAINER_LIMIT: u64 = 200 * MIB;
    const HELD: u64 = 100 * MIB;
    let containerd = Containerd::start();
    let pod = Pod::build(Qos::Burstable, "shared", "cache")
        .memory_limit(POD_LIMIT)
        .create(&containerd);
    // dd fills its 100 MiB buffer, then blocks writing it into a pipe sleep never reads: the
    // memory stays held, in dd, as long as the container runs.
    let holder = pod.run_container(
        "holder",
        Some(CONTAINER_LIMIT),
        "dd if=/dev/zero bs=100M count=1 | sleep inf",
    );
    assert!(
        poll_until(Duration::from_secs(30), || {
            memory_number(&holder.cgroup, "memory.usage_in_bytes") >= HELD
        }),
        "the holder never held {HELD} bytes"
    );
    let socket = ["--containerd-socket", containerd.socket()];
    let tracer = Tracer::start(&socket);
    let human = HumanWatch::start(&socket);
    // Killed at about 156 MiB, the pod's limit less what the holder holds: the biggest
    // process in the pod, and below its own container's limit.
    let hog = pod.run_container("hog", Some(CONTAINER_LIMIT), &format!("exec {DD_SH}"));
    tracer.wait_for(1, REPORT_TIMEOUT, |r| about(r, &hog.id));
    human.wait_until(REPORT_TIMEOUT, |lines| {
        lines
            .iter()
            .any(|l| l.contains(&format!("dd (pid {})", hog.pid)))
    });
    let stopped = tracer.stop();
    let (lines, _) = human.stop();
    stopped.assert_success();

    // The kernel's own word: the pod's counter refused a charge, the containers' never did.
    assert!(memory_number(&pod.cgroup, "memory.failcnt") > 0);
    assert_eq!(memory_number(&hog.cgroup, "memory.failcnt"), 0);
    assert_eq!(memory_number(&holder.cgroup, "memory.failcnt"), 0);
    assert!(process_alive(holder.pid), "the holder was not the victim");
    let report = only_report(&stopped.reports, &hog);
    assert!(reports_about(&stopped.reports, &holder.id).is_empty());
    assert_kubelet_shape(report, &pod, &hog);
    assert_eq!(field(report, "victim.pid"), hog.pid, "{report}");
    assert_eq!(field(report, "oom.memcg"), pod.cgroup.as_str(), "{report}");
    assert_eq!(
        field(report, "oom.memcg_limit_bytes"),
        POD_LIMIT,
        "{report}"
    );

    assert_named_by_containerd(report, &pod, &hog, "hog", CONTAINER_LIMIT, 2);
    let (line, meaning) = human_kill(&lines, u64::from(hog.pid));
    // Shown with --nocapture: what a person reads for this case.
    println!("{line}\n{}", meaning.unwrap_or_default());
    let place = format!("hog (pod {})", pod.full_name());
    assert!(line.contains(&place), "{place} in {line}");
    let limit = format!(
        "the limit of pod {}, 256.0 MiB, shared by 2 containers; this container's own limit is 200.0 MiB",
        pod.full_name()
    );
    assert!(
        meaning.is_some_and(|m| m.contains(&limit)),
        "{limit:?} under {line:?}: {meaning:?}"
    );
}

/// Seed 000 on a node: a process `ctr task exec` started (as `kubectl exec` does) is killed,
/// the main process lives on, and, stopped later, exits 0.
#[test]
fn child_killed_while_the_main_process_survives() {
    let test = "child_killed_while_the_main_process_survives";
    if !containerd_ready(test) {
        return;
    }
    let _serial = serial();
    let containerd = Containerd::start();
    let pod = Pod::build(Qos::Burstable, "seed", "api").create(&containerd);
    let task = pod.run_container("api", Some(64 * MIB), IDLE_MAIN);
    let socket = ["--containerd-socket", containerd.socket()];
    let tracer = Tracer::start(&socket);
    let human = HumanWatch::start(&socket);
    assert_eq!(
        pod.exec(&task, DD_SH).code(),
        Some(KILLED),
        "dd is OOM-killed"
    );
    let reported = tracer.wait_for(1, REPORT_TIMEOUT, |r| about(r, &task.id));
    let victim_pid = reported
        .first()
        .and_then(|r| r["victim"]["pid"].as_u64())
        .expect("a report with the victim's pid");
    human.wait_until(REPORT_TIMEOUT, |lines| {
        lines
            .iter()
            .any(|l| l.contains(&format!("dd (pid {victim_pid})")))
    });
    // Everything it wrote, the line under the kill's included.
    let (lines, _) = human.stop();
    assert!(
        process_alive(task.pid),
        "the main process survived the kill"
    );
    // Its trap makes the main process exit 0.
    containerd.ctr(&["task", "kill", "--signal", "SIGTERM", &task.id]);
    assert!(poll_until(GONE_TIMEOUT, || !process_alive(task.pid)));
    tracer.wait_for_exit(1, EXIT_TIMEOUT, |e| {
        e["container"]["id"] == task.id.as_str()
    });
    let stopped = tracer.stop();
    stopped.assert_success();

    let report = only_report(&stopped.reports, &task);
    assert_kubelet_shape(report, &pod, &task);
    assert_eq!(field(report, "victim.comm"), "dd");
    let victim = field(report, "victim.pid").as_u64().expect("victim.pid");
    assert_ne!(
        victim,
        u64::from(task.pid),
        "the child was killed, not PID 1"
    );
    assert!(field(report, "victim.ns_pid").as_u64().expect("ns_pid") > 1);
    assert_eq!(field(report, "victim.is_container_init"), false, "{report}");
    assert_eq!(
        field(report, "trigger.pid"),
        victim,
        "dd itself hit the limit"
    );
    assert_eq!(field(report, "oom.memcg"), task.cgroup.as_str());
    assert_eq!(field(report, "oom.memcg_limit_bytes"), 64 * MIB);

    assert_named_by_containerd(report, &pod, &task, "api", 64 * MIB, 1);
    assert_eq!(field(report, "victim.is_container_main"), false, "{report}");
    let (line, meaning) = human_kill(&lines, victim);
    println!("{line}\n{}", meaning.unwrap_or_default());
    let place = format!("api (pod {})", pod.full_name());
    assert!(line.contains(&place), "{place} in {line}");
    let role = format!(
        "not the container's main process (that is sh, pid {}); entered the container from outside, as kubectl exec does",
        task.pid
    );
    assert!(
        meaning.is_some_and(|m| m.contains(&role)),
        "{role:?} under {line:?}: {meaning:?}"
    );
    let exit = only_exit(&stopped.exits, &task);
    assert_eq!(field(exit, "exit_code"), 0, "{exit}");
}

/// `ctr run --rm`: the task is deleted the moment its OOM-killed main process ends, before
/// anyone could ask containerd about it; the report still names it.
#[test]
fn task_deleted_right_after_its_kill_is_still_named() {
    let test = "task_deleted_right_after_its_kill_is_still_named";
    if !containerd_ready(test) {
        return;
    }
    let _serial = serial();
    let containerd = Containerd::start();
    let pod = Pod::build(Qos::BestEffort, "batch", "once").create(&containerd);
    let tracer = Tracer::start(&["--containerd-socket", containerd.socket()]);
    let (task, status) = pod.run_container_removed("job", Some(LIMIT), &format!("exec {DD_SH}"));
    assert_eq!(status.code(), Some(KILLED), "dd is OOM-killed");
    assert!(
        !containerd.containers().contains(&task.id),
        "containerd still knows {}",
        task.id
    );
    tracer.wait_for(1, REPORT_TIMEOUT, |r| about(r, &task.id));
    let stopped = tracer.stop();
    stopped.assert_success();

    let report = only_report(&stopped.reports, &task);
    assert_kubelet_shape(report, &pod, &task);
    assert_eq!(field(report, "victim.pid"), task.pid, "{report}");
    assert_eq!(field(report, "victim.is_container_init"), true, "{report}");

    assert_eq!(field(report, "container.runtime"), "containerd", "{report}");
    assert_eq!(field(report, "container.name"), "job", "{report}");
    assert_eq!(field(report, "container.image"), IMAGE_REF, "{report}");
    assert_eq!(field(report, "container.pod.name"), "once", "{report}");
    assert_eq!(
        field(report, "container.pod.namespace"),
        "batch",
        "{report}"
    );
    // What only a running task can be asked may be missing, never wrong.
    let main_pid = field(report, "container.main_pid");
    assert!(main_pid.is_null() || *main_pid == task.pid, "{report}");
    let limit = field(report, "container.memory_limit_bytes");
    assert!(limit.is_null() || *limit == LIMIT, "{report}");
}

/// A pod's sandbox (its pause container) has a cgroup of its own in the pod's, and the labels
/// of the pod but no container name: a kill in the workload container names that container,
/// never the sandbox, and the pod's container count leaves the sandbox out.
#[test]
fn sandbox_is_never_reported_as_the_workload() {
    let test = "sandbox_is_never_reported_as_the_workload";
    if !containerd_ready(test) {
        return;
    }
    let _serial = serial();
    let containerd = Containerd::start();
    let pod = Pod::build(Qos::Burstable, "sandboxed", "web").create(&containerd);
    let sandbox = pod.run_sandbox();
    let app = pod.run_container("app", Some(LIMIT), IDLE_MAIN);
    let tracer = Tracer::start(&["--containerd-socket", containerd.socket()]);
    assert_eq!(
        pod.exec(&app, DD_SH).code(),
        Some(KILLED),
        "dd is OOM-killed"
    );
    tracer.wait_for(1, REPORT_TIMEOUT, |r| about(r, &app.id));
    let stopped = tracer.stop();
    stopped.assert_success();

    assert!(
        reports_about(&stopped.reports, &sandbox.id).is_empty(),
        "{:#?}",
        stopped.reports
    );
    let report = only_report(&stopped.reports, &app);
    assert_kubelet_shape(report, &pod, &app);
    assert!(process_alive(sandbox.pid), "the sandbox lives on");

    assert_named_by_containerd(report, &pod, &app, "app", LIMIT, 1);
}

/// A stop through the runtime, as a kubelet's ends: containerd's shim runs runc, and runc
/// sends the signal. The exit says so, from the kernel's record of it; containerd keeps no
/// OOMKilled flag, so nothing is said of one.
#[test]
fn a_kill_through_the_runtime_is_told_as_the_runtime_s() {
    let test = "a_kill_through_the_runtime_is_told_as_the_runtime_s";
    if !containerd_ready(test) {
        return;
    }
    let _serial = serial();
    let containerd = Containerd::start();
    let pod = Pod::build(Qos::Burstable, "stop", "web").create(&containerd);
    // PID 1 has no handler for SIGKILL, and the kernel lets it through from outside.
    let task = pod.run_container("web", Some(64 * MIB), "exec sleep 1000");
    let socket = ["--containerd-socket", containerd.socket()];
    let tracer = Tracer::start(&socket);
    let human = HumanWatch::start(&socket);
    containerd.ctr(&["task", "kill", "--signal", "SIGKILL", &task.id]);
    assert!(poll_until(GONE_TIMEOUT, || !process_alive(task.pid)));
    tracer.wait_for_exit(1, EXIT_TIMEOUT, |e| {
        e["container"]["id"] == task.id.as_str()
    });
    let lines = human.wait_until(EXIT_TIMEOUT, |lines| {
        lines.iter().any(|l| l.contains("container web exited"))
    });
    let stopped = tracer.stop();
    stopped.assert_success();
    let exit = only_exit(&stopped.exits, &task);
    assert_eq!(field(exit, "exit_code"), 137, "{exit}");
    assert_eq!(field(exit, "killed_by.kind"), "runtime", "{exit}");
    assert_eq!(field(exit, "killed_by.signal"), "SIGKILL", "{exit}");
    assert_eq!(field(exit, "killed_by.sender.comm"), "runc", "{exit}");
    assert_eq!(field(exit, "killed_by.sender.host_process"), true, "{exit}");
    assert!(field(exit, "runtime_oom_killed_reason").is_null(), "{exit}");
    let line = lines
        .iter()
        .find(|l| l.contains("container web exited"))
        .expect("the exit line");
    println!("{line}");
    assert!(
        line.contains("exited 137: SIGKILL from the runtime (runc, pid "),
        "{line}"
    );
    assert!(
        !line.contains("Docker"),
        "containerd has no Docker flag: {line}"
    );
}
