//! `oomtrace explain CONTAINER`: one container's OOM story on one screen, from what Docker
//! says now, the journal a watch kept and the kernel log: what Docker says, what the kernel
//! did, why, what it means and what to change, and what is missing for want of a source.
//! It works for a container long removed (the journal keeps its name; the kernel log alone
//! knows it by id) and without a journal, saying what it therefore cannot know.
//!
//! Exit status: 0 when the story is told, a container never OOM-killed included; 1 when no
//! container matches, or no source (Docker, the journal, the kernel log) could be asked; 2
//! when CONTAINER is empty or the start of several containers' ids: the command as written
//! cannot be carried out, and giving more of the id fixes it.

mod evidence;
mod limit;
mod meaning;
mod render;
mod resolve;
mod runs;
mod story;
#[cfg(test)]
mod tests;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, SystemTime},
};

use bollard::{API_DEFAULT_VERSION, Docker, query_parameters::ListContainersOptions};
use jiff::tz::TimeZone;

use self::{
    evidence::{DockerView, Evidence, JournalRead},
    resolve::{Known, Resolution},
};
use crate::{
    attribution::{docker, enrich},
    cli::Args,
    commands::watch::journal_path,
    source::past::{self, Past},
};
use oomtrace_core::output::{
    escape::{visible, visible_bytes},
    format::short_id,
};

/// How long Docker gets to answer each question.
const DOCKER_WAIT: Duration = Duration::from_secs(10);

pub fn run(args: &Args, container: &str) -> ExitCode {
    let wanted = container.trim_start_matches('/');
    if wanted.is_empty() {
        crate::say!("explain needs a container: its name, or its id or the start of it");
        return ExitCode::from(2);
    }
    let now = SystemTime::now();
    let journal = journal_path(args);
    // Every record, whatever --since says: a container is found by its whole history.
    let past = past::gather(journal.as_deref(), None);
    let journal = past.journal.clone();
    let listing = list_docker(args);
    let known = known(&past, &listing);
    let (id, same_name) = match resolve::resolve(wanted, &known) {
        Resolution::One { id, same_name } => (id, same_name),
        Resolution::None => {
            crate::say!("{}", unknown(wanted, &listing, &journal, &past));
            return ExitCode::FAILURE;
        }
        Resolution::Ambiguous(ids) => {
            let shown: Vec<&str> = ids
                .iter()
                .take(5)
                .map(|id| if wanted.len() >= 12 { id } else { short_id(id) })
                .collect();
            crate::say!(
                "\"{}\" is the start of the ids of {} containers ({}{}): give more of the id, or the container's name",
                visible(wanted),
                ids.len(),
                shown.join(", "),
                if ids.len() > 5 { ", …" } else { "" }
            );
            return ExitCode::from(2);
        }
    };
    let (view, cache) = docker_view(&listing, &id, &past);
    let since = args.since.map(|since| since.moment(now));
    let evidence = gather(past, &id, view, cache, journal, same_name, since);
    let explanation = story::build(evidence, if args.json { lossy } else { visible_bytes });
    let out = if args.json {
        let mut out = serde_json::to_vec(&explanation).unwrap_or_default();
        out.push(b'\n');
        out
    } else {
        render::render(&explanation, &TimeZone::system(), now).into_bytes()
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&out).and_then(|()| stdout.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            crate::say!("cannot write to stdout: {err}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

/// A name in a JSON sentence: the string a report has for it (its exact bytes stay in the
/// report's `_hex` fields).
fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What Docker's list says, or why it could not be asked.
pub(crate) enum Listing {
    NotAsked,
    Unreachable(String),
    Listed {
        socket: PathBuf,
        /// Every container, running or not: its id and name.
        containers: Vec<(String, Option<String>)>,
    },
}

pub(crate) fn list_docker(args: &Args) -> Listing {
    if args.no_enrich {
        return Listing::NotAsked;
    }
    let docker_host = std::env::var("DOCKER_HOST").ok();
    let socket = match docker::socket_path(args.docker_socket.as_deref(), docker_host.as_deref()) {
        Ok(socket) => socket,
        Err(why) => return Listing::Unreachable(why),
    };
    match ask(&socket, list(&socket)) {
        Ok(containers) => Listing::Listed { socket, containers },
        Err(why) => Listing::Unreachable(why),
    }
}

/// Runs one question to Docker to its end, within [`DOCKER_WAIT`].
fn ask<T>(socket: &Path, question: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the event loop: {e}"))?;
    runtime.block_on(async {
        tokio::time::timeout(DOCKER_WAIT, question)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "{} did not answer within {} s",
                    socket.display(),
                    DOCKER_WAIT.as_secs()
                ))
            })
    })
}

async fn list(socket: &Path) -> Result<Vec<(String, Option<String>)>, String> {
    // bollard connects lazily and words a refused socket in transport jargon.
    if let Err(err) = tokio::net::UnixStream::connect(socket).await {
        return Err(docker::describe_connect_error(socket, &err));
    }
    let client = Docker::connect_with_unix(&socket.to_string_lossy(), 5, API_DEFAULT_VERSION)
        .map_err(|e| e.to_string())?
        .negotiate_version()
        .await
        .map_err(|e| format!("{} does not answer as a Docker API: {e}", socket.display()))?;
    let listed = client
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .map_err(|e| e.to_string())?;
    Ok(listed
        .into_iter()
        .filter_map(|summary| {
            let name = summary
                .names
                .and_then(|names| names.into_iter().next())
                .map(|name| name.trim_start_matches('/').to_owned());
            Some((summary.id?, name))
        })
        .collect())
}

/// Every container a source knows of, for [`resolve::resolve`].
fn known(past: &Past, listing: &Listing) -> Vec<Known> {
    let mut known: Vec<Known> = past
        .kills
        .iter()
        .filter_map(|r| r.container.as_ref().map(|c| (c, r.time)))
        .chain(past.exits.iter().map(|e| (&e.container, e.time)))
        .map(|(c, seen)| Known {
            id: c.id.clone(),
            name: c.name.clone(),
            seen,
            docker: false,
        })
        .collect();
    if let Listing::Listed { containers, .. } = listing {
        known.extend(containers.iter().map(|(id, name)| Known {
            id: id.clone(),
            name: name.clone(),
            seen: None,
            docker: true,
        }));
    }
    known
}

/// What Docker says about the container `id` now, and the answer to fill its kills from.
fn docker_view(listing: &Listing, id: &str, past: &Past) -> (DockerView, Option<docker::Cache>) {
    match listing {
        Listing::NotAsked => (DockerView::NotAsked, None),
        Listing::Unreachable(why) => (DockerView::Unreachable(why.clone()), None),
        Listing::Listed { socket, containers } => {
            let runtime = past
                .kills
                .iter()
                .filter_map(|r| r.container.as_ref())
                .find(|c| c.id == id)
                .map(|c| c.runtime);
            if !containers.iter().any(|(known, _)| known == id) {
                let gone = runtime.is_none_or(|r| r == "docker");
                return (
                    if gone {
                        DockerView::Gone
                    } else {
                        DockerView::NotDocker
                    },
                    None,
                );
            }
            let ids = [id.to_owned()];
            match ask(socket, docker::inspect_now(socket, &ids, &[])) {
                Ok(cache) => match cache.lookup(id) {
                    Some(meta) => (DockerView::Present(meta), Some(cache)),
                    // Listed a moment ago, removed since.
                    None => (DockerView::Gone, None),
                },
                Err(why) => (DockerView::Unreachable(why), None),
            }
        }
    }
}

/// The evidence about the container `id`: its kills and exits since `since`, and what the
/// sources could not give.
fn gather(
    past: Past,
    id: &str,
    docker: DockerView,
    cache: Option<docker::Cache>,
    journal: JournalRead,
    same_name: Vec<String>,
    since: Option<SystemTime>,
) -> Evidence {
    let recent = |time: Option<SystemTime>| since.is_none_or(|s| time.is_some_and(|t| t >= s));
    let mut all = past.kills;
    if let Some(cache) = &cache {
        // Names what the records lack, and claims a `--cgroup-parent` container's kills,
        // which only Docker can say are its.
        for kill in &mut all {
            if kill.container.is_none() || kill.container.as_ref().is_some_and(|c| c.id == id) {
                enrich::fill_missing(kill, cache);
            }
        }
    }
    let unattributed = all
        .iter()
        .filter(|r| r.container.is_none() && r.cgroup.path.is_none() && recent(r.time))
        .count();
    let kills: Vec<_> = all
        .into_iter()
        .filter(|r| r.container.as_ref().is_some_and(|c| c.id == id) && recent(r.time))
        .collect();
    let mut exits: Vec<_> = past
        .exits
        .into_iter()
        .filter(|e| e.container.id == id && recent(e.time))
        .collect();
    exits.sort_by_key(|e| e.time);
    Evidence {
        id: id.to_owned(),
        kills,
        exits,
        docker,
        journal,
        unattributed,
        gaps: past.gaps,
        same_name,
        since,
    }
}

/// One sentence: no source knows the container, and which sources could not be asked and
/// why; or, when none could be, that the container cannot be told.
fn unknown(wanted: &str, listing: &Listing, journal: &JournalRead, past: &Past) -> String {
    let mut asked = Vec::new();
    let mut not = Vec::new();
    match listing {
        Listing::Listed { .. } => asked.push("Docker".to_owned()),
        Listing::NotAsked => not.push("Docker was not asked (--no-enrich)".to_owned()),
        Listing::Unreachable(why) => not.push(format!("Docker does not answer ({why})")),
    }
    match journal {
        JournalRead::Read => asked.push("the journal".into()),
        JournalRead::Absent(path) => not.push(format!("there is no journal at {}", path.display())),
        JournalRead::Unreadable(denied) => not.push(denied.sentence()),
        JournalRead::NotRead => not.push("the journal was not read (--no-journal)".into()),
    }
    if past.kernel_log {
        asked.push("the kernel log".into());
    } else {
        // The gap says why, and what to do.
        let why = past
            .gaps
            .iter()
            .find(|g| g.starts_with("the kernel log cannot be read"))
            .cloned();
        not.push(why.unwrap_or_else(|| "the kernel log cannot be read".into()));
    }
    let wanted = visible(wanted);
    let Some((last, rest)) = asked.split_last() else {
        return format!(
            "no source could be asked about \"{wanted}\": {}",
            not.join("; ")
        );
    };
    let mut sentence = format!(
        "no container named \"{wanted}\" or with an id starting with \"{wanted}\" is known to "
    );
    if !rest.is_empty() {
        sentence.push_str(&rest.join(", "));
        sentence.push_str(" or ");
    }
    sentence.push_str(last);
    if !not.is_empty() {
        sentence.push_str("; ");
        sentence.push_str(&not.join("; "));
        if !journal.is_read() && past.kernel_log {
            sentence.push_str(" (the kernel log knows containers by id only)");
        }
    }
    sentence
}
