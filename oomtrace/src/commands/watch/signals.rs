//! The signals containers' main processes received, kept until their container's exit asks
//! who ended it: the last few per process, for a bounded number of processes.

use std::collections::{HashMap, VecDeque};

use oomtrace_core::attribution::killer::{SenderContainer, SignalFacts};

use crate::attribution::enrich::Caches;

/// Signals kept per main process: enough for `docker stop`'s SIGTERM and SIGKILL, and a
/// person's or a supervisor's before them.
const PER_PROCESS: usize = 4;
/// Main processes with signals kept. A container's exit takes its main process's; past this
/// the process signalled longest ago loses its own, and they are counted as dropped.
const MAX_PROCESSES: usize = 4096;

#[derive(Debug, Default)]
pub struct SignalBook {
    by_pid: HashMap<u32, VecDeque<SignalFacts>>,
    /// Signals lost to [`MAX_PROCESSES`].
    pub dropped: u64,
}

impl SignalBook {
    /// Keeps a signal to a container's main process (PID 1 of a pid namespace below the
    /// host's), its sender's container named from the runtimes' caches.
    pub fn note(&mut self, mut signal: SignalFacts, caches: Caches) {
        let seen = &signal.seen;
        let to_container_init =
            seen.target_ns_pid == Some(1) && seen.target_pid_level.is_some_and(|l| l > 0);
        let Some(pid) = seen.target_pid.filter(|_| to_container_init) else {
            return;
        };
        signal.sender_container = container_of(seen.sender.cgroup_name.as_deref(), caches);
        if !self.by_pid.contains_key(&pid) && self.by_pid.len() >= MAX_PROCESSES {
            self.evict_oldest();
        }
        let kept = self.by_pid.entry(pid).or_default();
        if kept.len() == PER_PROCESS {
            kept.pop_front();
        }
        kept.push_back(signal);
    }

    /// The signals `pid` received, oldest first, and forgets them: a run ends once.
    pub fn take(&mut self, pid: u32) -> Vec<SignalFacts> {
        self.by_pid.remove(&pid).map(Vec::from).unwrap_or_default()
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .by_pid
            .iter()
            .filter_map(|(pid, kept)| Some((kept.back()?.seen.boot_ns, *pid)))
            .min()
            .map(|(_, pid)| pid);
        if let Some(kept) = oldest.and_then(|pid| self.by_pid.remove(&pid)) {
            self.dropped += kept.len() as u64;
        }
    }
}

/// The container a memory cgroup's kernfs name names, if a runtime knows it.
pub fn container_of(cgroup_name: Option<&str>, caches: Caches) -> Option<SenderContainer> {
    let id = container_id_in(cgroup_name?)?;
    caches.any(id).map(|meta| SenderContainer {
        id: id.to_owned(),
        name: meta.container.name,
    })
}

/// The container id in a cgroup's name: 64 hex digits, alone (`/docker/<id>`, a kubelet's
/// cgroupfs leaf) or inside a scope's name (`docker-<id>.scope`, `cri-containerd-<id>.scope`).
fn container_id_in(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".scope").unwrap_or(name);
    let id = stem.rsplit('-').next()?;
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use oomtrace_core::source::signal::{Origin, SenderSeen, SignalSeen};

    use super::*;

    fn to(pid: u32, ns_pid: u32, boot_ns: u64) -> SignalFacts {
        SignalFacts {
            seen: SignalSeen {
                boot_ns,
                time: Some(SystemTime::UNIX_EPOCH),
                signal: 15,
                origin: Origin::Siginfo { code: None },
                ignored: false,
                target_tid: pid,
                target_pid: Some(pid),
                target_comm: None,
                target_ns_pid: Some(ns_pid),
                target_pid_level: Some(1),
                target_cgroup_id: None,
                target_cgroup_name: None,
                sender: SenderSeen::default(),
                stack: Vec::new(),
            },
            via_cgroup_kill: false,
            sender_container: None,
        }
    }

    fn no_caches() -> Caches<'static> {
        Caches {
            docker: None,
            containerd: None,
        }
    }

    #[test]
    fn only_a_container_s_pid_1_is_kept_and_each_exit_takes_its_own() {
        let mut book = SignalBook::default();
        book.note(to(10, 1, 1), no_caches());
        book.note(to(11, 7, 2), no_caches());
        let mut host = to(12, 1, 3);
        host.seen.target_pid_level = Some(0);
        book.note(host, no_caches());
        for boot_ns in 4..10 {
            book.note(to(10, 1, boot_ns), no_caches());
        }
        let taken = book.take(10);
        assert_eq!(
            taken.iter().map(|s| s.seen.boot_ns).collect::<Vec<_>>(),
            vec![6, 7, 8, 9],
            "the last {PER_PROCESS}, oldest first"
        );
        assert!(book.take(10).is_empty(), "taken once");
        assert!(book.take(11).is_empty(), "not a PID 1");
        assert!(book.take(12).is_empty(), "the host's own PID 1");
        assert_eq!(book.dropped, 0);
    }

    #[test]
    fn a_full_book_drops_the_longest_quiet_and_counts_it() {
        let mut book = SignalBook::default();
        for pid in 0..MAX_PROCESSES as u32 {
            book.note(to(pid + 100, 1, u64::from(pid) + 10), no_caches());
        }
        book.note(to(100, 1, 1_000_000), no_caches());
        book.note(to(99, 1, 1_000_001), no_caches());
        assert_eq!(book.dropped, 1);
        assert!(book.take(101).is_empty(), "signalled longest ago");
        assert_eq!(book.take(100).len(), 2, "signalled again since");
        assert_eq!(book.take(99).len(), 1);
    }

    #[test]
    fn a_container_id_is_read_from_the_cgroup_s_name_only_when_whole() {
        let id = "0123456789abcdef".repeat(4);
        let cases = [
            (id.clone(), Some(id.as_str())),
            (format!("docker-{id}.scope"), Some(id.as_str())),
            (format!("cri-containerd-{id}.scope"), Some(id.as_str())),
            (id[..63].to_owned(), None),
            ("docker.service".to_owned(), None),
            (format!("{id}x"), None),
        ];
        for (name, want) in cases {
            assert_eq!(container_id_in(&name), want, "{name}");
        }
    }
}
