//! Enrichment from the Docker Engine: names, images, labels and main pids of containers, kept
//! in a cache fed by Docker's event stream.
//!
//! The cache exists because a `--rm` container killed at once is gone from the API by the time
//! its report is written; the `create` event already carried its name, image and labels. The
//! report path only ever reads the cache: Docker absent, stopped or slow never delays a report.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bollard::{
    API_DEFAULT_VERSION, Docker,
    query_parameters::{EventsOptions, ListContainersOptions},
};
use futures_util::StreamExt as _;
use tokio::sync::watch;

pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Labels worth carrying into a report: who owns the container.
pub const LABELS: [&str; 5] = [
    "com.docker.compose.project",
    "com.docker.compose.service",
    "io.kubernetes.pod.name",
    "io.kubernetes.pod.namespace",
    "io.kubernetes.container.name",
];

/// A removed container stays known this long, for reports of kills just before the removal.
const KEEP_REMOVED: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerMeta {
    pub name: Option<String>,
    pub image: Option<String>,
    /// Only the [`LABELS`] the container has.
    pub labels: BTreeMap<String, String>,
    /// Host pid of the container's PID 1 while it runs.
    pub main_pid: Option<u32>,
    /// `HostConfig.RestartPolicy.Name`, e.g. `on-failure`.
    pub restart_policy: Option<String>,
    /// `HostConfig.Memory` in bytes, when a limit is set.
    pub memory_limit: Option<u64>,
}

struct Entry {
    meta: ContainerMeta,
    removed_at: Option<Instant>,
}

/// The cache, shared between the event-stream task and the report path.
#[derive(Clone, Default)]
pub struct Cache(Arc<Mutex<HashMap<String, Entry>>>);

impl Cache {
    pub fn lookup(&self, id: &str) -> Option<ContainerMeta> {
        self.lock().get(id).map(|entry| entry.meta.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn upsert(&self, id: &str, update: impl FnOnce(&mut ContainerMeta)) {
        let mut map = self.lock();
        let entry = map.entry(id.to_owned()).or_insert_with(|| Entry {
            meta: ContainerMeta::default(),
            removed_at: None,
        });
        entry.removed_at = None;
        update(&mut entry.meta);
    }

    fn mark_removed(&self, id: &str) {
        let now = Instant::now();
        let mut map = self.lock();
        if let Some(entry) = map.get_mut(id) {
            entry.removed_at = Some(now);
        }
        map.retain(|_, e| {
            e.removed_at
                .is_none_or(|at| now.duration_since(at) < KEEP_REMOVED)
        });
    }
}

/// Applies one Docker event to the cache. Pure apart from the cache, so it is tested without
/// a daemon. Returns the id of a container that (re)started, whose pid must be inspected.
pub fn apply_event(
    cache: &Cache,
    action: &str,
    id: &str,
    attributes: &HashMap<String, String>,
) -> Option<String> {
    let known = |meta: &mut ContainerMeta| {
        if let Some(name) = attributes.get("name") {
            meta.name = Some(name.clone());
        }
        if let Some(image) = attributes.get("image") {
            meta.image = Some(image.clone());
        }
        for label in LABELS {
            if let Some(value) = attributes.get(label) {
                meta.labels.insert(label.to_owned(), value.clone());
            }
        }
    };
    match action {
        "create" | "rename" | "update" => cache.upsert(id, known),
        "start" | "restart" => {
            // A new main process; the old pid must not outlive its process, even if the
            // inspect that finds the new one comes too late (its PID 1 already dead).
            cache.upsert(id, |meta| {
                known(meta);
                meta.main_pid = None;
            });
            return Some(id.to_owned());
        }
        "die" => cache.upsert(id, |meta| {
            known(meta);
            meta.main_pid = None;
        }),
        "kill" | "stop" | "oom" | "pause" | "unpause" => cache.upsert(id, known),
        "destroy" => cache.mark_removed(id),
        _ => {}
    }
    None
}

/// Whether Docker enrichment is currently working; the report path reads it to say once that
/// names are missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Connecting,
    Synced,
    Unavailable,
}

pub struct Enricher {
    pub cache: Cache,
    pub status: watch::Receiver<Status>,
}

/// Starts the background task that keeps the cache in step with Docker, reconnecting with
/// back-off whenever the daemon goes away.
pub fn start(socket: PathBuf) -> Enricher {
    let cache = Cache::default();
    let (status_tx, status) = watch::channel(Status::Connecting);
    let task_cache = cache.clone();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(250);
        let mut said_unavailable = false;
        loop {
            let err = session(&socket, &task_cache, &status_tx).await;
            // A daemon that was answering gets a quick retry; one that never did, a slower one.
            if *status_tx.borrow() == Status::Synced {
                backoff = Duration::from_millis(250);
            }
            let _ = status_tx.send(Status::Unavailable);
            if !said_unavailable {
                eprintln!(
                    "oomtrace: Docker enrichment is unavailable ({err}); reports carry container ids without names until Docker answers at {}",
                    socket.display()
                );
                said_unavailable = true;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
    Enricher { cache, status }
}

/// One connection: list what exists, then follow events until the stream ends. Returns why it
/// ended.
async fn session(
    socket: &std::path::Path,
    cache: &Cache,
    status: &watch::Sender<Status>,
) -> String {
    let docker = match Docker::connect_with_unix(&socket.to_string_lossy(), 10, API_DEFAULT_VERSION)
    {
        Ok(docker) => docker,
        Err(err) => return err.to_string(),
    };
    let docker = match docker.negotiate_version().await {
        Ok(docker) => docker,
        Err(err) => return err.to_string(),
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

    let mut filters = HashMap::new();
    filters.insert("type".to_owned(), vec!["container".to_owned()]);
    let mut events = docker.events(Some(EventsOptions {
        since: Some(since.to_string()),
        until: None,
        filters: Some(filters),
    }));
    while let Some(event) = events.next().await {
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
        if let Some(started) = apply_event(cache, action, &id, &attributes) {
            inspect_into(&docker, cache, &started).await;
        }
    }
    "the event stream ended".to_owned()
}

/// Fills in what only an inspect tells: the main pid, restart policy and memory limit.
async fn inspect_into(docker: &Docker, cache: &Cache, id: &str) {
    let Ok(inspect) = docker.inspect_container(id, None).await else {
        return;
    };
    let main_pid = inspect
        .state
        .as_ref()
        .and_then(|s| s.pid)
        .filter(|&pid| pid > 0)
        .map(|pid| pid as u32);
    let host = inspect.host_config.as_ref();
    let restart_policy = host
        .and_then(|h| h.restart_policy.as_ref())
        .and_then(|p| p.name.as_ref())
        .map(|name| name.to_string())
        .filter(|name| !name.is_empty() && name != "no");
    let memory_limit = host
        .and_then(|h| h.memory)
        .filter(|&m| m > 0)
        .map(|m| m as u64);
    let name = inspect.name.map(|n| n.trim_start_matches('/').to_owned());
    let image = inspect.config.as_ref().and_then(|c| c.image.clone());
    let labels = inspect.config.and_then(|c| c.labels).unwrap_or_default();
    cache.upsert(id, |meta| {
        meta.main_pid = main_pid;
        meta.restart_policy = restart_policy;
        meta.memory_limit = memory_limit;
        meta.name = name.or(meta.name.take());
        meta.image = image.or(meta.image.take());
        for label in LABELS {
            if let Some(value) = labels.get(label) {
                meta.labels.insert(label.to_owned(), value.clone());
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn create_event_names_a_container_before_it_runs() {
        let cache = Cache::default();
        let id = "4f2c".repeat(16);
        let started = apply_event(
            &cache,
            "create",
            &id,
            &attrs(&[
                ("name", "web-1"),
                ("image", "oomtrace-busybox:latest"),
                ("com.docker.compose.project", "shop"),
                ("com.docker.compose.service", "web"),
                ("maintainer", "someone"),
            ]),
        );
        assert_eq!(started, None);
        let meta = cache.lookup(&id).unwrap();
        assert_eq!(meta.name.as_deref(), Some("web-1"));
        assert_eq!(meta.image.as_deref(), Some("oomtrace-busybox:latest"));
        assert_eq!(
            meta.labels.len(),
            2,
            "only the labels that matter: {:?}",
            meta.labels
        );
        assert_eq!(meta.labels["com.docker.compose.service"], "web");
    }

    #[test]
    fn start_asks_for_an_inspect_and_destroy_keeps_the_name_for_a_while() {
        let cache = Cache::default();
        let id = "ab".repeat(32);
        assert_eq!(
            apply_event(&cache, "start", &id, &attrs(&[("name", "job")])),
            Some(id.clone())
        );
        apply_event(&cache, "destroy", &id, &attrs(&[]));
        assert_eq!(cache.lookup(&id).unwrap().name.as_deref(), Some("job"));
        assert_eq!(
            apply_event(&cache, "rename", &id, &attrs(&[("name", "job2")])),
            None
        );
        assert_eq!(cache.lookup(&id).unwrap().name.as_deref(), Some("job2"));
        assert!(cache.lookup("unknown").is_none());
    }
}
