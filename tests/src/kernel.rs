//! What the kernel says and keeps of this process: its own log of OOM kills (`/dev/kmsg`) and
//! that log's rate limit, this process's capabilities and its `oom_score_adj`.

use std::{
    fs,
    io::{self, Read as _},
    os::fd::AsRawFd as _,
    thread,
    time::Duration,
};

/// `/dev/kmsg` from the moment it was opened on: the kernel's own list of the processes its OOM
/// killer killed, independent of anything oomtrace reads.
pub struct KernelLog {
    kmsg: fs::File,
}

impl KernelLog {
    /// Opens the log at its end, so only records written from now on are read.
    pub fn from_now() -> Self {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Non-blocking: a read at the end of the log returns EAGAIN instead of waiting.
        let kmsg = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .unwrap_or_else(|e| panic!("open /dev/kmsg: {e}"));
        // SAFETY: lseek on a file descriptor we own; SEEK_END on /dev/kmsg moves it past the
        // last record.
        let at = unsafe { libc::lseek(kmsg.as_raw_fd(), 0, libc::SEEK_END) };
        assert!(at >= 0, "seek /dev/kmsg: {}", io::Error::last_os_error());
        Self { kmsg }
    }

    /// The pid of each `Killed process <pid>` record since the log was opened or last read,
    /// in order. The kernel writes one for every SIGKILL its OOM killer sends, with the same
    /// count as `/proc/vmstat` (and unlike the OOM report around it, never rate-limited), so a
    /// `memory.oom.group` kill's chosen victim appears twice.
    pub fn killed_pids(&mut self) -> Vec<u32> {
        self.messages()
            .iter()
            .filter_map(|message| {
                message
                    .split_once("Killed process ")
                    .and_then(|(_, rest)| rest.split_once(' '))
                    .and_then(|(pid, _)| pid.parse().ok())
            })
            .collect()
    }

    /// Whether the log, since it was opened or last read, lists process `pid` in an OOM
    /// report's task dump (`[  pid]   uid  tgid total_vm ...`). The kernel prints its reports
    /// at most 10 times in 5 s, so a kill soon after others may have none.
    pub fn dumped_task(&mut self, pid: u32) -> bool {
        self.messages().iter().any(|message| {
            message
                .trim_start()
                .strip_prefix('[')
                .and_then(|rest| rest.split_once(']'))
                .is_some_and(|(dumped, _)| dumped.trim().parse() == Ok(pid))
        })
    }

    /// Every record's message since the log was opened or last read, in order.
    fn messages(&mut self) -> Vec<String> {
        let mut messages = Vec::new();
        // Each read(2) returns exactly one record, which must fit: the kernel's records are at
        // most 8 KiB with their prefix.
        let mut record = vec![0u8; 16 * 1024];
        loop {
            match self.kmsg.read(&mut record) {
                Ok(0) => return messages,
                Ok(n) => {
                    let text = String::from_utf8_lossy(&record[..n]);
                    // `<prio>,<seq>,<usec>,<flags>;<message>`: the message follows the `;`.
                    let message = text.split_once(';').map_or(&*text, |(_, m)| m);
                    messages.push(message.to_string());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return messages,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EPIPE: the ring buffer overwrote records before they were read, so a kill
                // may be missing from the count.
                Err(e) => panic!("read /dev/kmsg: {e}: the kernel's list of kills is incomplete"),
            }
        }
    }
}

/// The capability that lowering an oom_score_adj needs.
pub const CAP_SYS_RESOURCE: u32 = 24;

/// One of this process's capability sets (`CapEff`, `CapBnd`, ...) from `/proc/self/status`.
pub fn capabilities(set: &str) -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(set)?.strip_prefix(':'))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no {set} in /proc/self/status"))
}

/// Sets this process's `oom_score_adj` (which the processes it starts from then on inherit)
/// and puts the old value back on drop.
pub struct OomScoreAdj {
    previous: String,
}

impl OomScoreAdj {
    pub fn set(adj: i32) -> Self {
        const FILE: &str = "/proc/self/oom_score_adj";
        let previous = fs::read_to_string(FILE).unwrap_or_else(|e| panic!("read {FILE}: {e}"));
        fs::write(FILE, adj.to_string()).unwrap_or_else(|e| panic!("write {adj} to {FILE}: {e}"));
        Self {
            previous: previous.trim().to_string(),
        }
    }
}

impl Drop for OomScoreAdj {
    fn drop(&mut self) {
        let _ = fs::write("/proc/self/oom_score_adj", &self.previous);
    }
}

/// The kernel prints an OOM's `oom-kill:` summary (the only line naming the victim's cgroup)
/// at most 10 times per 5 s. Tests that read the kernel log wait out that window first, so
/// the kills they cause are logged in full.
///
/// This sleep is not synchronisation with oomtrace or with anything the tests start: it waits
/// out the kernel's printk rate limit, which is measured in wall-clock time and which nothing
/// outside the kernel can observe or be notified of.
pub fn wait_out_oom_log_ratelimit() {
    thread::sleep(Duration::from_millis(5500));
}
