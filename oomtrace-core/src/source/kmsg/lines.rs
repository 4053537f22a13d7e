//! The lines the OOM killer prints that name a kill, each parsed on its own: the `Killed
//! process` line and the `oom-kill:` summary. Pure functions of one message; joining records
//! and keeping state across them is the assembler's job.
//!
//! A line may come cut short (the kernel prints some in `pr_cont()` pieces, and a reader may
//! see only the first), so every parser keeps only the values that are provably whole.

use super::record::{LogText, parse_u64, unescape};

/// Longest text built out of pieces; bounds both joining and what a cut comm may grow to.
pub(super) const MAX_JOIN: usize = 4096;
/// A comm is at most 15 bytes (TASK_COMM_LEN 16); allow for a longer future one. Only used
/// to refuse joining an unrelated record into a cut-short comm.
const MAX_COMM_BYTES: usize = 64;

/// What the text before "Killed process" (or "Kill process") says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OomKind {
    /// "Memory cgroup out of memory"
    Memcg,
    /// "Out of memory", "Out of memory (oom_kill_allocating_task)"
    Global,
    /// No prefix (before 5.3) or one this parser does not know.
    Unknown,
}

impl OomKind {
    pub(super) fn global(self) -> Option<bool> {
        match self {
            OomKind::Memcg => Some(false),
            OomKind::Global => Some(true),
            OomKind::Unknown => None,
        }
    }
}

pub(super) fn prefix_kind(prefix: &str) -> OomKind {
    if prefix.starts_with("Memory cgroup out of memory") {
        OomKind::Memcg
    } else if prefix.starts_with("Out of memory") {
        OomKind::Global
    } else {
        OomKind::Unknown
    }
}

pub(super) const KILLED: &str = "Killed process ";

/// What comes before ": Killed process " (the `message` of `__oom_kill_process()`).
pub(super) const KILLED_PREFIXES: [&str; 3] = [
    "Memory cgroup out of memory",
    "Out of memory",
    "Out of memory (oom_kill_allocating_task)",
];

/// The text before "Killed process " (without ": ") and the text after it, if `message` is a
/// "Killed process" line: it starts with "Killed process " or has ": Killed process ".
pub(super) fn killed_body(message: &str) -> Option<(&str, &str)> {
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
pub(super) struct KillFields {
    pub(super) total_vm: Option<u64>,
    pub(super) anon_rss: Option<u64>,
    pub(super) file_rss: Option<u64>,
    pub(super) shmem_rss: Option<u64>,
    pub(super) uid: Option<u32>,
    pub(super) pgtables: Option<u64>,
    pub(super) oom_score_adj: Option<i32>,
}

#[derive(Clone, Debug)]
pub(super) struct KilledLine {
    pub(super) kind: OomKind,
    /// None while the pid may be cut short.
    pub(super) pid: Option<u32>,
    /// None until `) total-vm:` ends it.
    pub(super) comm: Option<LogText>,
    /// Only values that are whole.
    pub(super) fields: KillFields,
    /// Ends where this kernel's layout ends.
    pub(super) complete: bool,
    /// A value in the middle is not what the layout says: the text is damaged, no record can
    /// be its rest.
    pub(super) garbled: bool,
    /// A key this parser does not know (a newer layout).
    pub(super) unknown_keys: bool,
    /// The richest layout this line shows (see the assembler's `format_level`).
    pub(super) level: u8,
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
    pub(super) fn continues_cleanly(&self) -> bool {
        !self.garbled
            && !self.unknown_keys
            && self
                .comm
                .as_ref()
                .is_some_and(|comm| comm.len() <= MAX_COMM_BYTES)
    }
}

pub(super) enum KilledParse {
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
pub(super) fn parse_killed(message: &str, min_level: u8) -> KilledParse {
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
pub(super) struct Summary {
    pub(super) constraint: Option<String>,
    pub(super) global: Option<bool>,
    pub(super) oom_memcg: Option<LogText>,
    pub(super) task_memcg: Option<LogText>,
    pub(super) pid: Option<u32>,
    pub(super) uid: Option<u32>,
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
pub(super) fn is_summary_piece(text: &str, piece: &str) -> bool {
    SUMMARY_PIECES.iter().any(|start| piece.starts_with(start))
        || (text.ends_with("memcg=") && piece.starts_with('/'))
        || (text.ends_with(",cpuset=")
            && !piece.is_empty()
            && !piece.contains(' ')
            && !piece.contains(','))
}

/// Ends with `,pid=N,uid=N`, the summary's last piece.
pub(super) fn summary_is_complete(text: &str) -> bool {
    let Some((head, uid)) = text.rsplit_once(",uid=") else {
        return false;
    };
    let Some((_, pid)) = head.rsplit_once(",pid=") else {
        return false;
    };
    parse_u64(uid).is_some() && parse_u64(pid).is_some()
}

pub(super) fn parse_summary(text: &str) -> Option<Summary> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY_89: &str = "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/plain,task_memcg=/plain,task=memhog,pid=89,uid=0";
    const MEMCG: &str = "CONSTRAINT_MEMCG";

    #[test]
    fn a_summary_without_cpuset_fields_and_with_a_comma_in_the_comm() {
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
    fn a_summary_cut_short_keeps_only_whole_values() {
        // Cut inside the task memcg: the pid is unknown.
        let cut = &SUMMARY_89[..SUMMARY_89.find("task_memcg=/pl").expect("cut") + 14];
        let summary = parse_summary(cut).expect("a summary");
        assert_eq!(summary.oom_memcg.as_deref(), Some("/plain"));
        assert_eq!((summary.task_memcg, summary.pid), (None, None));
        // A cut constraint is no constraint.
        assert_eq!(
            parse_summary("oom-kill:constraint=CONSTRAINT_ME"),
            Some(Summary::default())
        );
    }
}
