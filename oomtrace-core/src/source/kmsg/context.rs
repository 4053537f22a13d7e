//! What an OOM invocation's report prints about the memory it ran out of, before the kill:
//!
//! ```text
//! memory: usage 32768kB, limit 32768kB, failcnt 21
//! swap: usage 0kB, limit 0kB, failcnt 0          (v1: memory+swap: ..., kmem: ...)
//! Memory cgroup stats for /plain:
//! anon 33427456                                   (one record a line; on older kernels, 6.1
//! ...                                              among them, one record, lines joined by \x0a)
//! Tasks state (memory values in pages):
//! [  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name
//! [    142]     0   142     8469     8322     8160        0       162   110592        0             0 memhog
//! ```
//!
//! A global OOM prints `Mem-Info:` and the zone lists instead of the cgroup lines. All of it
//! comes from `dump_header()`, rate-limited together with the `invoked oom-killer` header, so
//! it is read only between that header and the kill; a line missing there is `None`.
//!
//! The line parsers are pure; `ReportContext` keeps what one invocation printed.

use std::num::NonZeroU64;

use crate::report::{MemcgStat, TopTask};

use super::lines::MAX_JOIN;
use super::record::{LogText, parse_u64, unescape};

/// The task dump counts memory in pages. 4 KiB is the page size of x86-64 and of most arm64
/// kernels; these parsers use only std, which cannot ask the kernel, so a reader on a kernel
/// with larger pages passes its own (`sysconf(_SC_PAGESIZE)`) to
/// [`KillAssembler::with_page_size`](super::assembler::KillAssembler::with_page_size).
pub const DEFAULT_PAGE_SIZE: NonZeroU64 = NonZeroU64::new(4096).unwrap();

/// Rows of one task dump that are kept; a global OOM lists every process on the machine.
pub const MAX_TASKS: usize = 4096;

/// A memcg OOM's `Memory cgroup stats for <path>:` block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoggedStats {
    /// The OOM cgroup, unescaped.
    pub path: String,
    /// In bytes, from v2's `anon`, `file`, `kernel`, `shmem` and `sock`, or v1's `total_rss`,
    /// `total_cache`, the `kmem: usage` line (v1's stats have no such key), `total_shmem` and
    /// nothing (v1 has no `sock`). A key the block did not print (cut short, or not a key of
    /// this cgroup version) is `None`.
    pub stat: MemcgStat,
}

/// One row of the task dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedTask {
    /// The `tgid` column as the pid (the process, which is what a kill acts on), the name
    /// unescaped (it may hold spaces), and the `rss` column, pages times the page size.
    pub task: TopTask,
    pub oom_score_adj: i32,
}

impl LoggedTask {
    pub(super) fn new(pid: u32, comm: LogText, rss_bytes: u64, oom_score_adj: i32) -> Self {
        let (comm, comm_bytes) = comm.into_parts();
        let task = TopTask {
            pid,
            comm,
            comm_bytes,
            rss_bytes,
        };
        LoggedTask {
            task,
            oom_score_adj,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lines
// ---------------------------------------------------------------------------------------------

/// `<name>: usage NkB, limit NkB, failcnt N`: the name with usage and limit in kB.
pub(super) fn parse_counter_line(message: &str) -> Option<(&str, u64, u64)> {
    let (name, rest) = message.split_once(": usage ")?;
    let (usage, rest) = rest.split_once("kB, limit ")?;
    let (limit, failcnt) = rest.split_once("kB, failcnt ")?;
    parse_u64(failcnt)?;
    Some((name, parse_u64(usage)?, parse_u64(limit)?))
}

/// The first line of a stats block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum StatsHeader {
    /// `Memory cgroup stats for /path:`, the path unescaped.
    Path(String),
    /// The kernel prints the path and the `:` with `pr_cont()`; they may come in records of
    /// their own.
    Cut,
    /// Before 5.0 (v1): `Memory cgroup stats for /path: cache:0KB rss:...KB ...`, one line
    /// per cgroup of the subtree with its own counts only. Not read: summing them into the
    /// hierarchical values the other layouts give would be a guess at what was left out.
    OneLine,
}

const STATS_FOR: &str = "Memory cgroup stats for ";

pub(super) fn parse_stats_header(message: &str) -> Option<StatsHeader> {
    let rest = message.strip_prefix(STATS_FOR)?;
    Some(if let Some(path) = rest.strip_suffix(':') {
        StatsHeader::Path(unescape(path).into_string())
    } else if rest.contains(": ") {
        StatsHeader::OneLine
    } else {
        StatsHeader::Cut
    })
}

/// Whether `piece` is the next `pr_cont()` piece of a cut stats header `text`.
fn is_stats_header_piece(text: &str, piece: &str) -> bool {
    (text.ends_with(STATS_FOR) && piece.starts_with('/')) || piece == ":"
}

/// `key value`, one line of a stats block.
pub(super) fn parse_stat(line: &str) -> Option<(&str, u64)> {
    let (key, value) = line.split_once(' ')?;
    let key_ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !key_ok {
        return None;
    }
    Some((key, parse_u64(value)?))
}

/// Where the values this parser needs are, by the task dump header's column names: the
/// columns changed over the years (`nr_ptes`, `nr_pmds`, `pgtables_bytes`, and `rss_anon
/// rss_file rss_shmem` since 6.x), so a position is never assumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct TaskColumns {
    /// Numeric columns after `[ pid ]`, before `name`.
    count: usize,
    tgid: usize,
    rss: usize,
    oom_score_adj: usize,
}

/// The task dump's header row, `[  pid  ]   uid  tgid total_vm      rss ... oom_score_adj name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum TaskHeader {
    Columns(TaskColumns),
    /// A header without a column this parser needs: its rows cannot be read.
    Unreadable,
}

pub(super) fn parse_task_header(message: &str) -> Option<TaskHeader> {
    let (pid, rest) = message.strip_prefix('[')?.split_once(']')?;
    if pid.trim() != "pid" {
        return None;
    }
    let names: Vec<&str> = rest.split_whitespace().collect();
    let (&last, numeric) = names.split_last()?;
    if last != "name" {
        return None;
    }
    let at = |column: &str| numeric.iter().position(|&name| name == column);
    let columns = (|| {
        Some(TaskColumns {
            count: numeric.len(),
            tgid: at("tgid")?,
            rss: at("rss")?,
            oom_score_adj: at("oom_score_adj")?,
        })
    })();
    Some(columns.map_or(TaskHeader::Unreadable, TaskHeader::Columns))
}

/// One row of the task dump: `[%7d] %5d %5d %8lu ... %5hd %s`. Every column is a number and
/// one space comes before the name, which is the rest of the line (it may hold spaces, or be
/// empty). A row of another shape is not read.
pub(super) fn parse_task_row(
    message: &str,
    columns: &TaskColumns,
    page_size: NonZeroU64,
) -> Option<LoggedTask> {
    let (pid, mut rest) = message.strip_prefix('[')?.split_once(']')?;
    parse_u64(pid.trim_start_matches(' '))?;
    let mut values = Vec::with_capacity(columns.count);
    for _ in 0..columns.count {
        let value = rest.trim_start_matches(' ');
        if value.len() == rest.len() {
            return None;
        }
        let end = value.find(' ').unwrap_or(value.len());
        let digits = &value[..end];
        parse_u64(digits.strip_prefix('-').unwrap_or(digits))?;
        values.push(digits);
        rest = &value[end..];
    }
    Some(LoggedTask::new(
        values[columns.tgid].parse().ok()?,
        unescape(rest.strip_prefix(' ')?),
        parse_u64(values[columns.rss])?.checked_mul(page_size.get())?,
        values[columns.oom_score_adj].parse().ok()?,
    ))
}

/// printk cuts a record's text at 1024 bytes, and did at 1024 less a 32- or 48-byte prefix
/// before 6.x: a stats record with this much text may have lost the end of its last line.
const MAY_BE_CUT: usize = 960;

// ---------------------------------------------------------------------------------------------
// One invocation's report
// ---------------------------------------------------------------------------------------------

/// Where in the report the lines have got to; each part is read only in its place, so that a
/// line another CPU printed in between is not taken for one of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Counters,
    Stats,
    Tasks,
    /// The summary or the kill came, or no header did: no line is the report's.
    #[default]
    Done,
}

/// The keys kept from a stats block.
#[derive(Clone, Debug, Default)]
struct StatValues {
    anon: Option<u64>,
    file: Option<u64>,
    kernel: Option<u64>,
    shmem: Option<u64>,
    sock: Option<u64>,
    total_rss: Option<u64>,
    total_cache: Option<u64>,
    total_shmem: Option<u64>,
}

/// What one invocation's report printed, from its `invoked oom-killer` header on. The
/// default is no report: empty, and closed to every line.
#[derive(Clone, Debug, Default)]
pub(super) struct ReportContext {
    part: Part,
    /// `Mem-Info:` came: a global OOM, which has no OOM cgroup.
    global: bool,
    memory: Option<(u64, u64)>,
    kmem_kb: Option<u64>,
    /// Lines or keys only cgroup v1 prints, and only v2 prints.
    v1: bool,
    v2: bool,
    stats_path: Option<String>,
    /// A stats header cut short, while its pieces may still come (records from other CPUs
    /// may come in between, as they may between the summary's pieces).
    stats_header: Option<String>,
    stats: StatValues,
    task_header: Option<TaskHeader>,
    tasks: Vec<LoggedTask>,
    tasks_omitted: u32,
}

impl ReportContext {
    /// A report whose header just came.
    pub(super) fn open() -> Self {
        ReportContext {
            part: Part::Counters,
            ..ReportContext::default()
        }
    }

    /// The report is over: nothing after this belongs to it.
    pub(super) fn close(&mut self) {
        self.part = Part::Done;
        self.stats_header = None;
    }

    /// Takes `message` if it is a line of the report, in its place.
    pub(super) fn take(&mut self, message: &str, page_size: NonZeroU64) -> bool {
        if self.part == Part::Done {
            return false;
        }
        if self.part == Part::Counters
            && let Some(text) = self.stats_header.as_mut()
            && is_stats_header_piece(text, message)
        {
            text.push_str(message);
            let (header, too_long) = (parse_stats_header(text), text.len() > MAX_JOIN);
            match header {
                Some(StatsHeader::Path(path)) => self.start_stats(path),
                Some(StatsHeader::Cut) if !too_long => {}
                _ => self.stats_header = None,
            }
            return true;
        }
        if message == "Mem-Info:" && self.part == Part::Counters {
            self.global = true;
            return true;
        }
        if self.part == Part::Counters
            && !self.global
            && let Some((name, usage, limit)) = parse_counter_line(message)
        {
            match name {
                "memory" => {
                    self.memory.get_or_insert((usage, limit));
                }
                "swap" => self.v2 = true,
                "memory+swap" => self.v1 = true,
                "kmem" => {
                    self.v1 = true;
                    self.kmem_kb.get_or_insert(usage);
                }
                _ => return false,
            }
            return true;
        }
        if self.part == Part::Counters
            && !self.global
            && let Some(header) = parse_stats_header(message)
        {
            match header {
                StatsHeader::Path(path) => self.start_stats(path),
                StatsHeader::Cut => self.stats_header = Some(message.to_owned()),
                StatsHeader::OneLine => self.part = Part::Stats,
            }
            return true;
        }
        if self.part < Part::Tasks && message == "Tasks state (memory values in pages):" {
            self.part = Part::Tasks;
            return true;
        }
        if self.task_header.is_none()
            && let Some(header) = parse_task_header(message)
        {
            self.part = Part::Tasks;
            self.task_header = Some(header);
            return true;
        }
        match (self.part, &self.task_header) {
            (Part::Stats, _) if self.stats_path.is_some() => self.take_stats(message),
            (Part::Tasks, Some(TaskHeader::Columns(columns))) => {
                let Some(task) = parse_task_row(message, columns, page_size) else {
                    return false;
                };
                if self.tasks.len() < MAX_TASKS {
                    self.tasks.push(task);
                } else {
                    self.tasks_omitted = self.tasks_omitted.saturating_add(1);
                }
                true
            }
            _ => false,
        }
    }

    fn start_stats(&mut self, path: String) {
        self.part = Part::Stats;
        self.stats_header = None;
        self.stats_path = Some(path);
    }

    fn take_stats(&mut self, message: &str) -> bool {
        let text = unescape(message);
        let mut lines: Vec<&str> = text.split('\n').collect();
        if lines.len() > 1 && text.len() >= MAY_BE_CUT {
            lines.pop();
        }
        let mut taken = false;
        for (key, value) in lines.into_iter().filter_map(parse_stat) {
            taken = true;
            let s = &mut self.stats;
            let slot = match key {
                "anon" => &mut s.anon,
                "file" => &mut s.file,
                "kernel" => &mut s.kernel,
                "shmem" => &mut s.shmem,
                "sock" => &mut s.sock,
                "total_rss" => &mut s.total_rss,
                "total_cache" => &mut s.total_cache,
                "total_shmem" => &mut s.total_shmem,
                _ => {
                    self.v1 |= key == "cache" || key == "rss" || key.starts_with("total_");
                    continue;
                }
            };
            slot.get_or_insert(value);
            self.v1 |= key.starts_with("total_");
            self.v2 |= matches!(key, "anon" | "file" | "kernel" | "sock");
        }
        taken
    }

    /// The OOM cgroup's usage and limit in kB.
    pub(super) fn memory_kb(&self) -> Option<(u64, u64)> {
        self.memory.filter(|_| !self.global)
    }

    pub(super) fn memcg_stat(&self) -> Option<LoggedStats> {
        let path = self.stats_path.clone().filter(|_| !self.global)?;
        // A block with the marks of both versions has lines that are not its own: no value.
        let (v1, v2) = (self.v1 && !self.v2, self.v2 && !self.v1);
        let s = &self.stats;
        let pick = |v2_value: Option<u64>, v1_value: Option<u64>| match (v1, v2) {
            (true, false) => v1_value,
            (false, true) => v2_value,
            _ => None,
        };
        Some(LoggedStats {
            path,
            stat: MemcgStat {
                anon_bytes: pick(s.anon, s.total_rss),
                file_bytes: pick(s.file, s.total_cache),
                kernel_bytes: pick(s.kernel, self.kmem_kb.and_then(|kb| kb.checked_mul(1024))),
                shmem_bytes: pick(s.shmem, s.total_shmem),
                sock_bytes: pick(s.sock, None),
            },
        })
    }

    pub(super) fn tasks(&self) -> (&[LoggedTask], u32) {
        (&self.tasks, self.tasks_omitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_lines() {
        let cases = [
            (
                "memory: usage 32768kB, limit 32768kB, failcnt 21",
                Some(("memory", 32768, 32768)),
            ),
            (
                "memory+swap: usage 32768kB, limit 9007199254740988kB, failcnt 0",
                Some(("memory+swap", 32768, 9007199254740988)),
            ),
            (
                "kmem: usage 292kB, limit 9007199254740988kB, failcnt 0",
                Some(("kmem", 292, 9007199254740988)),
            ),
            (
                "swap: usage 0kB, limit 0kB, failcnt 0",
                Some(("swap", 0, 0)),
            ),
            ("memory: usage 32768kB, limit 32768kB, failcnt ", None),
            ("memory: usage 32768kB, limit 32768kB", None),
            ("memory: usage -1kB, limit 1kB, failcnt 0", None),
            ("memory: usage 1MB, limit 1kB, failcnt 0", None),
            ("Free swap  = 0kB", None),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_counter_line(line), expected, "{line}");
        }
    }

    #[test]
    fn stats_headers_and_lines() {
        let headers = [
            (
                "Memory cgroup stats for /plain:",
                Some(StatsHeader::Path("/plain".into())),
            ),
            (
                "Memory cgroup stats for /:",
                Some(StatsHeader::Path("/".into())),
            ),
            (
                r"Memory cgroup stats for /a\x20b::",
                Some(StatsHeader::Path("/a b:".into())),
            ),
            ("Memory cgroup stats for ", Some(StatsHeader::Cut)),
            ("Memory cgroup stats for /plain", Some(StatsHeader::Cut)),
            (
                "Memory cgroup stats for /x: cache:0KB rss:1024KB",
                Some(StatsHeader::OneLine),
            ),
            ("Memory cgroup out of memory: Killed process 1 (x)", None),
        ];
        for (line, expected) in headers {
            assert_eq!(parse_stats_header(line), expected, "{line}");
        }
        let lines = [
            ("anon 33427456", Some(("anon", 33427456))),
            ("total_rss 0", Some(("total_rss", 0))),
            (
                "hierarchical_memsw_limit 9223372036854771712",
                Some(("hierarchical_memsw_limit", 9223372036854771712)),
            ),
            ("anon  1", None),
            ("anon -1", None),
            ("anon 1 ", None),
            ("Anon 1", None),
            (" anon 1", None),
            ("anon", None),
            ("active_anon:591 inactive_anon:80298", None),
        ];
        for (line, expected) in lines {
            assert_eq!(parse_stat(line), expected, "{line}");
        }
    }

    const HEADER_6_12: &str = "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name";

    #[test]
    fn task_headers() {
        let columns = |count, tgid, rss, oom_score_adj| {
            Some(TaskHeader::Columns(TaskColumns {
                count,
                tgid,
                rss,
                oom_score_adj,
            }))
        };
        let cases = [
            (HEADER_6_12, columns(10, 1, 3, 9)),
            (
                "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name",
                columns(7, 1, 3, 6),
            ),
            (
                "[ pid ]   uid  tgid total_vm      rss nr_ptes nr_pmds swapents oom_score_adj name",
                columns(8, 1, 3, 7),
            ),
            (
                "[ pid ]   uid  tgid total_vm      rss swapents name",
                Some(TaskHeader::Unreadable),
            ),
            ("[ pid ]   uid  tgid total_vm      rss oom_score_adj", None),
            ("[    142]     0   142     8469     8322 memhog", None),
            ("[drm] Initialized", None),
            ("Tasks state (memory values in pages):", None),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_task_header(line), expected, "{line}");
        }
    }

    #[test]
    fn task_rows() {
        let Some(TaskHeader::Columns(columns)) = parse_task_header(HEADER_6_12) else {
            panic!("a header");
        };
        let page = DEFAULT_PAGE_SIZE;
        let task = |pid, comm: &str, rss_pages: u64, oom_score_adj| {
            Some(LoggedTask::new(
                pid,
                comm.into(),
                rss_pages * 4096,
                oom_score_adj,
            ))
        };
        let cases = [
            (
                "[    142]     0   142     8469     8322     8160        0       162   110592        0             0 memhog",
                task(142, "memhog", 8322, 0),
            ),
            (
                "[  27907]     0 27907    55342     9755     8096     1659         0   126976        0             0 python3",
                task(27907, "python3", 9755, 0),
            ),
            (
                "[1234567] 65534 1234560  1 2 3 4 5 6 7 -1000 Web Content",
                task(1234560, "Web Content", 2, -1000),
            ),
            (
                "[    1]     0     1   1   2   3   4   5   6   7   0 ",
                task(1, "", 2, 0),
            ),
            // Cut before the name, a column missing, a column that is not a number.
            ("[    1]     0     1   1   2   3   4   5   6   7   0", None),
            ("[    1]     0     1   1   2   3   4   5   6   0 init", None),
            (
                "[    1]     0     1   1   2   3   4   5   6   x   0 init",
                None,
            ),
            (
                "[    1]     0     1   1   2   3   4   5   6   7   0x init",
                None,
            ),
            (
                "[    1]     0    -1   1   2   3   4   5   6   7   0 init",
                None,
            ),
            (
                "[    1]     0     1   1  -2   3   4   5   6   7   0 init",
                None,
            ),
            (
                "[    1]     0     1   1   2   3   4   5   6   7 99999999999 init",
                None,
            ),
            (
                "[     ]     0     1   1   2   3   4   5   6   7   0 init",
                None,
            ),
            ("[    1]0     1   1   2   3   4   5   6   7   0 init", None),
        ];
        for (row, expected) in cases {
            assert_eq!(parse_task_row(row, &columns, page), expected, "{row}");
        }
        let huge = NonZeroU64::new(u64::MAX / 2).expect("size");
        assert_eq!(
            parse_task_row("[ 1] 0 1 1 3 3 4 5 6 7 0 x", &columns, huge),
            None,
            "rss in bytes does not fit"
        );
    }
}
