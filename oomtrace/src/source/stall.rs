//! Watches containers' memory cgroups for a stall at the limit with the OOM killer disabled
//! (cgroup v1), the way container runtimes learn of an OOM there: an eventfd registered on
//! `memory.oom_control` through `cgroup.event_control`, which the kernel signals when the
//! cgroup enters the OOM state and when the cgroup is removed. Nothing is read while all is
//! well: only a stall under way is read again, once a second, until it ends.
//!
//! Only cgroups whose OOM killer is disabled are watched: in any other the kernel kills, and
//! the kill is the report.

use std::{
    collections::HashMap,
    fs,
    io::Write as _,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use oomtrace_core::{
    attribution::killer::SenderContainer,
    kernel::cgroups::{CgroupMode, cgroup_dir},
    stall::{OomStall, StallTracker, parse_oom_control},
};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
};

use super::procfs::memory_cgroup_path;

/// How often a stall under way is read again for its end.
const RECHECK: Duration = Duration::from_secs(1);

/// A container to watch: its id, name and the host pid of its PID 1, whose cgroup is its own.
#[derive(Clone, Debug)]
pub struct Watched {
    pub container: SenderContainer,
    pub main_pid: u32,
}

/// The handle the watch keeps: containers go in, stall events come out.
pub struct StallWatch {
    pub containers: mpsc::UnboundedSender<Watched>,
    pub events: mpsc::UnboundedReceiver<OomStall>,
}

/// Starts the watching task, or `None` where there is nothing it can watch (cgroup v2, which
/// has no switch to turn the OOM killer off, or no memory hierarchy).
pub fn start(mode: CgroupMode, root: Option<PathBuf>) -> Option<StallWatch> {
    let root = root.filter(|_| mode == CgroupMode::V1)?;
    let (containers, requests) = mpsc::unbounded_channel();
    let (sender, events) = mpsc::unbounded_channel();
    tokio::spawn(watch(root, mode, requests, sender));
    Some(StallWatch { containers, events })
}

struct Cgroup {
    dir: PathBuf,
    container: SenderContainer,
}

async fn watch(
    root: PathBuf,
    mode: CgroupMode,
    mut requests: mpsc::UnboundedReceiver<Watched>,
    events: mpsc::UnboundedSender<OomStall>,
) {
    let mut cgroups: HashMap<String, Cgroup> = HashMap::new();
    let mut tracker = StallTracker::default();
    let (woken_tx, mut woken) = mpsc::unbounded_channel::<String>();
    loop {
        let recheck = tokio::time::sleep(RECHECK);
        tokio::select! {
            request = requests.recv() => {
                let Some(request) = request else { return };
                if let Some((path, cgroup)) = watchable(&root, mode, request)
                    && !cgroups.contains_key(&path)
                    && let Some(eventfd) = register(&cgroup.dir)
                {
                    tokio::spawn(wake_on(eventfd, path.clone(), cgroup.dir.clone(), woken_tx.clone()));
                    cgroups.insert(path, cgroup);
                }
            }
            Some(path) = woken.recv() => {
                sample(&path, &mut cgroups, &mut tracker, &events);
            }
            () = recheck, if tracker.any() => {
                for path in tracker.cgroups() {
                    sample(&path, &mut cgroups, &mut tracker, &events);
                }
            }
        }
    }
}

/// The container's memory cgroup, if its OOM killer is disabled.
fn watchable(root: &Path, mode: CgroupMode, request: Watched) -> Option<(String, Cgroup)> {
    let proc_cgroup = fs::read_to_string(format!("/proc/{}/cgroup", request.main_pid)).ok()?;
    let path = memory_cgroup_path(&proc_cgroup, mode)?;
    // The pid may have gone and been reused: only a cgroup naming the container is its own.
    if !path.contains(&request.container.id) {
        return None;
    }
    let dir = cgroup_dir(root, &path);
    let control = parse_oom_control(&fs::read_to_string(dir.join("memory.oom_control")).ok()?)?;
    control.oom_kill_disable.then_some((
        path,
        Cgroup {
            dir,
            container: request.container,
        },
    ))
}

/// An eventfd the kernel signals when the cgroup enters the OOM state, or is removed.
fn register(dir: &Path) -> Option<OwnedFd> {
    // SAFETY: eventfd takes no pointers; a valid descriptor is owned from here on.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return None;
    }
    // SAFETY: `raw` is a new descriptor nobody else owns.
    let eventfd = unsafe { OwnedFd::from_raw_fd(raw) };
    let control = fs::File::open(dir.join("memory.oom_control")).ok()?;
    let mut event_control = fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.event_control"))
        .ok()?;
    // One write: the kernel parses each write on its own, and `write!` would make three.
    // It keeps no hold on `memory.oom_control`, so ours may close.
    let line = format!("{} {}", eventfd.as_raw_fd(), control.as_raw_fd());
    event_control.write_all(line.as_bytes()).ok()?;
    Some(eventfd)
}

/// Says `path` each time its eventfd is signalled, until the cgroup is gone (the kernel
/// signals its removal too).
async fn wake_on(
    eventfd: OwnedFd,
    path: String,
    dir: PathBuf,
    woken: mpsc::UnboundedSender<String>,
) {
    // SAFETY: the OwnedFd keeps its descriptor open and unchanged until the AsyncFd, which
    // owns it, is dropped.
    let Ok(eventfd) = (unsafe { AsyncFd::register_with_interest(eventfd, Interest::READABLE) })
    else {
        return;
    };
    loop {
        let Ok(mut guard) = eventfd.readable().await else {
            return;
        };
        let read = guard.try_io(|fd| {
            let mut count = [0u8; 8];
            // SAFETY: reads at most 8 bytes into a buffer of 8.
            let read =
                unsafe { libc::read(fd.get_ref().as_raw_fd(), count.as_mut_ptr().cast(), 8) };
            if read < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
        match read {
            Ok(Ok(())) => {
                if woken.send(path.clone()).is_err() || !dir.exists() {
                    return;
                }
            }
            Ok(Err(_)) => return,
            Err(_would_block) => {}
        }
    }
}

/// Reads the cgroup's state and sends the phase the tracker says to tell.
fn sample(
    path: &str,
    cgroups: &mut HashMap<String, Cgroup>,
    tracker: &mut StallTracker,
    events: &mpsc::UnboundedSender<OomStall>,
) {
    let Some(cgroup) = cgroups.get(path) else {
        return;
    };
    let read = |file: &str| fs::read_to_string(cgroup.dir.join(file)).ok();
    let control = read("memory.oom_control").and_then(|t| parse_oom_control(&t));
    let now = SystemTime::now();
    let number = |file: &str| read(file).and_then(|t| t.trim().parse::<u64>().ok());
    let (usage, limit) = (
        number("memory.usage_in_bytes"),
        number("memory.limit_in_bytes"),
    );
    if let Some((phase, since)) = tracker.sample(path, control, now) {
        let _ = events.send(OomStall {
            schema: oomtrace_core::report::SCHEMA,
            event: "oom_stall",
            time: Some(now),
            phase: phase.label(),
            reason: Some("oom_killer_disabled"),
            since: Some(since),
            seconds: now.duration_since(since).ok().map(|d| d.as_secs_f64()),
            cgroup: path.to_owned(),
            cgroup_mode: Some("v1"),
            container: Some(cgroup.container.clone()),
            usage_bytes: usage,
            limit_bytes: limit,
            host: None,
        });
    }
    if control.is_none() {
        cgroups.remove(path);
    }
}
