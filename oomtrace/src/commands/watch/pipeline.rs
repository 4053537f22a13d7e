//! From a report any source produced to the sinks: attribution, a short wait for a container
//! name Docker is about to give, the filters, rendering, and the counts for the summary.
//!
//! Reports leave in the order they came. One waiting for its container's name holds the ones
//! behind it, for at most [`NAME_WAIT`] (or, when a `--container NAME` filter can only be
//! decided by the name, until Docker answers or gives up).

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use bytes::{BufMut as _, Bytes, BytesMut};

use crate::{
    attribution::{docker, enrich},
    output::{
        filter::{Filter, Verdict},
        human, json,
        sink::Sinks,
    },
    report::Report,
};

/// How long a report waits for Docker to name a container it has not seen yet. A healthy
/// daemon answers an inspect in milliseconds.
pub const NAME_WAIT: Duration = Duration::from_millis(250);
/// How long a report that only its container's name can filter waits for Docker.
pub const FILTER_NAME_WAIT: Duration = Duration::from_secs(10);
/// Reports held at once; past this the oldest goes out as it is.
const MAX_HELD: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdoutFormat {
    Human,
    Json,
}

/// Counts for the summary printed at exit.
#[derive(Debug, Default)]
pub struct Tally {
    /// Reports handed to stdout.
    pub reported: u64,
    /// Kills seen but not shown, because of `--container`, `--pid` or `--comm`.
    pub filtered: u64,
    /// Records that could not be decoded, or log records overwritten before they were read.
    pub undecodable: u64,
}

/// What turning a record into a report needs besides the record.
pub struct Context {
    pub docker: Option<docker::Enricher>,
    pub filter: Filter,
    pub format: StdoutFormat,
}

struct Held {
    report: Report,
    until: Instant,
}

pub struct Pipeline {
    pub context: Context,
    pub sinks: Sinks,
    pub tally: Tally,
    held: VecDeque<Held>,
    said_names_unresolvable: bool,
    json: BytesMut,
    text: String,
}

impl Pipeline {
    pub fn new(context: Context, sinks: Sinks) -> Self {
        Self {
            context,
            sinks,
            tally: Tally::default(),
            held: VecDeque::new(),
            said_names_unresolvable: false,
            json: BytesMut::with_capacity(4096),
            text: String::with_capacity(1024),
        }
    }

    /// Takes a report from a source.
    pub fn push(&mut self, mut report: Report, now: Instant) {
        enrich::annotate(&mut report, cache(&self.context));
        match name_wait(&self.context, &report) {
            Some(wait) if docker_answers(&self.context) => {
                if let (Some(docker), Some(container)) = (&self.context.docker, &report.container) {
                    docker.request_inspect(&container.id);
                }
                self.held.push_back(Held {
                    report,
                    until: now + wait,
                });
                if self.held.len() > MAX_HELD {
                    self.release_front();
                }
            }
            _ if self.held.is_empty() => self.deliver(report),
            _ => self.held.push_back(Held { report, until: now }),
        }
        self.release(now);
    }

    /// Sends on every held report that is ready: named since, or out of time.
    pub fn release(&mut self, now: Instant) {
        while let Some(front) = self.held.front_mut() {
            enrich::annotate(&mut front.report, cache(&self.context));
            let waiting = name_wait(&self.context, &front.report).is_some()
                && docker_answers(&self.context)
                && now < front.until;
            if waiting {
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

    /// When the next held report runs out of time.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.held.front().map(|h| h.until)
    }

    pub fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    fn release_front(&mut self) {
        if let Some(held) = self.held.pop_front() {
            let mut report = held.report;
            enrich::annotate(&mut report, cache(&self.context));
            self.deliver(report);
        }
    }

    /// Filters, renders and queues one report for the sinks.
    fn deliver(&mut self, report: Report) {
        match self.context.filter.verdict(&report) {
            Verdict::Shown => {}
            Verdict::Hidden => {
                self.tally.filtered += 1;
                return;
            }
            Verdict::NeedsName => {
                if !self.said_names_unresolvable {
                    self.said_names_unresolvable = true;
                    crate::say!(
                        "container names cannot be resolved (Docker does not answer), so --container matches ids only; kills in unnamed containers are counted as filtered out"
                    );
                }
                self.tally.filtered += 1;
                return;
            }
        }
        self.json.clear();
        let mut writer = (&mut self.json).writer();
        json::write_line(&report, &mut writer);
        let json = self.json.split().freeze();
        let shown = match self.context.format {
            StdoutFormat::Json => json.clone(),
            StdoutFormat::Human => {
                self.text.clear();
                human::human_line(&report, &mut self.text);
                Bytes::copy_from_slice(self.text.as_bytes())
            }
        };
        if self.sinks.send(&json, shown) {
            self.tally.reported += 1;
        }
    }
}

fn cache(context: &Context) -> Option<&docker::Cache> {
    context.docker.as_ref().map(|d| &d.cache)
}

fn docker_answers(context: &Context) -> bool {
    context
        .docker
        .as_ref()
        .is_some_and(|d| *d.status.borrow() != docker::Status::Unavailable)
}

/// How long `report` may wait for its container's name, if it lacks one Docker could give.
fn name_wait(context: &Context, report: &Report) -> Option<Duration> {
    let container = report.container.as_ref()?;
    if container.runtime != "docker" || container.name.is_some() {
        return None;
    }
    context.docker.as_ref()?;
    Some(match context.filter.verdict(report) {
        Verdict::NeedsName => FILTER_NAME_WAIT,
        Verdict::Shown | Verdict::Hidden => NAME_WAIT,
    })
}
