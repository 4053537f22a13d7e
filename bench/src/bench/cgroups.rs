//! Real memory cgroups with a 32 MiB limit each (the end-to-end tests' `MemCgroup`), and the
//! hogs (theirs too) the kernel OOM-kills in them. The cgroups are removed when the bench ends,
//! and any left by a bench that died are removed when the next one starts.

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use oomtrace_tests::{Hog, MemCgroup};

use super::sys;

pub const LIMIT_MIB: u64 = 32;
/// Twice the limit: every hog is killed well before it is done.
const HOG_MIB: &str = "64";

pub struct Cgroups {
    cgroups: Vec<MemCgroup>,
}

impl Cgroups {
    /// `count` fresh memory cgroups, each limited to [`LIMIT_MIB`].
    pub fn create(count: usize) -> Self {
        Self {
            cgroups: (0..count)
                .map(|i| MemCgroup::create(&format!("bench-{i}"), LIMIT_MIB))
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.cgroups.len()
    }

    pub fn get(&self, i: usize) -> &MemCgroup {
        &self.cgroups[i % self.cgroups.len()]
    }
}

/// Starts hogs in the cgroups.
pub struct Hogs<'a> {
    pub hog: &'a Path,
    pub cgroups: &'a Cgroups,
}

/// How a hog ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HogEnd {
    Killed,
    /// Anything else: not killed (exit 3), could not join (exit 2)...
    Other(String),
}

impl Hogs<'_> {
    /// Starts a hog in cgroup `i` and returns once it has joined it: it allocates until the
    /// kernel kills it. Its stdin is closed, so one the kernel spares ends by itself (exit 3).
    pub fn start(&self, i: usize) -> Hog {
        let mut hog = Hog::start(self.hog, self.cgroups.get(i), &["--mib", HOG_MIB]);
        hog.let_go();
        hog
    }

    /// Waits for a hog started by [`Self::start`] to end.
    pub fn end(hog: &mut Hog) -> HogEnd {
        let status = hog.wait();
        if status.signal() == Some(sys::SIGKILL) {
            return HogEnd::Killed;
        }
        HogEnd::Other(match status.code() {
            Some(3) => "exited 3: touched all its memory without being killed".into(),
            Some(2) => "exited 2: could not join its cgroup".into(),
            _ => format!("ended with {status}"),
        })
    }

    /// Keeps one hog running in every cgroup, each started as soon as the last one there was
    /// killed, until `until` says stop. Returns the pids the kernel killed.
    pub fn drive(&self, until: Until) -> Result<Driven> {
        let started = Instant::now();
        let tickets = AtomicUsize::new(0);
        let killed = Mutex::new(Vec::new());
        let other = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for i in 0..self.cgroups.len() {
                let (tickets, killed, other) = (&tickets, &killed, &other);
                scope.spawn(move || {
                    loop {
                        let go = match until {
                            Until::Count(n) => tickets.fetch_add(1, Ordering::Relaxed) < n,
                            Until::Deadline(at) => Instant::now() < at,
                        };
                        if !go {
                            return;
                        }
                        let mut hog = self.start(i);
                        match Self::end(&mut hog) {
                            HogEnd::Killed => lock(killed).push(hog.pid()),
                            HogEnd::Other(why) => lock(other).push((hog.pid(), why)),
                        }
                    }
                });
            }
        });
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
