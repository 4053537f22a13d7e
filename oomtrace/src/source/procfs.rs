//! What `/proc` still says about a victim the kernel named only by thread id.
//!
//! Kernels with the old `mark_victim(int pid)` give nothing else. The victim has been sent
//! SIGKILL but stays visible in `/proc` until it is reaped, which is long after the ring
//! buffer hands its record over; what is read here is what does not change while a process
//! dies: its ids, name, uid, oom_score_adj and cgroup. Its memory is being torn down, so RSS
//! is not read.

use crate::kernel::cgroups::CgroupMode;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcInfo {
    pub tgid: Option<u32>,
    /// The thread's name (`Name:`); the process name is the thread group leader's.
    pub thread_comm: Option<String>,
    pub process_comm: Option<String>,
    pub uid: Option<u32>,
    /// The innermost pid namespace's view (last `NSpid:` field).
    pub ns_pid: Option<u32>,
    pub oom_score_adj: Option<i32>,
    pub cgroup_path: Option<String>,
    pub cgroup_id: Option<u64>,
}

/// `Tgid`, `Name`, real `Uid` and innermost `NSpid` from `/proc/<tid>/status`.
pub fn parse_status(status: &str) -> ProcInfo {
    let mut info = ProcInfo::default();
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "Name" => info.thread_comm = Some(value.to_owned()),
            "Tgid" => info.tgid = value.parse().ok(),
            "Uid" => info.uid = value.split_whitespace().next().and_then(|v| v.parse().ok()),
            "NSpid" => info.ns_pid = value.split_whitespace().last().and_then(|v| v.parse().ok()),
            _ => {}
        }
    }
    info
}

/// The memory cgroup's path from `/proc/<pid>/cgroup`: the v1 line that lists `memory`, or the
/// unified `0::` line on v2.
pub fn memory_cgroup_path(proc_cgroup: &str, mode: CgroupMode) -> Option<String> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let wanted = match mode {
            CgroupMode::V1 => controllers.split(',').any(|c| c == "memory"),
            CgroupMode::V2 => id == "0" && controllers.is_empty(),
            CgroupMode::None => false,
        };
        (wanted && path.starts_with('/')).then(|| path.to_owned())
    })
}

/// Reads what `/proc` holds for thread `tid`; fields it cannot read stay `None`.
pub fn resolve(tid: u32, mode: CgroupMode, cgroup_root: Option<&std::path::Path>) -> ProcInfo {
    let dir = format!("/proc/{tid}");
    let read = |file: &str| std::fs::read_to_string(format!("{dir}/{file}")).ok();
    let Some(status) = read("status") else {
        return ProcInfo::default();
    };
    let mut info = parse_status(&status);
    info.oom_score_adj = read("oom_score_adj").and_then(|v| v.trim().parse().ok());
    if let Some(tgid) = info.tgid {
        info.process_comm = std::fs::read_to_string(format!("/proc/{tgid}/comm"))
            .ok()
            .map(|c| c.trim_end_matches('\n').to_owned());
    }
    info.cgroup_path = read("cgroup").and_then(|c| memory_cgroup_path(&c, mode));
    if let (Some(root), Some(path)) = (cgroup_root, &info.cgroup_path) {
        use std::os::unix::fs::MetadataExt as _;
        info.cgroup_id = std::fs::metadata(root.join(path.trim_start_matches('/')))
            .ok()
            .map(|m| m.ino());
    }
    // The status was read first; if the tid now names another process, none of it is trusted.
    match std::fs::read_to_string(format!("{dir}/status")).map(|s| parse_status(&s)) {
        Ok(again) if again.tgid == info.tgid && again.thread_comm == info.thread_comm => info,
        _ => ProcInfo::default(),
    }
}

/// Completes a report whose record carried nothing but a thread id (the old `mark_victim`
/// layout) from `/proc`. Records with more are left alone: their missing fields are ones the
/// kernel could not give, and stay `null`.
pub fn complete_pid_only(
    report: &mut crate::report::Report,
    mode: CgroupMode,
    root: Option<&std::path::Path>,
) {
    let v = &report.victim;
    let Some(tid) = v.tid else { return };
    if v.pid.is_some() || v.thread_comm.is_some() || report.cgroup.path.is_some() {
        return;
    }
    let info = resolve(tid, mode, root);
    let v = &mut report.victim;
    v.pid = info.tgid;
    v.thread_comm = info.thread_comm;
    v.comm = info.process_comm;
    v.uid = v.uid.or(info.uid);
    v.ns_pid = info.ns_pid;
    v.oom_score_adj = v.oom_score_adj.or(info.oom_score_adj);
    if info.cgroup_path.is_some() {
        report.cgroup.path = info.cgroup_path;
        report.cgroup.id = info.cgroup_id;
        report.cgroup.mode = mode.json_name();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ids_name_and_uid_from_status() {
        let status = "Name:\thog-child\nUmask:\t0022\nState:\tR (running)\nTgid:\t4242\nNgid:\t0\nPid:\t4243\nPPid:\t1\nUid:\t1000\t1001\t1001\t1001\nNSpid:\t4243\t7\n";
        let info = parse_status(status);
        assert_eq!(info.thread_comm.as_deref(), Some("hog-child"));
        assert_eq!(
            (info.tgid, info.uid, info.ns_pid),
            (Some(4242), Some(1000), Some(7))
        );
        assert_eq!(parse_status("garbage"), ProcInfo::default());
    }

    #[test]
    fn finds_the_memory_cgroup_line() {
        let hybrid = "12:pids:/\n4:memory:/docker/abc\n1:name=systemd:/x\n0::/\n";
        let unified = "0::/system.slice/docker-abc.scope\n";
        let cases = [
            (hybrid, CgroupMode::V1, Some("/docker/abc")),
            (hybrid, CgroupMode::V2, Some("/")),
            (
                unified,
                CgroupMode::V2,
                Some("/system.slice/docker-abc.scope"),
            ),
            (unified, CgroupMode::V1, None),
            ("3:cpu,memory:/a:b\n", CgroupMode::V1, Some("/a:b")),
            ("", CgroupMode::V2, None),
            (hybrid, CgroupMode::None, None),
        ];
        for (text, mode, want) in cases {
            assert_eq!(
                memory_cgroup_path(text, mode).as_deref(),
                want,
                "{text:?} {mode:?}"
            );
        }
    }

    #[test]
    fn resolves_this_very_process() {
        let me = std::process::id();
        let info = resolve(me, CgroupMode::V1, None);
        assert_eq!(info.tgid, Some(me));
        assert!(info.thread_comm.is_some());
        assert!(resolve(u32::MAX, CgroupMode::V1, None) == ProcInfo::default());
    }
}
