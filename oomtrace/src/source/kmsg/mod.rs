//! The kernel log's view of OOM kills, for the `/dev/kmsg` fallback backend.
//!
//! Two layers:
//!
//! * [`parse_record`] splits one `/dev/kmsg` record, `prio,seq,usec,flags[,more];message`, and
//!   recognises the ` KEY=VALUE` dictionary lines that follow a record (they are not records).
//! * [`KillAssembler`] reads the messages of consecutive records and turns the lines the OOM
//!   killer prints into one [`KmsgKill`] per killed process:
//!
//!   ```text
//!   memhog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
//!   ...
//!   oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/group,task_memcg=/group,task=memhog,pid=94,uid=0
//!   Memory cgroup out of memory: Killed process 94 (memhog) total-vm:33876kB, anon-rss:32412kB, file-rss:4kB, shmem-rss:648kB, UID:0 pgtables:112kB oom_score_adj:0
//!   Tasks in /group are going to be killed due to memory.oom.group set
//!   Memory cgroup out of memory: Killed process 91 (sleep) total-vm:2260kB, ...
//!   ```
//!
//! The `Killed process` line is the authority: it is printed for every kill and is not
//! rate-limited. The `invoked oom-killer` header and the `oom-kill:` summary are printed by
//! `dump_header()`, which is rate-limited, so they may be missing; the fields that come only
//! from them are then `None`.
//!
//! The kernel builds the summary, and the `Tasks in ...` and (before 5.0) `Task in ...` lines,
//! out of several `pr_cont()` pieces; when another CPU prints in between, one logical line
//! arrives as several records. The assembler joins such pieces when they are recognisably the
//! rest of a line, and it never guesses: a value that is cut off is left `None`, and a
//! `Killed process` line whose pid or comm cannot be read yields no kill.
//!
//! Messages are taken as `/dev/kmsg` escapes them (bytes below 0x20, above 0x7e and `\` itself
//! become `\xNN`); comms and cgroup paths are unescaped into the [`KmsgKill`].

pub mod device;

use std::collections::{HashSet, VecDeque};
use std::fmt;

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// One /dev/kmsg record: `prio,seq,usec,flags;message` (extra comma fields ignored).
/// Continuation lines (` KEY=VALUE`) are not records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The record's sequence number; it grows by one per record, so a gap means records were
    /// lost (overwritten in the ring buffer before they were read).
    pub seq: u64,
    /// CLOCK_MONOTONIC µs as the kernel stamps it.
    pub usec: u64,
    /// The text, still escaped as `/dev/kmsg` escapes it, without the trailing newline.
    pub message: &'a str,
}

/// The rest of a record's header, for a reader that wants it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// `prio >> 3`: 0 for the kernel. Records written to `/dev/kmsg` from user space can never
    /// have facility 0, so a reader that looks for kernel lines should skip the others.
    pub facility: u32,
    /// `prio & 7`: 0 (emerg) to 7 (debug).
    pub level: u8,
    /// The flags field has `c` (or `+` on old kernels): the record is a fragment of a
    /// continued line.
    pub continued: bool,
}

impl RecordHeader {
    /// Whether the kernel itself logged the record.
    pub fn is_kernel(&self) -> bool {
        self.facility == 0
    }
}

/// Why a line is not a `/dev/kmsg` record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MalformedRecord {
    /// A ` KEY=VALUE` dictionary line that belongs to the record before it: skip it.
    Continuation,
    /// An empty line.
    Empty,
    /// There is no `;` between the header and the message.
    NoSeparator,
    /// The header lacks a field; names the field.
    MissingField(&'static str),
    /// A numeric header field is not a decimal number that fits; names the field and shows
    /// (the start of) the text.
    BadNumber { field: &'static str, text: String },
}

impl MalformedRecord {
    /// True for a ` KEY=VALUE` continuation line, which a reader should silently skip.
    pub fn is_continuation(&self) -> bool {
        matches!(self, MalformedRecord::Continuation)
    }
}

impl fmt::Display for MalformedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MalformedRecord::Continuation => f.write_str(
                "the line is a ` KEY=VALUE` continuation of the previous /dev/kmsg record, not a record",
            ),
            MalformedRecord::Empty => f.write_str("the line is empty, not a /dev/kmsg record"),
            MalformedRecord::NoSeparator => f.write_str(
                "the line has no `;` between a /dev/kmsg record header and its message",
            ),
            MalformedRecord::MissingField(field) => {
                write!(f, "the /dev/kmsg record header has no {field} field")
            }
            MalformedRecord::BadNumber { field, text } => write!(
                f,
                "the {field} field of the /dev/kmsg record header is not a decimal number: {text:?}"
            ),
        }
    }
}

impl std::error::Error for MalformedRecord {}

/// Splits one `/dev/kmsg` record. Only the first line of `line` is read, so a whole `read()`
/// buffer (a record followed by its ` KEY=VALUE` lines) can be passed as it is.
pub fn parse_record(line: &str) -> Result<Record<'_>, MalformedRecord> {
    parse_record_full(line).map(|(record, _)| record)
}

/// [`parse_record`], also returning the facility, level and continuation flag.
pub fn parse_record_full(line: &str) -> Result<(Record<'_>, RecordHeader), MalformedRecord> {
    let line = match line.find('\n') {
        Some(end) => &line[..end],
        None => line,
    };
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return Err(MalformedRecord::Empty);
    }
    if line.starts_with(' ') {
        return Err(MalformedRecord::Continuation);
    }
    let (head, message) = line.split_once(';').ok_or(MalformedRecord::NoSeparator)?;
    let mut fields = head.split(',');
    let prio = header_number(fields.next(), "priority")?;
    let seq = header_number(fields.next(), "sequence number")?;
    let usec = header_number(fields.next(), "timestamp")?;
    let flags = fields
        .next()
        .filter(|flags| !flags.is_empty())
        .ok_or(MalformedRecord::MissingField("flags"))?;
    let facility = u32::try_from(prio >> 3).map_err(|_| MalformedRecord::BadNumber {
        field: "priority",
        text: prio.to_string(),
    })?;
    let header = RecordHeader {
        facility,
        level: (prio & 7) as u8,
        continued: flags.contains('c') || flags.contains('+'),
    };
    Ok((Record { seq, usec, message }, header))
}

fn header_number(text: Option<&str>, field: &'static str) -> Result<u64, MalformedRecord> {
    let text = text
        .filter(|text| !text.is_empty())
        .ok_or(MalformedRecord::MissingField(field))?;
    parse_u64(text).ok_or_else(|| MalformedRecord::BadNumber {
        field,
        text: text.chars().take(40).collect(),
    })
}

/// Undoes `/dev/kmsg`'s `\xNN` escaping. The kernel escapes `\` itself, so this is exact; bytes
/// that are not UTF-8 become U+FFFD. A `\x` without two hex digits is kept as it is.
pub fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1] == b'x'
            && let (Some(high), Some(low)) = (hex_digit(bytes[i + 2]), hex_digit(bytes[i + 3]))
        {
            out.push(high << 4 | low);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Kills
// ---------------------------------------------------------------------------------------------

/// One OOM kill as the kernel log tells it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KmsgKill {
    /// Of the authoritative "Killed process" record (its first piece, if it came in pieces).
    pub seq: u64,
    pub usec: u64,
    pub pid: u32,
    pub comm: String,
    pub uid: Option<u32>,
    pub total_vm_kb: Option<u64>,
    pub anon_rss_kb: Option<u64>,
    pub file_rss_kb: Option<u64>,
    pub shmem_rss_kb: Option<u64>,
    /// Absent on old kernels.
    pub pgtables_kb: Option<u64>,
    pub oom_score_adj: Option<i32>,
    /// E.g. "CONSTRAINT_MEMCG", from the oom-kill: summary.
    pub constraint: Option<String>,
    /// Cgroup whose limit was hit; None for a global OOM (and when the summary was not printed).
    pub oom_memcg: Option<String>,
    /// Victim's memcg path. None for a memory.oom.group member: the log names only the group.
    pub task_memcg: Option<String>,
    /// "Out of memory:" / global_oom.
    pub global: bool,
    /// Killed as a member of a memory.oom.group cgroup. The chosen victim itself is reported
    /// once, when its own line comes (before the kernel says a group kill follows), with
    /// `group_kill == false`; its repeat among the group members is dropped.
    pub group_kill: bool,
    /// From `<comm> invoked oom-killer`.
    pub trigger_comm: Option<String>,
}

/// Turns consecutive kernel records into [`KmsgKill`]s. Feed every kernel record in order.
///
/// [`push`](Self::push) returns a kill as soon as a `Killed process` line completes one. A
/// `Killed process` line that arrives cut short is held until the record with its rest comes
/// (or it becomes clear that none will); a reader that sees no record for a while should call
/// [`flush`](Self::flush) if [`has_pending`](Self::has_pending) says something is held.
#[derive(Clone, Debug, Default)]
pub struct KillAssembler {
    /// Kills ready to hand out, oldest first (at most one or two at a time).
    ready: VecDeque<KmsgKill>,
    /// State of the current OOM invocation, from "invoked oom-killer" on.
    trigger_comm: Option<String>,
    summary: Option<Summary>,
    /// The text of a summary that came cut short, while its pieces may still come.
    summary_text: Option<String>,
    /// Before 5.0: "Task in <task_memcg> killed as a result of limit of <oom_memcg>".
    legacy_memcgs: Option<(String, String)>,
    /// Before 5.3: `<Memory cgroup out of memory|Out of memory>: Kill process ...`.
    legacy_kind: Option<OomKind>,
    /// Set by "Tasks in /g are going to be killed due to memory.oom.group set".
    group: Option<GroupContext>,
    /// Pids reported in this invocation (for the group kill's duplicate line).
    killed: HashSet<u32>,
    /// A record that is the start of a "Killed process" line, cut before "Killed process ".
    start_fragment: Option<Fragment>,
    /// A "Killed process" line that came cut short.
    pending: Option<PendingKilled>,
    /// The richest "Killed process" layout seen on this kernel (see `format_level`).
    format_level: u8,
}

impl KillAssembler {
    /// Feeds one record; returns a kill that it completes. Records must be the kernel's own
    /// (facility 0, see [`RecordHeader::is_kernel`]) and in order. In the rare case that one
    /// record completes two kills, the second comes from [`pop`](Self::pop) (or from the next
    /// `push`).
    pub fn push(&mut self, record: &Record<'_>) -> Option<KmsgKill> {
        self.feed(record.message, record.seq, record.usec);
        self.ready.pop_front()
    }

    /// Parses `line` with [`parse_record_full`] and feeds it if it is a kernel record;
    /// continuation lines, malformed lines and user-space records are skipped.
    pub fn push_line(&mut self, line: &str) -> Option<KmsgKill> {
        if let Ok((record, header)) = parse_record_full(line)
            && header.is_kernel()
        {
            return self.push(&record);
        }
        self.ready.pop_front()
    }

    /// The next kill that is ready but was not returned yet.
    pub fn pop(&mut self) -> Option<KmsgKill> {
        self.ready.pop_front()
    }

    /// Whether a cut-short line is held, waiting for the rest.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some() || self.start_fragment.is_some() || self.summary_text.is_some()
    }

    /// Gives up waiting for the rest of cut-short lines (at the end of a dump, or when the log
    /// has been quiet for a while) and returns every kill that is ready. A cut-short `Killed
    /// process` line becomes a kill with the values it has, if its pid and comm are whole.
    pub fn flush(&mut self) -> Vec<KmsgKill> {
        self.start_fragment = None;
        self.finish_pending();
        self.summary_text = None;
        self.ready.drain(..).collect()
    }

    fn feed(&mut self, message: &str, seq: u64, usec: u64) {
        let structural = is_structural(message);

        if let Some(start) = self.start_fragment.take()
            && !message.is_empty()
        {
            let joined = start.text + message;
            // A record that is a line of its own is joined only if that gives a known prefix
            // ("M" + "emory cgroup out of memory: Killed process ...").
            let known_prefix =
                killed_body(&joined).is_some_and(|(prefix, _)| KILLED_PREFIXES.contains(&prefix));
            if is_structural(&joined) && (!structural || known_prefix) {
                self.classify(&joined, start.seq, start.usec);
                return;
            }
        }

        if let Some(mut pending) = self.pending.take() {
            if structural {
                self.pending = Some(pending);
                self.finish_pending();
            } else {
                let joined = pending.text.clone() + message;
                match parse_killed(&joined, self.format_level) {
                    KilledParse::Line(line)
                        if line.continues_cleanly() && joined.len() <= MAX_JOIN =>
                    {
                        if line.complete {
                            self.accept_killed(line, pending.seq, pending.usec);
                        } else {
                            pending.text = joined;
                            self.pending = Some(pending);
                        }
                        return;
                    }
                    _ => {
                        pending.budget = pending.budget.saturating_sub(1);
                        self.pending = Some(pending);
                        if self.pending.as_ref().is_some_and(|p| p.budget == 0) {
                            self.finish_pending();
                        }
                    }
                }
            }
        }

        self.classify(message, seq, usec);
    }

    fn classify(&mut self, message: &str, seq: u64, usec: u64) {
        if let Some(at) = message.find(" invoked oom-killer:") {
            self.finish_pending();
            self.reset_invocation();
            self.trigger_comm = Some(unescape(&message[..at]));
            return;
        }
        if message.starts_with("oom-kill:") {
            self.finish_pending();
            self.before_kill_line();
            self.summary = parse_summary(message);
            self.summary_text = (!summary_is_complete(message)).then(|| message.to_owned());
            return;
        }
        match parse_killed(message, self.format_level) {
            KilledParse::Absent => {}
            KilledParse::Garbage => {
                self.finish_pending();
                return;
            }
            KilledParse::Line(line) => {
                self.finish_pending();
                self.summary_text = None;
                if line.complete || line.garbled {
                    self.accept_killed(line, seq, usec);
                } else {
                    self.pending = Some(PendingKilled {
                        seq,
                        usec,
                        text: message.to_owned(),
                        budget: PENDING_BUDGET,
                    });
                }
                return;
            }
        }
        if message.starts_with("Tasks in ") {
            self.finish_pending();
            self.start_group();
            return;
        }
        if let Some(rest) = message.strip_prefix("Task in ") {
            if let Some((task, oom)) = rest.split_once(" killed as a result of limit of ")
                && !task.is_empty()
                && !oom.is_empty()
            {
                self.before_kill_line();
                self.legacy_memcgs = Some((unescape(task), unescape(oom)));
            }
            return;
        }
        if let Some(at) = message.find(": Kill process ") {
            self.before_kill_line();
            self.legacy_kind = Some(prefix_kind(&message[..at]));
            return;
        }
        if let Some(text) = self.summary_text.as_mut()
            && is_summary_piece(text, message)
        {
            text.push_str(message);
            let text = text.clone();
            self.summary = parse_summary(&text);
            if summary_is_complete(&text) || text.len() > MAX_JOIN {
                self.summary_text = None;
            }
            return;
        }
        if is_start_fragment(message) {
            self.start_fragment = Some(Fragment {
                seq,
                usec,
                text: message.to_owned(),
            });
        }
    }

    /// A line that comes before the kill of an OOM invocation arrived after a kill: it belongs
    /// to a new invocation whose "invoked oom-killer" line is missing.
    fn before_kill_line(&mut self) {
        if !self.killed.is_empty() || self.group.is_some() {
            self.reset_invocation();
        }
    }

    fn reset_invocation(&mut self) {
        self.trigger_comm = None;
        self.summary = None;
        self.summary_text = None;
        self.legacy_memcgs = None;
        self.legacy_kind = None;
        self.group = None;
        self.killed.clear();
    }

    fn start_group(&mut self) {
        let context = match &self.summary {
            Some(summary) => GroupContext {
                constraint: summary.constraint.clone(),
                oom_memcg: summary.oom_memcg.clone(),
                global: summary.global,
            },
            None => GroupContext {
                constraint: None,
                oom_memcg: self.legacy_memcgs.as_ref().map(|(_, oom)| oom.clone()),
                global: match (&self.legacy_memcgs, self.legacy_kind) {
                    (Some(_), _) => Some(false),
                    (None, Some(kind)) => kind.global(),
                    (None, None) => None,
                },
            },
        };
        self.group = Some(context);
    }

    fn finish_pending(&mut self) {
        if let Some(pending) = self.pending.take()
            && let KilledParse::Line(line) = parse_killed(&pending.text, self.format_level)
        {
            self.accept_killed(line, pending.seq, pending.usec);
        }
    }

    fn accept_killed(&mut self, line: KilledLine, seq: u64, usec: u64) {
        let (Some(pid), Some(comm)) = (line.pid, line.comm) else {
            return;
        };
        if line.complete {
            self.format_level = self.format_level.max(line.level);
        }
        if self.killed.contains(&pid) {
            return;
        }
        let fields = line.fields;
        let mut kill = KmsgKill {
            seq,
            usec,
            pid,
            comm,
            uid: fields.uid,
            total_vm_kb: fields.total_vm,
            anon_rss_kb: fields.anon_rss,
            file_rss_kb: fields.file_rss,
            shmem_rss_kb: fields.shmem_rss,
            pgtables_kb: fields.pgtables,
            oom_score_adj: fields.oom_score_adj,
            ..KmsgKill::default()
        };
        let context_global;
        if let Some(group) = &self.group {
            kill.group_kill = true;
            kill.constraint = group.constraint.clone();
            kill.oom_memcg = group.oom_memcg.clone();
            context_global = group.global;
        } else {
            if !self.killed.is_empty() {
                // A second victim without a group kill: a new OOM whose header was
                // rate-limited away. Nothing printed for the previous one applies.
                self.reset_invocation();
            }
            if let Some(summary) = self.summary.as_ref().filter(|s| s.pid == Some(pid)) {
                kill.constraint = summary.constraint.clone();
                kill.oom_memcg = summary.oom_memcg.clone();
                kill.task_memcg = summary.task_memcg.clone();
                kill.uid = kill.uid.or(summary.uid);
                context_global = summary.global;
            } else if let Some((task, oom)) = &self.legacy_memcgs {
                kill.oom_memcg = Some(oom.clone());
                kill.task_memcg = Some(task.clone());
                context_global = Some(false);
            } else {
                context_global = self.legacy_kind.and_then(OomKind::global);
            }
        }
        kill.trigger_comm = self.trigger_comm.clone();
        kill.global = line.kind.global().or(context_global).unwrap_or(false);
        if self.killed.len() < MAX_KILLED_PIDS {
            self.killed.insert(pid);
        }
        self.ready.push_back(kill);
    }
}

/// Convenience for tests/history: parse a whole dump (one record per line, continuation lines
/// skipped), returning kills in order. Records that user space wrote (facility other than 0)
/// are skipped.
pub fn kills_in(dump: &str) -> Vec<KmsgKill> {
    let mut assembler = KillAssembler::default();
    let mut kills = Vec::new();
    for line in dump.lines() {
        kills.extend(assembler.push_line(line));
        while let Some(kill) = assembler.pop() {
            kills.push(kill);
        }
    }
    kills.extend(assembler.flush());
    kills
}

/// Runs the record parser and the assembler over arbitrary bytes (lossy UTF-8, split on
/// `\n`); it must never panic. Each line is fed both as a record and as a bare message.
pub fn fuzz_one(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut assembler = KillAssembler::default();
    for (n, line) in text.split('\n').enumerate() {
        if let Ok(record) = parse_record(line) {
            let _ = assembler.push(&record);
        }
        let _ = parse_record_full(line).map(|(_, header)| header.is_kernel());
        let _ = assembler.push(&Record {
            seq: n as u64,
            usec: 0,
            message: line,
        });
        while assembler.pop().is_some() {}
        let _ = unescape(line);
    }
    let _ = assembler.has_pending();
    let _ = assembler.flush();
}

// ---------------------------------------------------------------------------------------------
// Assembler internals
// ---------------------------------------------------------------------------------------------

/// Longest text the assembler builds out of pieces.
const MAX_JOIN: usize = 4096;
/// How many unrelated records may come between the pieces of a "Killed process" line.
const PENDING_BUDGET: u8 = 8;
/// Bound on the pids remembered per invocation.
const MAX_KILLED_PIDS: usize = 1 << 16;
/// A comm is at most 15 bytes (TASK_COMM_LEN 16); allow for a longer future one. Only used
/// to refuse joining an unrelated record into a cut-short comm.
const MAX_COMM_BYTES: usize = 64;

#[derive(Clone, Debug)]
struct Fragment {
    seq: u64,
    usec: u64,
    text: String,
}

#[derive(Clone, Debug)]
struct PendingKilled {
    seq: u64,
    usec: u64,
    text: String,
    budget: u8,
}

#[derive(Clone, Debug)]
struct GroupContext {
    constraint: Option<String>,
    oom_memcg: Option<String>,
    global: Option<bool>,
}

/// What the text before "Killed process" (or "Kill process") says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OomKind {
    /// "Memory cgroup out of memory"
    Memcg,
    /// "Out of memory", "Out of memory (oom_kill_allocating_task)"
    Global,
    /// No prefix (before 5.3) or one this parser does not know.
    Unknown,
}

impl OomKind {
    fn global(self) -> Option<bool> {
        match self {
            OomKind::Memcg => Some(false),
            OomKind::Global => Some(true),
            OomKind::Unknown => None,
        }
    }
}

fn prefix_kind(prefix: &str) -> OomKind {
    if prefix.starts_with("Memory cgroup out of memory") {
        OomKind::Memcg
    } else if prefix.starts_with("Out of memory") {
        OomKind::Global
    } else {
        OomKind::Unknown
    }
}

/// Records that start, or are, one of the OOM killer's lines; such a record is never the
/// rest of another line.
fn is_structural(message: &str) -> bool {
    message.contains(" invoked oom-killer:")
        || message.starts_with("oom-kill:")
        || killed_body(message).is_some()
        || message.starts_with("Tasks in ")
        || message.starts_with("Task in ")
        || message.contains(": Kill process ")
}

const KILLED: &str = "Killed process ";

/// What comes before ": Killed process " (the `message` of `__oom_kill_process()`).
const KILLED_PREFIXES: [&str; 3] = [
    "Memory cgroup out of memory",
    "Out of memory",
    "Out of memory (oom_kill_allocating_task)",
];

/// How "Killed process" lines start; a record that is a proper prefix of one is held for the
/// next record.
const KILLED_STARTS: [&str; 4] = [
    "Memory cgroup out of memory: Killed process ",
    "Out of memory: Killed process ",
    "Out of memory (oom_kill_allocating_task): Killed process ",
    KILLED,
];

fn is_start_fragment(message: &str) -> bool {
    !message.is_empty()
        && KILLED_STARTS
            .iter()
            .any(|start| start.len() > message.len() && start.starts_with(message))
}

/// The text before "Killed process " (without ": ") and the text after it, if `message` is a
/// "Killed process" line: it starts with "Killed process " or has ": Killed process ".
fn killed_body(message: &str) -> Option<(&str, &str)> {
    if let Some(rest) = message.strip_prefix(KILLED) {
        return Some(("", rest));
    }
    let at = message.find(": Killed process ")?;
    Some((&message[..at], &message[at + 2 + KILLED.len()..]))
}

// ---------------------------------------------------------------------------------------------
// "Killed process" lines
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, Default)]
struct KillFields {
    total_vm: Option<u64>,
    anon_rss: Option<u64>,
    file_rss: Option<u64>,
    shmem_rss: Option<u64>,
    uid: Option<u32>,
    pgtables: Option<u64>,
    oom_score_adj: Option<i32>,
}

#[derive(Clone, Debug)]
struct KilledLine {
    kind: OomKind,
    /// None while the pid may be cut short.
    pid: Option<u32>,
    /// None until `) total-vm:` ends it.
    comm: Option<String>,
    /// Only values that are whole.
    fields: KillFields,
    /// Ends where this kernel's layout ends.
    complete: bool,
    /// A value in the middle is not what the layout says: the text is damaged, no record can
    /// be its rest.
    garbled: bool,
    /// A key this parser does not know (a newer layout).
    unknown_keys: bool,
    /// The richest layout this line shows (see `format_level`).
    level: u8,
}

impl KilledLine {
    fn new(kind: OomKind) -> Self {
        KilledLine {
            kind,
            pid: None,
            comm: None,
            fields: KillFields::default(),
            complete: false,
            garbled: false,
            unknown_keys: false,
            level: 0,
        }
    }

    /// Whether a line built by joining records is still plausibly one line.
    fn continues_cleanly(&self) -> bool {
        !self.garbled
            && !self.unknown_keys
            && self
                .comm
                .as_ref()
                .is_some_and(|comm| comm.len() <= MAX_COMM_BYTES)
    }
}

enum KilledParse {
    Absent,
    /// A "Killed process" line that cannot be read (no pid, nothing like " (" after it).
    Garbage,
    Line(KilledLine),
}

const KB_KEYS: [&str; 5] = ["total-vm", "anon-rss", "file-rss", "shmem-rss", "pgtables"];
const KNOWN_KEYS: [&str; 7] = [
    "total-vm",
    "anon-rss",
    "file-rss",
    "shmem-rss",
    "UID",
    "pgtables",
    "oom_score_adj",
];

/// The layouts of the key list, by the key that ends them:
/// 1 `file-rss` (3.x–4.5), 2 `shmem-rss` (4.6–5.2), 3 `UID` (5.3–5.8),
/// 4 `oom_score_adj`, with `pgtables` before it (5.9 on).
fn terminal_level(key: &str) -> Option<u8> {
    match key {
        "file-rss" => Some(1),
        "shmem-rss" => Some(2),
        "UID" => Some(3),
        "oom_score_adj" => Some(4),
        _ => None,
    }
}

fn layout_level(key: &str) -> u8 {
    match key {
        "file-rss" => 1,
        "shmem-rss" => 2,
        "UID" => 3,
        "pgtables" | "oom_score_adj" => 4,
        _ => 0,
    }
}

#[derive(Clone, Copy, Debug)]
enum Value {
    Kb(u64),
    Uid(u32),
    Adj(i32),
    Unknown,
}

/// Parses a "Killed process" line. `min_level` is the richest layout already seen on this
/// kernel: a line that stops before it is cut short.
///
/// The comm is everything between the "(" after the pid and the last ") total-vm:", so a comm
/// may hold spaces, parentheses and even ") total-vm:" itself; the keys after it are read one
/// by one, so older layouts without some of them parse too.
fn parse_killed(message: &str, min_level: u8) -> KilledParse {
    let Some((prefix, rest)) = killed_body(message) else {
        return KilledParse::Absent;
    };
    let mut line = KilledLine::new(prefix_kind(prefix));
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let after = &rest[digits..];
    if after.is_empty() || (digits > 0 && after == " ") {
        // Cut in or right after the pid.
        return KilledParse::Line(line);
    }
    if digits == 0 {
        return KilledParse::Garbage;
    }
    let Some(pid) = parse_u64(&rest[..digits]).and_then(|pid| u32::try_from(pid).ok()) else {
        return KilledParse::Garbage;
    };
    let Some(body) = after.strip_prefix(" (") else {
        return KilledParse::Garbage;
    };
    line.pid = Some(pid);
    let Some(end) = body.rfind(") total-vm:") else {
        // Cut in the comm (or not a layout this parser knows).
        line.garbled = body.len() > MAX_JOIN;
        return KilledParse::Line(line);
    };
    line.comm = Some(unescape(&body[..end]));
    parse_key_list(&body[end + 2..], min_level, &mut line);
    KilledParse::Line(line)
}

/// `total-vm:NkB, anon-rss:NkB, file-rss:NkB, shmem-rss:NkB, UID:N pgtables:NkB oom_score_adj:N`
fn parse_key_list(list: &str, min_level: u8, line: &mut KilledLine) {
    let pieces: Vec<&str> = list.split(' ').collect();
    let mut has_adj = false;
    let mut last: Option<(&str, Value)> = None;
    for (i, piece) in pieces.iter().enumerate() {
        if piece.is_empty() {
            continue;
        }
        // The last piece is open (may be cut short) unless a separator follows it.
        let open = i + 1 == pieces.len() && !piece.ends_with(',');
        let token = piece.strip_suffix(',').unwrap_or(piece);
        let parsed = token
            .split_once(':')
            .and_then(|(key, value)| key_value(key, value).map(|value| (key, value)));
        match parsed {
            Some((key, value)) => {
                if matches!(value, Value::Unknown) {
                    line.unknown_keys = true;
                }
                has_adj |= key == "oom_score_adj";
                line.level = line.level.max(layout_level(key));
                if open {
                    last = Some((key, value));
                } else {
                    set_field(&mut line.fields, key, value);
                }
            }
            None if open && could_be_cut_token(token) => {}
            None => line.garbled = true,
        }
    }
    if let Some((key, value)) = last {
        line.complete = match terminal_level(key) {
            Some(level) => level >= min_level,
            None => matches!(value, Value::Unknown) && has_adj,
        };
        // "kB" ends a value, so a last kB value is whole even in a cut-short line; a last
        // plain number is trusted only where the layout ends.
        if line.complete || matches!(value, Value::Kb(_)) {
            set_field(&mut line.fields, key, value);
        }
    }
}

fn key_value(key: &str, value: &str) -> Option<Value> {
    if KB_KEYS.contains(&key) {
        return parse_u64(value.strip_suffix("kB")?).map(Value::Kb);
    }
    match key {
        "UID" => parse_u64(value)
            .and_then(|uid| u32::try_from(uid).ok())
            .map(Value::Uid),
        "oom_score_adj" => parse_i32(value).map(Value::Adj),
        _ if !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && !value.is_empty()
            && value.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            Some(Value::Unknown)
        }
        _ => None,
    }
}

/// Whether `token` is the start of a valid known `key:value` (a line cut inside it).
fn could_be_cut_token(token: &str) -> bool {
    let Some((key, value)) = token.split_once(':') else {
        return KNOWN_KEYS.iter().any(|known| known.starts_with(token));
    };
    let digits = |text: &str| text.bytes().all(|b| b.is_ascii_digit());
    if KB_KEYS.contains(&key) {
        digits(value.strip_suffix('k').unwrap_or(value))
    } else if key == "UID" {
        digits(value)
    } else if key == "oom_score_adj" {
        digits(value.strip_prefix('-').unwrap_or(value))
    } else {
        false
    }
}

fn set_field(fields: &mut KillFields, key: &str, value: Value) {
    fn set<T>(slot: &mut Option<T>, value: T) {
        if slot.is_none() {
            *slot = Some(value);
        }
    }
    match (key, value) {
        ("total-vm", Value::Kb(kb)) => set(&mut fields.total_vm, kb),
        ("anon-rss", Value::Kb(kb)) => set(&mut fields.anon_rss, kb),
        ("file-rss", Value::Kb(kb)) => set(&mut fields.file_rss, kb),
        ("shmem-rss", Value::Kb(kb)) => set(&mut fields.shmem_rss, kb),
        ("pgtables", Value::Kb(kb)) => set(&mut fields.pgtables, kb),
        ("UID", Value::Uid(uid)) => set(&mut fields.uid, uid),
        ("oom_score_adj", Value::Adj(adj)) => set(&mut fields.oom_score_adj, adj),
        _ => {}
    }
}

fn parse_u64(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_i32(text: &str) -> Option<i32> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    parse_u64(digits)?;
    text.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// The oom-kill: summary
// ---------------------------------------------------------------------------------------------

/// `oom-kill:constraint=C,nodemask=N,cpuset=S,mems_allowed=M,oom_memcg=/p,task_memcg=/p,task=comm,pid=N,uid=N`
/// (`global_oom` instead of `oom_memcg=/p`; no `cpuset=`/`mems_allowed=` without cpusets).
/// Only values that are whole are kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Summary {
    constraint: Option<String>,
    global: Option<bool>,
    oom_memcg: Option<String>,
    task_memcg: Option<String>,
    pid: Option<u32>,
    uid: Option<u32>,
}

/// The pieces the kernel prints the summary in, each with its own `pr_cont()`.
const SUMMARY_PIECES: [&str; 6] = [
    ",cpuset=",
    ",mems_allowed=",
    ",oom_memcg=",
    ",global_oom",
    ",task_memcg=",
    ",task=",
];

/// Whether `piece` is the next `pr_cont()` piece of the summary `text` so far.
fn is_summary_piece(text: &str, piece: &str) -> bool {
    SUMMARY_PIECES.iter().any(|start| piece.starts_with(start))
        || (text.ends_with("memcg=") && piece.starts_with('/'))
        || (text.ends_with(",cpuset=")
            && !piece.is_empty()
            && !piece.contains(' ')
            && !piece.contains(','))
}

/// Ends with `,pid=N,uid=N`, the summary's last piece.
fn summary_is_complete(text: &str) -> bool {
    let Some((head, uid)) = text.rsplit_once(",uid=") else {
        return false;
    };
    let Some((_, pid)) = head.rsplit_once(",pid=") else {
        return false;
    };
    parse_u64(uid).is_some() && parse_u64(pid).is_some()
}

fn parse_summary(text: &str) -> Option<Summary> {
    let body = text.strip_prefix("oom-kill:")?;
    let mut summary = Summary::default();
    if let Some((constraint, _)) = body
        .strip_prefix("constraint=")
        .and_then(|rest| rest.split_once(','))
        && !constraint.is_empty()
        && constraint
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        summary.constraint = Some(constraint.to_owned());
    }
    let Some((at, global)) = memcg_section(body) else {
        return Some(summary);
    };
    summary.global = Some(global);
    let rest = if global {
        &body[at + ",global_oom".len()..]
    } else {
        &body[at + ",oom_memcg=".len()..]
    };
    // `rest`: "[/oom],task_memcg=/task,task=comm,pid=N,uid=N", perhaps cut short.
    if summary_is_complete(rest) {
        let (head, uid) = rest.rsplit_once(",uid=")?;
        let (head, pid) = head.rsplit_once(",pid=")?;
        summary.uid = parse_u64(uid).and_then(|uid| u32::try_from(uid).ok());
        summary.pid = parse_u64(pid).and_then(|pid| u32::try_from(pid).ok());
        let Some((memcgs, _comm)) = head.rsplit_once(",task=") else {
            return Some(summary);
        };
        if global {
            summary.task_memcg = memcgs.strip_prefix(",task_memcg=").map(unescape);
        } else {
            let (oom, task) = split_memcgs(memcgs);
            summary.oom_memcg = Some(unescape(oom));
            summary.task_memcg = task.map(unescape);
        }
    } else {
        // Keep only what a following key shows to be whole.
        let after_oom = if global {
            rest
        } else {
            let Some(at) = rest.find(",task_memcg=") else {
                return Some(summary);
            };
            summary.oom_memcg = Some(unescape(&rest[..at]));
            &rest[at..]
        };
        let Some(task_part) = after_oom.strip_prefix(",task_memcg=") else {
            return Some(summary);
        };
        let Some(at) = task_part.find(",task=") else {
            return Some(summary);
        };
        summary.task_memcg = Some(unescape(&task_part[..at]));
        if let Some((_, pid_part)) = task_part[at..].split_once(",pid=")
            && let Some((pid, _)) = pid_part.split_once(",uid=")
        {
            summary.pid = parse_u64(pid).and_then(|pid| u32::try_from(pid).ok());
        }
    }
    Some(summary)
}

/// Where the memcg part starts (`,oom_memcg=` or `,global_oom`) and whether it is global. The
/// field before it must be `mems_allowed=` or `nodemask=` with a node list, so that a cpuset
/// name holding one of those strings cannot mislead.
fn memcg_section(body: &str) -> Option<(usize, bool)> {
    let mut candidates: Vec<(usize, bool)> = body
        .match_indices(",oom_memcg=")
        .map(|(at, _)| (at, false))
        .chain(
            body.match_indices(",global_oom")
                .filter(|(at, _)| {
                    let next = &body[at + ",global_oom".len()..];
                    next.is_empty() || next.starts_with(',')
                })
                .map(|(at, _)| (at, true)),
        )
        .collect();
    candidates.sort_unstable();
    candidates.into_iter().find(|&(at, _)| {
        let before = &body[..at];
        let field_start = [",mems_allowed=", ",nodemask="]
            .iter()
            .filter_map(|key| before.rfind(key).map(|pos| pos + key.len()))
            .max();
        field_start.is_some_and(|start| {
            let list = &before[start..];
            list == "(null)"
                || list
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b',' || b == b'-')
        })
    })
}

/// Splits "/oom,task_memcg=/task". Cgroup names may hold commas, so of the possible splits
/// the one where the task's memcg lies under the OOM memcg (as it always does) wins.
fn split_memcgs(text: &str) -> (&str, Option<&str>) {
    const KEY: &str = ",task_memcg=";
    let mut first = None;
    for (at, _) in text.match_indices(KEY) {
        let (oom, task) = (&text[..at], &text[at + KEY.len()..]);
        if first.is_none() {
            first = Some((oom, task));
        }
        if is_under(task, oom) {
            return (oom, Some(task));
        }
    }
    match first {
        Some((oom, task)) => (oom, Some(task)),
        None => (text, None),
    }
}

fn is_under(path: &str, ancestor: &str) -> bool {
    path == ancestor
        || (ancestor == "/" && path.starts_with('/'))
        || path
            .strip_prefix(ancestor)
            .is_some_and(|below| below.starts_with('/'))
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_6_1: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/kmsg-debian-6.1.0-56-cloud.txt"
    ));
    const DEBIAN_6_12: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/kmsg-debian-6.12.117-cloud.txt"
    ));
    const HOST_6_18: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/kmsg-host-6.18-cgroup-v1-docker.txt"
    ));
    const FIXTURES: [&str; 3] = [DEBIAN_6_1, DEBIAN_6_12, HOST_6_18];

    /// A real line, from the 6.1 fixture.
    const KILLED_89: &str = "Memory cgroup out of memory: Killed process 89 (memhog) total-vm:33876kB, anon-rss:32412kB, file-rss:4kB, shmem-rss:648kB, UID:0 pgtables:104kB oom_score_adj:0";
    const SUMMARY_89: &str = "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/plain,task_memcg=/plain,task=memhog,pid=89,uid=0";

    /// Builds a dump of records numbered from 1 out of messages.
    fn dump(messages: &[&str]) -> String {
        messages
            .iter()
            .enumerate()
            .map(|(i, message)| format!("6,{},{},-;{message}\n", i + 1, (i + 1) * 10))
            .collect()
    }

    /// Expected kills as a table, one per line:
    /// `seq usec pid comm uid total-vm anon-rss file-rss shmem-rss pgtables oom_score_adj
    /// constraint oom_memcg task_memcg how trigger`, `-` for None, `how` one of `victim`,
    /// `member` (group kill) and `global`.
    fn table(text: &str) -> Vec<KmsgKill> {
        fn opt(word: &str) -> Option<String> {
            (word != "-").then(|| word.to_owned())
        }
        fn num<T: std::str::FromStr>(word: &str) -> Option<T> {
            (word != "-").then(|| word.parse().ok().expect("number"))
        }
        text.lines()
            .map(str::split_whitespace)
            .map(Iterator::collect::<Vec<_>>)
            .filter(|words| !words.is_empty())
            .map(|w| {
                assert_eq!(w.len(), 16, "{w:?}");
                KmsgKill {
                    seq: num(w[0]).expect("seq"),
                    usec: num(w[1]).expect("usec"),
                    pid: num(w[2]).expect("pid"),
                    comm: w[3].to_owned(),
                    uid: num(w[4]),
                    total_vm_kb: num(w[5]),
                    anon_rss_kb: num(w[6]),
                    file_rss_kb: num(w[7]),
                    shmem_rss_kb: num(w[8]),
                    pgtables_kb: num(w[9]),
                    oom_score_adj: num(w[10]),
                    constraint: opt(w[11]),
                    oom_memcg: opt(w[12]),
                    task_memcg: opt(w[13]),
                    global: w[14] == "global",
                    group_kill: w[14] == "member",
                    trigger_comm: opt(w[15]),
                }
            })
            .collect()
    }

    const MEMCG: &str = "CONSTRAINT_MEMCG";

    // --- parse_record ------------------------------------------------------------------------

    #[test]
    fn parses_a_record() {
        let record = parse_record("6,339,5140900,-;NET: Registered PF_INET6 protocol family")
            .expect("valid record");
        assert_eq!(
            record,
            Record {
                seq: 339,
                usec: 5140900,
                message: "NET: Registered PF_INET6 protocol family",
            }
        );
    }

    #[test]
    fn record_ignores_extra_header_fields_and_keeps_semicolons_in_the_message() {
        let record = parse_record("4,7,8,-,caller=T123;a;b,c=d").expect("valid record");
        assert_eq!((record.seq, record.usec, record.message), (7, 8, "a;b,c=d"));
    }

    #[test]
    fn record_reads_only_the_first_line_of_a_read_buffer() {
        let buffer = "6,168,540245,-;acpi PNP0A03:00: _OSC: OS supports [ASPM]\n SUBSYSTEM=acpi\n DEVICE=+acpi:PNP0A03:00\n";
        let record = parse_record(buffer).expect("valid record");
        assert_eq!(record.message, "acpi PNP0A03:00: _OSC: OS supports [ASPM]");
    }

    #[test]
    fn record_may_have_an_empty_message() {
        assert_eq!(parse_record("6,1,2,-;").map(|r| r.message), Ok(""));
    }

    #[test]
    fn record_header_gives_facility_level_and_continuation() {
        let (_, header) = parse_record_full("3,378,1880692,-;x").expect("valid record");
        assert_eq!(
            header,
            RecordHeader {
                facility: 0,
                level: 3,
                continued: false
            }
        );
        assert!(header.is_kernel());
        let (_, header) = parse_record_full("14,5,6,c;x").expect("valid record");
        assert_eq!(
            (header.facility, header.level, header.continued),
            (1, 6, true)
        );
        assert!(!header.is_kernel());
    }

    #[test]
    fn continuation_lines_are_recognisable() {
        let error = parse_record(" SUBSYSTEM=acpi").expect_err("not a record");
        assert!(error.is_continuation());
        assert_eq!(error, MalformedRecord::Continuation);
    }

    #[test]
    fn malformed_records_are_errors_with_a_clear_sentence() {
        let cases: [(&str, MalformedRecord); 10] = [
            ("", MalformedRecord::Empty),
            ("\n", MalformedRecord::Empty),
            ("garbage", MalformedRecord::NoSeparator),
            ("6,1,2,-", MalformedRecord::NoSeparator),
            ("6,1;x", MalformedRecord::MissingField("timestamp")),
            ("6,1,2;x", MalformedRecord::MissingField("flags")),
            (",1,2,-;x", MalformedRecord::MissingField("priority")),
            (
                "a,1,2,-;x",
                MalformedRecord::BadNumber {
                    field: "priority",
                    text: "a".into(),
                },
            ),
            (
                "6,-1,2,-;x",
                MalformedRecord::BadNumber {
                    field: "sequence number",
                    text: "-1".into(),
                },
            ),
            (
                "6,1,18446744073709551616,-;x",
                MalformedRecord::BadNumber {
                    field: "timestamp",
                    text: "18446744073709551616".into(),
                },
            ),
        ];
        for (line, expected) in cases {
            let error = parse_record(line).expect_err(line);
            assert_eq!(error, expected, "{line:?}");
            assert!(!error.is_continuation());
            let sentence = error.to_string();
            assert!(sentence.starts_with("the ") && !sentence.contains('\n'));
        }
        assert!(
            MalformedRecord::MissingField("flags")
                .to_string()
                .contains("flags")
        );
        assert!(parse_record("+6,1,2,-;x").is_err());
        assert!(parse_record("6, 1,2,-;x").is_err());
        assert!(parse_record("99999999999999,1,2,-;x").is_err());
    }

    #[test]
    fn every_fixture_line_is_a_record_or_a_continuation() {
        for fixture in FIXTURES {
            for line in fixture.lines() {
                match parse_record(line) {
                    Ok(_) => {}
                    Err(error) => assert!(error.is_continuation(), "{line:?}: {error}"),
                }
            }
        }
    }

    #[test]
    fn unescapes_kmsg_escapes() {
        assert_eq!(unescape(r"rcu: \x09RCU"), "rcu: \tRCU");
        assert_eq!(unescape(r"a\x5cb"), r"a\b");
        assert_eq!(unescape(r"ends with \x"), r"ends with \x");
        assert_eq!(unescape(r"\x4"), r"\x4");
        assert_eq!(unescape(r"\xzz"), r"\xzz");
        assert_eq!(unescape(r"\xff"), "\u{fffd}");
        assert_eq!(unescape(r"\xc3\xa9"), "é");
    }

    // --- the real fixtures ---------------------------------------------------------------------

    fn expected_debian_6_1() -> Vec<KmsgKill> {
        table(
            "
            378 1880692 89 memhog 0  33876  32412 4 648 104    0 CONSTRAINT_MEMCG /plain  /plain        victim memhog
            419 2264847 94 memhog 0  33876  32412 4 648 112    0 CONSTRAINT_MEMCG /group  /group        victim memhog
            421 2265084 91 sleep  0   2260      4 0   0  28    0 CONSTRAINT_MEMCG /group  -             member memhog
            422 2267378 92 sleep  0   2260      4 0   0  28    0 CONSTRAINT_MEMCG /group  -             member memhog
            459 2449459 98 memhog 0  33876  32412 4 648 104    0 CONSTRAINT_MEMCG /parent /parent/child victim memhog
            509 4177338 99 memhog 0 322744 320700 4 648 672 1000 CONSTRAINT_NONE  -       /             global memhog
",
        )
    }

    #[test]
    fn debian_6_1_kills() {
        assert_eq!(kills_in(DEBIAN_6_1), expected_debian_6_1());
    }

    fn expected_debian_6_12() -> Vec<KmsgKill> {
        table(
            "
            445 3847788 142 memhog 0  33876  32640 0  648 108    0 CONSTRAINT_MEMCG /plain  /plain        victim memhog
            543 4229659 147 memhog 0  33876  32384 0  648 100    0 CONSTRAINT_MEMCG /group  /group        victim memhog
            545 4229876 144 sleep  0   2260      0 0 1324  36    0 CONSTRAINT_MEMCG /group  -             member memhog
            546 4231851 145 sleep  0   2260      0 0 1324  36    0 CONSTRAINT_MEMCG /group  -             member memhog
            643 4397397 151 memhog 0  33876  32640 0  648 100    0 CONSTRAINT_MEMCG /parent /parent/child victim memhog
            696 6127799 152 memhog 0 319660 318592 0  648 664 1000 CONSTRAINT_NONE  -       /             global memhog
",
        )
    }

    #[test]
    fn debian_6_12_kills() {
        assert_eq!(kills_in(DEBIAN_6_12), expected_debian_6_12());
    }

    fn expected_host_6_18() -> Vec<KmsgKill> {
        table(
            "
            5344 1831620075 27907 python3 0 221368 32384 6636 0 124 0 CONSTRAINT_MEMCG /vsbt-27694 /vsbt-27694 victim python3
            5468 2412558062 28538 dd      0 207068 64768  112 0 168 0 CONSTRAINT_MEMCG /docker/28f2911322e9cf8d7eea222431152098e1c7ebcde906d565c5bc446494e64604 /docker/28f2911322e9cf8d7eea222431152098e1c7ebcde906d565c5bc446494e64604 victim dd
            5612 2413819037 28627 dd      0 207068 32384 1264 0 100 0 CONSTRAINT_MEMCG /docker/a1568a0834f3bccc3acdc361a22ef5c8c5d482028fbd6210dc7a88f7e0baabea /docker/a1568a0834f3bccc3acdc361a22ef5c8c5d482028fbd6210dc7a88f7e0baabea victim dd
",
        )
    }

    #[test]
    fn host_6_18_kills() {
        assert_eq!(kills_in(HOST_6_18), expected_host_6_18());
    }

    #[test]
    fn fixtures_fed_record_by_record_give_the_same_kills() {
        for (fixture, expected) in [
            (DEBIAN_6_1, expected_debian_6_1()),
            (DEBIAN_6_12, expected_debian_6_12()),
            (HOST_6_18, expected_host_6_18()),
        ] {
            let mut assembler = KillAssembler::default();
            let mut kills = Vec::new();
            for line in fixture.lines() {
                match parse_record(line) {
                    Ok(record) => kills.extend(assembler.push(&record)),
                    Err(error) => assert!(error.is_continuation()),
                }
                // Every kill comes out of the push that completes it: nothing waits.
                assert!(assembler.pop().is_none());
                assert!(!assembler.has_pending(), "{line}");
            }
            assert!(assembler.flush().is_empty());
            assert_eq!(kills, expected);
        }
    }

    // --- layouts and cases the fixtures do not have ---------------------------------------------

    #[test]
    fn old_kernel_lines_without_pgtables_parse() {
        // 4.6–5.2: no prefix, no UID, no pgtables, no oom_score_adj.
        let kills = kills_in(&dump(&[
            "java invoked oom-killer: gfp_mask=0x24201ca, order=0, oom_score_adj=0",
            "Task in /1037/uid killed as a result of limit of /1037",
            "Memory cgroup out of memory: Kill process 2188 (java) score 60 or sacrifice child",
            "Killed process 2188 (java) total-vm:3330016kB, anon-rss:864176kB, file-rss:8072kB, shmem-rss:0kB",
        ]));
        assert_eq!(
            kills,
            vec![KmsgKill {
                seq: 4,
                usec: 40,
                pid: 2188,
                comm: "java".into(),
                total_vm_kb: Some(3330016),
                anon_rss_kb: Some(864176),
                file_rss_kb: Some(8072),
                shmem_rss_kb: Some(0),
                oom_memcg: Some("/1037".into()),
                task_memcg: Some("/1037/uid".into()),
                trigger_comm: Some("java".into()),
                ..KmsgKill::default()
            }]
        );

        // 3.x–4.5: ends at file-rss; a global OOM told by the "Kill process" line.
        let kills = kills_in(&dump(&[
            "Out of memory: Kill process 7 (a) score 900 or sacrifice child",
            "Killed process 7 (a) total-vm:10kB, anon-rss:5kB, file-rss:1kB",
        ]));
        assert_eq!(kills.len(), 1);
        assert!(kills[0].global);
        assert_eq!(
            (kills[0].file_rss_kb, kills[0].shmem_rss_kb, kills[0].uid),
            (Some(1), None, None)
        );

        // 5.3–5.8: UID but no pgtables and no oom_score_adj.
        let kills = kills_in(&dump(&[
            "Out of memory: Killed process 5 (x) total-vm:1kB, anon-rss:2kB, file-rss:3kB, shmem-rss:4kB, UID:1000",
        ]));
        assert_eq!(kills.len(), 1);
        assert_eq!(
            (kills[0].uid, kills[0].pgtables_kb, kills[0].oom_score_adj),
            (Some(1000), None, None)
        );
        assert!(kills[0].global);
        assert_eq!(kills[0].constraint, None);
    }

    #[test]
    fn summary_uid_fills_in_for_a_line_without_uid() {
        // 5.0–5.2 print the summary but no UID in the "Killed process" line.
        let kills = kills_in(&dump(&[
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/a,task_memcg=/a/b,task=x,pid=5,uid=1001",
            "Memory cgroup out of memory: Killed process 5 (x) total-vm:1kB, anon-rss:2kB, file-rss:3kB, shmem-rss:4kB",
        ]));
        assert_eq!(kills.len(), 1);
        assert_eq!(kills[0].uid, Some(1001));
        assert_eq!(kills[0].task_memcg.as_deref(), Some("/a/b"));
    }

    #[test]
    fn group_kill_with_the_victim_repeated_among_members() {
        let kills = kills_in(&dump(&[
            "stress invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/pod,task_memcg=/pod/c1,task=stress,pid=30,uid=0",
            "Memory cgroup out of memory: Killed process 30 (stress) total-vm:9kB, anon-rss:9kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
            "Tasks in /pod are going to be killed due to memory.oom.group set",
            // This time the victim comes first among the members.
            "Memory cgroup out of memory: Killed process 30 (stress) total-vm:9kB, anon-rss:9kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
            "Memory cgroup out of memory: Killed process 31 (pause) total-vm:1kB, anon-rss:0kB, file-rss:0kB, shmem-rss:0kB, UID:65535 pgtables:4kB oom_score_adj:-998",
            "Memory cgroup out of memory: Killed process 31 (pause) total-vm:1kB, anon-rss:0kB, file-rss:0kB, shmem-rss:0kB, UID:65535 pgtables:4kB oom_score_adj:-998",
            "stress invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
            // A new invocation: the same pid counts again, and it is no group member.
            "Memory cgroup out of memory: Killed process 31 (pause) total-vm:1kB, anon-rss:0kB, file-rss:0kB, shmem-rss:0kB, UID:65535 pgtables:4kB oom_score_adj:-998",
        ]));
        let summary: Vec<_> = kills
            .iter()
            .map(|k| {
                (
                    k.pid,
                    k.group_kill,
                    k.oom_memcg.as_deref(),
                    k.task_memcg.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (30, false, Some("/pod"), Some("/pod/c1")),
                (31, true, Some("/pod"), None),
                (31, false, None, None),
            ]
        );
        assert_eq!(kills[1].constraint.as_deref(), Some(MEMCG));
        assert_eq!(
            (kills[1].uid, kills[1].oom_score_adj),
            (Some(65535), Some(-998))
        );
        assert_eq!(kills[2].constraint, None, "that OOM printed no summary");
    }

    #[test]
    fn nested_memcgs_and_commas_in_cgroup_names() {
        let kills = kills_in(&dump(&[
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=0-1,3,cpuset=a,b,mems_allowed=0-1,3,oom_memcg=/we,ird,task_memcg=/we,ird/x,task_memcg=y,task=t,pid=9,uid=0",
            "Memory cgroup out of memory: Killed process 9 (t) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
        ]));
        assert_eq!(kills.len(), 1);
        assert_eq!(kills[0].oom_memcg.as_deref(), Some("/we,ird"));
        assert_eq!(
            kills[0].task_memcg.as_deref(),
            Some("/we,ird/x,task_memcg=y")
        );
        assert_eq!(kills[0].constraint.as_deref(), Some(MEMCG));

        let summary = parse_summary(
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),oom_memcg=/parent,task_memcg=/parent/child,task=a,b,pid=1,uid=2",
        )
        .expect("a summary");
        assert_eq!(
            summary,
            Summary {
                constraint: Some(MEMCG.into()),
                global: Some(false),
                oom_memcg: Some("/parent".into()),
                task_memcg: Some("/parent/child".into()),
                pid: Some(1),
                uid: Some(2),
            },
            "no cpuset fields without CONFIG_CPUSETS"
        );
    }

    #[test]
    fn a_global_oom() {
        let kills = kills_in(&dump(&[
            "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/system.slice/x.service,task=x,pid=3,uid=0",
            "Out of memory: Killed process 3 (x) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
            "Out of memory (oom_kill_allocating_task): Killed process 4 (y) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
        ]));
        assert_eq!(kills.len(), 2);
        assert!(kills.iter().all(|k| k.global && k.oom_memcg.is_none()));
        assert_eq!(
            kills[0].task_memcg.as_deref(),
            Some("/system.slice/x.service")
        );
        assert_eq!(kills[0].constraint.as_deref(), Some("CONSTRAINT_NONE"));
        assert_eq!(kills[1].constraint, None, "the summary was about pid 3");
    }

    #[test]
    fn comms_with_spaces_and_parentheses() {
        let line = |comm: &str| {
            format!(
                "Out of memory: Killed process 12 ({comm}) total-vm:8kB, anon-rss:4kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:4kB oom_score_adj:100"
            )
        };
        for (escaped, comm) in [
            ("(sd-pam)", "(sd-pam)"),
            ("a b", "a b"),
            ("x) (y", "x) (y"),
            (")", ")"),
            ("", ""),
            ("x) total-vm:9kB", "x) total-vm:9kB"),
            (r"tab\x09here", "tab\there"),
            (r"back\x5cslash", r"back\slash"),
        ] {
            let kills = kills_in(&dump(&[&line(escaped)]));
            assert_eq!(kills.len(), 1, "{escaped}");
            assert_eq!(kills[0].comm, comm);
            assert_eq!(
                (kills[0].total_vm_kb, kills[0].uid, kills[0].oom_score_adj),
                (Some(8), Some(1000), Some(100))
            );
        }
        let kills = kills_in(&dump(&[
            r"Web Content invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0",
            &line("Web Content"),
        ]));
        assert_eq!(kills[0].trigger_comm.as_deref(), Some("Web Content"));
    }

    #[test]
    fn missing_summary_and_mismatched_summary() {
        // The header and summary are rate-limited: only the kill line is there.
        let kills = kills_in(&dump(&[KILLED_89]));
        assert_eq!(kills.len(), 1);
        let k = &kills[0];
        assert_eq!(
            (k.pid, k.comm.as_str(), k.pgtables_kb),
            (89, "memhog", Some(104))
        );
        assert_eq!(
            (&k.constraint, &k.oom_memcg, &k.task_memcg),
            (&None, &None, &None)
        );
        assert!(!k.global && !k.group_kill && k.trigger_comm.is_none());

        let other = SUMMARY_89.replace("pid=89", "pid=90");
        let kills = kills_in(&dump(&[&other, KILLED_89]));
        assert_eq!(
            (kills[0].constraint.as_ref(), kills[0].oom_memcg.as_ref()),
            (None, None)
        );
    }

    #[test]
    fn a_second_kill_without_its_header_does_not_inherit_the_first_one() {
        let second = KILLED_89
            .replace("process 89", "process 90")
            .replace("(memhog)", "(other)");
        let kills = kills_in(&dump(&[
            "memhog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
            SUMMARY_89,
            KILLED_89,
            &second,
        ]));
        assert_eq!(kills.len(), 2);
        assert_eq!(kills[0].oom_memcg.as_deref(), Some("/plain"));
        assert_eq!(kills[1].pid, 90);
        assert_eq!(
            (
                &kills[1].oom_memcg,
                &kills[1].trigger_comm,
                kills[1].group_kill
            ),
            (&None, &None, false)
        );
    }

    #[test]
    fn user_space_records_are_not_kernel_kills() {
        let spoof = format!("12,5,6,-;{KILLED_89}\n");
        assert!(kills_in(&spoof).is_empty());
    }

    // --- split and cut-short lines ---------------------------------------------------------------

    /// The 6.1 fixture with the record at `seq` split into two records at byte `at`.
    fn split_record(fixture: &str, seq: u64, at: usize) -> String {
        let mut out = String::new();
        for line in fixture.lines() {
            if let Ok(record) = parse_record(line)
                && record.seq == seq
            {
                let (head, tail) = record.message.split_at(at);
                let header = &line[..line.len() - record.message.len()];
                out.push_str(&format!("{header}{head}\n"));
                out.push_str(&format!("4,{},{},c;{tail}\n", seq, record.usec + 1));
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    fn message_of(fixture: &str, seq: u64) -> &str {
        fixture
            .lines()
            .filter_map(|line| parse_record(line).ok())
            .find(|record| record.seq == seq)
            .expect("record in fixture")
            .message
    }

    /// No field of `got` contradicts `want`: split lines may lose values, never change them.
    fn consistent(got: &KmsgKill, want: &KmsgKill) -> bool {
        fn ok<T: PartialEq>(got: &Option<T>, want: &Option<T>) -> bool {
            got.is_none() || got == want
        }
        (got.seq, got.usec, got.pid, &got.comm) == (want.seq, want.usec, want.pid, &want.comm)
            && ok(&got.uid, &want.uid)
            && ok(&got.total_vm_kb, &want.total_vm_kb)
            && ok(&got.anon_rss_kb, &want.anon_rss_kb)
            && ok(&got.file_rss_kb, &want.file_rss_kb)
            && ok(&got.shmem_rss_kb, &want.shmem_rss_kb)
            && ok(&got.pgtables_kb, &want.pgtables_kb)
            && ok(&got.oom_score_adj, &want.oom_score_adj)
            && got.constraint == want.constraint
            && got.oom_memcg == want.oom_memcg
            && got.task_memcg == want.task_memcg
            && got.global == want.global
            && got.group_kill == want.group_kill
            && got.trigger_comm == want.trigger_comm
    }

    #[test]
    fn a_real_killed_line_split_in_two_records() {
        let line = message_of(DEBIAN_6_1, 378);
        assert_eq!(line, KILLED_89);
        // In the comm, in a number, after a comma, in a key, before "Killed process".
        for cut in [
            "(mem",
            "anon-rss:324",
            "anon-rss:32412kB,",
            "UID:0 pgt",
            "oom_score_adj:",
            "Memory cgroup out of memory: Kil",
            "Killed process 8",
        ] {
            let at = line.find(cut).expect("cut point") + cut.len();
            let kills = kills_in(&split_record(DEBIAN_6_1, 378, at));
            assert_eq!(kills, expected_debian_6_1(), "cut after {cut:?}");
        }
    }

    #[test]
    fn every_split_of_every_killed_line_loses_values_but_never_invents_them() {
        for (fixture, expected) in [
            (DEBIAN_6_1, expected_debian_6_1()),
            (DEBIAN_6_12, expected_debian_6_12()),
            (HOST_6_18, expected_host_6_18()),
        ] {
            let first_seq = expected[0].seq;
            for want in &expected {
                let line = message_of(fixture, want.seq);
                // Inside the trailing number of a line the kernel cannot be cut (a pr_err()
                // is stored whole); every other place is tried. (At 0 the first record is
                // empty and the second one is simply the line.)
                let last_value = line.rfind(':').expect("colon") + 1;
                for at in 1..=last_value {
                    let kills = kills_in(&split_record(fixture, want.seq, at));
                    assert_eq!(kills.len(), expected.len(), "seq {} at {at}", want.seq);
                    for (got, want) in kills.iter().zip(&expected) {
                        assert!(consistent(got, want), "seq {} at {at}: {got:?}", want.seq);
                    }
                    // Once the kernel's layout is known, every split is put back together.
                    if want.seq != first_seq {
                        assert_eq!(kills, expected, "seq {} at {at}", want.seq);
                    }
                }
            }
        }
    }

    #[test]
    fn summary_split_at_its_pr_cont_pieces_with_records_in_between() {
        let pieces = [
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null)",
            ",cpuset=",
            "/",
            ",mems_allowed=0",
            ",oom_memcg=",
            "/parent",
            ",task_memcg=",
            "/parent/child",
            ",task=memhog,pid=98,uid=0",
        ];
        let mut messages =
            vec!["memhog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0"];
        for piece in pieces {
            messages.push(piece);
            messages.push(
                "[  98]     0    98     8469     8134    98304        0             0 memhog",
            );
        }
        let killed = message_of(DEBIAN_6_1, 459);
        messages.push(killed);
        let kills = kills_in(&dump(&messages));
        assert_eq!(kills.len(), 1);
        assert_eq!(kills[0].oom_memcg.as_deref(), Some("/parent"));
        assert_eq!(kills[0].task_memcg.as_deref(), Some("/parent/child"));
        assert_eq!(kills[0].constraint.as_deref(), Some(MEMCG));
    }

    #[test]
    fn a_summary_cut_short_keeps_only_whole_values() {
        // Cut inside the task memcg: the pid is unknown, so nothing applies to the victim...
        let cut = &SUMMARY_89[..SUMMARY_89.find("task_memcg=/pl").expect("cut") + 14];
        let kills = kills_in(&dump(&[cut, KILLED_89]));
        assert_eq!(kills[0].oom_memcg, None);
        let summary = parse_summary(cut).expect("a summary");
        assert_eq!(summary.oom_memcg.as_deref(), Some("/plain"));
        assert_eq!((summary.task_memcg, summary.pid), (None, None));
        // ...but the whole values still describe a group kill that follows.
        let member = KILLED_89.replace("process 89", "process 88");
        let kills = kills_in(&dump(&[
            cut,
            KILLED_89,
            "Tasks in /plain are going to be killed due to memory.oom.group set",
            &member,
        ]));
        assert_eq!(kills.len(), 2);
        assert_eq!(kills[1].oom_memcg.as_deref(), Some("/plain"));
        assert_eq!(kills[1].constraint.as_deref(), Some(MEMCG));
        assert!(kills[1].group_kill);
        // A cut constraint is no constraint.
        assert_eq!(
            parse_summary("oom-kill:constraint=CONSTRAINT_ME"),
            Some(Summary::default())
        );
    }

    #[test]
    fn tasks_in_line_split_at_its_pieces() {
        let fixture = DEBIAN_6_12.replace(
            "6,544,4229768,-;Tasks in /group are going to be killed due to memory.oom.group set",
            "6,544,4229768,-;Tasks in \n6,545,4229769,c;/group\n6,546,4229770,c; are going to be killed due to memory.oom.group set",
        );
        assert_ne!(fixture, DEBIAN_6_12);
        assert_eq!(kills_in(&fixture), expected_debian_6_12());
    }

    #[test]
    fn a_killed_line_cut_short_for_good() {
        // Cut in a number and never continued: the whole values only.
        let cut = &KILLED_89[..KILLED_89.find("anon-rss:324").expect("cut") + 12];
        let mut assembler = KillAssembler::default();
        assert_eq!(
            assembler.push(&Record {
                seq: 1,
                usec: 2,
                message: cut
            }),
            None
        );
        assert!(assembler.has_pending());
        let kills = assembler.flush();
        assert_eq!(kills.len(), 1);
        assert_eq!((kills[0].pid, kills[0].comm.as_str()), (89, "memhog"));
        assert_eq!(
            (kills[0].total_vm_kb, kills[0].anon_rss_kb),
            (Some(33876), None)
        );
        assert!(!assembler.has_pending());

        // Unrelated records do not complete it; after a few it is given up on.
        let mut messages = vec![cut];
        messages.extend(["oom_reaper: reaped process 89 (memhog), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB"; 9]);
        let kills = kills_in(&dump(&messages));
        assert_eq!(kills.len(), 1);
        assert_eq!(kills[0].anon_rss_kb, None);

        // Once the layout is known, a line that stops at UID lost its end: the UID is not
        // trusted (it could be the start of a longer number).
        let stops_at_uid = &KILLED_89[..KILLED_89.find(" pgtables").expect("cut")];
        let kills = kills_in(&dump(&[
            KILLED_89.replace("89", "88").as_str(),
            stops_at_uid,
        ]));
        assert_eq!(kills.len(), 2);
        assert_eq!((kills[1].shmem_rss_kb, kills[1].uid), (Some(648), None));

        // Cut in the comm: no kill rather than a wrong comm.
        let in_comm = &KILLED_89[..KILLED_89.find("(mem").expect("cut") + 4];
        assert!(kills_in(&dump(&[in_comm, "hogwash"])).is_empty());
    }

    #[test]
    fn two_kills_from_one_record_come_out_in_order() {
        let cut = &KILLED_89[..KILLED_89.find("anon-rss:324").expect("cut") + 12];
        let other = KILLED_89.replace("process 89", "process 90");
        let mut assembler = KillAssembler::default();
        assert_eq!(
            assembler.push(&Record {
                seq: 1,
                usec: 1,
                message: cut
            }),
            None
        );
        let first = assembler
            .push(&Record {
                seq: 2,
                usec: 2,
                message: &other,
            })
            .expect("the cut line, given up on");
        assert_eq!((first.pid, first.seq), (89, 1));
        let second = assembler.pop().expect("the second line");
        assert_eq!(
            (second.pid, second.seq, second.anon_rss_kb),
            (90, 2, Some(32412))
        );
        assert!(assembler.pop().is_none());
    }

    // --- garbage ---------------------------------------------------------------------------------

    #[test]
    fn unreadable_killed_lines_yield_no_kill() {
        for message in [
            "Killed process abc (x) total-vm:1kB, anon-rss:1kB, file-rss:1kB",
            "Killed process 12 x) total-vm:1kB, anon-rss:1kB, file-rss:1kB",
            "Killed process 99999999999 (x) total-vm:1kB, anon-rss:1kB, file-rss:1kB",
            "Killed process -1 (x) total-vm:1kB, anon-rss:1kB, file-rss:1kB",
            "Killed process ",
            "Killed process 12",
            "Killed process 12 (no end",
            "Out of memory: Killed process",
            "oom_reaper: reaped process 89 (memhog), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
            "Memory cgroup out of memory: Kill process 2188 (java) score 60 or sacrifice child",
        ] {
            assert!(kills_in(&dump(&[message])).is_empty(), "{message}");
        }
        // A damaged value in the middle: the kill, without that value.
        let damaged = KILLED_89.replace("anon-rss:32412kB", "anon-rss:32x12kB");
        let kills = kills_in(&dump(&[&damaged]));
        assert_eq!(kills.len(), 1);
        assert_eq!(
            (kills[0].anon_rss_kb, kills[0].file_rss_kb),
            (None, Some(4))
        );
        assert_eq!(kills[0].oom_score_adj, Some(0));
    }

    #[test]
    fn garbage_input_never_panics() {
        let inputs: [&[u8]; 12] = [
            b"",
            b"\n\n\n",
            b";;;;",
            b",,,;",
            b"\xff\xfe\x00garbage\n6,1,2,-;\xf0\x9f\x92",
            b"6,1,2,-;Killed process 1 (\xe2\x82) total-vm:",
            b"6,1,2,-;oom-kill:,global_oom,task_memcg=,task=,pid=,uid=",
            b"6,1,2,-;oom-kill:constraint=,nodemask=,oom_memcg=,task_memcg=,task=,pid=1,uid=1",
            b"6,1,2,-;Tasks in \n6,2,3,-;Killed process 1 (a) total-vm:1kB\n6,3,4,-;\\x",
            b"6,1,2,-;Out of memory\n6,2,3,-;: Killed process 1 (a) total-vm:1kB, UID:",
            b"6,1,2,-; invoked oom-killer:\n6,2,3,-;Task in  killed as a result of limit of ",
            b"6,1,2,-;\\x\\x\\xz\\x0\n 6,1,2,-;x",
        ];
        for input in inputs {
            fuzz_one(input);
        }
        let mut all = Vec::new();
        for fixture in FIXTURES {
            fuzz_one(fixture.as_bytes());
            all.extend_from_slice(fixture.as_bytes());
            // Every line cut at every place.
            for line in fixture
                .lines()
                .filter(|l| l.contains("oom") || l.contains("Kill"))
            {
                for at in 0..=line.len() {
                    fuzz_one(&line.as_bytes()[..at]);
                    fuzz_one(&line.as_bytes()[at..]);
                }
            }
        }
        // Deterministic byte mutations of the fixtures.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200 {
            let mut data = all.clone();
            for _ in 0..64 {
                let at = (next() as usize) % data.len();
                data[at] = match next() % 4 {
                    0 => b'\n',
                    1 => b' ',
                    2 => b"(),:;=/\\x0123456789"[(next() % 19) as usize],
                    _ => next() as u8,
                };
            }
            fuzz_one(&data);
            let text = String::from_utf8_lossy(&data);
            let _ = kills_in(&text);
        }
    }
}
