//! The signal source: turns a [`SignalSent`] the kernel program wrote into a [`SignalSeen`].
//! Pure: the record and the clock in, what the kernel said of the signal out.

use std::time::SystemTime;

use oomtrace_common::{
    CGROUP_NAME_LEN, SIGNAL_STACK_DEPTH, SignalSent, TASK_COMM_LEN, signal_field, signal_origin,
    signal_result,
};

use crate::{report::kernel_text, time::ClockPair};

/// How the kernel was asked to send the signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `kill(2)` and its kin, with the `si_code` the sender's siginfo carries, where read.
    Siginfo { code: Option<i32> },
    /// The kernel on the sending task's behalf (`SEND_SIG_NOINFO`): a write to `cgroup.kill`
    /// among others; the stack tells which.
    NoInfo,
    /// The kernel's own (`SEND_SIG_PRIV`): the OOM killer's SIGKILL among others.
    Kernel,
}

/// One signal that can end a process, as the kernel program saw it generated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalSeen {
    pub boot_ns: u64,
    pub time: Option<SystemTime>,
    pub signal: u32,
    pub origin: Origin,
    /// The target had no handler and the kernel dropped the signal, as a container's PID 1
    /// does with a SIGTERM it does not handle.
    pub ignored: bool,
    pub target_tid: u32,
    /// The target's process id on the host.
    pub target_pid: Option<u32>,
    pub target_comm: Option<String>,
    /// The target's pid in its own namespace, and that namespace's depth (0: the host's).
    pub target_ns_pid: Option<u32>,
    pub target_pid_level: Option<u32>,
    /// The target's memory cgroup's id and kernfs name.
    pub target_cgroup_id: Option<u64>,
    pub target_cgroup_name: Option<String>,
    pub sender: SenderSeen,
    /// Return addresses, for a signal the kernel sent on the sender's behalf.
    pub stack: Vec<u64>,
}

/// The task that sent it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SenderSeen {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub comm_bytes: Option<Vec<u8>>,
    pub uid: Option<u32>,
    /// How deep its pid namespace is: 0 for a process of the host's.
    pub pid_level: Option<u32>,
    /// Its memory cgroup's id and kernfs name (a container's id is in the name).
    pub cgroup_id: Option<u64>,
    pub cgroup_name: Option<String>,
    pub parent_pid: Option<u32>,
    pub parent_comm: Option<String>,
}

impl SignalSeen {
    /// The signal reached its target: it can have ended it.
    pub fn landed(&self) -> bool {
        !self.ignored
    }
}

/// Reads a [`SignalSent`] out of ring buffer bytes; `None` if there are too few.
pub fn read_signal(bytes: &[u8]) -> Option<SignalSent> {
    if bytes.len() < size_of::<SignalSent>() {
        return None;
    }
    // SAFETY: the length is checked; SignalSent is valid for any bit pattern, and
    // read_unaligned copes with the ring buffer's 8-byte alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<SignalSent>()) })
}

/// The text up to the first NUL.
fn until_nul(raw: &[u8]) -> (String, Option<Vec<u8>>) {
    let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    kernel_text(&raw[..len])
}

/// What the record vouches for, `None` for the rest.
pub fn decode_signal(record: &SignalSent, clock: &ClockPair) -> SignalSeen {
    let has = |bit: u32| record.fields & bit != 0;
    fn vouched<T>(fields: u32, value: T, bit: u32) -> Option<T> {
        (fields & bit != 0).then_some(value)
    }
    let fields = record.fields;
    let origin = match record.origin {
        signal_origin::NOINFO => Origin::NoInfo,
        signal_origin::PRIV => Origin::Kernel,
        _ => Origin::Siginfo {
            code: vouched(fields, record.code, signal_field::CODE),
        },
    };
    let (comm, comm_bytes) = until_nul(&record.sender_comm[..TASK_COMM_LEN]);
    let stack = if has(signal_field::STACK) {
        let frames = (record.stack_bytes as usize / 8).min(SIGNAL_STACK_DEPTH);
        record.stack[..frames].to_vec()
    } else {
        Vec::new()
    };
    SignalSeen {
        boot_ns: record.boot_ns,
        time: clock.wall_time(record.boot_ns),
        signal: record.sig,
        origin,
        ignored: record.result == signal_result::IGNORED,
        target_tid: record.target_tid,
        target_pid: vouched(fields, record.target_tgid, signal_field::TARGET_TGID),
        target_comm: has(signal_field::TARGET_COMM).then(|| until_nul(&record.target_comm).0),
        target_ns_pid: vouched(fields, record.target_ns_pid, signal_field::TARGET_NS),
        target_pid_level: vouched(fields, record.target_pid_level, signal_field::TARGET_NS),
        target_cgroup_id: vouched(
            fields,
            record.target_cgroup_id,
            signal_field::TARGET_CGROUP_ID,
        ),
        target_cgroup_name: has(signal_field::TARGET_CGROUP_NAME)
            .then(|| until_nul(&record.target_cgroup_name[..CGROUP_NAME_LEN]).0),
        sender: SenderSeen {
            pid: record.sender_tgid,
            tid: record.sender_tid,
            comm,
            comm_bytes,
            uid: vouched(fields, record.sender_uid, signal_field::SENDER_UID),
            pid_level: vouched(
                fields,
                record.sender_pid_level,
                signal_field::SENDER_PID_LEVEL,
            ),
            cgroup_id: vouched(
                fields,
                record.sender_cgroup_id,
                signal_field::SENDER_CGROUP_ID,
            ),
            cgroup_name: has(signal_field::SENDER_CGROUP_NAME)
                .then(|| until_nul(&record.sender_cgroup_name[..CGROUP_NAME_LEN]).0),
            parent_pid: vouched(
                fields,
                record.sender_parent_tgid,
                signal_field::SENDER_PARENT,
            ),
            parent_comm: has(signal_field::SENDER_PARENT)
                .then(|| until_nul(&record.sender_parent_comm).0),
        },
        stack,
    }
}

/// The name of a signal number, as `kill -l` prints it with `SIG` before it.
pub fn signal_name(signal: u32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> SignalSent {
        // SAFETY: SignalSent is plain integers and byte arrays.
        let mut record: SignalSent = unsafe { std::mem::zeroed() };
        record.boot_ns = 5_000_000_000;
        record.sig = 9;
        record.origin = signal_origin::SIGINFO;
        record.target_tid = 4100;
        record.target_tgid = 4100;
        record.target_ns_pid = 1;
        record.target_pid_level = 1;
        record.sender_tid = 5001;
        record.sender_tgid = 5000;
        record.sender_comm[..4].copy_from_slice(b"runc");
        record.sender_parent_comm[..15].copy_from_slice(b"containerd-shim");
        record.sender_parent_tgid = 4000;
        record.sender_cgroup_id = 77;
        record.sender_cgroup_name[..6].copy_from_slice(b"docker");
        record.target_comm[..5].copy_from_slice(b"sleep");
        record
    }

    #[test]
    fn only_what_the_fields_vouch_for_is_read() {
        let clock = ClockPair {
            realtime: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10),
            kernel_ns: 10_000_000_000,
        };
        let mut all = record();
        all.fields = signal_field::TARGET_TGID
            | signal_field::TARGET_COMM
            | signal_field::TARGET_NS
            | signal_field::SENDER_UID
            | signal_field::SENDER_PID_LEVEL
            | signal_field::SENDER_CGROUP_ID
            | signal_field::SENDER_CGROUP_NAME
            | signal_field::SENDER_PARENT
            | signal_field::CODE;
        all.code = -6;
        let seen = decode_signal(&all, &clock);
        assert_eq!(seen.origin, Origin::Siginfo { code: Some(-6) });
        assert_eq!(seen.target_pid, Some(4100));
        assert_eq!(seen.target_ns_pid, Some(1));
        assert_eq!(seen.target_comm.as_deref(), Some("sleep"));
        assert_eq!(seen.sender.comm, "runc");
        assert_eq!(seen.sender.pid, 5000);
        assert_eq!(seen.sender.parent_comm.as_deref(), Some("containerd-shim"));
        assert_eq!(seen.sender.cgroup_name.as_deref(), Some("docker"));
        assert_eq!(
            seen.time,
            Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(5))
        );

        let none = decode_signal(&SignalSent { fields: 0, ..all }, &clock);
        assert_eq!(none.origin, Origin::Siginfo { code: None });
        for missing in [
            none.target_pid,
            none.target_ns_pid,
            none.target_pid_level,
            none.sender.uid,
            none.sender.pid_level,
            none.sender.parent_pid,
        ] {
            assert_eq!(missing, None);
        }
        assert_eq!(none.sender.cgroup_id, None);
        assert_eq!(none.sender.cgroup_name, None);
        assert!(none.stack.is_empty());
    }

    #[test]
    fn origin_and_result_are_the_kernel_s() {
        let clock = ClockPair {
            realtime: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10),
            kernel_ns: 10_000_000_000,
        };
        let cases = [
            (
                signal_origin::NOINFO,
                signal_result::DELIVERED,
                Origin::NoInfo,
                false,
            ),
            (
                signal_origin::PRIV,
                signal_result::DELIVERED,
                Origin::Kernel,
                false,
            ),
            (
                signal_origin::SIGINFO,
                signal_result::IGNORED,
                Origin::Siginfo { code: None },
                true,
            ),
        ];
        for (origin, result, want, ignored) in cases {
            let seen = decode_signal(
                &SignalSent {
                    origin,
                    result,
                    ..record()
                },
                &clock,
            );
            assert_eq!((seen.origin, seen.ignored), (want, ignored));
        }
    }

    #[test]
    fn a_stack_is_read_only_as_far_as_it_was_copied() {
        let clock = ClockPair {
            realtime: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10),
            kernel_ns: 10_000_000_000,
        };
        let mut with_stack = record();
        with_stack.fields = signal_field::STACK;
        with_stack.stack = [1, 2, 3, 4, 5, 6, 7, 8];
        with_stack.stack_bytes = 24;
        assert_eq!(decode_signal(&with_stack, &clock).stack, vec![1, 2, 3]);
        with_stack.stack_bytes = 4096;
        assert_eq!(decode_signal(&with_stack, &clock).stack.len(), 8);
    }

    #[test]
    fn a_short_record_is_not_read() {
        assert!(read_signal(&[0; 16]).is_none());
        let bytes = [0u8; size_of::<SignalSent>()];
        assert!(read_signal(&bytes).is_some());
    }
}
