//! Real memory cgroups with a 32 MiB limit each, and the hogs the kernel OOM-kills in them.
//! The cgroups are removed when the bench ends, and any left by a bench that died are removed
//! when the next one starts.

use std::fs;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::procs::{Supervisor, Watched};
use super::sys;

const V1_ROOT: &str = "/sys/fs/cgroup/memory";
const V2_ROOT: &str = "/sys/fs/cgroup";
const PREFIX: &str = "oomtrace-bench-";
pub const LIMIT_BYTES: u64 = 32 << 20;
/// Twice the limit: every hog is killed well before it is done.
const HOG_MIB: &str = "64";
/// No hog lives this long unless something is wrong; the watchdog then ends it.
const HOG_LIMIT: Duration = Duration::from_secs(30);
/// How long removing a cgroup waits for its last tasks to go.
const RMDIR_WAIT: Duration = Duration::from_secs(10);

pub struct Cgroups {
    dirs: Vec<PathBuf>,
}

impl Cgroups {
    /// `count` fresh memory cgroups, each limited to [`LIMIT_BYTES`].
    pub fn create(count: usize) -> Result<Self> {
        let (root, limit_file) = hierarchy()?;
        remove_stale(&root);
        let mut cgroups = Self { dirs: Vec::new() };
        for i in 0..count {
            let dir = root.join(format!("{PREFIX}{}-{i}", std::process::id()));
            fs::create_dir(&dir)
                .with_context(|| format!("could not create the cgroup {}", dir.display()))?;
            cgroups.dirs.push(dir.clone());
            let limit = dir.join(limit_file);
            fs::write(&limit, LIMIT_BYTES.to_string())
                .with_context(|| format!("could not write {}", limit.display()))?;
            // On v2 swap would let a hog outlive its limit; v1's limit already covers only RAM,
            // and this host has no swap. Where the file is absent there is no swap to limit.
            let swap = dir.join("memory.swap.max");
            if swap.exists() {
                fs::write(&swap, "0")
                    .with_context(|| format!("could not write {}", swap.display()))?;
            }
        }
        Ok(cgroups)
    }

    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    pub fn procs(&self, i: usize) -> PathBuf {
        self.dirs[i % self.dirs.len()].join("cgroup.procs")
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for dir in &self.dirs {
            if let Err(err) = remove(dir) {
                crate::cmd::progress(format_args!("{err:#}"));
            }
        }
    }
}

/// The memory hierarchy's root and the file that sets a limit in it.
fn hierarchy() -> Result<(PathBuf, &'static str)> {
    if Path::new(V1_ROOT).join("memory.limit_in_bytes").exists() {
        return Ok((V1_ROOT.into(), "memory.limit_in_bytes"));
    }
    let controllers =
        fs::read_to_string(Path::new(V2_ROOT).join("cgroup.subtree_control")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "memory") {
        return Ok((V2_ROOT.into(), "memory.max"));
    }
    bail!(
        "no memory cgroup hierarchy to make OOM kills in: neither {V1_ROOT} (v1) nor the memory \
         controller in {V2_ROOT}/cgroup.subtree_control (v2)"
    )
}

/// Cgroups left by a bench that is no longer running.
fn remove_stale(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = remove(&entry.path());
        }
    }
}

/// Kills what is left in `dir`, then removes it once its tasks have gone.
fn remove(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + RMDIR_WAIT;
    loop {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            sys::signal(pid, sys::SIGKILL);
        }
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) if Instant::now() >= deadline => {
                return Err(err)
                    .with_context(|| format!("could not remove the cgroup {}", dir.display()));
            }
            // A killed task leaves the cgroup only once it has exited: a short pause, then the
            // same check again, within RMDIR_WAIT.
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Starts hogs in the cgroups.
pub struct Hogs<'a> {
    pub supervisor: &'a Supervisor,
    pub hog: &'a Path,
    pub cgroups: &'a Cgroups,
}

/// How a hog ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HogEnd {
    Killed,
    /// Anything else: not killed (exit 3), could not join (exit 2), never reaped...
    Other(String),
}

impl Hogs<'_> {
    /// Starts a hog in cgroup `i` and returns at once: it joins the cgroup itself and
    /// allocates until the kernel kills it.
    pub fn start(&self, i: usize) -> Result<Watched> {
        let spawned = self.supervisor.spawn(
            Command::new(self.hog)
                .arg("--procs")
                .arg(self.cgroups.procs(i))
                .args(["--mib", HOG_MIB])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            HOG_LIMIT,
            "a hog",
        )?;
        Ok(spawned.child)
    }

    /// Waits for a hog started by [`Self::start`] to end.
    pub fn end(hog: &mut Watched) -> HogEnd {
        match hog.wait(HOG_LIMIT + Duration::from_secs(5)) {
            Some(status) if status.signal() == Some(sys::SIGKILL) => HogEnd::Killed,
            Some(status) => HogEnd::Other(match status.code() {
                Some(3) => "exited 3: touched all its memory without being killed".into(),
                Some(2) => "exited 2: could not join its cgroup".into(),
                _ => format!("ended with {status}"),
            }),
            None => HogEnd::Other("never ended".into()),
        }
    }

    /// Keeps one hog running in every cgroup, each started as soon as the last one there was
    /// killed, until `until` says stop. Returns the pids the kernel killed.
    pub fn drive(&self, until: Until) -> Result<Driven> {
        let started = Instant::now();
        let tickets = AtomicUsize::new(0);
        let killed = Mutex::new(Vec::new());
        let other = Mutex::new(Vec::new());
        let failure = Mutex::new(None);
        std::thread::scope(|scope| {
            for i in 0..self.cgroups.len() {
                let (tickets, killed, other, failure) = (&tickets, &killed, &other, &failure);
                scope.spawn(move || {
                    loop {
                        let go = match until {
                            Until::Count(n) => tickets.fetch_add(1, Ordering::Relaxed) < n,
                            Until::Deadline(at) => Instant::now() < at,
                        };
                        if !go || lock(failure).is_some() {
                            return;
                        }
                        let mut hog = match self.start(i) {
                            Ok(hog) => hog,
                            Err(err) => {
                                *lock(failure) = Some(err);
                                return;
                            }
                        };
                        match Self::end(&mut hog) {
                            HogEnd::Killed => lock(killed).push(hog.pid),
                            HogEnd::Other(why) => lock(other).push((hog.pid, why)),
                        }
                    }
                });
            }
        });
        if let Some(err) = lock(&failure).take() {
            return Err(err);
        }
        let other = other.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some((pid, why)) = other.first() {
            bail!(
                "{} hogs were not OOM-killed (the first, pid {pid}, {why})",
                other.len()
            );
        }
        Ok(Driven {
            killed: killed.into_inner().unwrap_or_else(|e| e.into_inner()),
            elapsed: started.elapsed(),
        })
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Until {
    /// This many hogs in all.
    Count(usize),
    /// Start no hog after this.
    Deadline(Instant),
}

pub struct Driven {
    pub killed: Vec<u32>,
    pub elapsed: Duration,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
