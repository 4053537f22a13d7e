//! A watch's view of Docker: the cache kept in step with Docker's events, reconnecting when
//! the daemon goes away, and the starts and deaths of containers as they come.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use futures_util::StreamExt as _;

use super::{
    cache::apply_event,
    connect::connect,
    inspect::{BeforeDeath, inspect_into},
};
use crate::attribution::{
    following::{self, Enricher, Follow, Link},
    runtime::{Cache, Lifecycle},
};

/// Docker, followed through its socket.
struct Docker {
    socket: PathBuf,
}

/// Starts the background task that keeps the cache in step with Docker, reconnecting with
/// back-off whenever the daemon goes away.
pub fn start(socket: PathBuf) -> Enricher {
    following::start(Cache::new("docker"), Docker { socket })
}

impl Follow for Docker {
    async fn session(&mut self, link: &mut Link<'_>) -> String {
        session(&self.socket, link).await
    }

    fn unavailable(&self, why: &str) -> String {
        format!(
            "Docker enrichment is unavailable ({why}); reports carry container ids without names until Docker answers at {}",
            self.socket.display()
        )
    }
}

/// One connection: list what exists, then follow events until the stream ends. Returns why it
/// ended.
async fn session(socket: &Path, link: &mut Link<'_>) -> String {
    let cache = link.cache;
    let docker = match connect(socket, 10).await {
        Ok(docker) => docker,
        Err(why) => return why,
    };
    // Replaying from a second before the listing closes the gap between list and stream.
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().saturating_sub(1));
    let listed = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await;
    let listed = match listed {
        Ok(listed) => listed,
        Err(err) => return err.to_string(),
    };
    let mut running = Vec::new();
    for summary in listed {
        let Some(id) = summary.id else { continue };
        let attributes: HashMap<String, String> = summary
            .labels
            .unwrap_or_default()
            .into_iter()
            .chain(
                summary
                    .names
                    .and_then(|names| names.into_iter().next())
                    .map(|name| ("name".to_owned(), name.trim_start_matches('/').to_owned())),
            )
            .chain(summary.image.map(|image| ("image".to_owned(), image)))
            .collect();
        apply_event(cache, "create", &id, &attributes);
        if summary.state.is_some_and(|s| s.to_string() == "running") {
            running.push(id);
        }
    }
    for id in running {
        inspect_into(&docker, cache, &id).await;
    }
    link.synced(|| {
        format!(
            "Docker answers again at {}: containers are named",
            socket.display()
        )
    });

    let mut filters = HashMap::new();
    filters.insert("type".to_owned(), vec!["container".to_owned()]);
    let mut events = docker.events(Some(EventsOptions {
        since: Some(since.to_string()),
        until: None,
        filters: Some(filters),
    }));
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else {
                    return "the event stream ended".to_owned();
                };
                let event = match event {
                    Ok(event) => event,
                    Err(err) => return err.to_string(),
                };
                let (Some(action), Some(actor)) = (event.action, event.actor) else {
                    continue;
                };
                let Some(id) = actor.id else { continue };
                let attributes = actor.attributes.unwrap_or_default();
                // `exec_start: sh -c ...` and friends carry a suffix after the action's name.
                let action = action.split(':').next().unwrap_or_default();
                let before = BeforeDeath::of(cache, &id);
                let time = event
                    .time_nano
                    .and_then(|ns| u64::try_from(ns).ok())
                    .map(|ns| std::time::UNIX_EPOCH + Duration::from_nanos(ns));
                if let Some(changed) = apply_event(cache, action, &id, &attributes) {
                    let died = inspect_into(&docker, cache, &changed).await;
                    let _ = link.lifecycle.send(match action {
                        "die" => {
                            let exit_code = attributes.get("exitCode").and_then(|c| c.parse().ok());
                            died.facts_of_exit(id, time, exit_code, before)
                        }
                        _ => Lifecycle::Started { id },
                    });
                }
            }
            Some(id) = link.requests.recv() => {
                inspect_into(&docker, cache, &id).await;
            }
        }
    }
}
