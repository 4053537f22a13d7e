//! Debian's own systemd-oomd, for real, kills a unit held at its `memory.high` in the kernel
//! matrix's systemd guest (xtask/src/vm/systemd.rs): oomtrace must report it as a
//! `userspace_oom_kill` by systemd-oomd, never as a kernel OOM kill, though systemd gives the
//! unit the same `oom-kill` result as the kernel's kills get. What
//! systemd-oomd acted on comes from its `Killed` line, which journald forwards to rsyslog's
//! /var/log/syslog, followed with `--killer-log` as on a stock Debian host. Only in that
//! guest: systemd-oomd learns which cgroups to watch from PID 1, and only there is PID 1
//! systemd with the slice the test's unit runs in.

use std::{process::Command, time::Duration};

use oomtrace_core::{kernel::vmstat::kernel_oom_kills, source::userspace_log::systemd_oomd};
use oomtrace_tests::{HumanWatch, Tracer, field, not_applicable, privileged, run_within, serial};

use super::REPORT_TIMEOUT;

/// Set by the systemd guest's test runner (xtask/vm/systemd/oomtrace-vm-test).
const GUEST_ENV: &str = "OOMTRACE_SYSTEMD_GUEST";
/// The hog's unit and the slice systemd-oomd watches (xtask/vm/systemd/), which its name's dash
/// puts below oomtrace.slice.
const UNIT: &str = "oomtrace-pressure.service";
const SLICE: &str = "/oomtrace.slice/oomtrace-pressure.slice";
const SYSLOG: &str = "/var/log/syslog";
/// From the hog's start to its kill: systemd-oomd reads pressure every second and acts once it
/// has been over the limit for 1 s; 4–6 s under TCG when this test was written.
const KILL_TIMEOUT: Duration = Duration::from_secs(120);
/// systemctl asks PID 1 and returns; under TCG that can take seconds.
const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(60);

fn systemctl(args: &[&str]) -> String {
    let out = run_within(Command::new("systemctl").args(args), SYSTEMCTL_TIMEOUT);
    assert!(
        out.status.success(),
        "systemctl {args:?}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn unit_property(unit: &str, property: &str) -> String {
    systemctl(&["show", "--property", property, "--value", unit])
}

/// The real uid of process `pid`: systemd-oomd runs as a user of its own.
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no Uid in /proc/{pid}/status: {status}"))
}

fn main_pid(unit: &str) -> u32 {
    let pid = unit_property(unit, "MainPID");
    pid.parse()
        .ok()
        .filter(|&pid| pid > 0)
        .unwrap_or_else(|| panic!("{unit} has no main pid: {pid:?}"))
}

#[test]
fn systemd_oomd_kill_is_a_userspace_oom_kill_not_the_kernel_s() {
    let test = "systemd_oomd_kill_is_a_userspace_oom_kill_not_the_kernel_s";
    if !privileged(test) {
        return;
    }
    if std::env::var_os(GUEST_ENV).is_none() {
        not_applicable(
            test,
            "systemd-oomd runs only in the kernel matrix's systemd guest, where PID 1 gives it a slice to watch",
        );
        return;
    }
    let _serial = serial();
    let oomd_pid = main_pid("systemd-oomd.service");
    let oomd_uid = uid_of(oomd_pid);
    let tracer = Tracer::start(&["--no-enrich", "--killer-log", SYSLOG]);
    let human = HumanWatch::start(&["--no-enrich", "--killer-log", SYSLOG]);
    let kernel_kills_before = kernel_oom_kills().expect("the kernel's count of OOM kills");

    systemctl(&["start", UNIT]);
    let pid = main_pid(UNIT);
    let kills = tracer.wait_for_named("userspace_oom_kill", 1, KILL_TIMEOUT, |k| {
        k["victim"]["pid"] == pid
    });
    let cgroup = format!("{SLICE}/{UNIT}");
    let says = format!(
        "  userspace OOM kill: systemd-oomd (pid {oomd_pid}) sent SIGKILL to hog (pid {pid}), \
         killing {cgroup} for memory pressure "
    );
    human.wait_until(REPORT_TIMEOUT, |lines| {
        lines.iter().any(|l| l.contains(&says))
    });
    let kernel_kills = kernel_oom_kills().expect("the kernel's count of OOM kills");
    // What systemd says of the unit: the word it gives the kernel's kills too (systemd#22629).
    let result = unit_property(UNIT, "Result");
    let stopped = tracer.stop();
    stopped.assert_success();
    let (human_lines, _) = human.stop();
    let syslog = std::fs::read_to_string(SYSLOG).unwrap_or_else(|e| panic!("read {SYSLOG}: {e}"));
    let tag = format!("systemd-oomd[{oomd_pid}]: ");
    let logged: Vec<&str> = syslog
        .lines()
        .filter_map(|l| Some(&l[l.find(&tag)? + tag.len()..]))
        .collect();
    // For --nocapture: what each of them said about the kill.
    for line in logged
        .iter()
        .copied()
        .chain(human_lines.iter().map(String::as_str))
    {
        eprintln!("{line}");
    }
    for kill in &stopped.userspace_kills {
        eprintln!("{kill}");
    }
    let context = format!(
        "systemd-oomd's lines {logged:#?}; oomtrace's events {:#?}, stderr {:#?}",
        stopped.userspace_kills, stopped.stderr
    );
    assert_eq!(result, "oom-kill", "{context}");
    super::assert_only_a_userspace_kill(
        &stopped,
        pid,
        (kernel_kills_before, kernel_kills),
        "systemd-oomd",
        &context,
    );

    // oomtrace's event, from the kernel's record of the signal.
    assert_eq!(kills.len(), 1, "{context}");
    assert_eq!(
        stopped.userspace_kills.len(),
        1,
        "one kill, told once: {context}"
    );
    let kill = &kills[0];
    assert_eq!(field(kill, "killer.name"), "systemd-oomd", "{kill}");
    assert_eq!(field(kill, "killer.pid"), oomd_pid, "{kill}");
    assert_eq!(field(kill, "killer.uid"), oomd_uid, "{kill}");
    // systemd 252 signals the cgroup's processes one by one; it does not write cgroup.kill.
    assert_eq!(field(kill, "killer.via_cgroup_kill"), false, "{kill}");
    assert_eq!(field(kill, "signal"), "SIGKILL", "{kill}");
    assert_eq!(field(kill, "victim.pid"), pid, "{kill}");
    assert_eq!(field(kill, "victim.comm"), "hog", "{kill}");
    // The kernel's record names the victim's cgroup by its last part.
    assert_eq!(field(kill, "victim.cgroup_name"), UNIT, "{kill}");
    assert!(field(kill, "container").is_null(), "{kill}");

    // systemd-oomd's own line, read as the log parser reads it: the real binary's line proves
    // the format the parser was written from.
    let told: Vec<_> = logged
        .iter()
        .filter_map(|l| systemd_oomd::parse_killed(l))
        .collect();
    assert_eq!(told.len(), 1, "{context}");
    let told = &told[0];
    assert_eq!(told.cgroup, cgroup, "{context}");
    let systemd_oomd::OomdReason::Pressure {
        monitored,
        pressure,
        limit,
        duration,
    } = &told.reason
    else {
        panic!("not a pressure kill: {told:?}");
    };
    assert_eq!(monitored, SLICE, "{context}");
    assert_eq!(limit.hundredths, 1000, "{context}");
    assert!(pressure.hundredths > limit.hundredths, "{context}");
    assert_eq!(*duration, Some(Duration::from_secs(1)), "{context}");

    // What it acted on, in the event: exactly what its line said, read live from the file.
    let acted = field(kill, "acted_on");
    assert_eq!(acted["source"], "systemd_oomd_log", "{kill}");
    assert_eq!(acted["cgroup"], cgroup.as_str(), "{kill}");
    assert_eq!(acted["pressure"]["monitored"], SLICE, "{kill}");
    assert_eq!(
        acted["pressure"]["pressure_percent"].as_f64(),
        Some(pressure.hundredths as f64 / 100.0),
        "{kill}"
    );
    assert_eq!(
        acted["pressure"]["limit_percent"].as_f64(),
        Some(10.0),
        "{kill}"
    );
    assert_eq!(
        acted["pressure"]["for_seconds"].as_f64(),
        Some(1.0),
        "{kill}"
    );
    let line = human_lines
        .iter()
        .find(|l| l.contains(&says))
        .unwrap_or_else(|| panic!("no `{says}` in {human_lines:#?}: {context}"));
    let in_words =
        format!("{says}{pressure} over 10.00% on {SLICE} for over 1 s; not in the kernel's count");
    assert!(
        line.ends_with(&in_words),
        "{line:?} does not end with {in_words:?}"
    );
}
