//! Which kills the kernel logged a whole OOM report for, read from `/dev/kmsg` by the bench
//! itself: the kernel rate-limits its reports (10 per 5 s), so "every field filled" means
//! filled for each kill whose report the kernel wrote, and no tool's word is taken for which.

use std::{
    collections::HashSet,
    fs::{File, OpenOptions},
    io::{ErrorKind, Read as _, Seek as _, SeekFrom},
    os::unix::fs::OpenOptionsExt as _,
};

use anyhow::{Context as _, Result};

pub struct KernelLog {
    file: File,
    /// Records the kernel overwrote before they were read: kills among them are not known.
    pub overruns: u64,
}

impl KernelLog {
    /// Follows the log from now on.
    pub fn open() -> Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .context("the bench reads /dev/kmsg to know which kills the kernel reported")?;
        file.seek(SeekFrom::End(0))
            .context("cannot seek to the end of /dev/kmsg")?;
        Ok(Self { file, overruns: 0 })
    }

    /// The victims of every OOM report logged since the last call: the pids its
    /// `oom-kill:constraint=…,pid=N,…` summary names, which the kernel prints only in a report
    /// its rate limit let through.
    pub fn reported_victims(&mut self) -> Result<HashSet<u32>> {
        let mut victims = HashSet::new();
        let mut record = vec![0u8; 8192];
        loop {
            match self.file.read(&mut record) {
                Ok(0) => break,
                Ok(n) => victims.extend(victim_of(&String::from_utf8_lossy(&record[..n]))),
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) if err.raw_os_error() == Some(libc::EPIPE) => self.overruns += 1,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Err(err).context("cannot read /dev/kmsg"),
            }
        }
        Ok(victims)
    }
}

/// The victim a record's `oom-kill:` summary names: its last `pid=`, since the task's name
/// before it may hold anything.
fn victim_of(record: &str) -> Option<u32> {
    let (_, text) = record.split_once(';')?;
    let summary = text.strip_prefix("oom-kill:")?;
    summary
        .trim_end()
        .rsplit(',')
        .find_map(|field| field.strip_prefix("pid="))
        .and_then(|pid| pid.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_victim_of_a_summary_only() {
        let summary = "6,1452,11124315234,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/oomtrace-bench-1-0,task_memcg=/oomtrace-bench-1-0,task=hog,pid=4242,uid=0\n";
        assert_eq!(victim_of(summary), Some(4242));
        let odd_name = "6,1,1,-;oom-kill:constraint=CONSTRAINT_MEMCG,task=a,pid=1,pid=77,uid=0";
        assert_eq!(victim_of(odd_name), Some(77));
        let killed = "3,1453,11124315300,-;Memory cgroup out of memory: Killed process 4242 (hog) total-vm:70000kB\n";
        assert_eq!(victim_of(killed), None);
        assert_eq!(
            victim_of("6,1,1,-;oom-kill:constraint=CONSTRAINT_NONE"),
            None
        );
    }
}
