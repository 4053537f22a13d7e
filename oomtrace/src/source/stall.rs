//! Watches memory cgroups for a stall at the limit (see `oomtrace_core::stall`): containers'
//! cgroups as the runtimes start them, and those given with `--stall-cgroup`. Nothing is read
//! while all is well; the kernel says when to look:
//!
//! - cgroup v1: an eventfd registered on `memory.oom_control` through `cgroup.event_control`,
//!   as the container runtimes learn of an OOM, which the kernel signals when the cgroup
//!   enters the OOM state and when the cgroup is removed. A container is watched only if its
//!   OOM killer is off: in any other the kernel kills, and the kill is the report.
//! - cgroup v2: inotify on `memory.events`, which the kernel marks modified as its counters
//!   move. A container is watched only if it has a `memory.high` or `memory.max`.
//!
//! Once woken, a cgroup is read once a second until it is quiet again and not stalled.

use std::{
    collections::{HashMap, HashSet},
    fs,
    io::Write as _,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use oomtrace_core::{
    attribution::killer::SenderContainer,
    kernel::cgroups::{CgroupMode, cgroup_dir},
    stall::{OomStall, StallTracker, Told, parse_memory_events, parse_oom_control},
};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
};

use super::procfs::memory_cgroup_path;

/// How often a woken cgroup is read.
const READ_EVERY: Duration = Duration::from_secs(1);

/// What to watch: a container by its id, name and the host pid of its PID 1 (whose cgroup is
/// its own), or a cgroup the operator named.
#[derive(Clone, Debug)]
pub enum Watched {
    Container {
        container: SenderContainer,
        main_pid: u32,
    },
    Cgroup(String),
}

/// The handle the watch keeps: what to watch goes in, stall events come out.
pub struct StallWatch {
    pub watch: mpsc::UnboundedSender<Watched>,
    pub events: mpsc::UnboundedReceiver<OomStall>,
}

/// Starts the watching task, or `None` without a memory hierarchy.
pub fn start(mode: CgroupMode, root: Option<PathBuf>) -> Option<StallWatch> {
    let root = root.filter(|_| matches!(mode, CgroupMode::V1 | CgroupMode::V2))?;
    let (watch, requests) = mpsc::unbounded_channel();
    let (sender, events) = mpsc::unbounded_channel();
    tokio::spawn(run(root, mode, requests, sender));
    Some(StallWatch { watch, events })
}

/// Why `--stall-cgroup PATH` cannot be watched, if it cannot.
pub fn check_cgroup(mode: CgroupMode, root: Option<&Path>, path: &str) -> Result<(), String> {
    let root = root.ok_or("no memory cgroup hierarchy is mounted")?;
    let file = match mode {
        CgroupMode::V1 => "memory.oom_control",
        _ => "memory.events",
    };
    let dir = cgroup_dir(root, path);
    if dir.join(file).is_file() {
        Ok(())
    } else {
        Err(format!(
            "{path} is not a memory cgroup: there is no {}",
            dir.join(file).display()
        ))
    }
}

struct Cgroup {
    dir: PathBuf,
    container: Option<SenderContainer>,
}

async fn run(
    root: PathBuf,
    mode: CgroupMode,
    mut requests: mpsc::UnboundedReceiver<Watched>,
    events: mpsc::UnboundedSender<OomStall>,
) {
    let mut cgroups: HashMap<String, Cgroup> = HashMap::new();
    let mut tracker = StallTracker::default();
    let (woken_tx, mut woken) = mpsc::unbounded_channel::<String>();
    let mut inotify = (mode == CgroupMode::V2)
        .then(|| Inotify::new(woken_tx.clone()))
        .flatten();
    // Cgroups woken since they were last read, or pressing: read at the next reading, whose
    // time is kept, not restarted by each wake-up (v2's come up to every 10 ms).
    let mut to_read: HashSet<String> = HashSet::new();
    let mut next_reading: Option<tokio::time::Instant> = None;
    loop {
        if next_reading.is_none() && (tracker.any() || !to_read.is_empty()) {
            next_reading = Some(tokio::time::Instant::now() + READ_EVERY);
        }
        let reading = next_reading.unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            request = requests.recv() => {
                let Some(request) = request else { return };
                let Some((path, cgroup)) = watchable(&root, mode, request) else { continue };
                if cgroups.contains_key(&path) {
                    continue;
                }
                let registered = match (&mut inotify, mode) {
                    (Some(inotify), CgroupMode::V2) => inotify.add(&cgroup.dir, &path),
                    _ => register_v1(&cgroup.dir)
                        .map(|eventfd| {
                            tokio::spawn(wake_on(eventfd, path.clone(), cgroup.dir.clone(), woken_tx.clone()));
                        })
                        .is_some(),
                };
                if registered {
                    cgroups.insert(path.clone(), cgroup);
                    // It may have stalled before the watch began: the kernel tells only
                    // what happens after, so its state now is read at once.
                    match mode {
                        CgroupMode::V1 => sample(&path, mode, &mut cgroups, &mut tracker, &events),
                        _ => {
                            to_read.insert(path);
                        }
                    }
                }
            }
            Some(path) = woken.recv() => {
                if mode == CgroupMode::V1 {
                    sample(&path, mode, &mut cgroups, &mut tracker, &events);
                } else {
                    to_read.insert(path);
                }
            }
            () = tokio::time::sleep_until(reading), if next_reading.is_some() => {
                next_reading = None;
                let mut paths: HashSet<String> = std::mem::take(&mut to_read);
                paths.extend(tracker.cgroups());
                for path in paths {
                    sample(&path, mode, &mut cgroups, &mut tracker, &events);
                    if mode == CgroupMode::V2 && tracker.pressing(&path) {
                        to_read.insert(path);
                    }
                }
            }
        }
    }
}

/// The cgroup to watch and its path, if it is one to watch.
fn watchable(root: &Path, mode: CgroupMode, request: Watched) -> Option<(String, Cgroup)> {
    let (path, container) = match request {
        Watched::Cgroup(path) => {
            let dir = cgroup_dir(root, &path);
            return Some((
                path,
                Cgroup {
                    dir,
                    container: None,
                },
            ));
        }
        Watched::Container {
            container,
            main_pid,
        } => {
            let proc_cgroup = fs::read_to_string(format!("/proc/{main_pid}/cgroup")).ok()?;
            let path = memory_cgroup_path(&proc_cgroup, mode)?;
            // The pid may have gone and been reused: only a cgroup naming the container is
            // its own.
            (path.contains(&container.id)).then_some((path, container))?
        }
    };
    let dir = cgroup_dir(root, &path);
    let read = |file: &str| fs::read_to_string(dir.join(file)).ok();
    let limited = match mode {
        CgroupMode::V1 => parse_oom_control(&read("memory.oom_control")?)?.oom_kill_disable,
        _ => ["memory.high", "memory.max"]
            .iter()
            .any(|file| read(file).is_some_and(|v| v.trim() != "max")),
    };
    limited.then_some((
        path,
        Cgroup {
            dir,
            container: Some(container),
        },
    ))
}

/// An eventfd the kernel signals when a v1 cgroup enters the OOM state, or is removed.
fn register_v1(dir: &Path) -> Option<OwnedFd> {
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
        match guard.try_io(|fd| read_some(fd.get_ref())) {
            Ok(Ok(_)) => {
                if woken.send(path.clone()).is_err() || !dir.exists() {
                    return;
                }
            }
            Ok(Err(_)) => return,
            Err(_would_block) => {}
        }
    }
}

/// One `read(2)` into `buffer`'s worth, as an io::Result.
fn read_some(fd: &OwnedFd) -> std::io::Result<Vec<u8>> {
    let mut buffer = vec![0u8; 4096];
    // SAFETY: reads at most the buffer's length into it.
    let read = unsafe { libc::read(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
    if read < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buffer.truncate(read as usize);
    Ok(buffer)
}

/// One inotify instance for every v2 cgroup's `memory.events`.
struct Inotify {
    fd: std::sync::Arc<AsyncFd<OwnedFd>>,
    paths: std::sync::Arc<std::sync::Mutex<HashMap<i32, String>>>,
}

impl Inotify {
    fn new(woken: mpsc::UnboundedSender<String>) -> Option<Self> {
        // SAFETY: no pointers; a valid descriptor is owned from here on.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return None;
        }
        // SAFETY: `raw` is a new descriptor nobody else owns; the AsyncFd owns it from here.
        let fd = unsafe {
            AsyncFd::register_with_interest(OwnedFd::from_raw_fd(raw), Interest::READABLE)
        }
        .ok()?;
        let inotify = Self {
            fd: std::sync::Arc::new(fd),
            paths: Default::default(),
        };
        tokio::spawn(inotify_events(
            std::sync::Arc::clone(&inotify.fd),
            std::sync::Arc::clone(&inotify.paths),
            woken,
        ));
        Some(inotify)
    }

    fn add(&mut self, dir: &Path, path: &str) -> bool {
        let Ok(file) = std::ffi::CString::new(
            dir.join("memory.events")
                .into_os_string()
                .into_encoded_bytes(),
        ) else {
            return false;
        };
        // SAFETY: a NUL-terminated path; the descriptor is the instance's own.
        let wd = unsafe {
            libc::inotify_add_watch(
                self.fd.get_ref().as_raw_fd(),
                file.as_ptr(),
                libc::IN_MODIFY,
            )
        };
        if wd < 0 {
            return false;
        }
        if let Ok(mut paths) = self.paths.lock() {
            paths.insert(wd, path.to_owned());
        }
        true
    }
}

/// Says the path of each cgroup whose `memory.events` the kernel marked modified.
async fn inotify_events(
    fd: std::sync::Arc<AsyncFd<OwnedFd>>,
    paths: std::sync::Arc<std::sync::Mutex<HashMap<i32, String>>>,
    woken: mpsc::UnboundedSender<String>,
) {
    loop {
        let Ok(mut guard) = fd.readable().await else {
            return;
        };
        let bytes = match guard.try_io(|fd| read_some(fd.get_ref())) {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => return,
            Err(_would_block) => continue,
        };
        // struct inotify_event: wd (i32), mask, cookie, len (u32 each), then `len` name bytes.
        let mut at = 0;
        while at + 16 <= bytes.len() {
            let word = |i: usize| {
                u32::from_ne_bytes(bytes[at + i..at + i + 4].try_into().unwrap_or_default())
            };
            let (wd, mask, len) = (word(0) as i32, word(4), word(12) as usize);
            let path = paths.lock().ok().and_then(|mut paths| {
                if mask & libc::IN_IGNORED != 0 {
                    paths.remove(&wd)
                } else {
                    paths.get(&wd).cloned()
                }
            });
            if let Some(path) = path
                && woken.send(path).is_err()
            {
                return;
            }
            at += 16 + len;
        }
    }
}

/// Reads the cgroup's state and sends the phase the tracker says to tell.
fn sample(
    path: &str,
    mode: CgroupMode,
    cgroups: &mut HashMap<String, Cgroup>,
    tracker: &mut StallTracker,
    events: &mpsc::UnboundedSender<OomStall>,
) {
    let Some(cgroup) = cgroups.get(path) else {
        return;
    };
    let read = |file: &str| fs::read_to_string(cgroup.dir.join(file)).ok();
    let number = |file: &str| read(file).and_then(|t| t.trim().parse::<u64>().ok());
    let now = SystemTime::now();
    let (told, gone, usage, limit): (Option<Told>, bool, _, _) = match mode {
        CgroupMode::V1 => {
            let control = read("memory.oom_control").and_then(|t| parse_oom_control(&t));
            (
                tracker.sample(path, control, now),
                control.is_none(),
                number("memory.usage_in_bytes"),
                number("memory.limit_in_bytes"),
            )
        }
        _ => {
            let counters = read("memory.events").and_then(|t| parse_memory_events(&t));
            let told = tracker.sample_events(path, counters, now);
            let limit_file = match told {
                Some((_, _, "memory_max")) => "memory.max",
                _ => "memory.high",
            };
            (
                told,
                counters.is_none(),
                number("memory.current"),
                number(limit_file),
            )
        }
    };
    if let Some((phase, since, reason)) = told {
        let _ = events.send(OomStall {
            schema: oomtrace_core::report::SCHEMA,
            event: "oom_stall",
            time: Some(now),
            phase: phase.label(),
            reason: Some(reason),
            since: Some(since),
            seconds: now.duration_since(since).ok().map(|d| d.as_secs_f64()),
            cgroup: path.to_owned(),
            cgroup_mode: mode.json_name(),
            container: cgroup.container.clone(),
            usage_bytes: usage,
            limit_bytes: limit,
            host: None,
        });
    }
    if gone {
        cgroups.remove(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v2 watch over a directory of plain files: `memory.events` written as the kernel
    /// would move it, a rising `high` count, then none. inotify tells a write to a plain file
    /// as it tells the kernel's own mark.
    #[tokio::test]
    async fn a_v2_cgroup_whose_high_count_keeps_rising_is_told_held_then_freed() {
        let root = std::env::temp_dir().join(format!("oomtrace-stall-{}", std::process::id()));
        let dir = root.join("held");
        fs::create_dir_all(&dir).unwrap();
        let events_file = dir.join("memory.events");
        let write = move |high: u64| {
            fs::write(
                &events_file,
                format!("low 0\nhigh {high}\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n"),
            )
            .unwrap();
        };
        write(0);
        fs::write(dir.join("memory.current"), "16777216\n").unwrap();
        fs::write(dir.join("memory.high"), "16777216\n").unwrap();
        let mut watch = start(CgroupMode::V2, Some(root.clone())).expect("a watch");
        watch.watch.send(Watched::Cgroup("/held".into())).unwrap();
        let writer = {
            let write = write.clone();
            tokio::spawn(async move {
                for high in 1..=60u64 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    write(high * 10);
                }
            })
        };
        let started = tokio::time::timeout(Duration::from_secs(20), watch.events.recv())
            .await
            .expect("told within 20 s")
            .expect("an event");
        assert_eq!(started.phase, "started");
        assert_eq!(started.reason, Some("memory_high"));
        assert_eq!(started.limit_bytes, Some(16 << 20));
        writer.await.unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(20), watch.events.recv())
            .await
            .expect("told within 20 s")
            .expect("an event");
        assert_eq!(ended.phase, "ended");
        let _ = fs::remove_dir_all(&root);
    }
}
