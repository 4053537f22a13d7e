//! The explanation, built from facts only: what Docker says, the kills the journal and the
//! kernel log hold, and the container exits a watch recorded. Every sentence of what it means
//! and what to change follows from those facts; where a fact is missing the sentence is left
//! out, and the gap is named under `missing`, never filled in with a likely value.

use serde::Serialize;

use super::{
    evidence::{DockerView, Evidence, JournalRead, Show},
    limit::LimitFacts,
    meaning, runs,
};
use oomtrace_core::{
    output::{facts::Role, format::plural},
    report::{Container, ContainerExit, Report, SCHEMA},
};

/// `oomtrace explain CONTAINER --json`: one object, schema 1.
///
/// - `schema`: 1; `event`: `"explanation"`.
/// - `container`: as in a report, from what Docker says now, else what the journal recorded.
/// - `docker`: what Docker says now; `state` is `present`, `gone` (Docker answered and no
///   longer knows it: removed), `not_docker` (another runtime's), `unreachable` (with
///   `error`) or `not_asked` (`--no-enrich`). `exit_code` is `null` while it runs.
/// - `kills`: its OOM kills, oldest first, each a report as `oomtrace --json` writes it.
/// - `exits`: its exits as a watch recorded them (`container_exit` events), oldest first.
/// - `limit`: which limit the kills hit (`whose`: `own`, `parent`, `host` for a global OOM,
///   `unknown`), its size, the peak usage of that cgroup and the largest victim's RSS;
///   `null` without kills.
/// - `meaning`, `advice`: plain sentences, facts and a recommendation; `missing`: what this
///   explanation cannot know, and why.
/// - `unattributed_kills`: kills in the kernel log whose cgroup it did not print.
/// - `same_name`: ids of other containers that had this name and OOM kills.
/// - `since`: the `--since` bound, RFC 3339 UTC, or `null`.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub schema: u32,
    pub event: &'static str,
    pub container: Container,
    pub docker: DockerFacts,
    pub kills: Vec<Report>,
    pub exits: Vec<ContainerExit>,
    pub limit: Option<LimitFacts>,
    pub meaning: Vec<String>,
    pub advice: Vec<String>,
    pub missing: Vec<String>,
    pub unattributed_kills: usize,
    pub same_name: Vec<String>,
    pub since: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct DockerFacts {
    pub state: &'static str,
    pub error: Option<String>,
    pub running: Option<bool>,
    pub exit_code: Option<i64>,
    pub oom_killed: Option<bool>,
    pub restart_count: Option<u32>,
    pub restart_policy: Option<String>,
    pub restart_max_retries: Option<u32>,
    pub memory_limit_bytes: Option<u64>,
}

pub fn build(evidence: Evidence, show: Show) -> Explanation {
    let container = container(&evidence);
    let docker = docker_facts(&evidence.docker);
    let limit = LimitFacts::of(&evidence.kills, &container);
    let runs = runs::split(&evidence);
    let mut meaning = Vec::new();
    let mut advice = Vec::new();
    meaning::tell(
        &meaning::Facts {
            evidence: &evidence,
            container: &container,
            docker_oom_killed: docker.oom_killed,
            docker_running: docker.running,
            limit: limit.as_ref(),
            runs: &runs,
            show,
        },
        &mut meaning,
        &mut advice,
    );
    let missing = missing(&evidence, &docker);
    Explanation {
        schema: SCHEMA,
        event: "explanation",
        container,
        docker,
        limit,
        meaning,
        advice,
        missing,
        unattributed_kills: evidence.unattributed,
        same_name: evidence.same_name,
        since: evidence
            .since
            .map(|t| humantime::format_rfc3339_micros(t).to_string()),
        kills: evidence.kills,
        exits: evidence.exits,
    }
}

/// The container as Docker describes it now, else as the newest record has it.
fn container(evidence: &Evidence) -> Container {
    let recorded = evidence
        .kills
        .iter()
        .filter_map(|r| r.container.as_ref())
        .chain(evidence.exits.iter().map(|e| &e.container))
        .filter(|c| c.id == evidence.id);
    // The newest record with a name says the most; any names the id.
    let mut container = recorded
        .clone()
        .rev()
        .find(|c| c.name.is_some())
        .or(recorded.clone().next_back())
        .cloned()
        .unwrap_or_else(|| Container {
            runtime: "docker",
            id: evidence.id.clone(),
            ..Container::default()
        });
    if let Some(count) = evidence.exits.last().and_then(|e| e.restart_count) {
        container.restart_count = Some(count);
    }
    if let DockerView::Present(meta) = &evidence.docker {
        let said = meta.container.clone();
        container.name = said.name.or(container.name.take());
        container.image = said.image.or(container.image.take());
        container.labels = said.labels.or(container.labels.take());
        container.main_pid = said.main_pid;
        container.restart_policy = said.restart_policy;
        container.restart_max_retries = said.restart_max_retries;
        container.restart_count = said.restart_count.or(container.restart_count);
        container.memory_limit_bytes = said.memory_limit_bytes;
        container.main_command = said.main_command.or(container.main_command.take());
    }
    container
}

fn docker_facts(view: &DockerView) -> DockerFacts {
    let state = match view {
        DockerView::NotAsked => "not_asked",
        DockerView::Unreachable(_) => "unreachable",
        DockerView::Gone => "gone",
        DockerView::NotDocker => "not_docker",
        DockerView::Present(_) => "present",
    };
    let mut facts = DockerFacts {
        state,
        ..DockerFacts::default()
    };
    match view {
        DockerView::Unreachable(why) => facts.error = Some(why.clone()),
        DockerView::Present(meta) => {
            facts.running = meta.running;
            // While it runs, Docker's exit code is a placeholder, not an exit.
            facts.exit_code = meta.last_exit.filter(|_| meta.running == Some(false));
            facts.oom_killed = meta.last_oom_killed;
            facts.restart_count = meta.container.restart_count;
            facts.restart_policy = meta.container.restart_policy.clone();
            facts.restart_max_retries = meta.container.restart_max_retries;
            facts.memory_limit_bytes = meta.container.memory_limit_bytes;
        }
        _ => {}
    }
    facts
}

/// What this explanation cannot know, and why.
fn missing(evidence: &Evidence, docker: &DockerFacts) -> Vec<String> {
    let mut missing: Vec<String> = evidence.gaps.clone();
    if evidence.journal != JournalRead::Read {
        let mut text = String::from(
            "Without the journal, how each earlier run ended (exit code, OOMKilled) is not known",
        );
        text.push_str(match docker.state {
            "present" => ", only how Docker says the latest one did",
            _ => "",
        });
        text.push_str(
            "; nor whether a victim was the container's main process, which the kernel log does not say",
        );
        missing.push(text);
    }
    if evidence.unattributed > 0 {
        let n = evidence.unattributed;
        missing.push(format!(
            "{n} kill{} in the kernel log name{} no cgroup (the kernel's rate limit cut {} report short), so whether {} in this container is not known",
            plural(n as u64),
            if n == 1 { "s" } else { "" },
            if n == 1 { "its" } else { "their" },
            if n == 1 { "it was" } else { "any of them were" },
        ));
    }
    match docker.state {
        "unreachable" | "not_asked" => {
            let why = if docker.state == "not_asked" {
                "Docker was not asked (--no-enrich)".to_owned()
            } else {
                format!(
                    "Docker does not answer ({})",
                    docker.error.as_deref().unwrap_or("no reason given")
                )
            };
            missing.push(format!(
                "{why}: its current state, restart count and memory limit are only what the journal recorded"
            ));
        }
        "gone" if evidence.journal == JournalRead::Read && evidence.exits.is_empty() => {
            missing.push(
                "Docker no longer knows the container and no watch recorded its exit: its exit code and OOMKilled are not known".into(),
            );
        }
        _ => {}
    }
    if evidence.journal == JournalRead::Read {
        let role_unknown = |r: &&Report| Role::of(&r.victim) == Role::Unknown;
        let unknown = evidence.kills.iter().filter(role_unknown).count();
        let from_log = evidence
            .kills
            .iter()
            .filter(role_unknown)
            .all(|r| r.source == "kmsg");
        let which = match (unknown, evidence.kills.len()) {
            (1, 1) => "the kill".to_owned(),
            (n, all) if n == all => format!("any of the {n} kills"),
            (n, _) => format!("{n} of the kills"),
        };
        if unknown > 0 {
            missing.push(format!(
                "Whether {which} hit the container's main process is not known{}",
                if from_log {
                    ": only the kernel log recorded them, and it does not say"
                } else {
                    ""
                }
            ));
        }
    }
    for sentence in &mut missing {
        if !sentence.ends_with('.') {
            sentence.push('.');
        }
    }
    missing
}
