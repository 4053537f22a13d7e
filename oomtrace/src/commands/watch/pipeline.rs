//! From what any source produced to the sinks: attribution ([`naming`](super::naming)), a
//! short wait for a container name a runtime is about to give, or for the line a userspace OOM
//! killer logs, and each container's kills kept for its exit. What leaves goes to
//! [`Delivery`], which filters, renders and counts it.
//!
//! Items leave in the order they came. A report waiting for its container's name holds the
//! ones behind it, for at most [`NAME_WAIT`](super::naming::NAME_WAIT) (or, when a `--container NAME` filter can only be
//! decided by the name, until the runtime answers or gives up). A container's exit follows its
//! kills, and is written if one of them was, or, with none, if the filters take its container;
//! it says who ended the container, from the signals its main process received.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::Arc,
    time::{Instant, SystemTime},
};

use bytes::Bytes;

use super::{
    acted::{LOG_WAIT, LoggedKills},
    delivery::{Delivery, StdoutFormat},
    naming::{Asked, answers, attribute, caches, name_wait},
    signals::{SignalBook, container_of},
};
use crate::{
    attribution::{
        enrich,
        following::Enricher,
        runtime::{Death, Lifecycle},
    },
    output::{metrics::Metrics, sink::Sinks},
};
use oomtrace_core::{
    attribution::{
        acted_on::LoggedKill,
        killer::{self, ExitFacts, SignalFacts},
        userspace_killer::{self, KillDedup, UserspaceOomKill},
    },
    output::{filter::Filter, human::HumanView},
    report::{ContainerExit, Host, KillSummary, Report, SCHEMA},
    stall::OomStall,
};

/// Items held at once; past this the oldest goes out as it is.
const MAX_HELD: usize = 4096;
/// Kills remembered for their container's exit; past this the ones no held item waits on go.
const MAX_FILED: usize = 4096;

/// What turning a record into a report needs besides the record.
pub struct Context {
    pub docker: Option<Enricher>,
    pub containerd: Option<Enricher>,
    pub filter: Filter,
    pub format: StdoutFormat,
    /// `--metrics-addr`: counts the kills seen, and those shown.
    pub metrics: Option<Arc<Metrics>>,
    /// This node and boot, for every event seen live.
    pub host: Host,
    /// The memory hierarchy's root, where a pod's cgroup is read for its members.
    pub cgroup_root: Option<std::path::PathBuf>,
}

/// A kill in a container, kept for the exit that ends the container's run: the first exit
/// Docker reports at or after the kill's time claims it. A run ends when its PID 1 has died
/// and the container's processes with it, so a kill after an exit is the next run's, whatever
/// order Docker's events and the kernel's records arrive in.
#[derive(Debug)]
struct Filed {
    container: String,
    oom_id: Option<u64>,
    time: Option<SystemTime>,
    summary: KillSummary,
    claimed: bool,
    shown: bool,
}

enum Item {
    /// A kill, and the serial it is filed under for its container's exit.
    Kill(Box<Report>, Option<u64>),
    /// An exit, and the serials of the kills it claimed.
    Exit(Box<ContainerExit>, Vec<u64>),
    /// An event of another kind, rendered: its JSON, its human line, and whether the filters
    /// show it.
    Other(Bytes, String, bool),
    /// A userspace OOM killer's kill, rendered when it goes out: it may wait for what the
    /// killer's log says it acted on. Whether the filters show it.
    Userspace(Box<UserspaceOomKill>, bool),
}

struct Held {
    item: Item,
    until: Instant,
}

pub struct Pipeline {
    pub context: Context,
    pub delivery: Delivery,
    held: VecDeque<Held>,
    /// Kills in containers, by serial, waiting for their container's exit.
    filed: BTreeMap<u64, Filed>,
    next_serial: u64,
    /// Each container's latest exit as Docker timed it: a kill from before it that arrives
    /// after it belongs to a run already told, never to the next one.
    ended: HashMap<String, SystemTime>,
    /// Containers whose current run started while the watch ran: a kill in it was seen.
    started: HashSet<String>,
    /// Signals to containers' main processes, for their exits.
    pub signals: SignalBook,
    userspace_kills: KillDedup,
    /// Kills the killer's log told, for their signals' events (`--killer-log`).
    pub logged_kills: LoggedKills,
}

impl Pipeline {
    pub fn new(context: Context, sinks: Sinks, human: HumanView) -> Self {
        Self {
            context,
            delivery: Delivery::new(sinks, human),
            held: VecDeque::new(),
            filed: BTreeMap::new(),
            next_serial: 0,
            ended: HashMap::new(),
            started: HashSet::new(),
            signals: SignalBook::default(),
            userspace_kills: KillDedup::default(),
            logged_kills: LoggedKills::default(),
        }
    }

    /// Takes a report from a source, or a replay of one (`report.past`).
    pub fn push(&mut self, mut report: Report, now: Instant) {
        if !report.past {
            report.host = Some(self.context.host.clone());
            self.seen(&report);
        }
        attribute(&mut report, &self.context);
        let run = self.note_kill(&report);
        let until = match name_wait(&self.context, &report) {
            Some((wait, asked, id)) if answers(&self.context, asked) => {
                match asked {
                    Asked::Docker => self.context.docker.as_ref().map(|d| d.request_inspect(id)),
                    Asked::Containerd => self
                        .context
                        .containerd
                        .as_ref()
                        .map(|c| c.request_inspect(id)),
                };
                now + wait
            }
            _ => now,
        };
        self.hold(Item::Kill(Box::new(report), run), until);
        self.release(now);
    }

    /// Keeps a signal that can end a container's main process, for the container's exit, and
    /// tells a userspace OOM killer's kill as an event of its own.
    pub fn signal(&mut self, signal: SignalFacts, now: Instant) {
        let container = container_of(
            signal.seen.target_cgroup_name.as_deref(),
            caches(&self.context),
        );
        if let Some(mut kill) = userspace_killer::kill_of(&signal, container)
            && self.userspace_kills.is_new(&kill)
        {
            kill.host = Some(self.context.host.clone());
            *self
                .delivery
                .tally
                .userspace_kills
                .entry(kill.killer.name.clone())
                .or_default() += 1;
            if let Some(metrics) = &self.context.metrics {
                metrics.record_userspace_kill(&kill.killer.name);
            }
            let victim = &kill.victim;
            let shown = self.context.filter.shows_event(
                kill.container
                    .as_ref()
                    .map(|c| (c.id.as_str(), c.name.as_deref())),
                victim.pid,
                victim.comm.as_deref(),
            );
            kill.acted_on = self.logged_kills.take_for(&kill);
            let until = if self.logged_kills.awaited_by(&kill) {
                now + LOG_WAIT
            } else {
                now
            };
            self.hold(Item::Userspace(Box::new(kill), shown), until);
            self.release(now);
        }
        self.signals.note(signal, caches(&self.context));
    }

    /// Takes kills the killer's log told, for the events of their signals.
    pub fn logged(&mut self, kills: Vec<LoggedKill>, now: Instant) {
        for kill in kills {
            self.logged_kills.add(kill, now);
        }
        for held in &mut self.held {
            if let Item::Userspace(kill, _) = &mut held.item
                && kill.acted_on.is_none()
            {
                kill.acted_on = self.logged_kills.take_for(kill);
            }
        }
        self.release(now);
    }

    /// Tells a memory cgroup stalled at its limit: stuck with its OOM killer off (v1), or held
    /// at `memory.high` or `memory.max` (v2).
    pub fn stall(&mut self, mut stall: OomStall, now: Instant) {
        stall.host = Some(self.context.host.clone());
        let shown = self.context.filter.shows_event(
            stall
                .container
                .as_ref()
                .map(|c| (c.id.as_str(), c.name.as_deref())),
            None,
            None,
        );
        self.hold_other(&stall, shown, now, |human, out| {
            human.stall(&stall, SystemTime::now(), out);
        });
    }

    /// Renders an event of another kind, JSON and human, and holds it in its place in line.
    fn hold_other(
        &mut self,
        event: &impl serde::Serialize,
        shown: bool,
        now: Instant,
        render: impl FnOnce(&mut HumanView, &mut String),
    ) {
        let (json, human) = self.delivery.render(event, render);
        self.hold(Item::Other(json, human, shown), now);
        self.release(now);
    }

    /// Takes a container's start or death from its runtime.
    pub fn lifecycle(&mut self, event: Lifecycle, now: Instant) {
        let death = match event {
            Lifecycle::Started { id } => {
                if self.started.len() >= MAX_FILED {
                    self.started.clear();
                }
                self.started.insert(id);
                return;
            }
            Lifecycle::Died(death) => death,
        };
        let Death {
            id,
            time,
            exit_code,
            oom_killed,
            restart_count,
            restarting,
            main_pid,
            runtime_saw_oom,
            oom_kill_disabled,
        } = death;
        let time = time.unwrap_or_else(SystemTime::now);
        if self.ended.len() >= MAX_FILED {
            let filed: std::collections::HashSet<&String> =
                self.filed.values().map(|f| &f.container).collect();
            self.ended.retain(|id, _| filed.contains(id));
        }
        self.ended.insert(id.clone(), time);
        let claimed: Vec<u64> = self
            .filed
            .iter_mut()
            .filter(|(_, f)| {
                !f.claimed && f.container == id && f.time.is_none_or(|killed| killed <= time)
            })
            .map(|(serial, f)| {
                f.claimed = true;
                *serial
            })
            .collect();
        let kills: Vec<(Option<u64>, KillSummary)> = claimed
            .iter()
            .map(|s| (self.filed[s].oom_id, self.filed[s].summary.clone()))
            .collect();
        let signals = main_pid
            .map(|pid| self.signals.take(pid))
            .unwrap_or_default();
        let facts = ExitFacts {
            exit_code,
            runtime_oom_killed: oom_killed,
            main_pid,
            signals: &signals,
            kills: &kills,
            runtime_saw_oom,
            oom_kill_disabled,
            whole_run_watched: self.started.remove(&id),
        };
        let killed_by = killer::killed_by(&facts);
        let runtime_oom_killed_reason = killer::flag_reason(&facts, killed_by.as_ref());
        let exit = ContainerExit {
            schema: SCHEMA,
            event: "container_exit",
            time: Some(time),
            container: self.container(&id),
            exit_code,
            runtime_oom_killed: oom_killed,
            restart_count,
            restarting,
            kills: kills.iter().map(|(oom_id, _)| *oom_id).collect(),
            killed_by,
            runtime_oom_killed_reason,
            host: Some(self.context.host.clone()),
            last_kill: kills.last().map(|(_, summary)| summary.clone()),
        };
        self.hold(Item::Exit(Box::new(exit), claimed), now);
        self.release(now);
    }

    /// The container as the last kill report and the cache describe it.
    fn container(&self, id: &str) -> oomtrace_core::report::Container {
        let newest = self.held.iter().rev().find_map(|held| match &held.item {
            Item::Kill(report, _) => report.container.clone().filter(|c| c.id == id),
            Item::Exit(..) | Item::Other(..) | Item::Userspace(..) => None,
        });
        let said = caches(&self.context).any(id);
        let mut container = newest.unwrap_or_else(|| oomtrace_core::report::Container {
            runtime: said.as_ref().map_or("docker", |m| m.container.runtime),
            id: id.to_owned(),
            ..Default::default()
        });
        if let Some(meta) = said {
            enrich::refresh(&mut container, meta);
        }
        container
    }

    /// Files a kill in a container whose runtime reports exits (Docker, containerd) for the
    /// exit that will end its run. A replayed kill
    /// is not filed: its run ended before the watch, or the journal has its exit.
    fn note_kill(&mut self, report: &Report) -> Option<u64> {
        if report.past {
            return None;
        }
        let id = report
            .container
            .as_ref()
            .filter(|c| matches!(c.runtime, "docker" | "containerd" | "kubernetes"))?
            .id
            .clone();
        let run_told = self
            .ended
            .get(&id)
            .is_some_and(|ended| report.time.is_none_or(|killed| killed <= *ended));
        if run_told {
            return None;
        }
        if self.filed.len() >= MAX_FILED {
            let waiting: std::collections::HashSet<u64> = self
                .held
                .iter()
                .flat_map(|h| match &h.item {
                    Item::Kill(_, serial) => serial.iter().copied().collect::<Vec<_>>(),
                    Item::Exit(_, serials) => serials.clone(),
                    Item::Other(..) | Item::Userspace(..) => Vec::new(),
                })
                .collect();
            self.filed.retain(|serial, _| waiting.contains(serial));
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        self.filed.insert(
            serial,
            Filed {
                container: id,
                oom_id: report.oom.as_ref().and_then(|o| o.id),
                time: report.time,
                summary: KillSummary::of(report),
                claimed: false,
                shown: false,
            },
        );
        Some(serial)
    }

    fn hold(&mut self, item: Item, until: Instant) {
        self.held.push_back(Held { item, until });
        if self.held.len() > MAX_HELD {
            self.release_front();
        }
    }

    /// Sends on every held item that is ready: named or told since, or out of time.
    pub fn release(&mut self, now: Instant) {
        while let Some(front) = self.held.front_mut() {
            let waiting = match &mut front.item {
                Item::Kill(report, _) => {
                    attribute(report, &self.context);
                    name_wait(&self.context, report)
                        .is_some_and(|(_, asked, _)| answers(&self.context, asked))
                }
                Item::Userspace(kill, _) => self.logged_kills.awaited_by(kill),
                Item::Exit(..) | Item::Other(..) => false,
            };
            if waiting && now < front.until {
                break;
            }
            self.release_front();
        }
    }

    /// Sends on everything held, whatever it waits for: at exit.
    pub fn release_all(&mut self) {
        while !self.held.is_empty() {
            self.release_front();
        }
    }

    /// When the next held item runs out of time.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.held.front().map(|h| h.until)
    }

    pub fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    fn release_front(&mut self) {
        let Some(held) = self.held.pop_front() else {
            return;
        };
        match held.item {
            Item::Kill(mut report, serial) => {
                attribute(&mut report, &self.context);
                if self.delivery.kill(&self.context, &report)
                    && let Some(filed) = serial.and_then(|s| self.filed.get_mut(&s))
                {
                    filed.shown = true;
                }
            }
            Item::Exit(exit, claimed) => {
                let shown = if claimed.is_empty() {
                    self.context.filter.shows_exit(&exit.container)
                } else {
                    claimed
                        .iter()
                        .filter_map(|s| self.filed.remove(s))
                        .any(|filed| filed.shown)
                };
                self.delivery.exit(&self.context, &exit, shown);
            }
            Item::Userspace(kill, shown) => {
                let (json, human) = self.delivery.render(&*kill, |human, out| {
                    human.userspace_kill(&kill, SystemTime::now(), out);
                });
                self.delivery.other(&self.context, &json, human, shown);
            }
            Item::Other(json, human, shown) => {
                self.delivery.other(&self.context, &json, human, shown)
            }
        }
    }

    /// Journals a kill seen live that a replay already showed, without showing it again: the
    /// replay may have had it from the kernel log alone, and the journal must hold it.
    pub fn record_only(&mut self, mut report: Report) {
        report.host = Some(self.context.host.clone());
        self.seen(&report);
        attribute(&mut report, &self.context);
        self.delivery.record(&report);
    }

    /// Counts a kill seen live for the metrics, before anything can hold or hide it: the
    /// kernel has counted it already, and a scrape is compared with that count.
    fn seen(&self, report: &Report) {
        if let Some(metrics) = &self.context.metrics {
            metrics.record_seen(report);
        }
    }
}
