//! Joins the kernel's records into kills: an OOM invocation prints its lines over many
//! records, some of them in pieces, interleaved with whatever other CPUs print.

use std::collections::{HashSet, VecDeque};
use std::num::NonZeroU64;

use super::context::{DEFAULT_PAGE_SIZE, ReportContext};
use super::group::{GroupLine, is_within};
use super::kill::KmsgKill;
use super::lines::{
    KILLED, KILLED_PREFIXES, KilledLine, KilledParse, MAX_JOIN, OomKind, Summary, is_summary_piece,
    killed_body, parse_killed, parse_summary, prefix_kind, summary_is_complete,
};
use super::record::{LogText, Record, parse_record_full, unescape};

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
    trigger_comm: Option<LogText>,
    summary: Option<Summary>,
    /// The text of a summary that came cut short, while its pieces may still come.
    summary_text: Option<String>,
    /// Before 5.0: "Task in <task_memcg> killed as a result of limit of <oom_memcg>".
    legacy_memcgs: Option<(LogText, LogText)>,
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
    /// The current invocation's report, from its "invoked oom-killer" header on; empty and
    /// closed when there is none.
    report: ReportContext,
    /// None: [`DEFAULT_PAGE_SIZE`].
    page_size: Option<NonZeroU64>,
    /// When the current invocation began, once known.
    invocation_usec: Option<u64>,
}

impl KillAssembler {
    /// An assembler for a kernel whose pages are not [`DEFAULT_PAGE_SIZE`] bytes: the task
    /// dump counts memory in pages.
    pub fn with_page_size(page_size: NonZeroU64) -> Self {
        KillAssembler {
            page_size: Some(page_size),
            ..KillAssembler::default()
        }
    }

    /// Feeds one record; returns a kill that it completes. Records must be the kernel's own
    /// (facility 0, see [`RecordHeader::is_kernel`](super::record::RecordHeader::is_kernel))
    /// and in order. In the rare case that one record completes two kills, the second comes
    /// from [`pop`](Self::pop) (or from the next `push`).
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

    /// What the current invocation has printed so far about the victim `pid`, whose own
    /// `Killed process` line has not come yet: the kernel prints the invocation's report and
    /// summary before it marks a victim, and the line after. `None` unless the summary names
    /// `pid` or a `memory.oom.group` kill is under way, whose members it covers.
    pub fn context_for(&self, pid: u32) -> Option<KmsgKill> {
        let mut kill = KmsgKill {
            pid,
            trigger_comm: self.trigger_comm.clone(),
            invocation_usec: self.invocation_usec?,
            ..KmsgKill::default()
        };
        let global = if let Some(group) = &self.group {
            if self.killed.contains(&pid) {
                return None;
            }
            kill.group_kill = true;
            kill.constraint = group.constraint.clone();
            kill.oom_memcg = group.oom_memcg.clone();
            kill.group_memcg = group.cgroup();
            group.global
        } else {
            let summary = self.summary.as_ref().filter(|s| s.pid == Some(pid))?;
            kill.constraint = summary.constraint.clone();
            kill.oom_memcg = summary.oom_memcg.clone();
            kill.task_memcg = summary.task_memcg.clone();
            kill.uid = summary.uid;
            summary.global
        };
        kill.global = global?;
        let (tasks, omitted) = self.report.tasks();
        (kill.tasks, kill.tasks_omitted) = (tasks.to_vec(), omitted);
        if !kill.global {
            (kill.memcg_usage_kb, kill.memcg_limit_kb) = self.report.memory_kb().unzip();
            kill.memcg_stat = self.report.memcg_stat();
        }
        Some(kill)
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
            self.invocation_usec = Some(usec);
            self.trigger_comm = Some(unescape(&message[..at]));
            self.report = ReportContext::open();
            return;
        }
        if message.starts_with("oom-kill:") {
            self.finish_pending();
            self.before_kill_line();
            self.report.close();
            self.summary = parse_summary(message);
            self.summary_text = (!summary_is_complete(message)).then(|| message.to_owned());
            return;
        }
        match parse_killed(message, self.format_level) {
            KilledParse::Absent => {}
            KilledParse::Garbage => {
                self.finish_pending();
                self.report.close();
                return;
            }
            KilledParse::Line(line) => {
                self.finish_pending();
                self.report.close();
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
        if let Some(line) = GroupLine::start(message) {
            self.finish_pending();
            self.report.close();
            self.start_group(line);
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
            self.report.close();
            self.legacy_kind = Some(prefix_kind(&message[..at]));
            return;
        }
        if let Some(group) = self.group.as_mut()
            && group.line.take(message)
        {
            return;
        }
        let page_size = self.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if self.report.take(message, page_size) {
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
        self.invocation_usec = None;
        self.trigger_comm = None;
        self.report = ReportContext::default();
        self.summary = None;
        self.summary_text = None;
        self.legacy_memcgs = None;
        self.legacy_kind = None;
        self.group = None;
        self.killed.clear();
    }

    fn start_group(&mut self, line: GroupLine) {
        let context = match &self.summary {
            Some(summary) => GroupContext {
                constraint: summary.constraint.clone(),
                oom_memcg: summary.oom_memcg.clone(),
                global: summary.global,
                line,
            },
            None => GroupContext {
                constraint: None,
                oom_memcg: self.legacy_memcgs.as_ref().map(|(_, oom)| oom.clone()),
                global: match (&self.legacy_memcgs, self.legacy_kind) {
                    (Some(_), _) => Some(false),
                    (None, Some(kind)) => kind.global(),
                    (None, None) => None,
                },
                line,
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
            kill.group_memcg = group.cgroup();
            context_global = group.global;
        } else {
            if !self.killed.is_empty() {
                // A second victim without a group kill: a new OOM whose header was
                // rate-limited away. Nothing printed for the previous one applies.
                self.reset_invocation();
            }
            if self
                .summary
                .as_ref()
                .and_then(|s| s.pid)
                .is_some_and(|p| p != pid)
            {
                // The report was about another victim: this kill's own report was lost.
                self.report = ReportContext::default();
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
        kill.invocation_usec = *self.invocation_usec.get_or_insert(usec);
        kill.global = line.kind.global().or(context_global).unwrap_or(false);
        let (tasks, omitted) = self.report.tasks();
        (kill.tasks, kill.tasks_omitted) = (tasks.to_vec(), omitted);
        if !kill.global {
            (kill.memcg_usage_kb, kill.memcg_limit_kb) = self.report.memory_kb().unzip();
            kill.memcg_stat = self.report.memcg_stat();
        }
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

// ---------------------------------------------------------------------------------------------
// Assembler internals
// ---------------------------------------------------------------------------------------------

/// How many unrelated records may come between the pieces of a "Killed process" line.
const PENDING_BUDGET: u8 = 8;
/// Bound on the pids remembered per invocation.
const MAX_KILLED_PIDS: usize = 1 << 16;

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
    oom_memcg: Option<LogText>,
    global: Option<bool>,
    /// `Tasks in <cgroup> ...`, which may still be coming in pieces.
    line: GroupLine,
}

impl GroupContext {
    /// The cgroup the group kill takes whole, once its line is whole; never one above the
    /// limited cgroup, where the kernel's group cannot be (such a "path" was another CPU's
    /// record taken for a piece).
    fn cgroup(&self) -> Option<LogText> {
        let cgroup = self.line.cgroup()?;
        match &self.oom_memcg {
            Some(limited) if !is_within(&cgroup, limited) => None,
            _ => Some(cgroup),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        report::MemcgStat,
        source::kmsg::{LoggedStats, LoggedTask, MAX_TASKS, parse_record},
        testing::kmsg::fuzz_one,
    };
    use std::ops::RangeInclusive;

    /// The kills of a dump without their invocation's time, which the expected tables leave
    /// out; `invocations_are_named_by_their_first_line` checks it.
    fn kills_in(dump: &str) -> Vec<KmsgKill> {
        without_invocations(super::kills_in(dump))
    }

    fn without_invocations(kills: Vec<KmsgKill>) -> Vec<KmsgKill> {
        kills
            .into_iter()
            .map(|kill| KmsgKill {
                invocation_usec: 0,
                ..kill
            })
            .collect()
    }

    #[test]
    fn invocations_are_named_by_their_first_line() {
        // 6.12: /plain, the /group kill (three victims, one invocation), /parent, global.
        let kills = super::kills_in(DEBIAN_6_12.dump);
        let invocations: Vec<(u32, u64)> =
            kills.iter().map(|k| (k.pid, k.invocation_usec)).collect();
        let header = |seq: u64| {
            let line = DEBIAN_6_12
                .dump
                .lines()
                .find(|l| l.split(',').nth(1) == Some(&seq.to_string()))
                .expect("a record with that seq");
            line.split(',').nth(2).unwrap().parse::<u64>().unwrap()
        };
        let group: Vec<u64> = kills
            .iter()
            .filter(|k| k.oom_memcg.as_deref() == Some("/group"))
            .map(|k| k.invocation_usec)
            .collect();
        assert_eq!(group.len(), 3, "{invocations:?}");
        assert!(group.iter().all(|&u| u == group[0]), "{invocations:?}");
        let mut distinct: Vec<u64> = kills.iter().map(|k| k.invocation_usec).collect();
        distinct.dedup();
        assert_eq!(distinct.len(), 4, "four invocations: {invocations:?}");
        // Each is its `invoked oom-killer` header's time.
        for kill in &kills {
            let header_line = DEBIAN_6_12
                .dump
                .lines()
                .filter(|l| l.contains(" invoked oom-killer:"))
                .map(|l| l.split(',').nth(1).unwrap().parse::<u64>().unwrap())
                .filter(|&seq| seq < kill.seq)
                .max()
                .unwrap();
            assert_eq!(kill.invocation_usec, header(header_line), "{}", kill.pid);
        }
        // Without a header, the first kill's own time.
        let alone = super::kills_in(&dump(&[KILLED_142]));
        assert_eq!(alone[0].invocation_usec, alone[0].usec);
    }

    const FIXTURES: [Fixture; 3] = [DEBIAN_6_1, DEBIAN_6_12, HOST_6_18];

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

    /// The kill that `messages`, as a dump, make: the test fails unless they make exactly one.
    fn the_kill_in(messages: &[&str]) -> KmsgKill {
        let mut kills = kills_in(&dump(messages));
        assert_eq!(kills.len(), 1, "{kills:#?}");
        kills.remove(0)
    }

    /// Expected kills as a table, one per line:
    /// `seq usec pid comm uid total-vm anon-rss file-rss shmem-rss pgtables oom_score_adj
    /// constraint oom_memcg task_memcg how trigger group`, `-` for None, `how` one of `victim`,
    /// `member` (group kill) and `global`, `group` the cgroup a group kill takes whole.
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
                assert_eq!(w.len(), 17, "{w:?}");
                KmsgKill {
                    seq: num(w[0]).expect("seq"),
                    usec: num(w[1]).expect("usec"),
                    pid: num(w[2]).expect("pid"),
                    comm: w[3].into(),
                    uid: num(w[4]),
                    total_vm_kb: num(w[5]),
                    anon_rss_kb: num(w[6]),
                    file_rss_kb: num(w[7]),
                    shmem_rss_kb: num(w[8]),
                    pgtables_kb: num(w[9]),
                    oom_score_adj: num(w[10]),
                    constraint: opt(w[11]),
                    oom_memcg: opt(w[12]).map(LogText::from),
                    task_memcg: opt(w[13]).map(LogText::from),
                    global: w[14] == "global",
                    group_kill: w[14] == "member",
                    trigger_comm: opt(w[15]).map(LogText::from),
                    group_memcg: opt(w[16]).map(LogText::from),
                    ..KmsgKill::default()
                }
            })
            .collect()
    }

    /// Adds what each invocation's report printed to `kills`, one report per line:
    /// `seqs usage limit path anon file kernel shmem sock tasks...`, where `seqs` lists the
    /// kills it applies to (comma-separated), usage and limit are kB, the stats are bytes,
    /// `path` is `-` for no stats block, and each task is `tgid:comm:rss-pages:oom_score_adj`.
    fn with_reports(mut kills: Vec<KmsgKill>, text: &str) -> Vec<KmsgKill> {
        fn num(word: &str) -> Option<u64> {
            (word != "-").then(|| word.parse().expect("number"))
        }
        for w in text
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
        {
            if w.is_empty() {
                continue;
            }
            let stat = (w[3] != "-").then(|| LoggedStats {
                path: w[3].to_owned(),
                stat: MemcgStat {
                    anon_bytes: num(w[4]),
                    file_bytes: num(w[5]),
                    kernel_bytes: num(w[6]),
                    shmem_bytes: num(w[7]),
                    sock_bytes: num(w[8]),
                },
            });
            let tasks: Vec<LoggedTask> = w[9..]
                .iter()
                .map(|row| {
                    let t: Vec<&str> = row.split(':').collect();
                    task(
                        t[0].parse().expect("tgid"),
                        t[1],
                        t[2].parse().expect("rss"),
                        t[3].parse().expect("oom_score_adj"),
                    )
                })
                .collect();
            for seq in w[0].split(',').map(|seq| seq.parse::<u64>().expect("seq")) {
                let kill = kills.iter_mut().find(|k| k.seq == seq).expect("kill");
                kill.memcg_usage_kb = num(w[1]);
                kill.memcg_limit_kb = num(w[2]);
                kill.memcg_stat = stat.clone();
                kill.tasks = tasks.clone();
            }
        }
        kills
    }

    const MEMCG: &str = "CONSTRAINT_MEMCG";

    #[test]
    fn every_fixture_line_is_a_record_or_a_continuation() {
        for fixture in FIXTURES {
            for line in fixture.dump.lines() {
                match parse_record(line) {
                    Ok(_) => {}
                    Err(error) => assert!(error.is_continuation(), "{line:?}: {error}"),
                }
            }
        }
    }

    // --- the real fixtures ---------------------------------------------------------------------

    /// A real kernel log, and the name its kills and reports go by in [`KILLS`] and
    /// [`REPORTS`]. Its path is relative to this file, not to CARGO_MANIFEST_DIR: the fuzz
    /// crate compiles it too.
    struct Fixture {
        name: &'static str,
        dump: &'static str,
    }

    const DEBIAN_6_1: Fixture = Fixture {
        name: "debian-6.1",
        dump: include_str!("../../../tests/fixtures/kmsg-debian-6.1.0-56-cloud.txt"),
    };

    const DEBIAN_6_12: Fixture = Fixture {
        name: "debian-6.12",
        dump: include_str!("../../../tests/fixtures/kmsg-debian-6.12.117-cloud.txt"),
    };

    const HOST_6_18: Fixture = Fixture {
        name: "host-6.18",
        dump: include_str!("../../../tests/fixtures/kmsg-host-6.18-cgroup-v1-docker.txt"),
    };

    /// The kills each fixture holds: its name, then a kill as [`table`] reads it. Kept as data
    /// beside the fixtures it describes, as [`REPORTS`] is: both Debian kernels ran the same
    /// OOMs, so their rows differ only in numbers, and in a string here the duplicate-code
    /// finder reads them as one block of code written twice.
    const KILLS: &str = include_str!("../../../tests/fixtures/kmsg-expected-kills.txt");

    /// What each fixture's invocations' reports printed: its name, then a report as
    /// [`with_reports`] reads it. 6.1 prints the stats in one record, its lines joined by
    /// \x0a, and no rss_anon columns. 6.18's host is cgroup v1: anon is total_rss, file
    /// total_cache, shmem total_shmem, kernel the kmem line (292kB, 544kB, 360kB), no sock.
    const REPORTS: &str = include_str!("../../../tests/fixtures/kmsg-expected-reports.txt");

    impl Fixture {
        fn expected(&self) -> Vec<KmsgKill> {
            let own = |text: &str| -> String {
                let rows = text.lines().filter_map(|line| {
                    let (name, row) = line.trim_start().split_once(' ')?;
                    (name == self.name).then(|| format!("{row}\n"))
                });
                rows.collect()
            };
            with_reports(table(&own(KILLS)), &own(REPORTS))
        }
    }

    #[test]
    fn debian_6_1_kills() {
        assert_eq!(kills_in(DEBIAN_6_1.dump), DEBIAN_6_1.expected());
    }

    #[test]
    fn debian_6_12_kills() {
        assert_eq!(kills_in(DEBIAN_6_12.dump), DEBIAN_6_12.expected());
    }

    #[test]
    fn host_6_18_kills() {
        assert_eq!(kills_in(HOST_6_18.dump), HOST_6_18.expected());
    }

    #[test]
    fn fixtures_fed_record_by_record_give_the_same_kills() {
        for fixture in FIXTURES {
            let (fixture, expected) = (fixture.dump, fixture.expected());
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
            assert_eq!(without_invocations(kills), expected);
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
        let kill = the_kill_in(&[
            "Out of memory: Kill process 7 (a) score 900 or sacrifice child",
            "Killed process 7 (a) total-vm:10kB, anon-rss:5kB, file-rss:1kB",
        ]);
        assert!(kill.global);
        assert_eq!(
            (kill.file_rss_kb, kill.shmem_rss_kb, kill.uid),
            (Some(1), None, None)
        );

        // 5.3–5.8: UID but no pgtables and no oom_score_adj.
        let kill = the_kill_in(&[
            "Out of memory: Killed process 5 (x) total-vm:1kB, anon-rss:2kB, file-rss:3kB, shmem-rss:4kB, UID:1000",
        ]);
        assert_eq!(
            (kill.uid, kill.pgtables_kb, kill.oom_score_adj),
            (Some(1000), None, None)
        );
        assert!(kill.global);
        assert_eq!(kill.constraint, None);
    }

    #[test]
    fn summary_uid_fills_in_for_a_line_without_uid() {
        // 5.0–5.2 print the summary but no UID in the "Killed process" line.
        let kill = the_kill_in(&[
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/a,task_memcg=/a/b,task=x,pid=5,uid=1001",
            "Memory cgroup out of memory: Killed process 5 (x) total-vm:1kB, anon-rss:2kB, file-rss:3kB, shmem-rss:4kB",
        ]);
        assert_eq!(kill.uid, Some(1001));
        assert_eq!(kill.task_memcg.as_deref(), Some("/a/b"));
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
                    k.group_memcg.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                // The chosen victim's line comes before the group's is printed.
                (30, false, Some("/pod"), Some("/pod/c1"), None),
                (31, true, Some("/pod"), None, Some("/pod")),
                (31, false, None, None, None),
            ]
        );
        assert_eq!(kills[1].constraint.as_deref(), Some(MEMCG));
        assert_eq!(
            (kills[1].uid, kills[1].oom_score_adj),
            (Some(65535), Some(-998))
        );
        assert_eq!(kills[2].constraint, None, "that OOM printed no summary");
    }

    /// A group kill at `/pod`'s limit: its header, summary and chosen victim (pid 30), then
    /// `group_line`'s records, then a member (pid 31).
    fn group_kill(group_line: &[&str]) -> Vec<String> {
        let mut messages = vec![
            "stress invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0".to_owned(),
            r"oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/p\xffd,task_memcg=/p\xffd/c1,task=stress,pid=30,uid=0".to_owned(),
            "Memory cgroup out of memory: Killed process 30 (stress) total-vm:9kB, anon-rss:9kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0".to_owned(),
        ];
        messages.extend(group_line.iter().map(|line| line.to_string()));
        messages.push("Memory cgroup out of memory: Killed process 31 (pause) total-vm:1kB, anon-rss:0kB, file-rss:0kB, shmem-rss:0kB, UID:65535 pgtables:4kB oom_score_adj:-998".to_owned());
        messages
    }

    #[test]
    fn the_group_s_cgroup_reaches_its_members_only_from_its_whole_line() {
        const END: &str = " are going to be killed due to memory.oom.group set";
        let pod: &[u8] = b"/p\xffd";
        let below: &[u8] = b"/p\xffd/c1";
        // The records of the `Tasks in` line, and the group cgroup the member gets.
        let cases: [(&[&str], Option<&[u8]>); 7] = [
            (
                &[r"Tasks in /p\xffd are going to be killed due to memory.oom.group set"],
                Some(pod),
            ),
            (
                &[r"Tasks in /p\xffd/c1 are going to be killed due to memory.oom.group set"],
                Some(below),
            ),
            // Other CPUs' records in between.
            (
                &[
                    "Tasks in ",
                    "eth0: link up",
                    r"/p\xffd",
                    "usb 1-1: new device",
                    END,
                ],
                Some(pod),
            ),
            // Cut for good.
            (&["Tasks in ", r"/p\xffd"], None),
            (&["Tasks in "], None),
            // Another CPU's record taken for the path names a cgroup above the limited one,
            // where the kernel's group cannot be: none rather than that.
            (&["Tasks in ", "/dev/sda1: mounted", r"/p\xffd", END], None),
            (
                &[r"Tasks in /p are going to be killed due to memory.oom.group set"],
                None,
            ),
        ];
        for (group_line, want) in cases {
            let messages = group_kill(group_line);
            let messages: Vec<&str> = messages.iter().map(String::as_str).collect();
            let kills = kills_in(&dump(&messages));
            assert_eq!(kills.len(), 2, "{group_line:?}");
            assert_eq!(
                kills[0].group_memcg, None,
                "the chosen victim's line comes first"
            );
            let group = kills[1].group_memcg.as_ref();
            assert_eq!(group.and_then(LogText::raw), want, "{group_line:?}");
            assert!(kills[1].group_kill);
        }
    }

    #[test]
    fn a_member_seen_first_by_the_kernel_program_has_its_group() {
        let messages =
            group_kill(&[r"Tasks in /p\xffd are going to be killed due to memory.oom.group set"]);
        let mut assembler = KillAssembler::default();
        for (at, message) in messages.iter().enumerate() {
            let record = Record {
                seq: at as u64 + 1,
                usec: (at as u64 + 1) * 10,
                message,
            };
            if message.contains("Killed process 30") {
                // The chosen victim is marked before the group is named.
                let chosen = assembler.context_for(30).expect("the summary names it");
                assert_eq!(chosen.group_memcg, None);
            }
            if message.contains("Killed process 31") {
                let member = assembler
                    .context_for(31)
                    .expect("a group kill is under way");
                assert!(member.group_kill);
                let group = member.group_memcg.expect("named");
                assert_eq!(group.raw(), Some(&b"/p\xffd"[..]));
            }
            assembler.push(&record);
        }
    }

    #[test]
    fn nested_memcgs_and_commas_in_cgroup_names() {
        let kill = the_kill_in(&[
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=0-1,3,cpuset=a,b,mems_allowed=0-1,3,oom_memcg=/we,ird,task_memcg=/we,ird/x,task_memcg=y,task=t,pid=9,uid=0",
            "Memory cgroup out of memory: Killed process 9 (t) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
        ]);
        assert_eq!(kill.oom_memcg.as_deref(), Some("/we,ird"));
        assert_eq!(kill.task_memcg.as_deref(), Some("/we,ird/x,task_memcg=y"));
        assert_eq!(kill.constraint.as_deref(), Some(MEMCG));
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

    /// Issue 16: a name with a byte that is not UTF-8 lost it in every line of the log but the
    /// kill line's human view.
    #[test]
    fn names_keep_bytes_that_are_not_utf8_in_every_line() {
        // /dev/kmsg escapes bytes below 0x20, from 0x7f and `\` as `\xNN`.
        let name = r"\x1b[31mEV\xffIL";
        let exact: &[u8] = b"\x1b[31mEV\xffIL";
        let header = HEADER_142.replace("memhog", name);
        let row = ROW_142.replace("memhog", name);
        let summary = SUMMARY_142
            .replace("=/plain", r"=/pl\xe9in")
            .replace("task=memhog", &format!("task={name}"));
        let killed = KILLED_142.replace("(memhog)", &format!("({name})"));
        let k = the_kill_in(&[&header, TASKS_HEADER_6_12, &row, &summary, &killed]);
        let cgroup: &[u8] = b"/pl\xe9in";
        // The string, and the exact bytes where it is not UTF-8.
        type Parts<'a> = (&'a str, Option<&'a [u8]>);
        fn parts(text: &LogText) -> Parts<'_> {
            (text.as_str(), text.raw())
        }
        let row = k.tasks.first().map(|t| &t.task);
        let cases: [(&str, Option<Parts>, &[u8]); 5] = [
            ("the kill line's comm", Some(parts(&k.comm)), exact),
            (
                "the header's trigger",
                k.trigger_comm.as_ref().map(parts),
                exact,
            ),
            (
                "the summary's oom_memcg",
                k.oom_memcg.as_ref().map(parts),
                cgroup,
            ),
            (
                "the summary's task_memcg",
                k.task_memcg.as_ref().map(parts),
                cgroup,
            ),
            (
                "the task dump's comm",
                row.map(|t| (t.comm.as_str(), t.comm_bytes.as_deref())),
                exact,
            ),
        ];
        for (what, text, bytes) in cases {
            let (text, raw) = text.unwrap_or_else(|| panic!("{what}: none"));
            assert_eq!(raw, Some(bytes), "{what}");
            assert_eq!(text, String::from_utf8_lossy(bytes), "{what}");
        }
        let row = row.expect("a row");
        assert_eq!(
            (k.tasks.len(), row.pid, row.rss_bytes),
            (1, 142, 8322 * 4096)
        );
    }

    #[test]
    fn missing_summary_and_mismatched_summary() {
        // The header and summary are rate-limited: only the kill line is there.
        let k = the_kill_in(&[KILLED_89]);
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
            && got.group_memcg == want.group_memcg
            && got.trigger_comm == want.trigger_comm
            && got.memcg_usage_kb == want.memcg_usage_kb
            && got.memcg_limit_kb == want.memcg_limit_kb
            && got.memcg_stat == want.memcg_stat
            && (&got.tasks, got.tasks_omitted) == (&want.tasks, want.tasks_omitted)
    }

    #[test]
    fn a_real_killed_line_split_in_two_records() {
        let line = message_of(DEBIAN_6_1.dump, 378);
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
            let kills = kills_in(&split_record(DEBIAN_6_1.dump, 378, at));
            assert_eq!(kills, DEBIAN_6_1.expected(), "cut after {cut:?}");
        }
    }

    #[test]
    fn every_split_of_every_killed_line_loses_values_but_never_invents_them() {
        for fixture in FIXTURES {
            let (fixture, expected) = (fixture.dump, fixture.expected());
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
        let killed = message_of(DEBIAN_6_1.dump, 459);
        messages.push(killed);
        let kill = the_kill_in(&messages);
        assert_eq!(kill.oom_memcg.as_deref(), Some("/parent"));
        assert_eq!(kill.task_memcg.as_deref(), Some("/parent/child"));
        assert_eq!(kill.constraint.as_deref(), Some(MEMCG));
    }

    #[test]
    fn a_summary_cut_short_keeps_only_whole_values() {
        // Cut inside the task memcg: the pid is unknown, so nothing applies to the victim...
        let cut = &SUMMARY_89[..SUMMARY_89.find("task_memcg=/pl").expect("cut") + 14];
        let kills = kills_in(&dump(&[cut, KILLED_89]));
        assert_eq!(kills[0].oom_memcg, None);
        // ...but the whole values (see the summary parser's own test) still describe a group
        // kill that follows.
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
    }

    #[test]
    fn tasks_in_line_split_at_its_pieces() {
        let fixture = DEBIAN_6_12.dump.replace(
            "6,544,4229768,-;Tasks in /group are going to be killed due to memory.oom.group set",
            "6,544,4229768,-;Tasks in \n6,545,4229769,c;/group\n6,546,4229770,c; are going to be killed due to memory.oom.group set",
        );
        assert_ne!(fixture, DEBIAN_6_12.dump);
        assert_eq!(kills_in(&fixture), DEBIAN_6_12.expected());
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
        let kill = the_kill_in(&messages);
        assert_eq!(kill.anon_rss_kb, None);

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

    // --- the OOM report before the kill ------------------------------------------------------

    /// The records of `fixture` without those whose seq is in `lost`.
    fn without(fixture: &str, lost: &[RangeInclusive<u64>]) -> String {
        let mut out = String::new();
        for line in fixture.lines() {
            if let Ok(record) = parse_record(line)
                && lost.iter().any(|range| range.contains(&record.seq))
            {
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    fn task(pid: u32, comm: &str, rss_pages: u64, oom_score_adj: i32) -> LoggedTask {
        LoggedTask::new(pid, comm.into(), rss_pages * 4096, oom_score_adj)
    }

    const HEADER_142: &str =
        "memhog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0";
    const TASKS_HEADER_6_12: &str = "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name";
    const ROW_142: &str = "[    142]     0   142     8469     8322     8160        0       162   110592        0             0 memhog";
    const SUMMARY_142: &str = "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/plain,task_memcg=/plain,task=memhog,pid=142,uid=0";
    const KILLED_142: &str = "Memory cgroup out of memory: Killed process 142 (memhog) total-vm:33876kB, anon-rss:32640kB, file-rss:0kB, shmem-rss:648kB, UID:0 pgtables:108kB oom_score_adj:0";

    #[test]
    fn a_report_cut_short_keeps_what_came() {
        // What the first kill of the 6.12 fixture has when some of its report is lost.
        let stat = |anon, file, kernel, shmem, sock| {
            Some(LoggedStats {
                path: "/plain".into(),
                stat: MemcgStat {
                    anon_bytes: anon,
                    file_bytes: file,
                    kernel_bytes: kernel,
                    shmem_bytes: shmem,
                    sock_bytes: sock,
                },
            })
        };
        let memhog = vec![task(142, "memhog", 8322, 0)];
        let z = Some(0);
        // (records lost, usage and limit, stats, rows)
        type Case<'a> = (
            &'a [RangeInclusive<u64>],
            Option<u64>,
            Option<LoggedStats>,
            &'a [LoggedTask],
        );
        let cases: [Case; 6] = [
            // Nothing lost.
            (
                &[],
                Some(32768),
                stat(Some(33427456), z, Some(126976), z, z),
                &memhog,
            ),
            // From kernel_stack to "Tasks state": sock and shmem are lost, the rows are not.
            (
                &[384..=441],
                Some(32768),
                stat(Some(33427456), z, Some(126976), None, None),
                &memhog,
            ),
            // From the stats' header on: no stats, and the rows have no column header.
            (&[380..=442], Some(32768), None, &[]),
            // Only the column header: the rows cannot be read by position.
            (
                &[442..=442],
                Some(32768),
                stat(Some(33427456), z, Some(126976), z, z),
                &[],
            ),
            // The counters.
            (
                &[378..=379],
                None,
                stat(Some(33427456), z, Some(126976), z, z),
                &memhog,
            ),
            // The whole report but the summary and the kill.
            (&[351..=443], None, None, &[]),
        ];
        for (lost, usage, stat, tasks) in cases {
            let kills = kills_in(&without(DEBIAN_6_12.dump, lost));
            let k = &kills[0];
            assert_eq!((k.pid, k.trigger_comm.as_deref()), (142, Some("memhog")));
            assert_eq!(k.memcg_usage_kb, usage, "{lost:?}");
            assert_eq!(k.memcg_limit_kb, usage, "{lost:?}");
            assert_eq!(k.memcg_stat, stat, "{lost:?}");
            assert_eq!(k.tasks, tasks, "{lost:?}");
            assert_eq!(&kills[1..], &DEBIAN_6_12.expected()[1..], "{lost:?}");
        }
        // A group member's row lost: every member has the rows that came.
        let kills = kills_in(&without(DEBIAN_6_12.dump, &[540..=540]));
        let rows = vec![task(144, "sleep", 331, 0), task(147, "memhog", 8258, 0)];
        for k in &kills[1..=3] {
            assert_eq!(k.tasks, rows, "{}", k.pid);
        }
    }

    #[test]
    fn a_rate_limited_report_leaves_every_context_field_empty() {
        // Only the kill lines: dump_header() was rate-limited.
        let k = the_kill_in(&[KILLED_142]);
        assert_eq!((k.memcg_usage_kb, k.memcg_limit_kb), (None, None));
        assert_eq!((&k.memcg_stat, k.tasks.is_empty()), (&None, true));
        // The header lost, the rest there: the lines are not known to be this kill's.
        let kills = kills_in(&without(DEBIAN_6_12.dump, &[350..=350]));
        let k = &kills[0];
        assert_eq!(k.trigger_comm, None);
        assert_eq!(
            (&k.memcg_stat, k.memcg_usage_kb, k.tasks.len()),
            (&None, None, 0)
        );
        assert_eq!(&kills[1..], &DEBIAN_6_12.expected()[1..]);
        // A second kill with its report rate-limited does not inherit the first one's.
        let second = KILLED_142.replace("process 142", "process 143");
        let kills = kills_in(&dump(&[
            HEADER_142,
            "memory: usage 32768kB, limit 32768kB, failcnt 21",
            TASKS_HEADER_6_12,
            ROW_142,
            SUMMARY_142,
            KILLED_142,
            &second,
        ]));
        assert_eq!(kills[0].memcg_usage_kb, Some(32768));
        assert_eq!(kills[0].tasks.len(), 1);
        assert_eq!((kills[1].memcg_usage_kb, kills[1].tasks.len()), (None, 0));
    }

    #[test]
    fn only_lines_between_the_header_and_the_kill_are_the_report() {
        let kill = the_kill_in(&[
            "memory: usage 1kB, limit 1kB, failcnt 0",
            HEADER_142,
            "memory: usage 32768kB, limit 32768kB, failcnt 21",
            "memory: usage 7kB, limit 7kB, failcnt 0",
            TASKS_HEADER_6_12,
            ROW_142,
            SUMMARY_142,
            // After the summary, nothing is the report's.
            "[    999]     0   999     8469     8322     8160        0       162   110592        0             0 late",
            KILLED_142,
            "memory: usage 9kB, limit 9kB, failcnt 0",
        ]);
        assert_eq!(
            kill.memcg_usage_kb,
            Some(32768),
            "the first line of the report"
        );
        assert_eq!(kill.tasks, vec![task(142, "memhog", 8322, 0)]);
        // A summary about another victim: this kill's report was lost.
        let other = SUMMARY_142.replace("pid=142", "pid=141");
        let kills = kills_in(&dump(&[
            HEADER_142,
            TASKS_HEADER_6_12,
            ROW_142,
            &other,
            KILLED_142,
        ]));
        assert_eq!(
            (kills[0].tasks.len(), kills[0].constraint.as_deref()),
            (0, None)
        );
    }

    #[test]
    fn task_names_with_spaces_and_escapes() {
        let row = |name: &str| {
            format!(
                "[    200]  1000   200     1000      250        1        2         3    36864        0          -100 {name}"
            )
        };
        let names = [
            ("Web Content", "Web Content"),
            ("a  b ", "a  b "),
            (" lead", " lead"),
            ("", ""),
            ("[x] 1 2", "[x] 1 2"),
            (r"tab\x09here", "tab\there"),
            (r"back\x5cslash", r"back\slash"),
        ];
        let mut messages = vec![HEADER_142.to_owned(), TASKS_HEADER_6_12.to_owned()];
        messages.extend(names.iter().map(|(escaped, _)| row(escaped)));
        messages.extend([SUMMARY_142.to_owned(), KILLED_142.to_owned()]);
        let messages: Vec<&str> = messages.iter().map(String::as_str).collect();
        let kills = kills_in(&dump(&messages));
        let expected: Vec<LoggedTask> = names
            .iter()
            .map(|(_, comm)| task(200, comm, 250, -100))
            .collect();
        assert_eq!(kills[0].tasks, expected);
    }

    #[test]
    fn task_dumps_of_older_kernels_are_read_by_their_column_names() {
        // (header, row, what the row is)
        let cases = [
            // 6.1: no rss_anon, rss_file, rss_shmem.
            (
                "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name",
                "[     89]     0    89     8469     8266   106496        0             0 memhog",
                Some(task(89, "memhog", 8266, 0)),
            ),
            // 4.15 to 4.18: "[ pid ]", five-wide pids.
            (
                "[ pid ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name",
                "[ 2188]  1000  2188   832504   218062  1777664        0             0 java",
                Some(task(2188, "java", 218062, 0)),
            ),
            // 4.x before: nr_ptes and nr_pmds; a thread whose tgid is not its pid.
            (
                "[ pid ]   uid  tgid total_vm      rss nr_ptes nr_pmds swapents oom_score_adj name",
                "[ 2190]  1000  2188   832504   218062     430       6        0          -998 java sub",
                Some(task(2188, "java sub", 218062, -998)),
            ),
            // A layout without oom_score_adj: rows are not read.
            (
                "[ pid ]   uid  tgid total_vm      rss swapents name",
                "[ 2188]  1000  2188   832504   218062        0 java",
                None,
            ),
        ];
        for (header, row, expected) in cases {
            let kills = kills_in(&dump(&[
                HEADER_142,
                "Tasks state (memory values in pages):",
                header,
                row,
                KILLED_142,
            ]));
            assert_eq!(kills[0].tasks, Vec::from_iter(expected), "{header}");
        }
    }

    #[test]
    fn cgroup_v1_stats() {
        let v1 = |lines: &[&str]| {
            let mut messages = vec![
                HEADER_142,
                "memory: usage 65536kB, limit 65536kB, failcnt 595",
                "memory+swap: usage 65536kB, limit 131072kB, failcnt 0",
                "kmem: usage 544kB, limit 9007199254740988kB, failcnt 0",
                "Memory cgroup stats for /docker/abc:",
            ];
            messages.extend(lines);
            messages.push(KILLED_142);
            kills_in(&dump(&messages))
                .remove(0)
                .memcg_stat
                .expect("stats")
        };
        let whole = v1(&[
            "cache 1",
            "rss 2",
            "shmem 3",
            "total_cache 4096",
            "total_rss 8192",
            "total_shmem 12288",
            "total_sock 5",
        ]);
        assert_eq!(
            whole,
            LoggedStats {
                path: "/docker/abc".into(),
                stat: MemcgStat {
                    anon_bytes: Some(8192),
                    file_bytes: Some(4096),
                    kernel_bytes: Some(544 * 1024),
                    shmem_bytes: Some(12288),
                    sock_bytes: None,
                },
            }
        );
        // Cut before the hierarchical keys: the cgroup's own counts are not the same thing.
        let cut = v1(&["cache 1", "rss 2", "shmem 3"]).stat;
        assert_eq!(
            (cut.anon_bytes, cut.file_bytes, cut.shmem_bytes),
            (None, None, None)
        );
        assert_eq!(cut.kernel_bytes, Some(544 * 1024));
        // Keys of both versions: lines that are not this block's, so no value is trusted.
        let mixed = v1(&["total_rss 8192", "anon 1"]).stat;
        assert_eq!((mixed.anon_bytes, mixed.kernel_bytes), (None, None));
        // Before 5.0 the stats were one line per cgroup of the subtree: not read.
        let kills = kills_in(&dump(&[
            HEADER_142,
            "memory: usage 65536kB, limit 65536kB, failcnt 595",
            "Memory cgroup stats for /docker/abc: cache:0KB rss:65536KB rss_huge:0KB",
            "total_rss 1",
            KILLED_142,
        ]));
        assert_eq!(kills[0].memcg_stat, None);
        assert_eq!(kills[0].memcg_usage_kb, Some(65536));
    }

    #[test]
    fn cgroup_v2_stats_in_pieces_and_in_one_record() {
        let kills = kills_in(&dump(&[
            HEADER_142,
            "memory: usage 32768kB, limit 32768kB, failcnt 21",
            "swap: usage 0kB, limit 0kB, failcnt 0",
            "Memory cgroup stats for ",
            "[    7]     0     7 ... another CPU's record",
            r"/a\x5cb",
            ":",
            r"anon 1\x0afile 2\x0akernel 3\x0akernel_stack 0\x0ashmem 4\x0asock 5",
            KILLED_142,
        ]));
        let logged = kills[0].memcg_stat.as_ref().expect("stats");
        assert_eq!(logged.path, r"/a\b");
        let stat = &logged.stat;
        assert_eq!(
            (
                stat.anon_bytes,
                stat.file_bytes,
                stat.kernel_bytes,
                stat.shmem_bytes,
                stat.sock_bytes
            ),
            (Some(1), Some(2), Some(3), Some(4), Some(5))
        );
        // A record as long as printk allows may have lost the end of its last line.
        let mut long = String::from("anon 1");
        while long.len() < 990 {
            long.push_str("\npgfault 0");
        }
        long.push_str("\nsock 12");
        let long = long.replace('\n', r"\x0a");
        let kills = kills_in(&dump(&[
            HEADER_142,
            "Memory cgroup stats for /a:",
            &long,
            KILLED_142,
        ]));
        let stat = &kills[0].memcg_stat.as_ref().expect("stats").stat;
        assert_eq!((stat.anon_bytes, stat.sock_bytes), (Some(1), None));
    }

    #[test]
    fn a_global_oom_has_tasks_but_no_cgroup_context() {
        let kills = kills_in(&dump(&[
            HEADER_142,
            "Mem-Info:",
            "memory: usage 32768kB, limit 32768kB, failcnt 21",
            "Memory cgroup stats for /plain:",
            "anon 1",
            TASKS_HEADER_6_12,
            ROW_142,
            "Out of memory: Killed process 142 (memhog) total-vm:33876kB, anon-rss:32640kB, file-rss:0kB, shmem-rss:648kB, UID:0 pgtables:108kB oom_score_adj:0",
        ]));
        let k = &kills[0];
        assert!(k.global);
        assert_eq!((k.memcg_usage_kb, &k.memcg_stat), (None, &None));
        assert_eq!(k.tasks, vec![task(142, "memhog", 8322, 0)]);
    }

    #[test]
    fn the_task_dump_is_bounded_and_shared_by_a_group() {
        let rows: Vec<String> = (1..=MAX_TASKS as u32 + 5)
            .map(|pid| format!("[{pid:7}]     0 {pid:5}      565        1        0        0         1    28672        0             0 sleep"))
            .collect();
        let member = KILLED_142
            .replace("process 142", "process 3")
            .replace("(memhog)", "(sleep)");
        let mut messages = vec![HEADER_142, TASKS_HEADER_6_12];
        messages.extend(rows.iter().map(String::as_str));
        messages.extend([
            SUMMARY_142,
            KILLED_142,
            "Tasks in /plain are going to be killed due to memory.oom.group set",
            &member,
        ]);
        let kills = kills_in(&dump(&messages));
        assert_eq!(kills.len(), 2);
        for k in &kills {
            assert_eq!(
                (k.tasks.len(), k.tasks_omitted),
                (MAX_TASKS, 5),
                "{}",
                k.pid
            );
            assert_eq!(k.tasks[MAX_TASKS - 1].task.pid, MAX_TASKS as u32);
        }
        assert!(kills[1].group_kill);
        assert_eq!(kills[0].tasks, kills[1].tasks);
    }

    #[test]
    fn rss_is_counted_in_the_kernels_pages() {
        let mut assembler = KillAssembler::with_page_size(NonZeroU64::new(16384).expect("size"));
        for (seq, message) in [HEADER_142, TASKS_HEADER_6_12, ROW_142, KILLED_142]
            .into_iter()
            .enumerate()
        {
            let record = Record {
                seq: seq as u64,
                usec: 0,
                message,
            };
            if let Some(kill) = assembler.push(&record) {
                assert_eq!(kill.tasks[0].task.rss_bytes, 8322 * 16384);
                return;
            }
        }
        panic!("no kill");
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
        let kill = the_kill_in(&[&damaged]);
        assert_eq!((kill.anon_rss_kb, kill.file_rss_kb), (None, Some(4)));
        assert_eq!(kill.oom_score_adj, Some(0));
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
        for fixture in FIXTURES.map(|fixture| fixture.dump) {
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
