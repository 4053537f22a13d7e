//! The limited cgroup's memory breakdown and biggest processes, read from its files right
//! after the kill, for when the kernel log's report of it was rate-limited away. Only from
//! the cgroup the kernel named: a directory that is gone, or that is another cgroup now (its
//! inode is not the id the kernel read), gives `null`, never another cgroup's numbers.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use oomtrace_core::{
    kernel::cgroups::{CgroupMode, cgroup_dir},
    report::{MemcgStat, TopTask, kernel_text},
};

/// Processes looked at, at most: a cgroup of thousands is still read in milliseconds.
const MAX_PROCESSES: usize = 4096;
/// Levels of sub-cgroups descended into.
const MAX_DEPTH: usize = 16;

/// The process just killed, as the kernel program read it when marking it. The kernel holds
/// its task lock while it prints `Killed process` to the console, and opening anything under
/// its `/proc` entry waits for that lock: 3.5 ms on a serial console, for every kill whose
/// report its rate limit cut. So it is never read from `/proc`.
pub struct Killed {
    pub pid: Option<u32>,
    /// Its RSS at the kill; `None` when the kernel program could not read it, and then the
    /// list of biggest processes is not known either.
    pub as_marked: Option<TopTask>,
    /// Killed with its whole `memory.oom.group`: every member is under its task lock in turn,
    /// so no process is read.
    pub with_group: bool,
}

/// The cgroup's `memory.stat` breakdown and its biggest processes by RSS, if it is still the
/// cgroup `id` names (when known).
pub fn read_after_kill(
    root: &Path,
    mode: CgroupMode,
    path: &str,
    id: Option<u64>,
    killed: &Killed,
) -> (Option<MemcgStat>, Option<Vec<TopTask>>) {
    let dir = cgroup_dir(root, path);
    let same = |dir: &Path| match std::fs::metadata(dir) {
        Ok(meta) => id.is_none_or(|id| meta.ino() == id),
        Err(_) => false,
    };
    if !same(&dir) {
        return (None, None);
    }
    let stat = memory_stat(&dir, mode);
    let tasks = if killed.with_group {
        None
    } else {
        biggest_processes(&dir, killed)
    };
    // Read twice: a cgroup removed and made anew meanwhile is not reported.
    if !same(&dir) {
        return (None, None);
    }
    (stat, tasks)
}

fn memory_stat(dir: &Path, mode: CgroupMode) -> Option<MemcgStat> {
    let text = std::fs::read_to_string(dir.join("memory.stat")).ok()?;
    let read_bytes = |file: &str| {
        std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|v| v.trim().parse().ok())
    };
    match mode {
        CgroupMode::V2 => Some(parse_stat(
            &text,
            ["anon", "file", "kernel", "shmem", "sock"],
        )),
        // v1's hierarchical counters; the kernel and socket memory are files of their own.
        CgroupMode::V1 => {
            let mut stat = parse_stat(&text, ["total_rss", "total_cache", "", "total_shmem", ""]);
            stat.kernel_bytes = read_bytes("memory.kmem.usage_in_bytes");
            stat.sock_bytes = read_bytes("memory.kmem.tcp.usage_in_bytes");
            Some(stat)
        }
        CgroupMode::None => None,
    }
}

/// `keys` names anon, file, kernel, shmem and sock in `memory.stat`; "" for none.
pub fn parse_stat(text: &str, keys: [&str; 5]) -> MemcgStat {
    let value = |key: &str| {
        (!key.is_empty())
            .then(|| {
                text.lines().find_map(|line| {
                    let (k, v) = line.split_once(' ')?;
                    (k == key).then(|| v.trim().parse().ok()).flatten()
                })
            })
            .flatten()
    };
    MemcgStat {
        anon_bytes: value(keys[0]),
        file_bytes: value(keys[1]),
        kernel_bytes: value(keys[2]),
        shmem_bytes: value(keys[3]),
        sock_bytes: value(keys[4]),
    }
}

/// The cgroup's (and its descendants') processes with the most resident memory, the one
/// killed as the kernel program read it.
fn biggest_processes(dir: &Path, killed: &Killed) -> Option<Vec<TopTask>> {
    let mut pids = Vec::new();
    collect_pids(dir, 0, &mut pids);
    if pids.is_empty() {
        return None;
    }
    let mut tasks = Vec::with_capacity(pids.len());
    for pid in pids {
        if Some(pid) == killed.pid {
            tasks.push(killed.as_marked.clone()?);
            continue;
        }
        let read = || {
            let status = std::fs::read(format!("/proc/{pid}/status")).ok()?;
            let comm = std::fs::read(format!("/proc/{pid}/comm")).ok()?;
            task(pid, &status, &comm)
        };
        tasks.extend(read());
    }
    Some(TopTask::biggest(tasks))
}

fn collect_pids(dir: &Path, depth: usize, pids: &mut Vec<u32>) {
    if depth > MAX_DEPTH || pids.len() >= MAX_PROCESSES {
        return;
    }
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(
            procs
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok())
                .filter(|&pid| pid != 0)
                .take(MAX_PROCESSES - pids.len()),
        );
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let children: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    for child in children {
        collect_pids(&child, depth + 1, pids);
    }
}

/// A process with memory of its own, from its `status` and `comm` files as bytes: a name that
/// is not UTF-8 must not drop its process from the list, and `comm` holds the name's exact
/// bytes where `status` escapes some of them.
fn task(pid: u32, status: &[u8], comm: &[u8]) -> Option<TopTask> {
    let rss_bytes = vm_rss(&String::from_utf8_lossy(status))?;
    let (comm, comm_bytes) = kernel_text(comm.strip_suffix(b"\n").unwrap_or(comm));
    (rss_bytes > 0).then_some(TopTask {
        pid,
        comm,
        comm_bytes,
        rss_bytes,
    })
}

/// `VmRSS` in bytes from `/proc/<pid>/status`: 0 for a process without memory of its own (a
/// kernel thread), `None` for what is not a status file.
pub fn vm_rss(status: &str) -> Option<u64> {
    let field = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
            .map(str::trim)
    };
    field("Name")?;
    let rss_kb: u64 = field("VmRSS")
        .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    Some(rss_kb << 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_breakdown_of_either_hierarchy() {
        let v2 = "anon 33427456\nfile 4096\nkernel 126976\nkernel_stack 0\nsock 8192\nshmem 0\nfile_mapped 0\n";
        assert_eq!(
            parse_stat(v2, ["anon", "file", "kernel", "shmem", "sock"]),
            MemcgStat {
                anon_bytes: Some(33_427_456),
                file_bytes: Some(4096),
                kernel_bytes: Some(126_976),
                shmem_bytes: Some(0),
                sock_bytes: Some(8192),
            }
        );
        let v1 = "cache 0\nrss 33255424\nshmem 0\ntotal_cache 12288\ntotal_rss 33255424\ntotal_shmem 4096\n";
        let stat = parse_stat(v1, ["total_rss", "total_cache", "", "total_shmem", ""]);
        assert_eq!(
            (stat.anon_bytes, stat.file_bytes, stat.shmem_bytes),
            (Some(33_255_424), Some(12_288), Some(4096))
        );
        assert_eq!((stat.kernel_bytes, stat.sock_bytes), (None, None));
    }

    #[test]
    fn reads_rss_from_status() {
        let status = "Name:\tpython3\nState:\tS (sleeping)\nVmRSS:\t   31744 kB\n";
        assert_eq!(vm_rss(status), Some(31744 << 10));
        assert_eq!(vm_rss("Name:\tkthreadd\n"), Some(0));
        assert_eq!(vm_rss("garbage"), None);
    }

    #[test]
    fn a_process_whose_name_is_not_utf8_is_listed_with_its_bytes() {
        let status = b"Name:\tEV\xffIL\nVmRSS:\t   2048 kB\n";
        let listed = task(7, status, b"EV\xffIL\n").expect("listed");
        assert_eq!(listed.comm, "EV\u{fffd}IL");
        assert_eq!(listed.comm_bytes.as_deref(), Some(&b"EV\xffIL"[..]));
        assert_eq!(listed.rss_bytes, 2048 << 10);
        let plain = task(8, b"Name:\tsh\nVmRSS:\t4 kB\n", b"sh\n").expect("listed");
        assert_eq!((plain.comm.as_str(), plain.comm_bytes), ("sh", None));
        assert_eq!(
            task(9, b"Name:\tkthreadd\n", b"kthreadd\n"),
            None,
            "no memory"
        );
    }

    /// The killed process is listed as the kernel program read it and never opened in `/proc`;
    /// without its figures the list is not known.
    #[test]
    fn the_killed_process_is_taken_from_the_kernel_not_from_proc() {
        let dir = std::env::temp_dir().join(format!("oomtrace-killed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // This test's own process stands for a process of the cgroup that was not killed.
        let me = std::process::id();
        let victim = u32::MAX - 1;
        std::fs::write(dir.join("cgroup.procs"), format!("{me}\n{victim}\n")).unwrap();
        let as_marked = TopTask {
            pid: victim,
            comm: "hog".into(),
            comm_bytes: None,
            rss_bytes: u64::MAX,
        };
        let killed = |as_marked, with_group| Killed {
            pid: Some(victim),
            as_marked,
            with_group,
        };
        let listed = biggest_processes(&dir, &killed(Some(as_marked.clone()), false)).unwrap();
        assert_eq!(listed[0], as_marked);
        assert!(listed.iter().any(|t| t.pid == me), "{listed:?}");
        assert_eq!(biggest_processes(&dir, &killed(None, false)), None);
        let ino = std::fs::metadata(&dir).unwrap().ino();
        let root = dir.parent().unwrap();
        let name = format!("/{}", dir.file_name().unwrap().to_str().unwrap());
        let (_, tasks) = read_after_kill(
            root,
            CgroupMode::V2,
            &name,
            Some(ino),
            &killed(Some(as_marked), true),
        );
        assert_eq!(tasks, None, "a group's members are all being killed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_cgroup_that_is_gone_or_another_gives_nothing() {
        let dir = std::env::temp_dir().join(format!("oomtrace-memcg-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("cg")).unwrap();
        std::fs::write(
            dir.join("cg/memory.stat"),
            "anon 1\nfile 2\nkernel 3\nshmem 4\nsock 5\n",
        )
        .unwrap();
        let ino = std::fs::metadata(dir.join("cg")).unwrap().ino();
        let killed = Killed {
            pid: None,
            as_marked: None,
            with_group: false,
        };
        let (stat, _) = read_after_kill(&dir, CgroupMode::V2, "/cg", Some(ino), &killed);
        assert_eq!(stat.and_then(|s| s.sock_bytes), Some(5));
        assert_eq!(
            read_after_kill(&dir, CgroupMode::V2, "/cg", Some(ino + 1), &killed),
            (None, None),
            "another cgroup at the same path"
        );
        assert_eq!(
            read_after_kill(&dir, CgroupMode::V2, "/gone", None, &killed),
            (None, None)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
