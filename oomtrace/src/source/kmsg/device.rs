//! The kernel log as a source of reports: the fallback when eBPF cannot be used
//! (`--backend kmsg`), and `oomtrace history`, which lists the kills still in the log buffer.
//!
//! It reports only what the kernel printed, and marks it `"source":"kmsg"`.

use std::{
    fs::File,
    io::{ErrorKind, Read as _},
    os::unix::fs::OpenOptionsExt as _,
};

use oomtrace_core::{
    kernel::cgroups::CgroupMode,
    report::{Cgroup, OomContext, Report, SCHEMA, Trigger, Victim},
    source::kmsg::{KillAssembler, KmsgKill, LogText},
    time::{ClockPair, clock_ns},
};

pub const DEV_KMSG: &str = "/dev/kmsg";

/// A record, continuation lines included, never exceeds this (the kernel's own limit is
/// about 8 KiB); a smaller buffer makes read() fail with EINVAL.
const RECORD_BUFFER: usize = 16 * 1024;

/// The clock `/dev/kmsg` stamps records with (the kernel's `local_clock()`), read against the
/// wall clock. It is not `CLOCK_MONOTONIC`: NTP slews that one and not this, and reading one
/// for the other is how `dmesg -T` drifts. The only exact reading is a record's own stamp, so
/// this logs one debug-level record (`oomtrace[PID]: kernel log clock reference`) and reads
/// its stamp back. Without the right to write to the log, it falls back to `CLOCK_MONOTONIC`
/// and says that times may drift.
pub fn log_clock() -> ClockPair {
    match printk_clock() {
        Ok(clock) => clock,
        Err(why) => {
            crate::say!(
                "cannot read the kernel log's clock ({why}); kernel-log times are converted from CLOCK_MONOTONIC and may be off by the drift dmesg -T shows"
            );
            ClockPair {
                kernel_ns: clock_ns(libc::CLOCK_MONOTONIC),
                realtime: std::time::SystemTime::now(),
            }
        }
    }
}

fn printk_clock() -> Result<ClockPair, String> {
    use std::io::Write as _;
    let mut log = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(DEV_KMSG)
        .map_err(|e| format!("cannot open {DEV_KMSG} for writing: {e}"))?;
    seek_to_end(&log);
    let marker = format!(
        "oomtrace[{}]: kernel log clock reference {}",
        std::process::id(),
        clock_ns(libc::CLOCK_BOOTTIME)
    );
    // Facility user (1), level debug (7): kept off the console, and never taken for a kernel
    // line by a reader.
    let record = format!("<15>{marker}\n");
    let before = std::time::SystemTime::now();
    log.write_all(record.as_bytes())
        .map_err(|e| format!("cannot write to {DEV_KMSG}: {e}"))?;
    let after = std::time::SystemTime::now();
    let mut buffer = record_buffer();
    // Our record is among the next few; anything logged in between is read past.
    for _ in 0..1024 {
        let Read::Record(line) = read_record(&mut log, &mut buffer)? else {
            break;
        };
        if let Ok((record, header)) = oomtrace_core::source::kmsg::parse_record_full(&line)
            && !header.is_kernel()
            && record.message == marker
        {
            let halfway = after.duration_since(before).unwrap_or_default() / 2;
            return Ok(ClockPair {
                kernel_ns: record.usec.saturating_mul(1000),
                realtime: before + halfway,
            });
        }
    }
    Err("the reference record did not come back".into())
}

/// Turns a kill the kernel logged into a report. Only what the log says is filled.
pub fn report_from_kill(kill: &KmsgKill, clock: &ClockPair, cgroups: CgroupMode) -> Report {
    let kib = |v: Option<u64>| v.map(|kb| kb << 10);
    let (comm, comm_bytes) = kill.comm.clone().into_parts();
    let (trigger_comm, trigger_comm_bytes) =
        kill.trigger_comm.clone().map(LogText::into_parts).unzip();
    let (path, path_bytes) = kill.task_memcg.clone().map(LogText::into_parts).unzip();
    Report {
        schema: SCHEMA,
        event: "oom_kill",
        time: clock.wall_time(kill.usec.saturating_mul(1000)),
        boot_ns: None,
        victim: Victim {
            pid: Some(kill.pid),
            comm: Some(comm),
            comm_bytes,
            uid: kill.uid,
            oom_score_adj: kill.oom_score_adj,
            rss_anon_bytes: kib(kill.anon_rss_kb),
            rss_file_bytes: kib(kill.file_rss_kb),
            rss_shmem_bytes: kib(kill.shmem_rss_kb),
            total_vm_bytes: kib(kill.total_vm_kb),
            pgtables_bytes: kib(kill.pgtables_kb),
            ..Victim::default()
        },
        trigger: Trigger {
            comm: trigger_comm,
            comm_bytes: trigger_comm_bytes.flatten(),
            ..Trigger::default()
        },
        cgroup: Cgroup {
            id: None,
            mode: path.as_ref().and_then(|_| cgroups.json_name()),
            path,
            path_bytes: path_bytes.flatten(),
        },
        container: None,
        oom: Some(oom_context(kill)),
        source: "kmsg",
        past: false,
        host: None,
        facts: None,
    }
}

/// The OOM as the log tells it. Its id is the invocation's first line's time on the log's
/// clock, in nanoseconds.
fn oom_context(kill: &KmsgKill) -> OomContext {
    let mut oom = OomContext {
        id: Some(kill.invocation_usec.saturating_mul(1000)),
        // Only killed victims are logged.
        kind: Some("killed"),
        ..OomContext::default()
    };
    kill.tell_oom(&mut oom);
    oom
}

/// Opens `/dev/kmsg` without blocking; one sentence if that is not allowed.
pub fn open() -> Result<File, String> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(DEV_KMSG)
        .map_err(|err| match err.kind() {
            ErrorKind::PermissionDenied => crate::kernel::preflight::kmsg_refusal_here(),
            _ => format!("cannot open {DEV_KMSG}: {err}"),
        })
}

/// Moves past everything already logged, so only new kills are reported.
pub fn seek_to_end(file: &File) {
    use std::os::fd::AsRawFd as _;
    // SAFETY: lseek on our own fd; /dev/kmsg defines SEEK_END as "after the last record".
    unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_END) };
}

/// What one non-blocking read gave.
pub enum Read {
    Record(String),
    /// The reader fell behind and the kernel moved it to the oldest record left; the records
    /// in between are gone (the sequence numbers say how many, see [`Gaps`]).
    Overrun,
    Empty,
}

pub fn read_record(file: &mut File, buffer: &mut [u8]) -> Result<Read, String> {
    match file.read(buffer) {
        Ok(0) => Ok(Read::Empty),
        Ok(n) => Ok(Read::Record(
            String::from_utf8_lossy(&buffer[..n]).into_owned(),
        )),
        Err(err) if err.kind() == ErrorKind::WouldBlock => Ok(Read::Empty),
        Err(err) if err.raw_os_error() == Some(libc::EPIPE) => Ok(Read::Overrun),
        Err(err) if err.kind() == ErrorKind::Interrupted => Ok(Read::Empty),
        Err(err) => Err(format!("cannot read {DEV_KMSG}: {err}")),
    }
}

pub fn record_buffer() -> Vec<u8> {
    vec![0; RECORD_BUFFER]
}

/// Counts the records a reader never saw, from the gaps in their sequence numbers: the kernel
/// numbers every record, and an overrun skips the reader past the ones overwritten.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gaps {
    next_seq: Option<u64>,
    pub lost: u64,
}

impl Gaps {
    /// Notes the record just read.
    pub fn saw(&mut self, line: &str) {
        let Some(seq) = sequence_number(line) else {
            return;
        };
        if let Some(expected) = self.next_seq
            && seq > expected
        {
            self.lost += seq - expected;
        }
        self.next_seq = Some(seq.saturating_add(1));
    }
}

/// The sequence number of a `/dev/kmsg` record (`prio,seq,usec,flags;message`).
fn sequence_number(line: &str) -> Option<u64> {
    let head = &line[..line.find(';')?];
    head.split(',').nth(1)?.parse().ok()
}

/// Every kill still in the kernel's log buffer, oldest first.
/// Returns them with the number of records overwritten while they were being read.
pub fn logged_kills() -> Result<(Vec<KmsgKill>, u64), String> {
    let mut file = open()?;
    let mut buffer = record_buffer();
    let mut assembler = KillAssembler::default();
    let mut kills = Vec::new();
    let mut gaps = Gaps::default();
    loop {
        match read_record(&mut file, &mut buffer)? {
            Read::Record(record) => {
                gaps.saw(&record);
                if let Some(kill) = assembler.push_line(&record) {
                    kills.push(kill);
                }
                kills.extend(std::iter::from_fn(|| assembler.pop()));
            }
            Read::Overrun => {}
            Read::Empty => break,
        }
    }
    kills.extend(assembler.flush());
    Ok((kills, gaps.lost))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oomtrace_core::source::kmsg::kills_in;
    use std::time::{Duration, SystemTime};

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../oomtrace-core/tests/fixtures")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn a_logged_docker_kill_becomes_a_kmsg_report() {
        let kills = kills_in(&fixture("kmsg-host-6.18-cgroup-v1-docker.txt"));
        let docker = kills
            .iter()
            .find(|k| {
                k.task_memcg
                    .as_deref()
                    .is_some_and(|p| p.starts_with("/docker/"))
            })
            .expect("a docker kill in the fixture");
        let clock = ClockPair {
            realtime: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
            kernel_ns: (docker.usec + 2_000_000) * 1000,
        };
        let mut report = report_from_kill(docker, &clock, CgroupMode::V1);
        crate::attribution::enrich::annotate(&mut report, Default::default());
        assert_eq!(report.source, "kmsg");
        assert_eq!(report.victim.pid, Some(docker.pid));
        assert_eq!(report.victim.tid, None, "the log does not say which thread");
        assert_eq!(report.victim.comm.as_deref(), Some(docker.comm.as_str()));
        assert_eq!(
            report.victim.rss_anon_bytes,
            docker.anon_rss_kb.map(|kb| kb * 1024)
        );
        assert_eq!(report.boot_ns, None);
        assert_eq!(report.cgroup.mode, Some("v1"));
        let container = report.container.expect("attributed from task_memcg");
        assert_eq!(container.runtime, "docker");
        assert_eq!(
            format!("/docker/{}", container.id),
            report.cgroup.path.unwrap()
        );
        let oom = report.oom.unwrap();
        assert_eq!(oom.constraint.as_deref(), Some("CONSTRAINT_MEMCG"));
        assert_eq!(oom.global, Some(false));
        assert_eq!(
            report.time,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(999_998)),
            "two seconds before the clock was read"
        );
    }

    #[test]
    fn a_global_oom_has_no_limiting_memcg() {
        let kills = kills_in(&fixture("kmsg-debian-6.12.117-cloud.txt"));
        let global = kills
            .iter()
            .find(|k| k.global)
            .expect("the fixture's global OOM");
        let clock = log_clock();
        let report = report_from_kill(global, &clock, CgroupMode::V2);
        let oom = report.oom.unwrap();
        assert_eq!(oom.global, Some(true));
        assert_eq!(oom.memcg, None);
        assert_eq!(oom.constraint.as_deref(), Some("CONSTRAINT_NONE"));
    }

    /// Issue 16: the kernel log's names reached the report with U+FFFD and no bytes.
    #[test]
    fn a_logged_name_that_is_not_utf8_keeps_its_bytes_in_the_report() {
        let name = r"\x1b[31mEV\xffIL";
        let exact: &[u8] = b"\x1b[31mEV\xffIL";
        let dump = [
            format!("{name} invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0"),
            "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name".into(),
            format!("[    142]     0   142     8469     8322     8160        0       162   110592        0             0 {name}"),
            format!(r"oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/a\xfe,task_memcg=/a\xfe/b,task={name},pid=142,uid=0"),
            format!("Memory cgroup out of memory: Killed process 142 ({name}) total-vm:33876kB, anon-rss:32640kB, file-rss:0kB, shmem-rss:648kB, UID:0 pgtables:108kB oom_score_adj:0"),
        ];
        let records: String = dump
            .iter()
            .enumerate()
            .map(|(i, message)| format!("6,{},{},-;{message}\n", i + 1, (i + 1) * 10))
            .collect();
        let kills = kills_in(&records);
        let clock = ClockPair {
            realtime: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
            kernel_ns: 1_000_000_000,
        };
        let report = report_from_kill(&kills[0], &clock, CgroupMode::V2);
        let oom = report.oom.as_ref().expect("the log's OOM context");
        let tasks = oom.top_tasks.as_deref().expect("the task dump");
        // The field, its string, its bytes, the bytes the log gave.
        type Case<'a> = (&'a str, Option<&'a str>, Option<&'a [u8]>, &'a [u8]);
        let cases: [Case; 5] = [
            (
                "victim.comm",
                report.victim.comm.as_deref(),
                report.victim.comm_bytes.as_deref(),
                exact,
            ),
            (
                "trigger.comm",
                report.trigger.comm.as_deref(),
                report.trigger.comm_bytes.as_deref(),
                exact,
            ),
            (
                "cgroup.path",
                report.cgroup.path.as_deref(),
                report.cgroup.path_bytes.as_deref(),
                b"/a\xfe/b",
            ),
            (
                "oom.memcg",
                oom.memcg.as_deref(),
                oom.memcg_bytes.as_deref(),
                b"/a\xfe",
            ),
            (
                "oom.top_tasks[0].comm",
                Some(tasks[0].comm.as_str()),
                tasks[0].comm_bytes.as_deref(),
                exact,
            ),
        ];
        for (what, text, bytes, want) in cases {
            assert_eq!(bytes, Some(want), "{what}");
            assert_eq!(text, Some(String::from_utf8_lossy(want).as_ref()), "{what}");
        }
    }

    /// The finding behind `Gaps`: an overrun was counted as one lost record, however many the
    /// kernel had overwritten.
    #[test]
    fn lost_records_are_counted_from_sequence_gaps() {
        let mut gaps = Gaps::default();
        for line in [
            "6,100,5,-;a",
            "6,101,6,-;b",
            // An overrun: 102..=149 were overwritten.
            "6,150,7,-;c",
            " SUBSYSTEM=x",
            "6,151,8,-;d",
            "garbage",
        ] {
            gaps.saw(line);
        }
        assert_eq!(gaps.lost, 48);
        assert_eq!(sequence_number("4,7,99,-;x;y"), Some(7));
        assert_eq!(sequence_number("nonsense"), None);
    }
}
