//! The renderers on reports full of hostile strings. The human view must put no character a
//! terminal acts on in front of the operator, never let a string start a line of its own, and
//! escape so that every escape reads back one way; the JSON view must write one line that
//! reads back to exactly the report, strings byte for byte.
#![no_main]

use std::time::SystemTime;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use oomtrace_core::{
    output::{escape, human::HumanView, json},
    report::{ContainerExit, Report},
};
use oomtrace_fuzz::{
    reports,
    unescape::{acts_on_terminal, unescape},
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Running out of bytes only ends the input early.
    let _ = render(&mut Unstructured::new(data));
});

/// A few kills and exits through one view, so its memory (kill counts, the incident a group
/// kill's member follows) is exercised as a watch would.
fn render(u: &mut Unstructured) -> Result<()> {
    let mut view = HumanView::in_zone(reports::zone(u)?, u.arbitrary()?);
    let now = reports::now(u)?;
    for _ in 0..4 {
        if u.is_empty() {
            break;
        }
        if u.ratio(1, 4)? {
            exit(&mut view, &reports::exit(u)?, now);
        } else {
            kill(&mut view, &reports::report(u)?, now);
        }
    }
    Ok(())
}

fn kill(view: &mut HumanView, report: &Report, now: SystemTime) {
    let mut shown = String::new();
    view.kill(report, now, &mut shown);
    let lines = lines(&shown);
    assert!(lines.len() <= 3, "{shown:?}");
    let first = lines[0];
    if first.starts_with("  + ") {
        // A group kill's member: one line under its victim.
        assert_eq!(lines.len(), 1, "{shown:?}");
        assert_eq!(report.oom.as_ref().and_then(|o| o.group_kill), Some(true));
    } else {
        assert_eq!(first.starts_with("past "), report.past, "{shown:?}");
        if let Some(name) = report.container.as_ref().and_then(|c| c.name.as_deref()) {
            shown_as_is(name, first);
        }
    }
    // What follows the first line is the view's own, indented.
    for line in &lines[1..] {
        assert!(line.starts_with("    "), "{shown:?}");
    }
    if report.victim.comm_bytes.is_none()
        && let Some(comm) = &report.victim.comm
    {
        shown_as_is(comm, first);
    }

    for text in reports::strings(report) {
        escapes_read_back(text);
    }
    let oom = report.oom.as_ref();
    let tasks = oom.and_then(|o| o.top_tasks.as_deref()).unwrap_or_default();
    let raws = [
        &report.victim.comm_bytes,
        &report.victim.thread_comm_bytes,
        &report.trigger.comm_bytes,
        &report.cgroup.path_bytes,
    ]
    .into_iter()
    .chain(oom.map(|o| &o.memcg_bytes))
    .chain(oom.map(|o| &o.group_memcg_bytes))
    .chain(tasks.iter().map(|t| &t.comm_bytes));
    for raw in raws.flatten() {
        let mut escaped = String::new();
        escape::push_visible_bytes(&mut escaped, raw);
        assert!(
            !escaped.chars().any(acts_on_terminal),
            "{raw:?} as {escaped:?}"
        );
        assert_eq!(unescape(&escaped).as_ref(), Some(raw), "{escaped:?}");
    }

    let mut line = Vec::new();
    json::json_line(report, &mut line);
    let back: Report = read_back(&line);
    // What JSON does not carry: the kernel's readings. Names that are not UTF-8 come back
    // byte for byte, from their `_hex` fields.
    let sent = Report {
        facts: None,
        ..report.clone()
    };
    assert_eq!(back, sent);
}

fn exit(view: &mut HumanView, exit: &ContainerExit, now: SystemTime) {
    let mut shown = String::new();
    view.exit(exit, now, &mut shown);
    let lines = lines(&shown);
    assert_eq!(lines.len(), 1, "{shown:?}");
    if let Some(name) = &exit.container.name {
        shown_as_is(name, lines[0]);
    }

    let mut line = Vec::new();
    json::write_exit(exit, &mut line);
    let back: ContainerExit = read_back(&line);
    // The kill summary is the human line's alone.
    let sent = ContainerExit {
        last_kill: None,
        ..exit.clone()
    };
    assert_eq!(back, sent);
}

/// The human view's lines: newline-terminated, none empty, none with a character a terminal
/// would act on.
fn lines(shown: &str) -> Vec<&str> {
    assert!(shown.ends_with('\n'), "{shown:?}");
    let lines: Vec<&str> = shown.split_terminator('\n').collect();
    for line in &lines {
        assert!(!line.is_empty(), "{shown:?}");
        assert!(!line.chars().any(acts_on_terminal), "{shown:?}");
    }
    lines
}

/// A string with nothing to escape is shown as it is.
fn shown_as_is(text: &str, line: &str) {
    if !text.contains('\\') && !text.chars().any(acts_on_terminal) {
        assert!(line.contains(text), "{text:?} not in {line:?}");
    }
}

fn escapes_read_back(text: &str) {
    let escaped = escape::visible(text);
    assert!(
        !escaped.chars().any(acts_on_terminal),
        "{text:?} as {escaped:?}"
    );
    assert_eq!(
        unescape(&escaped).as_deref(),
        Some(text.as_bytes()),
        "{escaped:?}"
    );
}

/// One JSON line, no raw control byte in it, read back.
fn read_back<T: serde::de::DeserializeOwned>(line: &[u8]) -> T {
    let (last, body) = line.split_last().expect("a line");
    assert_eq!(*last, b'\n');
    assert!(
        !body.iter().any(|&b| b < 0x20),
        "{}",
        String::from_utf8_lossy(line)
    );
    serde_json::from_slice(body)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(line)))
}
