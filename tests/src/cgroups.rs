//! Real memory cgroups with a limit, in the hierarchy oomtrace itself reads (oomtrace-core's
//! `kernel::cgroups`), removed with everything in them when dropped.

use std::{
    fs, io,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

pub use oomtrace_core::kernel::cgroups::CgroupMode;
use oomtrace_core::kernel::cgroups::host_memory_root;

/// What every cgroup a test or the bench makes is named after: `oomtrace-e2e-TAG-PID`.
const PREFIX: &str = "oomtrace-e2e-";
/// How long removing a cgroup waits for its last tasks to go.
const RMDIR_WAIT: Duration = Duration::from_secs(10);

/// The memory controller's hierarchy as oomtrace sees it on this host: its mode and where it
/// is mounted. Fails the test on a host that has none.
pub fn memory_hierarchy() -> (CgroupMode, PathBuf) {
    let mode = CgroupMode::of_host();
    let root = host_memory_root(mode).unwrap_or_else(|| {
        panic!(
            "this host has no memory cgroup hierarchy ({})",
            mode.describe()
        )
    });
    (mode, root)
}

/// A real memory cgroup with a limit, removed on drop with everything still in it.
pub struct MemCgroup {
    pub mode: CgroupMode,
    pub dir: PathBuf,
    /// The path oomtrace reports: relative to the hierarchy's root.
    pub path: String,
}

impl MemCgroup {
    /// Named `oomtrace-e2e-TAG-PID`. Those of a test run that is no longer running (its PID
    /// gone) are removed first: a run that died left them behind.
    pub fn create(tag: &str, limit_mib: u64) -> Self {
        let (mode, root) = memory_hierarchy();
        remove_stale(&root);
        let name = format!("{PREFIX}{tag}-{}", std::process::id());
        let dir = root.join(&name);
        if mode == CgroupMode::V2 {
            // Children only get a memory.max once the parent delegates the controller.
            let _ = fs::write(root.join("cgroup.subtree_control"), "+memory");
        }
        if dir.exists() {
            let _ = fs::remove_dir(&dir);
        }
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        set_memory_limit(mode, &dir, limit_mib << 20);
        Self {
            mode,
            dir,
            path: format!("/{name}"),
        }
    }

    /// A cgroup named `name` inside this one, with no limit of its own: the parent's limit is
    /// the one its processes hit. Drop it before its parent.
    pub fn child(&self, name: &str) -> Self {
        if self.mode == CgroupMode::V2 {
            self.write("cgroup.subtree_control", "+memory");
        }
        let dir = self.dir.join(name);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Self {
            mode: self.mode,
            dir,
            path: format!("{}/{name}", self.path),
        }
    }

    pub fn write(&self, file: &str, value: &str) {
        let path = self.dir.join(file);
        fs::write(&path, value)
            .unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()));
    }

    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// The kernel's own count of OOM kills in this cgroup: `oom_kill` in `memory.events` on
    /// v2, in `memory.oom_control` on v1.
    pub fn oom_kills(&self) -> u64 {
        let file = if self.mode == CgroupMode::V1 {
            "memory.oom_control"
        } else {
            "memory.events"
        };
        let path = self.dir.join(file);
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        // The same `oom_kill N` line as /proc/vmstat's.
        oomtrace_core::kernel::vmstat::parse_oom_kill(&text)
            .unwrap_or_else(|| panic!("{} has no oom_kill line: {text}", path.display()))
    }

    /// The cgroup's id as the kernel reports it: its directory's inode number.
    pub fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        fs::metadata(&self.dir).expect("cgroup dir").ino()
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        if let Err(e) = remove(&self.dir) {
            eprintln!("could not remove {}: {e}", self.dir.display());
        }
    }
}

/// Sets the memory limit of the cgroup `dir` to `bytes`: `memory.limit_in_bytes` on v1,
/// `memory.max` on v2.
pub fn set_memory_limit(mode: CgroupMode, dir: &Path, bytes: u64) {
    let write = |file: &str, value: &str| {
        let path = dir.join(file);
        fs::write(&path, value)
            .unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()));
    };
    if mode == CgroupMode::V1 {
        write("memory.limit_in_bytes", &bytes.to_string());
    } else {
        write("memory.max", &bytes.to_string());
        // Swap would let a process outlive its limit; v1's limit covers only RAM already.
        // Where the file is absent there is no swap to limit.
        if dir.join("memory.swap.max").exists() {
            write("memory.swap.max", "0");
        }
    }
}

/// A number the memory controller keeps for the cgroup `path` (relative to the hierarchy's
/// root, as oomtrace reports it): `memory.limit_in_bytes`, `memory.failcnt`.
pub fn memory_number(path: &str, file: &str) -> u64 {
    let (_, root) = memory_hierarchy();
    let file = root.join(path.trim_start_matches('/')).join(file);
    let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{} holds no number ({e}): {text:?}", file.display()))
}

/// The cgroups [`MemCgroup::create`] made in runs whose process is gone.
fn remove_stale(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.rsplit('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = remove(&entry.path());
        }
    }
}

/// Removes the cgroup `dir`, its child cgroups first, killing whatever still runs in them.
pub(crate) fn remove(dir: &Path) -> io::Result<()> {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove(&entry.path())?;
            }
        }
    }
    let deadline = Instant::now() + RMDIR_WAIT;
    loop {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: kill has no memory preconditions; the processes are in a test's cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            // rmdir fails while the killed processes are still exiting, and a v1 cgroup offers
            // no notification that it emptied: re-check, within RMDIR_WAIT.
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}
