//! One OOM kill as the kernel log tells it, and what a report takes from it: the kmsg
//! backend's whole report (oomtrace's `source::kmsg::device`), or the OOM an eBPF report's
//! kernel program could not see.

use crate::report::{OomContext, Report, TopTask};

use super::context::{LoggedStats, LoggedTask};
use super::record::LogText;

/// One OOM kill as the kernel log tells it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KmsgKill {
    /// Of the authoritative "Killed process" record (its first piece, if it came in pieces).
    pub seq: u64,
    pub usec: u64,
    pub pid: u32,
    pub comm: LogText,
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
    pub oom_memcg: Option<LogText>,
    /// Victim's memcg path. None for a memory.oom.group member: the log names only the group.
    pub task_memcg: Option<LogText>,
    /// "Out of memory:" / global_oom.
    pub global: bool,
    /// Killed as a member of a memory.oom.group cgroup. The chosen victim itself is reported
    /// once, when its own line comes (before the kernel says a group kill follows), with
    /// `group_kill == false`; its repeat among the group members is dropped.
    pub group_kill: bool,
    /// The cgroup a `memory.oom.group` kill takes whole, from `Tasks in <cgroup> are going to
    /// be killed ...`: for the members only, since the kernel prints it after the chosen
    /// victim's line; `None` where that line was cut.
    pub group_memcg: Option<LogText>,
    /// From `<comm> invoked oom-killer`.
    pub trigger_comm: Option<LogText>,
    /// When the invocation this kill belongs to began (its `invoked oom-killer` header, or
    /// without one its first kill), on the log's clock: the same for every member of a
    /// `memory.oom.group` kill, so it names the invocation.
    pub invocation_usec: u64,
    /// The rest is what the invocation's report printed (see [`super::context`]), read only
    /// after its `invoked oom-killer` header: `None` or empty when the report was
    /// rate-limited. Group members carry their invocation's report. For the OOM cgroup (so
    /// `None` for a global OOM): its usage and limit, and its stats block.
    pub memcg_usage_kb: Option<u64>,
    pub memcg_limit_kb: Option<u64>,
    pub memcg_stat: Option<LoggedStats>,
    /// The task dump's rows in order, at most [`MAX_TASKS`](super::MAX_TASKS), and how many
    /// more it had.
    pub tasks: Vec<LoggedTask>,
    pub tasks_omitted: u32,
}

impl KmsgKill {
    /// What the log printed about the kill's invocation, written over `oom`: all of it but
    /// which invocation it was and whether the victim was killed or only marked, which the
    /// log's lines do not say. The biggest processes only where the log has its task dump.
    pub fn tell_oom(&self, oom: &mut OomContext) {
        oom.constraint = self.constraint.clone();
        (oom.memcg, oom.memcg_bytes) = match self.oom_memcg.clone().map(LogText::into_parts) {
            Some((memcg, bytes)) => (Some(memcg), bytes),
            None => (None, None),
        };
        oom.global = Some(self.global);
        oom.group_kill = Some(self.group_kill);
        (oom.group_memcg, oom.group_memcg_bytes) =
            match self.group_memcg.clone().map(LogText::into_parts) {
                Some((group, bytes)) => (Some(group), bytes),
                None => (None, None),
            };
        oom.memcg_limit_bytes = self.memcg_limit_kb.map(|kb| kb << 10);
        oom.memcg_usage_bytes = self.memcg_usage_kb.map(|kb| kb << 10);
        oom.memcg_stat = self.memcg_stat.as_ref().map(|logged| logged.stat.clone());
        if !self.tasks.is_empty() {
            let tasks = self.tasks.iter().map(|logged| logged.task.clone());
            oom.top_tasks = Some(TopTask::biggest(tasks.collect()));
        }
    }

    /// Completes a report of this same kill from another source (the kernel program's): the
    /// OOM as the log tells it, and the victim's cgroup where the report has none.
    pub fn complete(&self, report: &mut Report) {
        self.tell_oom(report.oom.get_or_insert_with(OomContext::default));
        if report.cgroup.path.is_none()
            && let Some(task_memcg) = &self.task_memcg
        {
            let (path, bytes) = task_memcg.clone().into_parts();
            report.cgroup.path = Some(path);
            report.cgroup.path_bytes = bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oom_takes_the_group_as_the_log_names_it() {
        let member = KmsgKill {
            group_kill: true,
            oom_memcg: Some(LogText::from_bytes(b"/p\xffd".to_vec())),
            group_memcg: Some(LogText::from_bytes(b"/p\xffd/c1".to_vec())),
            ..KmsgKill::default()
        };
        let mut oom = OomContext {
            group_memcg: Some("/stale".into()),
            ..OomContext::default()
        };
        member.tell_oom(&mut oom);
        assert_eq!(oom.group_kill, Some(true));
        assert_eq!(oom.group_memcg.as_deref(), Some("/p\u{fffd}d/c1"));
        assert_eq!(oom.group_memcg_bytes.as_deref(), Some(&b"/p\xffd/c1"[..]));

        // The chosen victim's line comes before the log names the group: not known from it.
        let chosen = KmsgKill {
            oom_memcg: Some("/pod".into()),
            ..KmsgKill::default()
        };
        chosen.tell_oom(&mut oom);
        assert_eq!((oom.group_memcg, oom.group_memcg_bytes), (None, None));
        assert_eq!(oom.group_kill, Some(false));
    }
}
