//! What `/proc` still says about a victim the kernel named only by thread id.
//!
//! The classic tracepoint gives a thread id and what its record carries; kernels with the old
//! `mark_victim(int pid)` give only the thread id. The victim has been sent SIGKILL but stays
//! visible in `/proc` until it is reaped, so its process id, names, uid, oom_score_adj and
//! cgroup can still be read there. Its memory is being torn down, so RSS is not.
//!
//! Whatever is read must be right or absent:
//! - the thread must be the one the kernel killed: it started no later than the kill (to the
//!   clock tick), and it has the name the kernel gave, where it gave one. A thread id reused
//!   within the tick of the kill would need the kernel to hand out every other pid (at least
//!   `pid_max`, 32,768) in those 10 ms;
//! - everything is read between two readings of the thread's `stat`, which must agree;
//! - on cgroup v1 an exiting task shows `/` in `/proc/<pid>/cgroup` whatever its cgroup was,
//!   so a `/` read from a task that is exiting is not reported (v2 keeps the real path, with
//!   ` (deleted)` once the cgroup is removed);
//! - `/proc` must be the host's: oomtrace in a pid namespace of its own would read other
//!   processes under the kernel's pids, and in a cgroup namespace of its own, paths relative to
//!   its own cgroup. [`host_view_problem`] says so, and nothing is read.

use std::path::Path;

use oomtrace_core::{kernel::cgroups::CgroupMode, report::Report};

/// `PF_EXITING` in `/proc/<pid>/stat`'s flags: the task has begun to exit.
const PF_EXITING: u32 = 0x4;
/// The inode numbers of the initial namespaces (`PROC_*_INIT_INO`), a fixed kernel ABI.
const INIT_PID_NS: &str = "pid:[4026531836]";
const INIT_CGROUP_NS: &str = "cgroup:[4026531835]";

/// The fields of `/proc/<pid>/stat` this module needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub flags: u32,
    /// Start time in clock ticks after boot (`CLOCK_BOOTTIME`).
    pub start_ticks: u64,
}

/// Parses `/proc/<pid>/stat`. The name in parentheses may hold spaces and parentheses, so
/// the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let after_name = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name; flags is field 9, starttime field 22.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    Some(Stat {
        flags: fields.get(9 - 3)?.parse().ok()?,
        start_ticks: fields.get(22 - 3)?.parse().ok()?,
    })
}

/// `Tgid`, `Name`, real `Uid` and innermost `NSpid` from `/proc/<tid>/status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub tgid: Option<u32>,
    pub name: Option<String>,
    pub uid: Option<u32>,
    pub ns_pid: Option<u32>,
}

pub fn parse_status(status: &str) -> Status {
    let mut out = Status::default();
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "Name" => out.name = Some(unescape_status_name(value)),
            "Tgid" => out.tgid = value.parse().ok(),
            "Uid" => out.uid = value.split_whitespace().next().and_then(|v| v.parse().ok()),
            "NSpid" => out.ns_pid = value.split_whitespace().last().and_then(|v| v.parse().ok()),
            _ => {}
        }
    }
    out
}

/// `/proc/<pid>/status` escapes `\` as `\\` and a newline as `\n` in `Name:`.
fn unescape_status_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// The memory cgroup's path as `/proc/<pid>/cgroup` prints it: the v1 line that lists
/// `memory`, or the unified `0::` line on v2. Not yet checked: see [`trusted_cgroup_path`].
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

/// The path read from `/proc/<pid>/cgroup`, if it names the cgroup the task was in.
/// `exiting` is whether the task was exiting when its `stat` was read, after the path.
pub fn trusted_cgroup_path(read: &str, mode: CgroupMode, exiting: bool) -> Option<String> {
    match mode {
        // v2 keeps showing an exiting task's cgroup, marked once the cgroup is removed.
        CgroupMode::V2 => Some(read.strip_suffix(" (deleted)").unwrap_or(read).to_owned()),
        // v1 shows `/` for any exiting task. A path other than `/` was read before the exit
        // began, so it is the real one; `/` is only the real one if the task was not exiting
        // even after it was read.
        CgroupMode::V1 => (read != "/" || !exiting).then(|| read.to_owned()),
        CgroupMode::None => None,
    }
}

/// Whether a thread that started at `start_ticks` can be the one killed at `kill_boot_ns`: it
/// must have started no later than the kill. `/proc` rounds the start down to the tick, so a
/// thread started within the kill's tick passes; see the module docs for why that is safe.
pub fn started_by(start_ticks: u64, ticks_per_second: u64, kill_boot_ns: u64) -> bool {
    let start_ns = u128::from(start_ticks) * 1_000_000_000 / u128::from(ticks_per_second.max(1));
    start_ns <= u128::from(kill_boot_ns)
}

/// What `/proc` holds for the killed thread, each field `None` unless it could be trusted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcInfo {
    pub tgid: Option<u32>,
    pub thread_comm: Option<String>,
    pub process_comm: Option<String>,
    pub uid: Option<u32>,
    pub ns_pid: Option<u32>,
    pub oom_score_adj: Option<i32>,
    pub cgroup_path: Option<String>,
    pub cgroup_id: Option<u64>,
}

/// What the kernel said about the victim, which `/proc` must agree with.
#[derive(Clone, Copy, Debug)]
pub struct Killed<'a> {
    pub tid: u32,
    /// `CLOCK_BOOTTIME` of the kill.
    pub boot_ns: u64,
    /// The thread's name, if the kernel gave it.
    pub thread_comm: Option<&'a str>,
}

/// Reads what `/proc` holds for the killed thread.
pub fn resolve(killed: Killed<'_>, mode: CgroupMode, cgroup_root: Option<&Path>) -> ProcInfo {
    resolve_in(
        Path::new("/proc"),
        killed,
        mode,
        cgroup_root,
        ticks_per_second(),
    )
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

fn resolve_in(
    proc_root: &Path,
    killed: Killed<'_>,
    mode: CgroupMode,
    cgroup_root: Option<&Path>,
    ticks_per_second: u64,
) -> ProcInfo {
    let dir = proc_root.join(killed.tid.to_string());
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).ok();
    let Some(before) = read("stat").as_deref().and_then(parse_stat) else {
        return ProcInfo::default();
    };
    if !started_by(before.start_ticks, ticks_per_second, killed.boot_ns) {
        return ProcInfo::default();
    }
    let status = read("status")
        .as_deref()
        .map(parse_status)
        .unwrap_or_default();
    if status.name.is_none()
        || killed
            .thread_comm
            .is_some_and(|c| status.name.as_deref() != Some(c))
    {
        return ProcInfo::default();
    }
    let oom_score_adj = read("oom_score_adj").and_then(|v| v.trim().parse().ok());
    let cgroup_read = read("cgroup").and_then(|c| memory_cgroup_path(&c, mode));
    let process_comm = status.tgid.and_then(|tgid| {
        let leader = proc_root.join(tgid.to_string());
        let leader_stat = std::fs::read_to_string(leader.join("stat")).ok();
        let leader_started = leader_stat
            .as_deref()
            .and_then(parse_stat)
            .is_some_and(|s| started_by(s.start_ticks, ticks_per_second, killed.boot_ns));
        let comm = std::fs::read_to_string(leader.join("comm")).ok()?;
        leader_started.then(|| comm.strip_suffix('\n').unwrap_or(&comm).to_owned())
    });
    // The second reading closes the window: same thread, and whether it was exiting after
    // the cgroup was read.
    let Some(after) = read("stat").as_deref().and_then(parse_stat) else {
        return ProcInfo::default();
    };
    if after.start_ticks != before.start_ticks {
        return ProcInfo::default();
    }
    let exiting = after.flags & PF_EXITING != 0;
    let cgroup_path = cgroup_read.and_then(|read| trusted_cgroup_path(&read, mode, exiting));
    let cgroup_id = match (cgroup_root, &cgroup_path) {
        (Some(root), Some(path)) => {
            use std::os::unix::fs::MetadataExt as _;
            std::fs::metadata(oomtrace_core::kernel::cgroups::cgroup_dir(root, path))
                .ok()
                .map(|m| m.ino())
        }
        _ => None,
    };
    ProcInfo {
        tgid: status.tgid,
        thread_comm: status.name,
        process_comm,
        uid: status.uid,
        ns_pid: status.ns_pid,
        oom_score_adj,
        cgroup_path,
        cgroup_id,
    }
}

/// Why this process's `/proc` does not show the host's pids and cgroup paths, if it does not.
pub fn host_view_problem() -> Option<String> {
    let link = |path: &str| {
        std::fs::read_link(path)
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    };
    host_view_problem_from(
        link("/proc/self/ns/pid").as_deref(),
        link("/proc/self/ns/cgroup").as_deref(),
        link("/proc/self").as_deref(),
        std::process::id(),
    )
}

/// Pure form of [`host_view_problem`], from the links it reads.
pub fn host_view_problem_from(
    pid_ns: Option<&str>,
    cgroup_ns: Option<&str>,
    proc_self: Option<&str>,
    pid: u32,
) -> Option<String> {
    if pid_ns.is_some_and(|ns| ns != INIT_PID_NS) {
        return Some(
            "oomtrace runs in a pid namespace of its own, so /proc shows other processes than the kernel's pids name: run it in the host's (docker run --pid=host)".into(),
        );
    }
    if proc_self.is_some_and(|p| p != pid.to_string()) {
        return Some(
            "/proc is not this pid namespace's procfs, so it shows other processes than the kernel's pids name: mount the host's /proc".into(),
        );
    }
    if cgroup_ns.is_some_and(|ns| ns != INIT_CGROUP_NS) {
        return Some(
            "oomtrace runs in a cgroup namespace of its own, so /proc shows cgroup paths relative to its own cgroup: run it in the host's (docker run --cgroupns=host)".into(),
        );
    }
    None
}

/// Completes a report from `/proc` where the kernel gave a thread id but no process id: the
/// classic tracepoint, and the old `mark_victim(int pid)`. Only fields the kernel did not give
/// are filled; a cgroup is taken only if the report has none.
pub fn complete(report: &mut Report, mode: CgroupMode, root: Option<&Path>) {
    let v = &report.victim;
    let (Some(tid), None, Some(boot_ns)) = (v.tid, v.pid, report.boot_ns) else {
        return;
    };
    let killed = Killed {
        tid,
        boot_ns,
        thread_comm: v.thread_comm.as_deref(),
    };
    let info = resolve(killed, mode, root);
    fill(report, info, mode);
}

fn fill(report: &mut Report, info: ProcInfo, mode: CgroupMode) {
    let v = &mut report.victim;
    v.pid = info.tgid;
    v.thread_comm = v.thread_comm.take().or(info.thread_comm);
    v.comm = v.comm.take().or(info.process_comm);
    v.uid = v.uid.or(info.uid);
    v.ns_pid = v.ns_pid.or(info.ns_pid);
    v.oom_score_adj = v.oom_score_adj.or(info.oom_score_adj);
    if report.cgroup.path.is_none() && info.cgroup_path.is_some() {
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
        assert_eq!(info.name.as_deref(), Some("hog-child"));
        assert_eq!(
            (info.tgid, info.uid, info.ns_pid),
            (Some(4242), Some(1000), Some(7))
        );
        assert_eq!(parse_status("garbage"), Status::default());
        assert_eq!(
            parse_status("Name:\ta\\\\b\\nc\n").name.as_deref(),
            Some("a\\b\nc")
        );
    }

    #[test]
    fn reads_flags_and_start_time_past_any_name() {
        let cases = [
            (
                "4242 (hog) R 1 4242 4242 0 -1 4194560 100 0 0 0 5 1 0 0 20 0 1 0 123456 1000 10",
                Some((4_194_560, 123_456)),
            ),
            (
                "7 (a) b) (c) S 1 7 7 0 -1 4194372 0 0 0 0 0 0 0 0 20 0 1 0 99 1 1",
                Some((4_194_372, 99)),
            ),
            ("7 (short) S 1", None),
            ("no parenthesis", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_stat(text).map(|s| (s.flags, s.start_ticks)),
                want,
                "{text}"
            );
        }
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

    /// The finding behind this table: on cgroup v1 a dying victim read `/`, and oomtrace
    /// reported the root cgroup for a task that lived in a child.
    #[test]
    fn a_cgroup_read_from_an_exiting_task_is_trusted_only_where_the_kernel_keeps_it() {
        let cases = [
            // (read, mode, exiting after the read, reported)
            (
                "/oomtrace-e2e-x",
                CgroupMode::V1,
                true,
                Some("/oomtrace-e2e-x"),
            ),
            (
                "/oomtrace-e2e-x",
                CgroupMode::V1,
                false,
                Some("/oomtrace-e2e-x"),
            ),
            ("/", CgroupMode::V1, true, None),
            ("/", CgroupMode::V1, false, Some("/")),
            ("/kubepods/x", CgroupMode::V2, true, Some("/kubepods/x")),
            ("/gone (deleted)", CgroupMode::V2, true, Some("/gone")),
            ("/", CgroupMode::V2, true, Some("/")),
            ("/x", CgroupMode::None, false, None),
        ];
        for (read, mode, exiting, want) in cases {
            assert_eq!(
                trusted_cgroup_path(read, mode, exiting).as_deref(),
                want,
                "{read} {mode:?} exiting={exiting}"
            );
        }
    }

    #[test]
    fn a_thread_started_after_the_kill_is_not_the_victim() {
        // 100 ticks a second: tick 500 is 5 s after boot.
        let cases = [
            (500, 5_000_000_000, true),
            (499, 5_000_000_000, true),
            (500, 5_009_999_999, true),
            (501, 5_000_000_000, false),
            (0, 0, true),
            (u64::MAX, u64::MAX, false),
        ];
        for (start, kill, want) in cases {
            assert_eq!(started_by(start, 100, kill), want, "{start} {kill}");
        }
    }

    #[test]
    fn namespaces_of_its_own_are_named() {
        let me = 4242;
        let host = (Some(INIT_PID_NS), Some(INIT_CGROUP_NS), Some("4242"));
        let cases = [
            (host, None),
            (
                (Some("pid:[4026532200]"), host.1, Some("7")),
                Some("pid namespace of its own"),
            ),
            (
                (host.0, host.1, Some("7")),
                Some("not this pid namespace's procfs"),
            ),
            (
                (host.0, Some("cgroup:[4026532201]"), host.2),
                Some("cgroup namespace of its own"),
            ),
            // No /proc links to read (not Linux procfs): nothing to object to.
            ((None, None, None), None),
        ];
        for ((pid_ns, cgroup_ns, proc_self), want) in cases {
            let got = host_view_problem_from(pid_ns, cgroup_ns, proc_self, me);
            match want {
                None => assert_eq!(got, None),
                Some(part) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(part)),
                    "{got:?} should say {part}"
                ),
            }
        }
    }

    /// A fake /proc: `stat` is read twice, so `stats` holds both readings.
    struct FakeProc(tempdir::Dir);

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    impl FakeProc {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("oomtrace-procfs-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(tempdir::Dir(dir))
        }

        fn task(&self, pid: u32, files: &[(&str, &str)]) {
            let dir = self.0.0.join(pid.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            for (name, body) in files {
                std::fs::write(dir.join(name), body).unwrap();
            }
        }
    }

    fn stat(name: &str, flags: u32, start: u64) -> String {
        format!("4242 ({name}) R 1 4242 4242 0 -1 {flags} 0 0 0 0 0 0 0 0 20 0 1 0 {start} 1 1")
    }

    #[test]
    fn reads_a_victim_whose_thread_is_still_there() {
        let proc = FakeProc::new("victim");
        proc.task(
            4242,
            &[
                ("stat", &stat("hog", PF_EXITING, 100)),
                (
                    "status",
                    "Name:\thog\nTgid:\t4242\nUid:\t0\t0\t0\t0\nNSpid:\t4242\t1\n",
                ),
                ("comm", "hog\n"),
                ("oom_score_adj", "500\n"),
                ("cgroup", "4:memory:/docker/abc\n0::/\n"),
            ],
        );
        let killed = Killed {
            tid: 4242,
            boot_ns: 2_000_000_000,
            thread_comm: Some("hog"),
        };
        let info = resolve_in(&proc.0.0, killed, CgroupMode::V1, None, 100);
        assert_eq!(info.tgid, Some(4242));
        assert_eq!(info.process_comm.as_deref(), Some("hog"));
        assert_eq!(info.ns_pid, Some(1));
        assert_eq!(info.oom_score_adj, Some(500));
        assert_eq!(info.cgroup_path.as_deref(), Some("/docker/abc"));

        // Started after the kill: a reused thread id, nothing of it is the victim's.
        let later = Killed {
            boot_ns: 900_000_000,
            ..killed
        };
        assert_eq!(
            resolve_in(&proc.0.0, later, CgroupMode::V1, None, 100),
            ProcInfo::default()
        );
        // Another name than the kernel gave: not the victim either.
        let renamed = Killed {
            thread_comm: Some("bash"),
            ..killed
        };
        assert_eq!(
            resolve_in(&proc.0.0, renamed, CgroupMode::V1, None, 100),
            ProcInfo::default()
        );
    }

    #[test]
    fn an_exiting_victim_on_v1_has_no_cgroup_but_keeps_its_ids() {
        let proc = FakeProc::new("exiting");
        proc.task(
            4242,
            &[
                ("stat", &stat("hog", PF_EXITING, 100)),
                (
                    "status",
                    "Name:\thog\nTgid:\t4242\nUid:\t0\t0\t0\t0\nNSpid:\t4242\n",
                ),
                ("comm", "hog\n"),
                ("cgroup", "4:memory:/\n"),
            ],
        );
        let killed = Killed {
            tid: 4242,
            boot_ns: 2_000_000_000,
            thread_comm: None,
        };
        let info = resolve_in(&proc.0.0, killed, CgroupMode::V1, None, 100);
        assert_eq!(info.tgid, Some(4242));
        assert_eq!(
            info.cgroup_path, None,
            "`/` from a dying task is not its cgroup"
        );
    }

    #[test]
    fn resolves_this_very_thread() {
        let me = std::process::id();
        let killed = Killed {
            tid: me,
            boot_ns: oomtrace_core::time::clock_ns(libc::CLOCK_BOOTTIME),
            thread_comm: None,
        };
        let info = resolve(killed, CgroupMode::of_host(), None);
        assert_eq!(info.tgid, Some(me));
        assert!(info.thread_comm.is_some());
        let gone = Killed {
            tid: u32::MAX,
            ..killed
        };
        assert_eq!(resolve(gone, CgroupMode::V1, None), ProcInfo::default());
    }
}
