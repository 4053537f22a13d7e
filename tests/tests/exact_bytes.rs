//! Issue 16: a process name that is not UTF-8 keeps every byte. The kernel gives names as
//! bytes; JSON has the string with U+FFFD and, beside it, the bytes as `_hex`; the journal
//! keeps them, so `history` reads them back; the human view shows them escaped on every line.

use std::{process::Command, time::Duration};

use oomtrace_tests::{
    Hog, MemCgroup, Tracer, field, oomtrace_bin, privileged, run_within, serial, temp_dir,
    wait_out_oom_log_ratelimit,
};
use serde_json::Value;

/// A name that tries to recolour the terminal, with a byte that is not UTF-8 in it.
const NAME: &[u8] = b"\x1b[31mEV\xffIL";
/// What JSON's string field holds for it.
const LOSSY: &str = "\u{1b}[31mEV\u{fffd}IL";
/// How the human view shows it.
const SHOWN: &str = r"\x1b[31mEV\xffIL";
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

fn hog_path() -> std::path::PathBuf {
    oomtrace_tests::hog_bin(env!("CARGO_BIN_EXE_hog"))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a `_hex` field, decoded here rather than trusted to oomtrace's own decoder.
fn from_hex(value: &Value) -> Option<Vec<u8>> {
    let hex = value.as_str()?;
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).ok())
        .collect()
}

/// A kernel-given name and its `_hex` sibling: either both absent, or the string is what the
/// bytes read as. `Some(bytes)` when the pair carries bytes that are not UTF-8.
fn name_pair(object: &Value, key: &str) -> Option<Vec<u8>> {
    let text = &object[key];
    let hex = &object[format!("{key}_hex")];
    if hex.is_null() {
        assert!(
            !text.as_str().is_some_and(|t| t.contains('\u{fffd}')),
            "{key} lost bytes and has no {key}_hex: {object}"
        );
        return None;
    }
    let bytes = from_hex(hex).unwrap_or_else(|| panic!("{key}_hex is not hex: {object}"));
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "{key}_hex is UTF-8: {object}"
    );
    assert_eq!(
        text.as_str(),
        Some(String::from_utf8_lossy(&bytes).as_ref()),
        "{key} is not what {key}_hex reads as: {object}"
    );
    Some(bytes)
}

/// Every name in a report is a consistent pair; the victim's own are exactly [`NAME`] where
/// given. Returns whether the task dump listed the victim (the kernel may rate-limit it away).
fn names_are_exact(report: &Value, pid: u32) -> bool {
    let victim = field(report, "victim");
    assert_eq!(
        name_pair(victim, "thread_comm").as_deref(),
        Some(NAME),
        "victim.thread_comm: {report}"
    );
    // Null where the mode does not read the leader's name; exact where it does.
    if !victim["comm"].is_null() {
        assert_eq!(name_pair(victim, "comm").as_deref(), Some(NAME), "{report}");
        assert_eq!(victim["comm"], LOSSY);
    }
    name_pair(field(report, "trigger"), "comm");
    name_pair(field(report, "cgroup"), "path");
    let oom = field(report, "oom");
    name_pair(oom, "memcg");
    let mut listed = false;
    for task in oom["top_tasks"].as_array().into_iter().flatten() {
        let bytes = name_pair(task, "comm");
        if task["pid"] == pid {
            assert_eq!(
                bytes.as_deref(),
                Some(NAME),
                "the victim in top_tasks: {report}"
            );
            listed = true;
        }
    }
    listed
}

fn is_ours(report: &Value, pid: u32) -> bool {
    report["victim"]["pid"] == pid || report["victim"]["tid"] == pid
}

#[test]
fn a_name_that_is_not_utf8_keeps_every_byte_through_the_journal() {
    let test = "a_name_that_is_not_utf8_keeps_every_byte_through_the_journal";
    if !privileged(test) {
        return;
    }
    let _serial = serial();
    let dir = temp_dir("exact-bytes", 0o700);
    let journal = dir.path().join("journal.jsonl");
    let journal_arg = journal.to_str().expect("a UTF-8 temp path");
    let cgroup = MemCgroup::create("exact-bytes", 32);
    // So that the kill's task dump is printed, not rate-limited away, unless something else
    // on the host is OOM-killing at the same time.
    wait_out_oom_log_ratelimit();

    let tracer = Tracer::start(&["--no-enrich", "--journal", journal_arg]);
    let mut hog = Hog::spawn(&hog_path(), &cgroup, 500, &["--name-hex", &to_hex(NAME)]);
    let pid = hog.pid();
    hog.expect_oom_killed();
    tracer.wait_for(1, REPORT_TIMEOUT, |r| is_ours(r, pid));
    let stopped = tracer.stop();
    stopped.assert_success();
    let live: Vec<&Value> = stopped.reports.iter().filter(|r| is_ours(r, pid)).collect();
    assert_eq!(live.len(), 1, "one live report of pid {pid}: {live:#?}");
    let live = live[0];
    assert_eq!(field(live, "victim.thread_comm_hex"), to_hex(NAME).as_str());
    let dumped = names_are_exact(live, pid);
    if !dumped {
        eprintln!("{test}: the kernel log gave no task dump listing the victim: {live}");
    }

    // The journal read back gives the same JSON names.
    let history = |args: &[&str]| {
        let output = run_within(
            Command::new(oomtrace_bin())
                .args(["history", "--no-enrich", "--journal", journal_arg])
                .args(["--pid", &pid.to_string()])
                .args(args),
            RUN_TIMEOUT,
        );
        assert!(output.status.success(), "history {args:?}: {output:?}");
        output.stdout
    };
    let json = history(&["--json"]);
    let read_back: Vec<Value> = json
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).expect("a JSON line"))
        .filter(|r| is_ours(r, pid))
        .collect();
    assert_eq!(
        read_back.len(),
        1,
        "one kill of pid {pid} in history: {read_back:#?}"
    );
    let back = &read_back[0];
    // History may add the kernel log's dump to a journal report that had none, never drop it.
    let dumped_back = names_are_exact(back, pid);
    assert!(dumped_back || !dumped, "history lost the task dump: {back}");
    for key in ["victim", "trigger", "cgroup"] {
        for name in ["comm_hex", "thread_comm_hex", "path_hex"] {
            assert_eq!(back[key][name], live[key][name], "{key}.{name}");
        }
    }
    if !live["oom"]["top_tasks"].is_null() {
        assert_eq!(back["oom"]["top_tasks"], live["oom"]["top_tasks"]);
    }

    // The human view: the name escaped as visible text, on every line that shows it.
    let human = String::from_utf8(history(&["--verbose"])).expect("the human view is UTF-8");
    let lines: Vec<&str> = human.lines().collect();
    for line in &lines {
        assert!(
            !line.chars().any(|c| c.is_control() || c == '\u{fffd}'),
            "a control character or U+FFFD in {line:?}"
        );
    }
    let kill_line = format!("{SHOWN} (pid {pid})");
    assert!(
        lines.first().is_some_and(|l| l.contains(&kill_line)),
        "no `{kill_line}` on the kill line: {lines:#?}"
    );
    if dumped_back {
        let biggest = format!("biggest: {SHOWN} ");
        assert!(
            lines.iter().any(|l| l.contains(&biggest)),
            "no `{biggest}` on the memory line: {lines:#?}"
        );
    }
}
