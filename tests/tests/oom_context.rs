//! Why a kill happened, on the real kernel: whose limit was hit and how full it was, whether the
//! kernel killed or only marked, and a count that matches the kernel's own.

use std::time::{Duration, Instant};

use oomtrace_tests::{
    Hog, HumanWatch, KernelLog, MemCgroup, Tracer, expect_summary, field, privileged, serial,
    trace_one_kill,
};

const MIB: u64 = 1 << 20;
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

fn hog_path() -> std::path::PathBuf {
    oomtrace_tests::hog_bin(env!("CARGO_BIN_EXE_hog"))
}

/// The kernel rate-limits its OOM reports to 10 in 5 s: other tests' kills just before may
/// leave a kill without one for this long.
const REPORT_WINDOW: Duration = Duration::from_secs(12);

/// A parent with a 32 MiB limit, a child without one, and the hog in the child, as a pod's
/// slice or a compose parent holds its containers: the limit hit is the parent's. The top
/// tasks come from the kernel's report of the kill, and without one are never stale.
#[test]
fn a_parent_s_limit_is_named_as_the_one_hit() {
    if !privileged("a_parent_s_limit_is_named_as_the_one_hit") {
        return;
    }
    let _serial = serial();
    let parent = MemCgroup::create("parent", 32);
    let child = parent.child("child");
    let mut log = KernelLog::from_now();
    let deadline = Instant::now() + REPORT_WINDOW;
    let (pid, report) = loop {
        let (pid, _, report) = trace_one_kill(&[], &child, &hog_path());
        if log.dumped_task(pid) {
            break (pid, report);
        }
        // The kernel printed no report for this kill: the dead hog is not listed from memory.
        let top = field(&report, "oom.top_tasks");
        assert!(
            top.as_array()
                .is_none_or(|tasks| tasks.iter().all(|t| t["pid"] != pid)),
            "{report}"
        );
        assert!(
            Instant::now() < deadline,
            "the kernel printed no OOM report for {REPORT_WINDOW:?} of kills"
        );
    };
    assert_eq!(field(&report, "victim.pid"), pid);
    assert_eq!(field(&report, "cgroup.path"), child.path.as_str());
    assert_eq!(field(&report, "oom.memcg"), parent.path.as_str());
    assert_eq!(field(&report, "oom.memcg_limit_bytes"), 32 * MIB);
    assert_eq!(field(&report, "oom.kind"), "killed");
    assert_eq!(field(&report, "oom.global"), false);
    let usage = field(&report, "oom.memcg_usage_bytes")
        .as_u64()
        .expect("memcg_usage_bytes");
    assert!(
        (24 * MIB..=32 * MIB).contains(&usage),
        "usage {usage} at a kill in a 32 MiB limit"
    );
    let top = field(&report, "oom.top_tasks")
        .as_array()
        .unwrap_or_else(|| panic!("the kernel's report lists the tasks: {report}"));
    assert!(
        top.iter().any(|t| t["pid"] == pid && t["comm"] == "hog"),
        "{report}"
    );
    assert!(
        field(&report, "oom.memcg_stat.anon_bytes")
            .as_u64()
            .unwrap()
            > 16 * MIB
    );

    // The human line says so.
    let human = HumanWatch::start(&[]);
    let mut hog = Hog::spawn(&hog_path(), &child, 500, &[]);
    hog.expect_oom_killed();
    human.wait_until(REPORT_TIMEOUT, |lines| {
        lines.iter().any(|l| l.contains("limit of "))
    });
    let (lines, _) = human.stop();
    let said = format!(
        "limit of {} hit, the victim lived in {}",
        parent.path, child.path
    );
    assert!(lines.iter().any(|l| l.contains(&said)), "{lines:#?}");
    drop(child);
}

/// Twenty kills in a row: oomtrace reports each once, and its summary names the kernel's own
/// count for the period, equal.
#[test]
fn twenty_kills_and_the_kernel_agrees() {
    if !privileged("twenty_kills_and_the_kernel_agrees") {
        return;
    }
    let _serial = serial();
    let cgroup = MemCgroup::create("twenty", 32);
    let tracer = Tracer::start(&[]);
    let mut pids = Vec::new();
    for _ in 0..20 {
        let mut hog = Hog::spawn(&hog_path(), &cgroup, 500, &[]);
        pids.push(hog.pid());
        hog.expect_oom_killed();
    }
    let ours = tracer.wait_for(20, REPORT_TIMEOUT, |r| {
        r["cgroup"]["path"] == cgroup.path.as_str()
    });
    let stopped = tracer.stop();
    stopped.assert_success();
    assert_eq!(ours.len(), 20, "{:?}", stopped.stderr);
    for pid in &pids {
        let reported = ours.iter().filter(|r| r["victim"]["pid"] == *pid).count();
        assert_eq!(reported, 1, "pid {pid}");
    }
    assert_eq!(cgroup.oom_kills(), 20, "the cgroup's own count");
    assert!(ours.iter().all(|r| r["oom"]["kind"] == "killed"));
    // Each kill its own OOM invocation.
    let mut ids: Vec<u64> = ours
        .iter()
        .map(|r| field(r, "oom.id").as_u64().expect("oom.id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 20);
    expect_summary(&stopped, None);
}
