//! What a container runtime said about each container, in the shape every runtime's enricher
//! shares: a bounded cache kept by the runtime's event-stream task and read by the report
//! path, the enricher's status, and the starts and deaths of containers it reports.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use oomtrace_core::report::{Container, Label};
use tokio::sync::watch;

/// Whether a runtime's enrichment is currently working.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Connecting,
    Synced,
    Unavailable,
}

/// A container's run beginning or ending, as its runtime's events say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    Started { id: String },
    Died(Death),
}

/// How a container's run ended, as its runtime tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Death {
    pub id: String,
    pub time: Option<SystemTime>,
    pub exit_code: Option<i64>,
    /// `State.OOMKilled` as Docker reports it for the run that ended; `None` from a runtime
    /// that keeps no such flag.
    pub oom_killed: Option<bool>,
    pub restart_count: Option<u32>,
    pub restarting: Option<bool>,
    /// The host pid of the run's PID 1, as the runtime gave it while the run lasted.
    pub main_pid: Option<u32>,
    /// The runtime reported an OOM event for the run (Docker's `oom`, containerd's
    /// `/tasks/oom`).
    pub runtime_saw_oom: bool,
    /// Docker's `HostConfig.OomKillDisable`.
    pub oom_kill_disabled: Option<bool>,
}

/// A removed container stays known this long, for reports of kills just before the removal.
const KEEP_REMOVED: Duration = Duration::from_secs(300);
/// The cache holds at most this many containers; the longest-removed go first, so thousands
/// of short-lived containers cannot grow oomtrace.
pub const MAX_ENTRIES: usize = 4096;

/// What a runtime says about a container: the container as a report describes it, and what
/// only the runtime knows of its runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerMeta {
    /// From the events and an inspect: `labels` only the labels worth carrying (`None` when
    /// it has none), `main_pid` the host pid of its PID 1 while it runs, `main_command` the
    /// program PID 1 runs (`Path`) or `docker-init` when Docker puts its init shim there
    /// (`HostConfig.Init`); never a pod, which the cgroup path tells.
    pub container: Container,
    /// The runtime reported an OOM event for the current run (Docker then sets `OOMKilled`).
    pub oom_event_seen: bool,
    /// A Kubernetes pod's sandbox ("pause") container, as containerd's CRI labels it: the
    /// pod's own, never a workload.
    pub pod_sandbox: bool,
    /// The containerd namespace that holds it (`k8s.io`, `moby`, `default`, ...).
    pub namespace: Option<String>,
    /// From an inspect: whether it runs, and how its last run ended.
    pub running: Option<bool>,
    pub last_exit: Option<i64>,
    pub last_oom_killed: Option<bool>,
    /// Docker's `HostConfig.OomKillDisable`: the kernel's OOM killer is off for it (cgroup v1).
    pub oom_kill_disabled: Option<bool>,
}

struct Entry {
    meta: ContainerMeta,
    removed_at: Option<Instant>,
}

struct Shared {
    /// The runtime every container in this cache belongs to.
    runtime: Label,
    map: Mutex<HashMap<String, Entry>>,
    /// Bumped on every change, for whoever waits for a name.
    version: watch::Sender<u64>,
}

/// The cache, shared between the event-stream task and the report path.
#[derive(Clone)]
pub struct Cache(Arc<Shared>);

impl Cache {
    /// An empty cache for the containers of `runtime` (`"docker"`, `"containerd"`).
    pub fn new(runtime: Label) -> Self {
        Self(Arc::new(Shared {
            runtime,
            map: Mutex::new(HashMap::new()),
            version: watch::channel(0).0,
        }))
    }

    pub fn lookup(&self, id: &str) -> Option<ContainerMeta> {
        self.lock().get(id).map(|entry| entry.meta.clone())
    }

    /// Whether the runtime may still give `id`'s main pid: the container is unknown, or known
    /// without it and not known to have stopped. A kill can come before the start's inspect.
    pub fn awaits_main_pid(&self, id: &str) -> bool {
        self.lock().get(id).is_none_or(|entry| {
            entry.meta.container.main_pid.is_none() && entry.meta.running != Some(false)
        })
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

    /// How many containers it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.0
            .map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn upsert(&self, id: &str, update: impl FnOnce(&mut ContainerMeta)) {
        {
            let mut map = self.lock();
            if !map.contains_key(id) && map.len() >= MAX_ENTRIES {
                evict_one(&mut map);
            }
            let entry = map.entry(id.to_owned()).or_insert_with(|| Entry {
                meta: ContainerMeta {
                    container: Container {
                        runtime: self.0.runtime,
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

    pub fn mark_removed(&self, id: &str) {
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
