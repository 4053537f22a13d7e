//! The kubelet's systemd cgroup driver, in its own shape: cgroups made as the kubelet makes
//! them (`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/
//! cri-containerd-<id>.scope`), with no containerd behind them, so the container is named from
//! the path alone. On cgroup v2 the container's cgroup has `memory.oom.group` set, as kubelet
//! sets it since 1.28: one allocation kills the whole container, told as one incident. Here on
//! the host (v1) and in every guest of the kernel matrix (v1 and v2).

use oomtrace_tests::{
    CgroupMode, Hog, HumanWatch, MemCgroup, Tracer, cgroups::set_memory_limit, field, privileged,
    serial,
};
use serde_json::Value;

use super::{REPORT_TIMEOUT, hog_path};

const POD_UID: &str = "5d0c6f4e-8a1b-4c2d-9e3f-a4b5c6d7e8f9";
const ID: &str = "3c1f9a7e5b2d4c6e8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f";
const CONTAINER_MIB: u64 = 32;

/// The pod's container cgroup in the systemd driver's shape, under a test cgroup of its own;
/// the outer cgroups must outlive it, so all are returned, outermost first.
fn container_cgroup() -> Vec<MemCgroup> {
    let test_root = MemCgroup::create("kubelet-sd", 1024);
    let kubepods = test_root.child("kubepods.slice");
    let burstable = kubepods.child("kubepods-burstable.slice");
    let pod = burstable.child(&format!(
        "kubepods-burstable-pod{}.slice",
        POD_UID.replace('-', "_")
    ));
    let container = pod.child(&format!("cri-containerd-{ID}.scope"));
    set_memory_limit(container.mode, &container.dir, CONTAINER_MIB << 20);
    vec![test_root, kubepods, burstable, pod, container]
}

fn assert_named_from_the_path(report: &Value) {
    assert_eq!(field(report, "container.runtime"), "containerd", "{report}");
    assert_eq!(field(report, "container.id"), ID, "{report}");
    assert_eq!(field(report, "container.pod.uid"), POD_UID, "{report}");
    assert_eq!(field(report, "container.pod.qos"), "burstable", "{report}");
    // Nobody was asked: no name is made up.
    assert!(field(report, "container.name").is_null(), "{report}");
    assert!(field(report, "container.pod.name").is_null(), "{report}");
}

#[test]
fn kubelet_systemd_shape_is_named_from_the_path_and_a_group_kill_is_one_incident() {
    let test = "kubelet_systemd_shape_is_named_from_the_path_and_a_group_kill_is_one_incident";
    if !privileged(test) {
        return;
    }
    let _serial = serial();
    let cgroups = container_cgroup();
    let container = cgroups.last().expect("the container's cgroup");
    let v2 = container.mode == CgroupMode::V2;
    if v2 {
        container.write("memory.oom.group", "1");
    }
    let tracer = Tracer::start(&["--no-enrich"]);
    let human = HumanWatch::start(&["--no-enrich"]);
    // On v2, two small members beside the hog die with it; on v1 only the hog.
    let members = if v2 { 2 } else { 0 };
    let mut hogs: Vec<Hog> = (0..members)
        .map(|_| Hog::spawn(&hog_path(), container, 0, &["--mib", "1"]))
        .collect();
    hogs.push(Hog::spawn(&hog_path(), container, 500, &[]));
    let chosen = hogs.last().expect("the hog").pid();
    for hog in &mut hogs {
        hog.expect_oom_killed();
    }
    let reports = tracer.wait_for(hogs.len(), REPORT_TIMEOUT, |r| {
        r["cgroup"]["path"] == container.path.as_str()
    });
    let lines = human.wait_until(REPORT_TIMEOUT, |lines| {
        lines.iter().filter(|l| l.contains(" (pid ")).count() >= hogs.len()
    });
    let stopped = tracer.stop();
    let (lines_at_end, _) = human.stop();
    stopped.assert_success();
    assert_eq!(reports.len(), hogs.len(), "{:#?}", stopped.reports);

    for report in &reports {
        assert_named_from_the_path(report);
        let is_chosen = field(report, "victim.pid") == chosen;
        if v2 {
            // The kernel kills the container's cgroup whole: its own, not the pod's.
            assert_eq!(
                field(report, "oom.group_memcg"),
                container.path.as_str(),
                "{report}"
            );
            assert_eq!(field(report, "oom.group_kill"), !is_chosen, "{report}");
        } else {
            assert!(field(report, "oom.group_memcg").is_null(), "{report}");
            assert_eq!(field(report, "oom.group_kill"), false, "{report}");
        }
    }

    // The human view: the chosen victim's lines say the container is being killed whole, and
    // each member follows as one `+` line under it, never as a kill of its own.
    let lines = if lines_at_end.len() > lines.len() {
        lines_at_end
    } else {
        lines
    };
    let first = lines
        .iter()
        .position(|l| l.contains(&format!(" (pid {chosen})")))
        .unwrap_or_else(|| panic!("a line for the hog: {lines:#?}"));
    assert!(
        lines[first].contains(&format!("containerd {} (pod {POD_UID})", &ID[..12])),
        "{lines:#?}"
    );
    let group =
        "memory.oom.group is set on the container: all its processes are being killed with it";
    let said = lines.get(first + 1).is_some_and(|l| l.contains(group));
    assert_eq!(said, v2, "{group:?} under the hog's line: {lines:#?}");
    let plus = lines.iter().filter(|l| l.starts_with("  + ")).count();
    assert_eq!(plus, members, "{lines:#?}");
}
