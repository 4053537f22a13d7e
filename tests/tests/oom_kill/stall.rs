//! A cgroup that stalls at its limit instead of killing, watched with `--stall-cgroup`: on
//! cgroup v1 its OOM killer is off and a hog in it waits at the limit; on v2 it is held at
//! `memory.high` while a hog keeps allocating, throttled. Either way nothing is killed, and
//! oomtrace tells the stall when it starts and when it ends. Here on the host (v1) and in
//! every guest of the kernel matrix (v1 and v2).

use std::{process::Command, time::Duration};

use oomtrace_tests::{
    CgroupMode, Hog, MemCgroup, Tracer, field, oomtrace_bin, privileged, run_within, serial,
};
use serde_json::Value;

use super::{RUN_TIMEOUT, hog_path};

const MIB: u64 = 1 << 20;
/// v2 needs three one-second readings in a row; TCG emulation is slow.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Far below the hog's 64 MiB: the further over `memory.high`, the longer the kernel makes
/// each allocation wait, so the hog is still held back when the watch reads it.
const HIGH_MIB: u64 = 4;

fn stall_of(events: &[Value], phase: &str, tracer: &Tracer, cgroup: &MemCgroup) -> Value {
    let found = events.iter().find(|e| e["phase"] == phase).cloned();
    found.unwrap_or_else(|| {
        let file = if cgroup.mode == CgroupMode::V2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        panic!(
            "an oom_stall {phase}: {events:#?}\n{file}: {:?}\noomtrace's stderr: {:#?}",
            std::fs::read_to_string(cgroup.dir.join(file)),
            tracer.stderr_so_far()
        )
    })
}

#[test]
fn a_cgroup_stalled_at_its_limit_is_told_when_it_starts_and_when_it_ends() {
    let test = "a_cgroup_stalled_at_its_limit_is_told_when_it_starts_and_when_it_ends";
    if !privileged(test) {
        return;
    }
    let _serial = serial();
    let cgroup = MemCgroup::create("stall", 32);
    let v2 = cgroup.mode == CgroupMode::V2;
    let (reason, limit) = if v2 {
        // Held at memory.high, with no memory.max: the kernel throttles, and kills nothing.
        cgroup.write("memory.max", "max");
        cgroup.write("memory.high", &(HIGH_MIB * MIB).to_string());
        ("memory_high", HIGH_MIB * MIB)
    } else {
        cgroup.write("memory.oom_control", "1");
        ("oom_killer_disabled", 32 * MIB)
    };
    let tracer = Tracer::start(&["--no-enrich", "--stall-cgroup", &cgroup.path]);
    let hog = Hog::spawn(&hog_path(), &cgroup, 0, &["--mib", "64"]);
    let ours = |e: &Value| e["cgroup"] == cgroup.path.as_str();
    let started = tracer.wait_for_named("oom_stall", 1, STALL_TIMEOUT, ours);
    let started = stall_of(&started, "started", &tracer, &cgroup);
    // Ends once the hog is gone: killed by the test, not by the kernel.
    drop(hog);
    let events = tracer.wait_for_named("oom_stall", 2, STALL_TIMEOUT, ours);
    let ended = stall_of(&events, "ended", &tracer, &cgroup);
    let stopped = tracer.stop();
    stopped.assert_success();

    assert_eq!(field(&started, "reason"), reason, "{started}");
    assert_eq!(
        field(&started, "cgroup_mode"),
        if v2 { "v2" } else { "v1" },
        "{started}"
    );
    assert_eq!(field(&started, "limit_bytes"), limit, "{started}");
    let usage = field(&started, "usage_bytes").as_u64().expect("usage");
    assert!(usage + MIB >= limit, "at its limit: {started}");
    assert!(field(&started, "container").is_null(), "{started}");
    assert_eq!(field(&ended, "since"), field(&started, "since"), "{ended}");
    assert!(
        field(&ended, "seconds").as_f64().expect("seconds") > 0.0,
        "{ended}"
    );
    // Nothing was killed: the kernel stalled instead.
    let killed_here = |r: &Value| r["cgroup"]["path"] == cgroup.path.as_str();
    assert!(
        !stopped.reports.iter().any(killed_here),
        "{:#?}",
        stopped.reports
    );
    assert_eq!(cgroup.oom_kills(), 0);
}

#[test]
fn a_stall_cgroup_that_is_not_a_memory_cgroup_is_refused() {
    if !privileged("a_stall_cgroup_that_is_not_a_memory_cgroup_is_refused") {
        return;
    }
    let output = run_within(
        Command::new(oomtrace_bin()).args([
            "--stall-cgroup",
            "/oomtrace-e2e-no-such-cgroup",
            "--timeout",
            "1s",
        ]),
        RUN_TIMEOUT,
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--stall-cgroup /oomtrace-e2e-no-such-cgroup:")
            && stderr.contains("is not a memory cgroup"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "the refusal is the only line: {stderr}"
    );
}
