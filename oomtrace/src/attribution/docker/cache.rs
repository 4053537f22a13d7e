//! What Docker said about each container, shared between the event-stream task and the
//! report path, bounded, and fed by events ([`apply_event`]) and inspects.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use oomtrace_core::report::Container;
use tokio::sync::watch;

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
/// The cache holds at most this many containers; the longest-removed go first, so thousands
/// of short-lived containers cannot grow oomtrace.
const MAX_ENTRIES: usize = 4096;

/// What Docker says about a container: the container as a report describes it, and what
/// only Docker knows of its runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerMeta {
    /// From the events and an inspect: `labels` only the [`LABELS`] it has (`None` when it
    /// has none), `main_pid` the host pid of its PID 1 while it runs, `main_command` the
    /// program PID 1 runs (`Path`) or `docker-init` when Docker puts its init shim there
    /// (`HostConfig.Init`); never a pod, which Docker does not know.
    pub container: Container,
    /// Docker reported an `oom` event for the current run (it then sets `OOMKilled`).
    pub oom_event_seen: bool,
    /// From an inspect: whether it runs, and how its last run ended.
    pub running: Option<bool>,
    pub last_exit: Option<i64>,
    pub last_oom_killed: Option<bool>,
}

struct Entry {
    meta: ContainerMeta,
    removed_at: Option<Instant>,
}

struct Shared {
    map: Mutex<HashMap<String, Entry>>,
    /// Bumped on every change, for whoever waits for a name.
    version: watch::Sender<u64>,
}

/// The cache, shared between the event-stream task and the report path.
#[derive(Clone)]
pub struct Cache(Arc<Shared>);

impl Default for Cache {
    fn default() -> Self {
        Self(Arc::new(Shared {
            map: Mutex::new(HashMap::new()),
            version: watch::channel(0).0,
        }))
    }
}

impl Cache {
    pub fn lookup(&self, id: &str) -> Option<ContainerMeta> {
        self.lock().get(id).map(|entry| entry.meta.clone())
    }

    /// The containers the cache holds, as `(id, meta)`.
    pub fn all(&self) -> Vec<(String, ContainerMeta)> {
        self.lock()
            .iter()
            .map(|(id, e)| (id.clone(), e.meta.clone()))
            .collect()
    }

    /// The ids of containers (removed ones included) named `name`.
    pub fn ids_named(&self, name: &str) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.meta.container.name.as_deref() == Some(name))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Puts `meta` in as an inspect would: for tests of what reads the cache.
    #[cfg(test)]
    pub fn insert(&self, id: &str, meta: ContainerMeta) {
        self.upsert(id, |slot| {
            *slot = ContainerMeta {
                container: Container {
                    runtime: slot.container.runtime,
                    id: slot.container.id.clone(),
                    ..meta.container
                },
                ..meta
            }
        });
    }

    /// A receiver whose `changed()` resolves after the cache changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.version.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.0
            .map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn upsert(&self, id: &str, update: impl FnOnce(&mut ContainerMeta)) {
        {
            let mut map = self.lock();
            if !map.contains_key(id) && map.len() >= MAX_ENTRIES {
                evict_one(&mut map);
            }
            let entry = map.entry(id.to_owned()).or_insert_with(|| Entry {
                meta: ContainerMeta {
                    container: Container {
                        runtime: "docker",
                        id: id.to_owned(),
                        ..Container::default()
                    },
                    ..ContainerMeta::default()
                },
                removed_at: None,
            });
            entry.removed_at = None;
            update(&mut entry.meta);
        }
        self.0.version.send_modify(|v| *v += 1);
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

/// Makes room: the container removed longest ago, else any one (a host with more than
/// [`MAX_ENTRIES`] live containers loses names, not memory).
fn evict_one(map: &mut HashMap<String, Entry>) {
    let victim = map
        .iter()
        .filter_map(|(id, e)| e.removed_at.map(|at| (at, id)))
        .min()
        .map(|(_, id)| id.clone())
        .or_else(|| map.keys().next().cloned());
    if let Some(id) = victim {
        map.remove(&id);
    }
}

/// Applies one Docker event to the cache. Pure apart from the cache, so it is tested without
/// a daemon. Returns the id of a container that must be inspected: it (re)started, or died.
pub fn apply_event(
    cache: &Cache,
    action: &str,
    id: &str,
    attributes: &HashMap<String, String>,
) -> Option<String> {
    let known = |meta: &mut ContainerMeta| {
        let container = &mut meta.container;
        if let Some(name) = attributes.get("name") {
            container.name = Some(name.clone());
        }
        if let Some(image) = attributes.get("image") {
            container.image = Some(image.clone());
        }
        for label in LABELS {
            if let Some(value) = attributes.get(label) {
                let labels = container.labels.get_or_insert_default();
                labels.insert(label.to_owned(), value.clone());
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
                meta.container.main_pid = None;
                meta.oom_event_seen = false;
            });
            return Some(id.to_owned());
        }
        "oom" => cache.upsert(id, |meta| {
            known(meta);
            meta.oom_event_seen = true;
        }),
        "die" => {
            cache.upsert(id, |meta| {
                known(meta);
                meta.container.main_pid = None;
            });
            return Some(id.to_owned());
        }
        "kill" | "stop" | "pause" | "unpause" => cache.upsert(id, known),
        "destroy" => cache.mark_removed(id),
        _ => {}
    }
    None
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
        let meta = cache.lookup(&id).unwrap().container;
        assert_eq!(meta.name.as_deref(), Some("web-1"));
        assert_eq!(meta.image.as_deref(), Some("oomtrace-busybox:latest"));
        let labels = meta.labels.unwrap_or_default();
        assert_eq!(labels.len(), 2, "only the labels that matter: {labels:?}");
        assert_eq!(labels["com.docker.compose.service"], "web");
        assert_eq!(cache.ids_named("web-1"), vec![id]);
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
        assert_eq!(
            cache.lookup(&id).unwrap().container.name.as_deref(),
            Some("job")
        );
        assert_eq!(
            apply_event(&cache, "rename", &id, &attrs(&[("name", "job2")])),
            None
        );
        assert_eq!(
            cache.lookup(&id).unwrap().container.name.as_deref(),
            Some("job2")
        );
        assert!(cache.lookup("unknown").is_none());
    }

    #[test]
    fn the_cache_is_bounded_and_gives_up_removed_containers_first() {
        let cache = Cache::default();
        let id = |n: usize| format!("{n:064x}");
        for n in 0..MAX_ENTRIES {
            apply_event(&cache, "create", &id(n), &attrs(&[("name", "c")]));
        }
        apply_event(&cache, "destroy", &id(7), &attrs(&[]));
        apply_event(
            &cache,
            "create",
            &id(MAX_ENTRIES),
            &attrs(&[("name", "new")]),
        );
        assert_eq!(cache.lock().len(), MAX_ENTRIES);
        assert!(cache.lookup(&id(7)).is_none(), "the removed one went first");
        assert!(cache.lookup(&id(MAX_ENTRIES)).is_some());
    }
}
