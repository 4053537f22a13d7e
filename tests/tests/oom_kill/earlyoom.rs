//! Debian's own earlyoom, for real, kills a hog in a kernel-matrix guest: oomtrace must report
//! it as a `userspace_oom_kill` by earlyoom, never as a kernel OOM kill, and earlyoom's own
//! lines about it, followed in a file as a log collector writes them (`--killer-log`), must
//! give what it acted on, as the parser of its log reads them. Only in a guest: earlyoom acts
//! on the whole machine's memory, so on the host it would kill the host's processes.

use std::{
    os::unix::process::ExitStatusExt as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use oomtrace_core::{
    kernel::vmstat::kernel_oom_kills,
    source::userspace_log::earlyoom::{EarlyoomLog, KillSignal},
};
use oomtrace_tests::{
    HOG_TIMEOUT, Hog, HumanWatch, KillOnDrop, MemCgroup, OomScoreAdj, PipeLines, Tracer, field,
    in_kernel_matrix_vm, not_applicable, privileged, serial, skip, temp_dir, terminate,
};

use super::{REPORT_TIMEOUT, hog_path};

/// Set by the guest's init to the earlyoom binary in the initramfs (xtask/src/vm/earlyoom.rs).
const EARLYOOM_ENV: &str = "OOMTRACE_EARLYOOM";
/// earlyoom prints its limits within milliseconds of starting, even under TCG.
const EARLYOOM_READY: Duration = Duration::from_secs(30);
/// How long earlyoom may take to exit on SIGTERM, and to have its stderr read to the end.
const EARLYOOM_STOP: Duration = Duration::from_secs(10);

/// `MemTotal` and `MemAvailable` of /proc/meminfo, in MiB.
fn meminfo_mib() -> (u64, u64) {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");
    let kib = |key: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix(" kB")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in /proc/meminfo: {meminfo}"))
    };
    (kib("MemTotal") >> 10, kib("MemAvailable") >> 10)
}

/// earlyoom's limits and the hog's size, from the memory available now: SIGTERM once half of
/// it is gone, SIGKILL only below a fifth of it, and a hog that takes it to a third. The hog
/// then stops growing between the two limits, so earlyoom's SIGTERM is certain and its
/// SIGKILL never comes, and the machine never runs out: the kernel's OOM killer cannot win a
/// race with it. `(term %, kill %, hog MiB)`, percentages of the total as earlyoom takes them.
fn limits_and_hog(total_mib: u64, available_mib: u64) -> (u64, u64, u64) {
    let available_pct = available_mib * 100 / total_mib;
    let term = available_pct / 2;
    let kill = available_pct / 5;
    let hog = available_mib - available_mib / 3;
    (term, kill, hog)
}

#[test]
fn earlyoom_kill_is_a_userspace_oom_kill_not_the_kernel_s() {
    let test = "earlyoom_kill_is_a_userspace_oom_kill_not_the_kernel_s";
    if !privileged(test) {
        return;
    }
    if !in_kernel_matrix_vm() {
        not_applicable(
            test,
            "earlyoom acts on the whole machine's memory, so only the kernel matrix's guests run it",
        );
        return;
    }
    let Some(earlyoom) = std::env::var_os(EARLYOOM_ENV) else {
        skip(test, &format!("{EARLYOOM_ENV} names no earlyoom binary"));
        return;
    };
    let _serial = serial();
    // Before earlyoom and oomtrace start, so they inherit it: the hog (1000) is the only
    // process earlyoom may choose, as the kernel's OOM killer would.
    let _protected = OomScoreAdj::set(-1000);
    // A limit far above the machine's memory: it only names the hog's cgroup.
    let cgroup = MemCgroup::create("earlyoom", 1 << 20);
    // earlyoom's stderr, written line by line into a file as a log collector would.
    let dir = temp_dir("earlyoom-log", 0o700);
    let log_path = dir.path().join("earlyoom.log");
    let log_file = std::fs::File::create(&log_path).expect("create earlyoom's log");
    let log_arg = log_path.to_str().expect("a UTF-8 temp path");
    let tracer = Tracer::start(&["--no-enrich", "--killer-log", log_arg]);
    let human = HumanWatch::start(&["--no-enrich", "--killer-log", log_arg]);
    let kernel_kills_before = kernel_oom_kills().expect("the kernel's count of OOM kills");

    let (total, available) = meminfo_mib();
    let (term, kill, hog_mib) = limits_and_hog(total, available);
    assert!(
        kill >= 1 && term > kill,
        "too little memory to set earlyoom's limits apart: {available} of {total} MiB available"
    );
    // -r 0: no periodic report on stdout; its kill lines go to stderr.
    let mut child = Command::new(&earlyoom)
        .args(["-m", &format!("{term},{kill}"), "-r", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map(KillOnDrop)
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", earlyoom.to_string_lossy()));
    let earlyoom_pid = child.id();
    let stderr = PipeLines::spawn_logged(
        "earlyoom's stderr",
        child.stderr.take().expect("stderr"),
        log_file,
        |line| Ok(String::from_utf8_lossy(&line).into_owned()),
    );
    // Its limits, printed once it has read the machine's memory and before its first poll.
    let limits_said =
        |lines: &[String]| lines.iter().any(|l| l.starts_with("sending SIGTERM when"));
    let banner = stderr.wait_until(Instant::now() + EARLYOOM_READY, limits_said);
    assert!(
        limits_said(&banner),
        "earlyoom never said its limits: {banner:?}"
    );

    let mut hog = Hog::spawn(&hog_path(), &cgroup, 1000, &["--mib", &hog_mib.to_string()]);
    let pid = hog.pid();
    let Some(status) = hog.wait_within(HOG_TIMEOUT) else {
        panic!(
            "the hog of {hog_mib} MiB outlived {HOG_TIMEOUT:?} with earlyoom -m {term},{kill} \
             and {available} of {total} MiB available; earlyoom's stderr: {:#?}",
            stderr.snapshot()
        );
    };
    let kills = tracer.wait_for_named("userspace_oom_kill", 1, REPORT_TIMEOUT, |k| {
        k["victim"]["pid"] == pid
    });
    let says = format!(
        "  userspace OOM kill: earlyoom (pid {earlyoom_pid}) sent SIGTERM to hog (pid {pid}), with "
    );
    human.wait_until(REPORT_TIMEOUT, |lines| {
        lines.iter().any(|l| l.contains(&says))
    });
    let kernel_kills = kernel_oom_kills().expect("the kernel's count of OOM kills");
    let earlyoom_status = terminate(&mut child, libc::SIGTERM, EARLYOOM_STOP);
    let lines = stderr.finish(EARLYOOM_STOP);
    let stopped = tracer.stop();
    stopped.assert_success();
    let (human_lines, _) = human.stop();
    // For --nocapture: what each of them said about the kill.
    for line in lines.iter().chain(&human_lines) {
        eprintln!("{line}");
    }
    for kill in &stopped.userspace_kills {
        eprintln!("{kill}");
    }
    let context = format!(
        "earlyoom -m {term},{kill} with {available} of {total} MiB available, hog {hog_mib} MiB; \
         earlyoom's stderr {lines:#?}; oomtrace's events {:#?}, stderr {:#?}",
        stopped.userspace_kills, stopped.stderr
    );
    assert!(
        earlyoom_status.is_some(),
        "earlyoom outlived SIGTERM: {context}"
    );

    // earlyoom killed the hog, with its first signal, and the kernel killed nothing.
    assert_eq!(
        status.signal(),
        Some(libc::SIGTERM),
        "{status:?}: {context}"
    );
    super::assert_only_a_userspace_kill(
        &stopped,
        pid,
        (kernel_kills_before, kernel_kills),
        "earlyoom",
        &context,
    );

    // oomtrace's event, from the kernel's record of the signal, in both views.
    let line = human_lines
        .iter()
        .find(|l| l.contains(&says))
        .unwrap_or_else(|| panic!("no `{says}` in {human_lines:#?}: {context}"));
    assert_eq!(kills.len(), 1, "{context}");
    assert_eq!(
        stopped.userspace_kills.len(),
        1,
        "one kill, told once: {context}"
    );
    let kill = &kills[0];
    assert_eq!(field(kill, "schema"), 1);
    assert_eq!(field(kill, "killer.name"), "earlyoom", "{kill}");
    assert_eq!(field(kill, "killer.pid"), earlyoom_pid, "{kill}");
    assert_eq!(field(kill, "killer.uid"), 0, "{kill}");
    assert_eq!(field(kill, "killer.via_cgroup_kill"), false, "{kill}");
    assert_eq!(field(kill, "signal"), "SIGTERM", "{kill}");
    assert_eq!(field(kill, "victim.pid"), pid, "{kill}");
    assert_eq!(field(kill, "victim.tid"), pid, "{kill}");
    assert_eq!(field(kill, "victim.comm"), "hog", "{kill}");
    assert_eq!(field(kill, "victim.cgroup_id"), cgroup.id(), "{kill}");
    assert_eq!(
        field(kill, "victim.cgroup_name"),
        cgroup.path.trim_start_matches('/'),
        "{kill}"
    );
    assert!(field(kill, "container").is_null(), "{kill}");

    // earlyoom's own record of the same kill, read as its log parser reads it: the real
    // binary's lines prove the formats the parser was written from.
    let mut log = EarlyoomLog::default();
    let told: Vec<_> = lines.iter().filter_map(|l| log.feed(l)).collect();
    assert_eq!(told.len(), 1, "{context}");
    let told = &told[0];
    assert_eq!(told.sending.signal, KillSignal::Term, "{context}");
    assert_eq!(told.sending.pid, pid, "{context}");
    assert_eq!(told.sending.name.as_deref(), Some("hog"), "{context}");
    assert_eq!(told.sending.uid, Some(0), "{context}");
    let limits = told.limits.expect("the limits it acted at");
    assert_eq!(limits.signal, KillSignal::Term, "{context}");
    assert_eq!(limits.mem.hundredths, term * 100, "{context}");
    let stats = told.stats.expect("the memory it acted on");
    assert_eq!(stats.mem_total_mib, total, "{context}");
    assert!(stats.mem_avail <= limits.mem, "{context}");
    assert_eq!(
        (stats.swap_total_mib, stats.swap_free_mib),
        (0, 0),
        "{context}"
    );

    // What it acted on, in the event: exactly what its log said, read live from the file.
    let acted = field(kill, "acted_on");
    assert_eq!(acted["source"], "earlyoom_log", "{kill}");
    let memory = &acted["memory"];
    assert_eq!(memory["mem_avail_mib"], stats.mem_avail_mib, "{kill}");
    assert_eq!(memory["mem_total_mib"], stats.mem_total_mib, "{kill}");
    assert_eq!(
        memory["mem_avail_percent"].as_f64(),
        Some(stats.mem_avail.hundredths as f64 / 100.0),
        "{kill}"
    );
    assert_eq!(memory["swap_total_mib"], 0, "{kill}");
    assert_eq!(acted["limits"]["signal"], "SIGTERM", "{kill}");
    assert_eq!(
        acted["limits"]["mem_percent"].as_f64(),
        Some(term as f64),
        "{kill}"
    );
    let in_words = format!(
        "with {} of {} MiB available ({}) and 0 of 0 MiB swap free (0.00%), at or below its SIGTERM limits (memory {}, swap {}); not in the kernel's count",
        stats.mem_avail_mib, stats.mem_total_mib, stats.mem_avail, limits.mem, limits.swap
    );
    assert!(
        line.ends_with(&in_words),
        "{line:?} does not end with {in_words:?}"
    );
}
