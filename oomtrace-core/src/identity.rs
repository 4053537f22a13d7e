//! What makes two records one event, so that the journal holds each kill and exit once however
//! many watches write it, and readers count each once whatever an older journal holds.
//!
//! - A kill the kernel program saw is one victim task marked at one moment of one boot: the
//!   boot's id, the tid and the mark's `boot_ns`. Each watch's kernel program reads the clock
//!   itself, one after the other as the tracepoint runs them, so two watches' `boot_ns` of one
//!   mark differ by microseconds: they match within [`SAME_MARK`]. The kernel marks a task
//!   once (a marked victim stops the next OOM from choosing), and thread ids are handed out in
//!   a cycle through `pid_max`, so no tid is a victim twice within that.
//! - A kill known only from the kernel log has neither: it is the boot's id, the log's own
//!   timestamp of the OOM invocation that killed it (`oom.id`) and the pid the log names.
//! - A container exit is the container's id and its exit time, as the runtime gave it.
//!
//! A record that lacks its boot's id (written before oomtrace recorded it) matches a record
//! of any boot with the same moment: a nanosecond and a thread id do not recur by chance.

use std::{
    collections::{HashMap, VecDeque},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::report::{ContainerExit, Report};

/// How far apart two reports of one kill from different clocks may be: the kernel log's
/// clock and the wall clock agree to within milliseconds; a process id is not reused that fast.
pub const SAME_KILL: std::time::Duration = std::time::Duration::from_secs(2);
/// How far apart two watches' readings of one mark may be: the handlers of one tracepoint run
/// back to back, microseconds apart (milliseconds under emulation).
pub const SAME_MARK: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Moment {
    /// The kernel program's mark: `boot_ns` and the victim's thread id.
    Mark { boot_ns: u64, tid: u32 },
    /// A kill from the kernel log: the invocation's log time (`oom.id`) and the victim's pid.
    Logged { oom_id: u64, pid: u32 },
    /// A container's exit: its id and the exit time in microseconds since the epoch.
    Exit { container: String, micros: i128 },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventId {
    pub boot_id: Option<String>,
    pub moment: Moment,
}

impl EventId {
    /// A kill's identity; `None` where its report lacks what would tell it apart.
    pub fn of_kill(report: &Report) -> Option<Self> {
        let victim = &report.victim;
        let moment = match report.boot_ns {
            Some(boot_ns) => Moment::Mark {
                boot_ns,
                tid: victim.tid.or(victim.pid)?,
            },
            None => Moment::Logged {
                oom_id: report.oom.as_ref()?.id?,
                pid: victim.pid?,
            },
        };
        Some(Self {
            boot_id: report.host.as_ref().and_then(|h| h.boot_id.clone()),
            moment,
        })
    }

    /// An exit's identity; `None` without its time.
    pub fn of_exit(exit: &ContainerExit) -> Option<Self> {
        Some(Self {
            boot_id: exit.host.as_ref().and_then(|h| h.boot_id.clone()),
            moment: Moment::Exit {
                container: exit.container.id.clone(),
                micros: micros(exit.time?),
            },
        })
    }

    /// The identity of one journal line; `None` for a line that is not an event of ours, or
    /// lacks what would tell it apart.
    pub fn of_line(line: &[u8]) -> Option<Self> {
        let value: Value = serde_json::from_slice(line).ok()?;
        match value.get("event")?.as_str()? {
            "oom_kill" => Self::of_kill(&serde_json::from_value(value).ok()?),
            "container_exit" => Self::of_exit(&serde_json::from_value(value).ok()?),
            _ => None,
        }
    }

    /// One event: the same moment, in the same boot as far as both records say.
    pub fn same(&self, other: &Self) -> bool {
        let same_boot = match (&self.boot_id, &other.boot_id) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        let same_moment = match (&self.moment, &other.moment) {
            (Moment::Mark { boot_ns: a, tid: x }, Moment::Mark { boot_ns: b, tid: y }) => {
                x == y && u128::from(a.abs_diff(*b)) <= SAME_MARK.as_nanos()
            }
            (a, b) => a == b,
        };
        same_boot && same_moment
    }

    /// What two records of one event share exactly, to find candidates by.
    fn key(&self) -> Key {
        match &self.moment {
            Moment::Mark { tid, .. } => Key::Task(*tid),
            Moment::Logged { pid, .. } => Key::Task(*pid),
            Moment::Exit { container, micros } => Key::Exit(container.clone(), *micros),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Task(u32),
    Exit(String, i128),
}

fn micros(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_micros() as i128,
        Err(before) => -(before.duration().as_micros() as i128),
    }
}

/// The identities met most recently, at most `capacity` of them: enough to hold every event
/// that two watches running side by side can both see.
#[derive(Debug)]
pub struct Recent {
    by_key: HashMap<Key, Vec<EventId>>,
    order: VecDeque<Key>,
    capacity: usize,
}

impl Recent {
    pub fn new(capacity: usize) -> Self {
        Self {
            by_key: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Remembers `id`; false if it was already there.
    pub fn insert(&mut self, id: EventId) -> bool {
        if self.contains(&id) {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
            && let Some(ids) = self.by_key.get_mut(&oldest)
        {
            ids.remove(0);
            if ids.is_empty() {
                self.by_key.remove(&oldest);
            }
        }
        let key = id.key();
        self.by_key.entry(key.clone()).or_default().push(id);
        self.order.push_back(key);
        true
    }

    pub fn contains(&self, id: &EventId) -> bool {
        self.by_key
            .get(&id.key())
            .is_some_and(|ids| ids.iter().any(|known| known.same(id)))
    }
}

/// Whether two kills seen through different clocks (a journal report and a kernel log line,
/// or two reports of which one is the log's) are one: the log names the victim by its thread
/// id, which is the pid of a single-threaded process, and both happened within [`SAME_KILL`].
pub fn same_kill(report: &Report, logged: &Report) -> bool {
    let pid = logged.victim.pid;
    let same_victim = pid.is_some() && (report.victim.tid == pid || report.victim.pid == pid);
    let close = match (report.time, logged.time) {
        (Some(a), Some(b)) => a.duration_since(b).unwrap_or_else(|e| e.duration()) <= SAME_KILL,
        _ => false,
    };
    same_victim && close
}

/// One report per kill from the journal's records, oldest first: records of one identity are
/// merged, the fuller one winning; a record only the log could give (a replay of an older
/// version journaled it) folds into the kernel program's record of the same kill.
pub fn dedupe_kills(records: Vec<Report>) -> Vec<Report> {
    let mut kept: Vec<(Option<EventId>, Report)> = Vec::with_capacity(records.len());
    let mut by_key: HashMap<Key, Vec<usize>> = HashMap::new();
    let mut by_victim: HashMap<u32, Vec<usize>> = HashMap::new();
    for mut record in records {
        // Whether a watch replayed it is no fact about the kill.
        record.past = false;
        let id = EventId::of_kill(&record);
        let exact = id.as_ref().and_then(|id| {
            let candidates = by_key.get(&id.key())?;
            candidates
                .iter()
                .copied()
                .find(|&at| kept[at].0.as_ref().is_some_and(|k| k.same(id)))
        });
        let twin = exact.or_else(|| {
            let pid = record.victim.pid?;
            by_victim.get(&pid)?.iter().copied().find(|&at| {
                let (known, report) = &kept[at];
                match (is_mark(known), is_mark(&id)) {
                    (true, false) => same_kill(report, &record),
                    (false, true) => same_kill(&record, report),
                    _ => false,
                }
            })
        });
        let at = match twin {
            Some(at) => {
                let (known, report) = kept[at].clone();
                // The kernel program's identity is the finer one.
                let id = if is_mark(&id) { id } else { known };
                kept[at] = (id, fuller_kill(report, record));
                at
            }
            None => {
                kept.push((id, record));
                kept.len() - 1
            }
        };
        let (id, report) = &kept[at];
        if let Some(id) = id {
            let slot = by_key.entry(id.key()).or_default();
            if !slot.contains(&at) {
                slot.push(at);
            }
        }
        for victim in [report.victim.pid, report.victim.tid].into_iter().flatten() {
            let slot = by_victim.entry(victim).or_default();
            if !slot.contains(&at) {
                slot.push(at);
            }
        }
    }
    let mut kills: Vec<Report> = kept.into_iter().map(|(_, r)| r).collect();
    kills.sort_by_key(|r| r.time);
    kills
}

fn is_mark(id: &Option<EventId>) -> bool {
    matches!(
        id,
        Some(EventId {
            moment: Moment::Mark { .. },
            ..
        })
    )
}

/// One record per container exit, the fuller winning; oldest first.
pub fn dedupe_exits(records: Vec<ContainerExit>) -> Vec<ContainerExit> {
    let mut kept: Vec<(Option<EventId>, ContainerExit)> = Vec::with_capacity(records.len());
    let mut by_key: HashMap<Key, Vec<usize>> = HashMap::new();
    for record in records {
        let id = EventId::of_exit(&record);
        let twin = id.as_ref().and_then(|id| {
            by_key
                .get(&id.key())?
                .iter()
                .copied()
                .find(|&at| kept[at].0.as_ref().is_some_and(|k| k.same(id)))
        });
        match twin {
            Some(at) => {
                let merged = fuller(kept[at].1.clone(), record);
                kept[at].1 = merged;
            }
            None => {
                if let Some(id) = &id {
                    by_key.entry(id.key()).or_default().push(kept.len());
                }
                kept.push((id, record));
            }
        }
    }
    let mut exits: Vec<ContainerExit> = kept.into_iter().map(|(_, e)| e).collect();
    exits.sort_by_key(|e| e.time);
    exits
}

/// Two reports of one kill as one: the fuller, with what only the other has. The kernel
/// program's readings are not in JSON, so they are carried over by hand.
pub fn fuller_kill(a: Report, b: Report) -> Report {
    let facts = a.facts.clone().or(b.facts.clone());
    let mut merged = fuller(a, b);
    merged.facts = merged.facts.or(facts);
    merged
}

/// Of two records of one event, the one with more known values, with the values only the
/// other has filled in: a name wins over `null`, whichever record holds it.
pub fn fuller<T: Serialize + DeserializeOwned>(a: T, b: T) -> T {
    let (Ok(va), Ok(vb)) = (serde_json::to_value(&a), serde_json::to_value(&b)) else {
        return a;
    };
    let (mut base, other, fallback) = if known_values(&vb) > known_values(&va) {
        (vb, va, b)
    } else {
        (va, vb, a)
    };
    fill_nulls(&mut base, other);
    serde_json::from_value(base).unwrap_or(fallback)
}

fn known_values(value: &Value) -> usize {
    match value {
        Value::Null => 0,
        Value::Object(map) => map.values().map(known_values).sum(),
        Value::Array(items) => items.iter().map(known_values).sum::<usize>().max(1),
        _ => 1,
    }
}

fn fill_nulls(base: &mut Value, other: Value) {
    match (base, other) {
        (Value::Object(base), Value::Object(other)) => {
            for (key, value) in other {
                match base.get_mut(&key) {
                    Some(slot) => fill_nulls(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot @ Value::Null, other) => *slot = other,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::report::{Container, Host, OomContext};

    const BOOT: &str = "5b4c8e3a-1f2d-4c6b-9a7e-0d1c2b3a4f5e";
    const OTHER_BOOT: &str = "6b4c8e3a-1f2d-4c6b-9a7e-0d1c2b3a4f5e";

    fn at(secs: u64) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_secs(1_000_000 + secs))
    }

    /// The kernel program's report of `tid` marked at `boot_ns`, in `boot` (`None`: a journal
    /// line from before boots were recorded), in the container `web` if `named`.
    fn marked(boot_ns: u64, tid: u32, boot: Option<&str>, named: bool) -> Report {
        let mut r = crate::testing::report();
        r.boot_ns = Some(boot_ns);
        r.victim.tid = Some(tid);
        r.victim.pid = Some(tid);
        r.time = at(boot_ns);
        r.host = boot.map(|b| Host {
            boot_id: Some(b.into()),
            ..Host::default()
        });
        r.container = Some(Container {
            runtime: "docker",
            id: "4f2c".into(),
            name: named.then(|| "web".into()),
            ..Container::default()
        });
        r
    }

    /// A kill the kernel log alone told, of `pid` in the invocation logged at `oom_id`.
    fn logged(oom_id: u64, pid: u32, secs: u64) -> Report {
        let mut r = crate::testing::report();
        r.source = "kmsg";
        r.boot_ns = None;
        r.victim = Default::default();
        r.victim.pid = Some(pid);
        r.time = at(secs);
        r.container = None;
        r.oom = Some(OomContext {
            id: Some(oom_id),
            constraint: Some("CONSTRAINT_MEMCG".into()),
            ..OomContext::default()
        });
        r
    }

    #[test]
    fn a_kill_is_its_mark_or_its_log_record_and_an_exit_its_container_and_time() {
        let mark = EventId::of_kill(&marked(5, 10, Some(BOOT), true)).unwrap();
        assert_eq!(
            mark.moment,
            Moment::Mark {
                boot_ns: 5,
                tid: 10
            }
        );
        assert_eq!(mark.boot_id.as_deref(), Some(BOOT));
        let log = EventId::of_kill(&logged(7_000, 11, 7)).unwrap();
        assert_eq!(
            log.moment,
            Moment::Logged {
                oom_id: 7_000,
                pid: 11
            }
        );
        let mut nameless = logged(7_000, 11, 7);
        nameless.victim.pid = None;
        assert_eq!(
            EventId::of_kill(&nameless),
            None,
            "nothing to tell it apart"
        );
        let mut line = Vec::new();
        crate::output::json::json_line(&marked(5, 10, Some(BOOT), true), &mut line);
        assert_eq!(EventId::of_line(&line), Some(mark));
        assert_eq!(EventId::of_line(b"{\"event\":\"other\"}"), None);
        assert_eq!(EventId::of_line(b"not json"), None);
    }

    #[test]
    fn an_unknown_boot_matches_any_boot_and_two_known_boots_must_agree() {
        let id = |boot: Option<&str>| EventId {
            boot_id: boot.map(str::to_owned),
            moment: Moment::Mark { boot_ns: 1, tid: 2 },
        };
        let cases = [
            (Some(BOOT), Some(BOOT), true),
            (Some(BOOT), None, true),
            (None, None, true),
            (Some(BOOT), Some(OTHER_BOOT), false),
        ];
        for (a, b, same) in cases {
            assert_eq!(id(a).same(&id(b)), same, "{a:?} {b:?}");
            let mut recent = Recent::new(4);
            recent.insert(id(a));
            assert_eq!(recent.contains(&id(b)), same, "{a:?} {b:?}");
        }
    }

    #[test]
    fn recent_forgets_the_oldest_past_its_capacity() {
        let id = |n| EventId {
            boot_id: None,
            moment: Moment::Logged { oom_id: n, pid: 1 },
        };
        let mut recent = Recent::new(2);
        assert!(recent.insert(id(1)));
        assert!(!recent.insert(id(1)));
        recent.insert(id(2));
        recent.insert(id(3));
        assert!(!recent.contains(&id(1)));
        assert!(recent.contains(&id(2)) && recent.contains(&id(3)));
    }

    #[test]
    fn an_older_journal_s_duplicates_are_each_kill_once_the_fuller_record_winning() {
        let mut replayed = marked(5, 10, None, false);
        replayed.past = true;
        // (case, the journal's records, each kill read back as (pid, container name))
        type Case<'a> = (&'a str, Vec<Report>, Vec<(Option<u32>, Option<&'a str>)>);
        let cases: Vec<Case> = vec![
            (
                "two watches, then a replay without the name",
                vec![
                    marked(5, 10, None, true),
                    marked(5, 10, None, true),
                    replayed.clone(),
                ],
                vec![(Some(10), Some("web"))],
            ),
            (
                "the unnamed record first",
                vec![replayed, marked(5, 10, Some(BOOT), true)],
                vec![(Some(10), Some("web"))],
            ),
            (
                "two watches' readings of one mark, 70 us apart",
                vec![
                    marked(5_000_000, 10, Some(BOOT), true),
                    marked(5_070_000, 10, Some(BOOT), false),
                ],
                vec![(Some(10), Some("web"))],
            ),
            (
                "one thread id marked 2 s apart",
                vec![
                    marked(5_000_000_000, 10, Some(BOOT), true),
                    marked(7_000_000_000, 10, Some(BOOT), true),
                ],
                vec![(Some(10), Some("web")), (Some(10), Some("web"))],
            ),
            (
                "the same moment in two boots",
                vec![
                    marked(5, 10, Some(BOOT), true),
                    marked(5, 10, Some(OTHER_BOOT), true),
                ],
                vec![(Some(10), Some("web")), (Some(10), Some("web"))],
            ),
            (
                "a log-only kill replayed twice",
                vec![logged(9_000, 12, 9), logged(9_000, 12, 9)],
                vec![(Some(12), None)],
            ),
            (
                "a log record of a kill the kernel program saw",
                vec![marked(5, 10, Some(BOOT), true), logged(4_000, 10, 5)],
                vec![(Some(10), Some("web"))],
            ),
            (
                "the same pid killed far apart",
                vec![marked(5, 10, Some(BOOT), true), logged(4_000, 10, 500)],
                vec![(Some(10), Some("web")), (Some(10), None)],
            ),
        ];
        for (case, records, expected) in cases {
            let kills = dedupe_kills(records);
            let got: Vec<(Option<u32>, Option<&str>)> = kills
                .iter()
                .map(|r| {
                    let name = r.container.as_ref().and_then(|c| c.name.as_deref());
                    (r.victim.pid, name)
                })
                .collect();
            assert_eq!(got, expected, "{case}");
            assert!(
                kills.iter().all(|r| !r.past),
                "{case}: a record is not a replay"
            );
        }
        let merged = dedupe_kills(vec![marked(5, 10, Some(BOOT), true), logged(4_000, 10, 5)]);
        assert_eq!(
            merged[0].source, "tp_btf",
            "the kernel program's record is kept"
        );
        assert_eq!(
            merged[0].oom.as_ref().and_then(|o| o.constraint.as_deref()),
            Some("CONSTRAINT_MEMCG"),
            "with what only the log record had"
        );
    }

    #[test]
    fn exits_are_each_once_with_the_fuller_list_of_kills() {
        let exit = |kills: Vec<Option<u64>>, secs| ContainerExit {
            schema: crate::report::SCHEMA,
            event: "container_exit",
            time: at(secs),
            container: Container {
                runtime: "docker",
                id: "4f2c".into(),
                ..Container::default()
            },
            exit_code: Some(137),
            runtime_oom_killed: Some(true),
            restart_count: Some(1),
            restarting: Some(true),
            kills,
            killed_by: None,
            runtime_oom_killed_reason: None,
            host: None,
            last_kill: None,
        };
        let exits = dedupe_exits(vec![
            exit(vec![Some(1)], 10),
            exit(vec![Some(1), Some(2)], 10),
            exit(vec![Some(3)], 20),
            exit(vec![Some(3)], 20),
        ]);
        let kills: Vec<&Vec<Option<u64>>> = exits.iter().map(|e| &e.kills).collect();
        assert_eq!(kills, [&vec![Some(1), Some(2)], &vec![Some(3)]]);
    }

    #[test]
    fn the_fuller_record_wins_whichever_comes_first() {
        let named = marked(5, 10, None, true);
        let unnamed = marked(5, 10, None, false);
        for (a, b) in [(named.clone(), unnamed.clone()), (unnamed, named)] {
            let merged = fuller_kill(a, b);
            assert_eq!(
                merged.container.and_then(|c| c.name).as_deref(),
                Some("web")
            );
        }
    }
}
