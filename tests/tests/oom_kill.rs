//! End to end on this host's real kernel: a hog in a real memory cgroup is OOM-killed and
//! `oomtrace --json` must report exactly that kill, in every attach mode the host supports.

use std::{
    io::BufReader,
    os::unix::process::CommandExt as _,
    path::Path,
    process::{ChildStdout, Command, Stdio},
    sync::MutexGuard,
    time::{Duration, Instant},
};

use oomtrace_core::kernel::vmstat::kernel_oom_kills;
use oomtrace_tests::{
    CAP_SYS_RESOURCE, Hog, MemCgroup, Staged, Tracer, capabilities, field, not_applicable,
    oomtrace_bin, privileged, read_line_within, run_within, serial, skip, spawn_ready,
    spawn_until_ready, temp_dir, terminate, trace_one_kill, wait_timeout,
};
use serde_json::Value;

// In the binary the kernel matrix boots, each in a file of its own.
#[path = "oom_kill/earlyoom.rs"]
mod earlyoom;
#[path = "oom_kill/kubelet_shapes.rs"]
mod kubelet_shapes;
#[path = "oom_kill/stall.rs"]
mod stall;
#[path = "oom_kill/systemd_oomd.rs"]
mod systemd_oomd;

const MIB: u64 = 1 << 20;
/// `oomtrace check` and `oomtrace history` finish in well under a second on the host; under
/// the kernel matrix's TCG emulation, loading and verifying a program takes far longer.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a started oomtrace may take to write a report, or to exit once told to.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The user the refusal tests run oomtrace as: nobody.
const NOBODY: u32 = 65534;

fn hog_path() -> std::path::PathBuf {
    oomtrace_tests::hog_bin(env!("CARGO_BIN_EXE_hog"))
}

/// A userspace OOM killer's kill of `pid`, and nothing else: the kernel's count of OOM kills
/// did not move (`kernel_kills_before` → `kernel_kills`), no kernel report names the victim,
/// and the summary counts the kill apart, by `killer`. `context` says what the killer and
/// oomtrace said.
fn assert_only_a_userspace_kill(
    stopped: &oomtrace_tests::Stopped,
    pid: u32,
    (kernel_kills_before, kernel_kills): (u64, u64),
    killer: &str,
    context: &str,
) {
    assert_eq!(
        kernel_kills, kernel_kills_before,
        "the kernel's OOM killer acted: {context}"
    );
    assert!(
        !stopped.reports.iter().any(|r| r["victim"]["pid"] == pid),
        "reported as a kernel OOM kill: {context}"
    );
    oomtrace_tests::expect_summary(stopped, None);
    let summary = format!(
        "oomtrace: 1 kill by userspace OOM killers ({killer} 1), not in the kernel's count"
    );
    assert!(
        stopped.stderr.contains(&summary),
        "no `{summary}`: {context}"
    );
}

/// What a test that OOM-kills hogs of its own needs first: `None` where `test` may not run
/// here (it has said why); else the [`serial`] lock, to hold for the whole test so that every
/// kill meanwhile is its own, and a 32 MiB cgroup tagged `tag` for its hogs.
fn alone_with_a_memcg(test: &str, tag: &str) -> Option<(MutexGuard<'static, ()>, MemCgroup)> {
    if !privileged(test) {
        return None;
    }
    let serial = serial();
    Some((serial, MemCgroup::create(tag, 32)))
}

/// Starts a hog in `cgroup` at oom_score_adj 500 and waits until the OOM killer has killed
/// it; its pid.
fn kill_a_hog(cgroup: &MemCgroup) -> u32 {
    let mut hog = Hog::spawn(&hog_path(), cgroup, 500, &[]);
    let pid = hog.pid();
    hog.expect_oom_killed();
    pid
}

/// oomtrace's next line on `stdout`, which must come within [`REPORT_TIMEOUT`] of a kill.
fn line_for_the_kill(
    stdout: &mut BufReader<ChildStdout>,
    is_kill: impl Fn(&str) -> bool,
) -> String {
    // A watch tells every container's exit too, and a container of an earlier test may end
    // while this one watches.
    let deadline = Instant::now() + REPORT_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line =
            read_line_within(stdout, left, "oomtrace's stdout").expect("a line for the kill");
        if is_kill(&line) {
            return line;
        }
    }
}

/// A JSON line of an OOM kill.
fn is_kill_json(line: &str) -> bool {
    line.contains("\"event\":\"oom_kill\"")
}

/// Whether `test` may use `mode` here, from `oomtrace check` itself. tp_btf and raw_tp need
/// only BTF; the classic tracepoint needs tracefs. All three attach on the project's machines,
/// so under CI a mode that does not attach fails the test instead of skipping it.
fn mode_attaches(mode: &str, test: &str) -> bool {
    let output = run_within(
        Command::new(oomtrace_bin()).args(["check", "--attach", mode]),
        RUN_TIMEOUT,
    );
    if output.status.success() {
        return true;
    }
    skip(
        test,
        &format!("this host cannot attach {mode}: see `oomtrace check --attach {mode}`"),
    );
    false
}

/// One hog killed in a 32 MiB cgroup, reported by `mode`.
fn reports_a_memcg_kill(mode: &str) {
    let test = format!("{mode}_reports_a_memcg_kill");
    if !privileged(&test) {
        return;
    }
    let _serial = serial();
    if !mode_attaches(mode, &test) {
        return;
    }
    let cgroup = MemCgroup::create(mode, 32);
    let (pid, stopped, report) = trace_one_kill(&["--attach", mode], &cgroup, &hog_path());
    let report = &report;
    assert_eq!(
        cgroup.oom_kills(),
        1,
        "the kernel counted one kill in the cgroup too"
    );

    assert_eq!(field(report, "schema"), 1);
    assert_eq!(field(report, "event"), "oom_kill");
    assert_eq!(field(report, "source"), mode);
    assert_eq!(field(report, "victim.tid"), pid);
    assert_eq!(field(report, "victim.thread_comm"), "hog");
    assert_eq!(field(report, "victim.oom_score_adj"), 500);
    assert_eq!(field(report, "victim.uid"), 0);
    let anon = field(report, "victim.rss_anon_bytes")
        .as_u64()
        .expect("rss_anon_bytes");
    assert!(anon >= 16 * MIB, "rss_anon_bytes {anon} is below 16 MiB");
    assert!(
        anon <= 40 * MIB,
        "rss_anon_bytes {anon} exceeds the 32 MiB limit by far"
    );
    assert!(field(report, "victim.total_vm_bytes").as_u64().unwrap() >= anon);
    assert!(field(report, "victim.pgtables_bytes").as_u64().unwrap() > 0);
    assert_eq!(
        field(report, "trigger.pid"),
        pid,
        "the hog itself hit the limit"
    );
    assert!(field(report, "container").is_null());
    let time = field(report, "time").as_str().unwrap();
    assert!(
        time.ends_with('Z') && time.len() == 27,
        "time {time} is not RFC 3339 UTC µs"
    );

    if mode == "tracepoint" {
        // The classic record carries no task pointer. What it cannot give, oomtrace may read
        // from /proc while the victim dies (since 0e374dc), under rules that make each field
        // right or null: so each must be null or exactly what the other modes report.
        for (key, right) in [
            ("victim.pid", Value::from(pid)),
            ("victim.ns_pid", Value::from(pid)),
            ("victim.comm", Value::from("hog")),
            ("victim.swap_bytes", Value::from(0)),
            ("cgroup.id", Value::from(cgroup.id())),
            ("cgroup.path", Value::from(cgroup.path.as_str())),
            ("cgroup.mode", Value::from(cgroup.mode.json_name())),
        ] {
            let value = field(report, key);
            assert!(
                value.is_null() || *value == right,
                "{key} must be null or {right} in tracepoint mode: {report}"
            );
        }
    } else {
        assert_eq!(field(report, "victim.pid"), pid);
        assert_eq!(
            field(report, "victim.ns_pid"),
            pid,
            "the hog runs in the host pid namespace"
        );
        assert_eq!(field(report, "victim.comm"), "hog");
        assert_eq!(field(report, "victim.swap_bytes"), 0);
        assert_eq!(field(report, "cgroup.path"), cgroup.path.as_str());
        assert_eq!(
            field(report, "cgroup.mode"),
            &Value::from(cgroup.mode.json_name())
        );
        assert_eq!(
            field(report, "cgroup.id"),
            cgroup.id(),
            "cgroup.id is the cgroup's inode"
        );
        assert_eq!(field(report, "trigger.cgroup_id"), cgroup.id());
    }
    oomtrace_tests::expect_summary(&stopped, None);
}

#[test]
fn tp_btf_reports_a_memcg_kill() {
    reports_a_memcg_kill("tp_btf");
}

#[test]
fn raw_tp_reports_a_memcg_kill() {
    reports_a_memcg_kill("raw_tp");
}

#[test]
fn tracepoint_reports_a_memcg_kill() {
    reports_a_memcg_kill("tracepoint");
}

/// The exit-0-but-OOMKilled shape: a child dies, its parent in the same cgroup lives on and
/// exits 0. The report must name the child, never the parent.
#[test]
fn names_the_killed_child_not_its_surviving_parent() {
    let Some((_serial, cgroup)) =
        alone_with_a_memcg("names_the_killed_child_not_its_surviving_parent", "child")
    else {
        return;
    };
    let tracer = Tracer::start(&[]);
    let mut parent = Hog::spawn(&hog_path(), &cgroup, 500, &["--child"]);
    let parent_pid = parent.pid();
    let first = parent.line().expect("the parent names its child");
    let child_pid: u32 = first
        .strip_prefix("child ")
        .expect("child <pid>")
        .parse()
        .unwrap();
    assert_eq!(
        parent.line().as_deref(),
        Some("child-signal 9"),
        "the child must be SIGKILLed"
    );
    let status = parent.wait();
    assert!(
        status.success(),
        "the parent survives and exits 0: {status:?}"
    );

    let matched = tracer.wait_for(1, Duration::from_secs(5), |r| {
        r["cgroup"]["path"] == cgroup.path.as_str()
    });
    let stopped = tracer.stop();
    assert_eq!(matched.len(), 1, "{matched:#?}");
    let ours: Vec<&Value> = stopped
        .reports
        .iter()
        .filter(|r| r["cgroup"]["path"] == cgroup.path.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "exactly one kill in the cgroup: {ours:#?}");
    let report = ours[0];
    assert_eq!(field(report, "victim.pid"), child_pid);
    assert_ne!(field(report, "victim.pid"), parent_pid);
    assert_eq!(field(report, "victim.comm"), "hog-child");
    assert_eq!(
        field(report, "victim.oom_score_adj"),
        500,
        "inherited across fork"
    );
}

/// SIGTERM ends a watch like SIGINT: detach, summary, exit 0. `--output` gets JSON lines
/// while stdout gets the human line.
#[test]
fn sigterm_summary_and_output_file() {
    let Some((_serial, cgroup)) = alone_with_a_memcg("sigterm_summary_and_output_file", "output")
    else {
        return;
    };
    // Removed with its directory when the test ends, passed or not.
    let scratch = temp_dir("output", 0o700);
    let out = scratch.path().join("out.jsonl");
    std::fs::write(&out, "").unwrap();

    let mut command = Command::new(oomtrace_bin());
    command.arg("--output").arg(&out);
    let mut started = spawn_until_ready(command);
    let pid = kill_a_hog(&cgroup);

    let mut human = BufReader::new(started.stdout);
    let line = line_for_the_kill(&mut human, |l| l.contains(&format!("hog (pid {pid})")));
    assert!(
        line.contains(&format!("  cgroup {}  hog (pid {pid})  rss ", cgroup.path)),
        "{line}"
    );
    assert!(line.trim_end().ends_with("  limit 32.0 MiB"), "{line}");

    let status =
        terminate(&mut started.child, libc::SIGTERM, REPORT_TIMEOUT).expect("exit after SIGTERM");
    assert!(status.success(), "{status:?}");
    let stderr = started.stderr.finish_after_exit();
    assert!(
        stderr.contains(&oomtrace_tests::summary_line(1, None)),
        "{stderr:?}"
    );

    let written = std::fs::read_to_string(&out).unwrap();
    let ours: Vec<Value> = written
        .lines()
        .map(|l| serde_json::from_str(l).expect("--output holds JSON lines"))
        .filter(|r: &Value| r["victim"]["pid"] == pid)
        .collect();
    assert_eq!(ours.len(), 1, "{written}");
    assert_eq!(field(&ours[0], "cgroup.path"), cgroup.path.as_str());
}

/// `oomtrace --json | head -1`: once the reader is gone, oomtrace ends quietly with 0.
#[test]
fn closed_stdout_ends_quietly() {
    let Some((_serial, cgroup)) = alone_with_a_memcg("closed_stdout_ends_quietly", "pipe") else {
        return;
    };
    let mut command = Command::new(oomtrace_bin());
    // Without Docker on the host, enrichment would add its own line to stderr, and a root
    // without CAP_SYS_RESOURCE the warning that it cannot protect itself.
    command.args(["--json", "--no-enrich", "--no-journal", "--no-oom-protect"]);
    let mut started = spawn_until_ready(command);
    kill_a_hog(&cgroup);
    let mut reader = BufReader::new(started.stdout);
    let first = line_for_the_kill(&mut reader, is_kill_json);
    assert!(first.starts_with("{\"schema\":1,"), "{first}");
    drop(reader);

    // The next kill makes oomtrace write into the closed pipe.
    kill_a_hog(&cgroup);
    let status = wait_timeout(&mut started.child, REPORT_TIMEOUT)
        .expect("oomtrace must end once its stdout is closed");
    assert!(status.success(), "{status:?}");
    let stderr = started.stderr.finish_after_exit();
    assert_eq!(
        stderr.len(),
        1,
        "only the ready line, nothing after: {stderr:?}"
    );
}

/// Whether this process holds CAP_SYS_RESOURCE, which lowering an oom_score_adj needs.
fn holds_cap_sys_resource() -> bool {
    capabilities("CapEff") & (1 << CAP_SYS_RESOURCE) != 0
}

/// oomtrace's oom_score_adj once it is ready, started at 321 with `flags`, and its stderr.
fn oom_score_adj_once_ready(flags: &[&str]) -> (i32, Vec<String>) {
    let mut command = Command::new(oomtrace_bin());
    command
        .args(["--json", "--no-enrich", "--no-journal"])
        .args(flags);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let written = libc::write(fd, b"321".as_ptr().cast(), 3);
            libc::close(fd);
            if written != 3 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.stdout(Stdio::null());
    let (child, stderr) = spawn_ready(command);
    let file = format!("/proc/{}/oom_score_adj", child.id());
    let score = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {file}: {e}"));
    let lines = stderr.snapshot();
    drop(child);
    (score.trim().parse().expect("a score"), lines)
}

/// oomtrace lowers its own oom_score_adj to -1000, so that the OOM it reports does not take
/// the witness too; `--no-oom-protect` leaves it where it was. Without CAP_SYS_RESOURCE it
/// cannot, and `metrics.rs` checks the one-line warning that says so.
#[test]
fn the_tracer_protects_itself_from_the_oom_killer_unless_told_not_to() {
    let test = "the_tracer_protects_itself_from_the_oom_killer_unless_told_not_to";
    if !privileged(test) {
        return;
    }
    if !holds_cap_sys_resource() {
        not_applicable(
            test,
            "root here holds no CAP_SYS_RESOURCE; the kernel matrix's guests run it",
        );
        return;
    }
    let _serial = serial();
    let (score, stderr) = oom_score_adj_once_ready(&["--no-oom-protect"]);
    assert_eq!(score, 321, "--no-oom-protect leaves it alone: {stderr:?}");
    let (score, stderr) = oom_score_adj_once_ready(&[]);
    assert_eq!(score, -1000, "{stderr:?}");
    assert!(
        !stderr.iter().any(|l| l.contains("oom_score_adj")),
        "{stderr:?}"
    );
}

/// Runs oomtrace (or anything) to its end within [`RUN_TIMEOUT`]: exit code (-1 for a
/// signal), stdout, stderr.
fn run_to_end(command: &mut Command) -> (i32, String, String) {
    let output = run_within(command, RUN_TIMEOUT);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `bin --json` as nobody. Root's supplementary groups are dropped with the uid.
fn as_nobody(bin: &Path) -> Command {
    let mut command = Command::new(bin);
    command.arg("--json").uid(NOBODY).gid(NOBODY);
    command
}

/// The refusal of `command` is one sentence on stderr naming `expected`, with exit status
/// `code` (any non-zero one for `None`), and never a panic.
fn assert_refusal(what: &str, command: &mut Command, expected: &str, code: Option<i32>) {
    let (status, _, stderr) = run_to_end(command);
    assert_ne!(status, 0, "{what}: must fail");
    if let Some(code) = code {
        assert_eq!(status, code, "{what}: exit status, with {stderr:?}");
    }
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{what}: one line, got {stderr:?}"
    );
    assert!(stderr.contains(expected), "{what}: {stderr:?}");
}

/// Bad situations end in one sentence and a non-zero exit, never a panic.
#[test]
fn refusals_are_one_sentence() {
    if !privileged("refusals_are_one_sentence") {
        return;
    }
    // Serial: a binary being written (the staged copy) must not be held open by a fork of
    // another test's spawn when it is executed, or the exec fails with ETXTBSY.
    let _serial = serial();
    // Nobody cannot reach target/ when the checkout is in a private directory: stage a copy.
    let staged = Staged::copy_of(&oomtrace_bin());
    let cases: Vec<(&str, Command, &str, Option<i32>)> = vec![
        ("not root", as_nobody(staged.path()), "needs root", Some(1)),
        (
            "no BTF",
            {
                let mut c = Command::new(oomtrace_bin());
                c.args(["--attach", "raw_tp", "--btf", "/nonexistent/vmlinux"]);
                c
            },
            "no usable kernel BTF",
            None,
        ),
        (
            "unwritable --output",
            {
                let mut c = Command::new(oomtrace_bin());
                c.args(["--output", "/nonexistent/dir/out.jsonl"]);
                c
            },
            "cannot open --output",
            None,
        ),
    ];
    for (what, mut command, expected, code) in cases {
        assert_refusal(what, &mut command, expected, code);
    }
}

/// A checkout in a private directory, as a fresh clone in /root (mode 0700) is: the binary
/// under test is out of reach for other users, and the refusal to run without root must
/// still be oomtrace's own sentence with exit status 1, not a failed exec. This fails with a
/// helper that runs the binary where it was built.
#[test]
fn refusal_as_nobody_from_a_private_checkout() {
    if !privileged("refusal_as_nobody_from_a_private_checkout") {
        return;
    }
    let _serial = serial();
    let private = temp_dir("private-checkout", 0o700);
    let built = private.path().join("oomtrace");
    std::fs::copy(oomtrace_bin(), &built)
        .unwrap_or_else(|e| panic!("copy oomtrace into {}: {e}", private.path().display()));
    // The premise: nobody cannot even start the binary in place.
    match as_nobody(&built)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::PermissionDenied,
            "starting {} as nobody: {e}",
            built.display()
        ),
        Ok(mut child) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "nobody could start {} in a 0700 directory: this test would prove nothing",
                built.display()
            );
        }
    }
    let staged = Staged::copy_of(&built);
    assert_refusal(
        "not root, staged from a private directory",
        &mut as_nobody(staged.path()),
        "needs root",
        Some(1),
    );
}

/// Kernels before 6.9 give `mark_victim` only a thread id. Forced here on any kernel, the
/// report must still name the process and its cgroup (read from /proc while the victim dies)
/// and leave what it cannot read reliably null.
#[test]
fn pid_only_layout_still_names_process_and_cgroup() {
    let test = "pid_only_layout_still_names_process_and_cgroup";
    if !privileged(test) {
        return;
    }
    let _serial = serial();
    if !mode_attaches("tracepoint", test) {
        return;
    }
    let cgroup = MemCgroup::create("pidonly", 32);
    let (pid, _, report) = trace_one_kill(
        &["--attach", "tracepoint", "--tracepoint-layout", "pid-only"],
        &cgroup,
        &hog_path(),
    );
    let report = &report;
    assert_eq!(field(report, "source"), "tracepoint");
    assert_eq!(field(report, "victim.pid"), pid);
    assert_eq!(field(report, "victim.comm"), "hog");
    assert_eq!(field(report, "victim.oom_score_adj"), 500);
    // The finding behind this test: on cgroup v1 a dying victim reads `/` in /proc, and the
    // report said the root cgroup. v2 keeps a dying task's cgroup, so there it must be named;
    // on v1 it is the kernel log's summary or nothing, never `/`.
    let (path, id) = (field(report, "cgroup.path"), field(report, "cgroup.id"));
    if cgroup.mode == oomtrace_tests::CgroupMode::V2 || !path.is_null() {
        assert_eq!(path, cgroup.path.as_str(), "{report}");
        assert_eq!(id, cgroup.id(), "{report}");
    } else {
        assert!(id.is_null(), "an id without its path: {report}");
    }
    for key in [
        "victim.rss_anon_bytes",
        "victim.total_vm_bytes",
        "victim.pgtables_bytes",
        "victim.swap_bytes",
    ] {
        assert!(
            field(report, key).is_null(),
            "{key} cannot be read reliably: {report}"
        );
    }
}

/// `--backend kmsg` reads the kernel log instead of attaching eBPF.
#[test]
fn kmsg_backend_reports_a_memcg_kill() {
    let Some((_serial, cgroup)) = alone_with_a_memcg("kmsg_backend_reports_a_memcg_kill", "kmsg")
    else {
        return;
    };
    oomtrace_tests::wait_out_oom_log_ratelimit();
    let (pid, stopped, report) = trace_one_kill(&["--backend", "kmsg"], &cgroup, &hog_path());
    let report = &report;
    assert!(
        stopped
            .stderr
            .iter()
            .any(|l| l.starts_with("oomtrace: watching for OOM kills (kmsg, ")),
        "{:?}",
        stopped.stderr
    );
    assert_eq!(field(report, "source"), "kmsg");
    assert_eq!(field(report, "victim.pid"), pid);
    assert_eq!(field(report, "victim.comm"), "hog");
    assert_eq!(field(report, "victim.oom_score_adj"), 500);
    assert_eq!(field(report, "cgroup.path"), cgroup.path.as_str());
    assert_eq!(field(report, "oom.memcg"), cgroup.path.as_str());
    assert_eq!(field(report, "oom.constraint"), "CONSTRAINT_MEMCG");
    let anon = field(report, "victim.rss_anon_bytes").as_u64().unwrap();
    assert!(anon >= 16 * MIB, "{anon}");
    assert!(
        field(report, "victim.tid").is_null(),
        "the log does not name the thread"
    );
}

/// `oomtrace history` lists kills from before it started, in the same schema.
#[test]
fn history_lists_earlier_kills() {
    let Some((_serial, cgroup)) = alone_with_a_memcg("history_lists_earlier_kills", "history")
    else {
        return;
    };
    oomtrace_tests::wait_out_oom_log_ratelimit();
    let pids = [kill_a_hog(&cgroup), kill_a_hog(&cgroup)];
    // --json applies wherever it is written, before the command too.
    let (code, out, err) = run_to_end(Command::new(oomtrace_bin()).args([
        "--json",
        "history",
        "--no-journal",
        "--since",
        "10m",
    ]));
    assert_eq!(code, 0, "{err}");
    let reports: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("history --json prints JSON lines"))
        .collect();
    for pid in &pids {
        let ours: Vec<&Value> = reports
            .iter()
            .filter(|r| r["victim"]["pid"] == *pid)
            .collect();
        assert_eq!(ours.len(), 1, "pid {pid} once in history: {out}");
        assert_eq!(field(ours[0], "cgroup.path"), cgroup.path.as_str());
        assert_eq!(field(ours[0], "source"), "kmsg");
        assert_eq!(field(ours[0], "schema"), 1);
    }
    // The filters of a watch apply to history too, and the count says what they hid.
    let (code, out, err) = run_to_end(Command::new(oomtrace_bin()).args([
        "history",
        "--no-journal",
        "--since",
        "10m",
        "--pid",
        &pids[1].to_string(),
    ]));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with("    ")).collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].contains(&format!(
            "  cgroup {}  hog (pid {})  rss ",
            cgroup.path, pids[1]
        )),
        "{out}"
    );
    let summary = err.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("oomtrace: 1 OOM kill in the kernel log, ")
            && summary.ends_with(" filtered out"),
        "{err}"
    );
    let (code, _, err) =
        run_to_end(Command::new(oomtrace_bin()).args(["history", "--since", "banana"]));
    assert_ne!(code, 0);
    assert!(err.contains("banana"), "{err}");
}

/// With no attach mode usable (no BTF, no tracefs: made so in a private mount namespace), the
/// kernel log takes over, and oomtrace says why in one line.
#[test]
fn falls_back_to_kmsg_when_ebpf_cannot_be_used() {
    let Some((_serial, cgroup)) =
        alone_with_a_memcg("falls_back_to_kmsg_when_ebpf_cannot_be_used", "fallback")
    else {
        return;
    };
    let script = format!(
        "umount -l /sys/kernel/tracing 2>/dev/null; umount -l /sys/kernel/debug 2>/dev/null; exec {} --json --btf /nonexistent/vmlinux",
        oomtrace_bin().display()
    );
    let mut command = Command::new("unshare");
    command.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    // sh execs into oomtrace, so the child is oomtrace itself: it gets the SIGINT below.
    let mut started = spawn_until_ready(command);
    let pid = kill_a_hog(&cgroup);
    let line = line_for_the_kill(&mut BufReader::new(started.stdout), is_kill_json);
    let report: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON report ({e}): {line}"));
    let status =
        terminate(&mut started.child, libc::SIGINT, REPORT_TIMEOUT).expect("exit after SIGINT");
    assert!(status.success());
    assert_eq!(field(&report, "source"), "kmsg");
    assert_eq!(field(&report, "victim.pid"), pid);
    let stderr = started.stderr.finish_after_exit();
    let why: Vec<&String> = stderr
        .iter()
        .filter(|l| l.contains("eBPF cannot be used here"))
        .collect();
    assert_eq!(why.len(), 1, "{stderr:?}");
    assert!(
        why[0].contains("no usable kernel BTF") && why[0].contains("tracefs"),
        "{}",
        why[0]
    );
    assert!(
        why[0].ends_with("reading OOM kills from /dev/kmsg instead"),
        "{}",
        why[0]
    );
}

/// cgroup v2's `memory.oom.group` kills every process of the cgroup in one OOM: each must be
/// reported, once. Kubernetes sets it on containers since 1.28.
#[test]
fn group_kill_reports_every_member() {
    let test = "group_kill_reports_every_member";
    if !privileged(test) {
        return;
    }
    if oomtrace_tests::memory_hierarchy().0 != oomtrace_tests::CgroupMode::V2 {
        not_applicable(
            test,
            "memory.oom.group exists only on cgroup v2; the kernel matrix runs it",
        );
        return;
    }
    let _serial = serial();
    let cgroup = MemCgroup::create("group", 32);
    cgroup.write("memory.oom.group", "1");
    let tracer = Tracer::start(&["--no-enrich"]);
    // Each member has joined the cgroup once Hog::spawn returns, and lingers until killed.
    let mut members: Vec<Hog> = (0..2)
        .map(|_| Hog::spawn(&hog_path(), &cgroup, 0, &["--mib", "1"]))
        .collect();
    members.push(Hog::spawn(&hog_path(), &cgroup, 500, &[]));
    let mut pids: Vec<u32> = members.iter().map(Hog::pid).collect();
    for member in &mut members {
        member.expect_oom_killed();
    }
    let matched = tracer.wait_for(3, Duration::from_secs(5), |r| {
        r["cgroup"]["path"] == cgroup.path.as_str()
    });
    let stopped = tracer.stop();
    let mut reported: Vec<u32> = matched
        .iter()
        .map(|r| field(r, "victim.pid").as_u64().unwrap() as u32)
        .collect();
    reported.sort_unstable();
    pids.sort_unstable();
    assert_eq!(reported, pids, "every member once: {:#?}", stopped.reports);
    // The kernel kills the chosen victim once as the victim and again as a group member,
    // counting it (and logging it) twice; mark_victim, and so oomtrace, sees it once.
    assert!(
        cgroup.oom_kills() >= 3,
        "the kernel counted {} kills",
        cgroup.oom_kills()
    );
    // One OOM invocation: every member carries its id. The hog, largest and at 500, is the
    // victim the kernel chose; the others die as members of its group, after it.
    let id = field(&matched[0], "oom.id");
    assert!(id.is_u64(), "{:#?}", matched);
    let hog = members[2].pid();
    for report in &matched {
        assert_eq!(field(report, "oom.id"), id, "one id for all: {matched:#?}");
        assert_eq!(field(report, "oom.kind"), "killed", "{report}");
        let chosen = field(report, "victim.pid") == hog;
        assert_eq!(
            field(report, "oom.group_kill"),
            !chosen,
            "oom.group_kill is true for the members killed after the chosen victim: {report}"
        );
    }
}

/// A global OOM: the machine itself runs out, no cgroup limit is involved. Only in a
/// kernel-matrix VM, whose whole memory is the test's to exhaust: the hog (oom_score_adj 1000)
/// is the only process the kernel may pick, as this test, oomtrace and init are at -1000.
#[test]
fn global_oom_has_no_memcg() {
    let test = "global_oom_has_no_memcg";
    if !privileged(test) {
        return;
    }
    if !oomtrace_tests::in_kernel_matrix_vm() {
        not_applicable(
            test,
            "a global OOM would hit the whole host; runs in the kernel matrix",
        );
        return;
    }
    let _serial = serial();
    // Before oomtrace starts, so it inherits the protection; undone when the test ends.
    let _protected = oomtrace_tests::OomScoreAdj::set(-1000);
    // A cgroup with a limit far above the VM's memory: it names the hog in the reports, and
    // its limit is never the one hit.
    let cgroup = MemCgroup::create("global", 1 << 20);
    let tracer = Tracer::start(&["--no-enrich"]);
    let before = kernel_oom_kills().expect("the kernel's count of OOM kills");
    // More than the VM has (boot.rs gives it 512 MiB, no swap), in 1 MiB steps.
    let mut hog = Hog::spawn(&hog_path(), &cgroup, 1000, &["--mib", "2048"]);
    let pid = hog.pid();
    hog.expect_oom_killed_unreaped();
    let matched = tracer.wait_for(1, REPORT_TIMEOUT, |r| r["victim"]["pid"] == pid);
    hog.expect_oom_killed();
    let stopped = tracer.stop();
    assert_eq!(
        kernel_oom_kills().expect("the kernel's count of OOM kills") - before,
        1,
        "the kernel killed the hog and nothing else"
    );
    assert_eq!(matched.len(), 1, "{:#?}", stopped.reports);
    assert_eq!(
        stopped.reports.len(),
        1,
        "one kill, one report: {:#?}",
        stopped.reports
    );
    let report = &stopped.reports[0];
    assert_eq!(field(report, "victim.pid"), pid);
    assert_eq!(field(report, "victim.oom_score_adj"), 1000);
    assert_eq!(field(report, "cgroup.path"), cgroup.path.as_str());
    assert_eq!(field(report, "oom.global"), true, "{report}");
    assert!(field(report, "oom.memcg").is_null(), "{report}");
    assert!(field(report, "oom.memcg_limit_bytes").is_null(), "{report}");
    assert_eq!(field(report, "oom.kind"), "killed", "{report}");
    assert_eq!(field(report, "oom.group_kill"), false, "{report}");
    assert!(field(report, "oom.id").is_u64(), "{report}");
    let constraint = field(report, "oom.constraint");
    assert!(
        constraint.is_null() || constraint == "CONSTRAINT_NONE",
        "{report}"
    );
    oomtrace_tests::expect_summary(&stopped, None);
}

/// One memcg OOM case of the kernel's tools/testing/selftests/cgroup/test_memcontrol.c, and
/// what it does as read from its source: the cgroup whose limit it fills and how many
/// processes it has killed in which cgroup (paths from the cgroup2 root, where each case makes
/// its own hierarchy and removes it before it returns).
struct SelftestCase {
    name: &'static str,
    limited: &'static str,
    killed_in: &'static [(&'static str, usize)],
}

const MEMCG_SELFTEST_CASES: [SelftestCase; 4] = [
    // One 100 MiB allocation in a 30 MiB cgroup.
    SelftestCase {
        name: "test_memcg_oom_events",
        limited: "/memcg_test",
        killed_in: &[("/memcg_test", 1)],
    },
    // memory.oom.group in the limited leaf (50 MiB): its three processes die, the parent's
    // 60 MiB one lives.
    SelftestCase {
        name: "test_memcg_oom_group_leaf_events",
        limited: "/memcg_test_0/memcg_test_1",
        killed_in: &[("/memcg_test_0/memcg_test_1", 3)],
    },
    // memory.oom.group in the limited parent (80 MiB): its process and the child's three.
    SelftestCase {
        name: "test_memcg_oom_group_parent_events",
        limited: "/memcg_test_0",
        killed_in: &[("/memcg_test_0", 1), ("/memcg_test_0/memcg_test_1", 3)],
    },
    // memory.oom.group (50 MiB) with one of three processes at oom_score_adj -1000: two die.
    SelftestCase {
        name: "test_memcg_oom_group_score_events",
        limited: "/memcg_test_0",
        killed_in: &[("/memcg_test_0", 2)],
    },
];

/// How long one selftest case may run: a few seconds under TCG, most of it page faults.
const SELFTEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The kernel's own memcg OOM tests as a peer suite, while one oomtrace watches them all: each
/// case must pass, and each process the kernel says it killed (its `Killed process` lines,
/// which `/proc/vmstat` must count alike) must be reported exactly once, in the case's
/// cgroups, with one `oom.id` per case (each case is one OOM invocation) and a different one
/// for each case. Only in a kernel-matrix VM: the cases make their cgroups at the root, and
/// every kill of the machine in the meantime is counted as theirs.
#[test]
fn kernel_memcg_oom_selftests() {
    let test = "kernel_memcg_oom_selftests";
    if !privileged(test) {
        return;
    }
    if !oomtrace_tests::in_kernel_matrix_vm() {
        not_applicable(
            test,
            "the kernel's selftests make cgroups at the root and count every kill of the machine; the kernel matrix runs them",
        );
        return;
    }
    if oomtrace_tests::memory_hierarchy().0 != oomtrace_tests::CgroupMode::V2 {
        not_applicable(
            test,
            "test_memcontrol.c needs cgroup v2; the kernel matrix's v2 boots run it",
        );
        return;
    }
    let Some(selftest) = std::env::var_os("OOMTRACE_MEMCG_SELFTEST") else {
        skip(
            test,
            "OOMTRACE_MEMCG_SELFTEST names no build of the kernel's test_memcontrol.c",
        );
        return;
    };
    let _serial = serial();
    let tracer = Tracer::start(&["--no-enrich"]);
    let mut problems = Vec::new();
    let mut killed_by_case = Vec::new();
    let mut counted_in_all = 0;
    for case in &MEMCG_SELFTEST_CASES {
        let mut log = oomtrace_tests::KernelLog::from_now();
        let before = kernel_oom_kills().expect("the kernel's count of OOM kills");
        let output = run_within(Command::new(&selftest).arg(case.name), SELFTEST_TIMEOUT);
        if !output.status.success() {
            // 4 is KSFT_SKIP, which CI must not accept either: these cases run on any v2 kernel.
            problems.push(format!(
                "{}: the selftest case failed ({}): {}{}",
                case.name,
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let lines = log.killed_pids();
        let counted = kernel_oom_kills().expect("the kernel's count of OOM kills") - before;
        counted_in_all += counted;
        if counted != lines.len() as u64 {
            problems.push(format!(
                "{}: /proc/vmstat counted {counted} kills, the kernel log has {} (pids {lines:?})",
                case.name,
                lines.len()
            ));
        }
        let mut pids = lines.clone();
        pids.sort_unstable();
        pids.dedup();
        let expected: usize = case.killed_in.iter().map(|(_, n)| n).sum();
        if pids.len() != expected {
            problems.push(format!(
                "{}: the kernel killed {} processes (pids {pids:?}), the case's source says {expected}",
                case.name,
                pids.len()
            ));
        }
        // Before the next case, so each report is matched to the case that caused it.
        tracer.wait_for(pids.len(), REPORT_TIMEOUT, |r| {
            r["victim"]["pid"]
                .as_u64()
                .is_some_and(|pid| pids.contains(&(pid as u32)))
        });
        killed_by_case.push(pids);
    }
    let stopped = tracer.stop();
    stopped.assert_success();

    let mut ids = Vec::new();
    for (case, pids) in MEMCG_SELFTEST_CASES.iter().zip(&killed_by_case) {
        let ours: Vec<&Value> = stopped
            .reports
            .iter()
            .filter(|r| {
                r["victim"]["pid"]
                    .as_u64()
                    .is_some_and(|pid| pids.contains(&(pid as u32)))
            })
            .collect();
        let mut reported: Vec<u32> = ours
            .iter()
            .map(|r| field(r, "victim.pid").as_u64().unwrap() as u32)
            .collect();
        reported.sort_unstable();
        if reported != *pids {
            problems.push(format!(
                "{}: killed {pids:?}, reported {reported:?}: each must be reported once",
                case.name
            ));
        }
        let mut paths: Vec<(&str, usize)> = Vec::new();
        for report in &ours {
            let path = field(report, "cgroup.path").as_str().unwrap_or("null");
            match paths.iter_mut().find(|(p, _)| *p == path) {
                Some((_, n)) => *n += 1,
                None => paths.push((path, 1)),
            }
        }
        paths.sort_unstable();
        let mut expected_paths = case.killed_in.to_vec();
        expected_paths.sort_unstable();
        if paths != expected_paths {
            problems.push(format!(
                "{}: reported kills per cgroup {paths:?}, expected {expected_paths:?}",
                case.name
            ));
        }
        let case_ids: Vec<&Value> = ours.iter().map(|r| field(r, "oom.id")).collect();
        match case_ids.first() {
            Some(id) if id.is_u64() && case_ids.iter().all(|i| i == id) => ids.push((*id).clone()),
            _ => problems.push(format!(
                "{}: one OOM invocation must share one oom.id, got {case_ids:?}",
                case.name
            )),
        }
        for report in &ours {
            let pid = field(report, "victim.pid");
            if field(report, "oom.kind") != "killed" {
                problems.push(format!(
                    "{}: pid {pid} is not `killed`: {report}",
                    case.name
                ));
            }
            // The victim the kernel chose is marked while the limited cgroup is still full,
            // so its limit can always be read off; a group member, killed after it, may find
            // the charge already going down and the kernel log's report rate-limited away:
            // right or null.
            let chosen = field(report, "oom.group_kill") == false;
            let memcg = field(report, "oom.memcg");
            if (chosen || !memcg.is_null()) && memcg != case.limited {
                problems.push(format!(
                    "{}: pid {pid}: oom.memcg {memcg}, but the limit of {} was hit",
                    case.name, case.limited
                ));
            }
        }
        // One victim chosen per invocation; in a memory.oom.group kill every other process
        // dies as a member of its group.
        let chosen = ours
            .iter()
            .filter(|r| field(r, "oom.group_kill") == false)
            .count();
        let members = ours
            .iter()
            .filter(|r| field(r, "oom.group_kill") == true)
            .count();
        if (chosen, members) != (1, ours.len().saturating_sub(1)) {
            problems.push(format!(
                "{}: {chosen} reports with oom.group_kill false and {members} true; one chosen victim, the rest members: {ours:#?}",
                case.name
            ));
        }
    }
    let mut distinct = ids.clone();
    distinct.sort_by_key(|id| id.as_u64());
    distinct.dedup();
    if distinct.len() != ids.len() {
        problems.push(format!(
            "each case is an OOM invocation of its own, but their oom.ids are {ids:?}"
        ));
    }
    let all: usize = killed_by_case.iter().map(Vec::len).sum();
    if stopped.reports.len() != all {
        problems.push(format!(
            "{} reports for {all} killed processes: {:#?}",
            stopped.reports.len(),
            stopped.reports
        ));
    }
    // The summary sets its count beside the kernel's over the watch, which counts each group
    // kill's chosen victim twice: the difference must be named as that, not as kills missed.
    let extra = counted_in_all.saturating_sub(all as u64);
    let mut summary = format!(
        "oomtrace: {all} OOM kills reported, 0 events dropped; the kernel counted {counted_in_all}"
    );
    if extra > 0 {
        summary.push_str(&format!(
            " ({extra} more: a memory.oom.group kill counts its chosen victim again when it kills the group)"
        ));
    }
    if !stopped.stderr.contains(&summary) {
        problems.push(format!("no `{summary}`: {:?}", stopped.stderr));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
