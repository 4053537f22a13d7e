//! A watch's view of Docker: the cache kept in step with Docker's events, reconnecting when
//! the daemon goes away, and the starts and deaths of containers as they come.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use futures_util::StreamExt as _;
use tokio::sync::{mpsc, watch};

use super::{cache::apply_event, connect::connect, inspect::inspect_into};
use crate::attribution::runtime::{Cache, Lifecycle, Status};

pub struct Enricher {
    pub cache: Cache,
    pub status: watch::Receiver<Status>,
    inspect: mpsc::UnboundedSender<String>,
    /// Starts and deaths, in the order Docker reported them.
    pub lifecycle: mpsc::UnboundedReceiver<Lifecycle>,
}

impl Enricher {
    /// Asks Docker about a container the cache does not know; the answer lands in the cache.
    pub fn request_inspect(&self, id: &str) {
        let _ = self.inspect.send(id.to_owned());
    }
}

/// Starts the background task that keeps the cache in step with Docker, reconnecting with
/// back-off whenever the daemon goes away.
pub fn start(socket: PathBuf) -> Enricher {
    let cache = Cache::new("docker");
    let (status_tx, status) = watch::channel(Status::Connecting);
    let (inspect, mut requests) = mpsc::unbounded_channel::<String>();
    let (lifecycle_tx, lifecycle) = mpsc::unbounded_channel();
    let task_cache = cache.clone();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(250);
        // An outage is said once, when it begins; its end is said too, so that the next one
        // is said again.
        let mut said_unavailable = false;
        loop {
            let why = session(
                &socket,
                &task_cache,
                &status_tx,
                &mut requests,
                &lifecycle_tx,
                &mut said_unavailable,
            )
            .await;
            // A daemon that was answering gets a quick retry; one that never did, a slower one.
            if *status_tx.borrow() == Status::Synced {
                backoff = Duration::from_millis(250);
            }
            let _ = status_tx.send(Status::Unavailable);
            if !said_unavailable {
                crate::say!(
                    "Docker enrichment is unavailable ({why}); reports carry container ids without names until Docker answers at {}",
                    socket.display()
                );
                said_unavailable = true;
            }
            // Requests made while Docker is away cannot be answered: drop them.
            while requests.try_recv().is_ok() {}
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
    Enricher {
        cache,
        status,
        inspect,
        lifecycle,
    }
}

/// One connection: list what exists, then follow events until the stream ends. Returns why it
/// ended.
async fn session(
    socket: &Path,
    cache: &Cache,
    status: &watch::Sender<Status>,
    requests: &mut mpsc::UnboundedReceiver<String>,
    lifecycle: &mpsc::UnboundedSender<Lifecycle>,
    said_unavailable: &mut bool,
) -> String {
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
    let _ = status.send(Status::Synced);
    if std::mem::take(said_unavailable) {
        crate::say!(
            "Docker answers again at {}: containers are named",
            socket.display()
        );
    }

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
                let time = event
                    .time_nano
                    .and_then(|ns| u64::try_from(ns).ok())
                    .map(|ns| std::time::UNIX_EPOCH + Duration::from_nanos(ns));
                if let Some(changed) = apply_event(cache, action, &id, &attributes) {
                    let died = inspect_into(&docker, cache, &changed).await;
                    let _ = lifecycle.send(match action {
                        "die" => {
                            let exit_code = attributes.get("exitCode").and_then(|c| c.parse().ok());
                            let oom_event_seen = cache.lookup(&id).map(|m| m.oom_event_seen);
                            died.facts_of_exit(id, time, exit_code, oom_event_seen)
                        }
                        _ => Lifecycle::Started { id },
                    });
                }
            }
            Some(id) = requests.recv() => {
                inspect_into(&docker, cache, &id).await;
            }
        }
    }
}
