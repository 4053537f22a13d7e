//! The end of the pipeline: each event rendered once, as its JSON line and, for stdout in the
//! human view, its text; journaled whether shown or not; counted for the summary and the
//! metrics; and queued for the sinks when the filters show it.

use std::time::SystemTime;

use bytes::{BufMut as _, Bytes, BytesMut};

use super::pipeline::Context;
use crate::output::sink::Sinks;
use oomtrace_core::{
    output::{filter::Verdict, human::HumanView, json},
    report::{ContainerExit, Report},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdoutFormat {
    Human,
    Json,
}

/// Counts for the summary printed at exit.
#[derive(Debug, Default)]
pub struct Tally {
    /// Kills that passed the filters and went to stdout's queue (for `--count`).
    pub shown: u64,
    /// Kills replayed from before the watch (`--since`) and shown.
    pub past: u64,
    /// Kills seen but not shown, because of `--container`, `--pid` or `--comm`.
    pub filtered: u64,
    /// Records that could not be decoded, or log records overwritten before they were read.
    pub undecodable: u64,
    /// Of every kill seen, shown or filtered: the ones the kernel killed and counted, the ones
    /// it only marked, the ones whose kind is unknown, and the `memory.oom.group` kills among
    /// their invocations.
    pub killed: u64,
    pub marked: u64,
    pub unknown_kind: u64,
    pub group_kills: u64,
    /// Kills by userspace OOM killers, by killer: never in the kernel's count.
    pub userspace_kills: std::collections::BTreeMap<String, u64>,
}

/// What the pipeline hands its events to, and what it counted of them.
pub struct Delivery {
    pub sinks: Sinks,
    pub tally: Tally,
    human: HumanView,
    /// The last `memory.oom.group` invocation counted, by its id.
    last_group_kill: Option<u64>,
    said_names_unresolvable: bool,
    json: BytesMut,
    text: String,
}

impl Delivery {
    pub fn new(sinks: Sinks, human: HumanView) -> Self {
        Self {
            sinks,
            tally: Tally::default(),
            human,
            last_group_kill: None,
            said_names_unresolvable: false,
            json: BytesMut::with_capacity(4096),
            text: String::with_capacity(1024),
        }
    }

    /// An event's JSON line, as the journal and `--json` write it.
    fn json_line(&mut self, event: &impl serde::Serialize) -> Bytes {
        self.json.clear();
        json::write_event(event, (&mut self.json).writer());
        self.json.split().freeze()
    }

    /// What stdout gets of an event whose JSON line is `json`: that line, or in the human view
    /// the line `render` writes.
    fn stdout_line(
        &mut self,
        format: StdoutFormat,
        json: &Bytes,
        render: impl FnOnce(&mut HumanView, &mut String),
    ) -> Bytes {
        match format {
            StdoutFormat::Json => json.clone(),
            StdoutFormat::Human => {
                self.text.clear();
                render(&mut self.human, &mut self.text);
                Bytes::copy_from_slice(self.text.as_bytes())
            }
        }
    }

    /// An event of another kind as its JSON line and its human line.
    pub fn render(
        &mut self,
        event: &impl serde::Serialize,
        render: impl FnOnce(&mut HumanView, &mut String),
    ) -> (Bytes, String) {
        let json = self.json_line(event);
        self.text.clear();
        render(&mut self.human, &mut self.text);
        (json, self.text.clone())
    }

    /// Queues an event of another kind for the journal and, when the filters show it, stdout.
    pub fn other(&mut self, context: &Context, json: &Bytes, human: String, shown: bool) {
        self.sinks.record(json, false);
        if shown {
            let shown = match context.format {
                StdoutFormat::Json => json.clone(),
                StdoutFormat::Human => Bytes::from(human),
            };
            self.sinks.send(json, shown, false);
        }
    }

    /// Filters, renders and queues one kill for the sinks; whether it was shown.
    pub fn kill(&mut self, context: &Context, report: &Report) -> bool {
        self.count(report);
        let json = self.json_line(report);
        // The journal keeps every kill, shown or not: history filters when it is read. A
        // replayed kill came from the journal or the kernel log: journaling it again would
        // double it.
        if !report.past {
            self.sinks.record(&json, true);
        }
        match context.filter.verdict(report) {
            Verdict::Shown => {}
            Verdict::Hidden => {
                self.tally.filtered += 1;
                return false;
            }
            Verdict::NeedsName => {
                if !self.said_names_unresolvable {
                    self.said_names_unresolvable = true;
                    crate::say!(
                        "a container's name could not be learnt from Docker in time, so --container matched it by id only; kills in unnamed containers are counted as filtered out"
                    );
                }
                self.tally.filtered += 1;
                return false;
            }
        }
        let shown = self.stdout_line(context.format, &json, |human, out| {
            human.kill(report, SystemTime::now(), out)
        });
        // Counted before the line can be read, so a scrape after it sees the kill. Replayed
        // kills stay out: a restarted oomtrace would count them again.
        if let (Some(metrics), false) = (&context.metrics, report.past) {
            metrics.record_kill(report, SystemTime::now());
        }
        self.sinks.send(&json, shown, true);
        self.tally.shown += 1;
        if report.past {
            self.tally.past += 1;
        }
        true
    }

    /// Journals a kill without showing it or counting it.
    pub fn record(&mut self, report: &Report) {
        let json = self.json_line(report);
        self.sinks.record(&json, true);
    }

    /// Counts what the kernel did, for the summary's comparison with its own count.
    fn count(&mut self, report: &Report) {
        // Kills from before the watch are not in the kernel's count over it.
        if report.past {
            return;
        }
        let oom = report.oom.as_ref();
        match oom.and_then(|o| o.kind) {
            Some("killed") => self.tally.killed += 1,
            Some("marked") => self.tally.marked += 1,
            _ => self.tally.unknown_kind += 1,
        }
        let Some(oom) = oom else { return };
        // The kernel counts a group kill's chosen victim twice: once chosen, once a member.
        // The chosen victim comes first, not a member: the invocation is counted at its first
        // member.
        if oom.group_kill == Some(true) && oom.id.is_some() && oom.id != self.last_group_kill {
            self.tally.group_kills += 1;
            self.last_group_kill = oom.id;
        }
    }

    /// Journals an exit, and writes it out if one of its kills was shown.
    pub fn exit(&mut self, context: &Context, exit: &ContainerExit, shown: bool) {
        let json = self.json_line(exit);
        self.sinks.record(&json, false);
        if !shown {
            return;
        }
        let shown = self.stdout_line(context.format, &json, |human, out| {
            human.exit(exit, SystemTime::now(), out)
        });
        // As a kill is, before the line can be read. Every exit here is one the runtime told
        // this watch: `--since` replays kills, never exits.
        if let Some(metrics) = &context.metrics {
            metrics.record_exit(exit);
        }
        self.sinks.send(&json, shown, false);
    }
}
