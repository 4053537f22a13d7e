//! Enrichment from the Docker Engine: names, images, labels and main pids of containers, kept
//! in a cache fed by Docker's event stream.
//!
//! The cache exists because a `--rm` container killed at once is gone from the API by the time
//! its report is written; the `create` event already carried its name, image and labels. The
//! report path only ever reads the cache. When it meets a container the cache does not know
//! yet, it asks for an inspect and may wait a moment for the answer (see `commands::watch`);
//! Docker absent or stopped never delays anything.
//!
//! oomtrace only reads from Docker: it lists, inspects and follows events.

use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use bollard::{
    API_DEFAULT_VERSION, Docker,
    query_parameters::{EventsOptions, ListContainersOptions},
};
use futures_util::StreamExt as _;
use oomtrace_core::report::Container;
use tokio::sync::{mpsc, watch};

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

    fn upsert(&self, id: &str, update: impl FnOnce(&mut ContainerMeta)) {
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

/// Whether Docker enrichment is currently working.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Connecting,
    Synced,
    Unavailable,
}

/// A container's run beginning or ending, as Docker's events say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    Started {
        id: String,
    },
    Died {
        id: String,
        time: Option<SystemTime>,
        exit_code: Option<i64>,
        /// `State.OOMKilled` as Docker reports it for the run that ended.
        oom_killed: Option<bool>,
        restart_count: Option<u32>,
        restarting: Option<bool>,
    },
}

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

/// Where to reach Docker: `--docker-socket`, else `DOCKER_HOST` as the docker CLI reads it,
/// else the default socket.
pub fn socket_path(flag: Option<&Path>, docker_host: Option<&str>) -> Result<PathBuf, String> {
    if let Some(path) = flag {
        return Ok(path.to_owned());
    }
    match docker_host.filter(|h| !h.is_empty()) {
        None => Ok(PathBuf::from(DEFAULT_SOCKET)),
        Some(host) => match host.strip_prefix("unix://") {
            Some(path) if path.starts_with('/') => Ok(PathBuf::from(path)),
            _ => Err(format!(
                "DOCKER_HOST={host} is not a unix socket (unix:///path), and oomtrace reads Docker only over one: give --docker-socket PATH"
            )),
        },
    }
}

/// Starts the background task that keeps the cache in step with Docker, reconnecting with
/// back-off whenever the daemon goes away.
pub fn start(socket: PathBuf) -> Enricher {
    let cache = Cache::default();
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

/// Why a unix socket cannot be reached, in words a person can act on.
pub fn describe_connect_error(socket: &Path, err: &io::Error) -> String {
    let path = socket.display();
    match err.kind() {
        io::ErrorKind::PermissionDenied => format!(
            "permission denied on {path}: run oomtrace as root, or as a member of the socket's group (usually `docker`)"
        ),
        io::ErrorKind::NotFound => {
            format!("{path} does not exist: is the Docker daemon installed and running?")
        }
        io::ErrorKind::ConnectionRefused => {
            format!("connection refused at {path}: the Docker daemon is not listening")
        }
        _ => format!("cannot connect to {path}: {err}"),
    }
}

/// What Docker says now about the containers `ids` (those it still knows), and about the
/// containers named `names`: for `history` and `explain`, which run once and do not follow
/// events. An error says why Docker could not be asked.
pub async fn inspect_now(socket: &Path, ids: &[String], names: &[String]) -> Result<Cache, String> {
    if let Err(err) = tokio::net::UnixStream::connect(socket).await {
        return Err(describe_connect_error(socket, &err));
    }
    let docker = Docker::connect_with_unix(&socket.to_string_lossy(), 5, API_DEFAULT_VERSION)
        .map_err(|e| e.to_string())?;
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| format!("{} does not answer as a Docker API: {e}", socket.display()))?;
    let cache = Cache::default();
    for id in ids.iter().chain(names) {
        // inspect accepts a name as well as an id; the cache is keyed by the full id.
        if let Ok(inspect) = docker.inspect_container(id, None).await
            && let Some(full) = inspect.id.clone()
        {
            apply_event(&cache, "create", &full, &HashMap::new());
            inspect_into(&docker, &cache, &full).await;
            let end = inspect.state.as_ref();
            cache.upsert(&full, |meta| {
                meta.last_exit = end.and_then(|s| s.exit_code);
                meta.last_oom_killed = end.and_then(|s| s.oom_killed);
                meta.running = end.and_then(|s| s.running);
            });
        }
    }
    Ok(cache)
}

/// The containers the cache holds, as `(id, meta)`.
impl Cache {
    pub fn all(&self) -> Vec<(String, ContainerMeta)> {
        self.lock()
            .iter()
            .map(|(id, e)| (id.clone(), e.meta.clone()))
            .collect()
    }
}

/// The Engine's version, or why it cannot be asked: for `oomtrace check`.
pub async fn version(socket: &Path) -> Result<String, String> {
    if let Err(err) = tokio::net::UnixStream::connect(socket).await {
        return Err(describe_connect_error(socket, &err));
    }
    let docker = Docker::connect_with_unix(&socket.to_string_lossy(), 3, API_DEFAULT_VERSION)
        .map_err(|e| e.to_string())?;
    let version = docker
        .version()
        .await
        .map_err(|e| format!("{} does not answer as a Docker API: {e}", socket.display()))?;
    Ok(version
        .version
        .unwrap_or_else(|| "of unknown version".into()))
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
    // bollard connects lazily and wraps a refused socket in transport jargon; a plain connect
    // first gives the reason in words.
    if let Err(err) = tokio::net::UnixStream::connect(socket).await {
        return describe_connect_error(socket, &err);
    }
    let docker = match Docker::connect_with_unix(&socket.to_string_lossy(), 10, API_DEFAULT_VERSION)
    {
        Ok(docker) => docker,
        Err(err) => return err.to_string(),
    };
    let docker = match docker.negotiate_version().await {
        Ok(docker) => docker,
        Err(err) => {
            return format!(
                "{} does not answer as a Docker API: {err}",
                socket.display()
            );
        }
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

/// What an inspect says about how a container's last run ended.
#[derive(Debug, Default)]
struct RunEnd {
    exit_code: Option<i64>,
    oom_killed: Option<bool>,
    restart_count: Option<u32>,
    restarting: Option<bool>,
    running: Option<bool>,
    started_at: Option<SystemTime>,
    finished_at: Option<SystemTime>,
}

impl RunEnd {
    /// The exit Docker announced at `time`, told with what this inspect, made after it, says.
    /// The inspect describes that run only if the run it saw ended no later than the
    /// announcement: a container restarting at once may already be in its next run, or past
    /// it, and that run's count or OOMKilled must not be given as this one's.
    fn facts_of_exit(
        self,
        id: String,
        time: Option<SystemTime>,
        exit_code: Option<i64>,
        oom_event_seen: Option<bool>,
    ) -> Lifecycle {
        // Docker keeps `Running` true while it restarts a container.
        let ended = self.running == Some(false) || self.restarting == Some(true);
        let same_run = match (self.started_at, self.finished_at, time) {
            (Some(started), Some(finished), Some(announced)) => {
                ended && started <= finished && finished <= announced
            }
            _ => false,
        };
        let restarted_since = match (self.started_at, time) {
            (Some(started), Some(announced)) => started > announced,
            _ => false,
        };
        Lifecycle::Died {
            id,
            time,
            exit_code: exit_code.or(self.exit_code.filter(|_| same_run)),
            // Docker sets OOMKilled on the run's `oom` event, which came before the exit (and
            // tells a container removed before it could be inspected).
            oom_killed: self.oom_killed.filter(|_| same_run).or(oom_event_seen),
            restart_count: self.restart_count.filter(|_| same_run),
            restarting: if same_run {
                self.restarting
            } else {
                restarted_since.then_some(true)
            },
        }
    }
}

/// A time as Docker's API writes it (RFC 3339 with nanoseconds); Docker's zero time
/// (`0001-01-01T00:00:00Z`) for "never" is `None`.
fn docker_time(text: Option<&str>) -> Option<SystemTime> {
    let at: jiff::Timestamp = text?.parse().ok()?;
    Some(SystemTime::from(at)).filter(|&t| t > SystemTime::UNIX_EPOCH)
}

/// Fills in what only an inspect tells: the main pid, restart policy and count, memory limit.
/// Returns how the last run ended, for a container that is not running.
async fn inspect_into(docker: &Docker, cache: &Cache, id: &str) -> RunEnd {
    let Ok(inspect) = docker.inspect_container(id, None).await else {
        return RunEnd::default();
    };
    let state = inspect.state.as_ref();
    let end = RunEnd {
        exit_code: state.and_then(|s| s.exit_code),
        oom_killed: state.and_then(|s| s.oom_killed),
        restart_count: inspect.restart_count.and_then(|n| u32::try_from(n).ok()),
        restarting: state.and_then(|s| s.restarting),
        running: state.and_then(|s| s.running),
        started_at: docker_time(state.and_then(|s| s.started_at.as_deref())),
        finished_at: docker_time(state.and_then(|s| s.finished_at.as_deref())),
    };
    let main_pid = inspect
        .state
        .as_ref()
        .and_then(|s| s.pid)
        .filter(|&pid| pid > 0)
        .map(|pid| pid as u32);
    let host = inspect.host_config.as_ref();
    let policy = host.and_then(|h| h.restart_policy.as_ref());
    let restart_policy = policy
        .and_then(|p| p.name.as_ref())
        .map(|name| name.to_string())
        .filter(|name| !name.is_empty() && name != "no");
    // Docker keeps a retry count for every policy; it means something only for on-failure.
    let restart_max_retries = policy
        .and_then(|p| p.maximum_retry_count)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|_| restart_policy.as_deref() == Some("on-failure"));
    let memory_limit_bytes = host
        .and_then(|h| h.memory)
        .filter(|&m| m > 0)
        .map(|m| m as u64);
    // With `--init`, Docker starts its shim as PID 1 and `Path` names the app it runs.
    let main_command = if host.and_then(|h| h.init) == Some(true) {
        Some("docker-init".to_owned())
    } else {
        inspect.path.clone()
    };
    let restart_count = inspect.restart_count.and_then(|n| u32::try_from(n).ok());
    let name = inspect.name.map(|n| n.trim_start_matches('/').to_owned());
    let image = inspect.config.as_ref().and_then(|c| c.image.clone());
    let labels = inspect.config.and_then(|c| c.labels).unwrap_or_default();
    cache.upsert(id, |meta| {
        let container = &mut meta.container;
        container.main_pid = main_pid;
        container.restart_policy = restart_policy;
        container.restart_max_retries = restart_max_retries;
        container.restart_count = restart_count;
        container.memory_limit_bytes = memory_limit_bytes;
        container.main_command = main_command;
        container.name = name.or(container.name.take());
        container.image = image.or(container.image.take());
        for label in LABELS {
            if let Some(value) = labels.get(label) {
                let known = container.labels.get_or_insert_default();
                known.insert(label.to_owned(), value.clone());
            }
        }
    });
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_takes_only_what_the_inspect_says_about_its_own_run() {
        let t =
            |secs: u64| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs));
        let end = |running, restarting, started, finished| RunEnd {
            exit_code: Some(137),
            oom_killed: Some(true),
            restart_count: Some(2),
            restarting: Some(restarting),
            running: Some(running),
            started_at: t(started),
            finished_at: t(finished),
        };
        let facts = |end: RunEnd, oom_event_seen| match end.facts_of_exit(
            "c".into(),
            t(10),
            None,
            oom_event_seen,
        ) {
            Lifecycle::Died {
                exit_code,
                oom_killed,
                restart_count,
                restarting,
                ..
            } => (exit_code, oom_killed, restart_count, restarting),
            Lifecycle::Started { .. } => panic!("an exit"),
        };
        // Stopped for good, seen as it ended: all of it.
        assert_eq!(
            facts(end(false, false, 5, 9), Some(true)),
            (Some(137), Some(true), Some(2), Some(false))
        );
        // Restarting (Docker keeps Running true then): this run's end, restart counted.
        assert_eq!(
            facts(end(true, true, 5, 9), Some(true)),
            (Some(137), Some(true), Some(2), Some(true))
        );
        // Already running again: the count and OOMKilled are the next run's, not given;
        // that Docker restarted it is a fact.
        assert_eq!(
            facts(end(true, false, 11, 9), Some(true)),
            (None, Some(true), None, Some(true))
        );
        // The next run already ended too.
        assert_eq!(
            facts(end(false, false, 11, 12), None),
            (None, None, None, Some(true))
        );
        // No times: nothing ties the inspect to this run.
        let mut unknown = end(false, false, 5, 9);
        unknown.finished_at = None;
        assert_eq!(facts(unknown, Some(false)), (None, Some(false), None, None));
        // Docker's "never" is no time at all.
        assert_eq!(docker_time(Some("0001-01-01T00:00:00Z")), None);
        assert_eq!(
            docker_time(Some("2026-11-25T22:10:23.007432Z")),
            Some(
                SystemTime::UNIX_EPOCH
                    + Duration::from_secs(1_795_644_623)
                    + Duration::from_micros(7432)
            )
        );
    }

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

    #[test]
    fn the_socket_comes_from_the_flag_then_docker_host() {
        type Case<'a> = (Option<&'a Path>, Option<&'a str>, Result<&'a str, &'a str>);
        let flag = Path::new("/run/other.sock");
        let cases: [Case; 6] = [
            (Some(flag), Some("unix:///x.sock"), Ok("/run/other.sock")),
            (
                None,
                Some("unix:///run/user/1000/docker.sock"),
                Ok("/run/user/1000/docker.sock"),
            ),
            (None, None, Ok(DEFAULT_SOCKET)),
            (None, Some(""), Ok(DEFAULT_SOCKET)),
            (
                None,
                Some("tcp://10.0.0.1:2375"),
                Err("is not a unix socket"),
            ),
            (None, Some("unix://relative"), Err("is not a unix socket")),
        ];
        for (flag, host, want) in cases {
            let got = socket_path(flag, host);
            match want {
                Ok(path) => assert_eq!(got, Ok(PathBuf::from(path)), "{host:?}"),
                Err(part) => assert!(got.unwrap_err().contains(part), "{host:?}"),
            }
        }
    }

    #[test]
    fn connection_errors_say_what_to_do() {
        let socket = Path::new("/var/run/docker.sock");
        let cases = [
            (io::ErrorKind::PermissionDenied, "docker` group"),
            (
                io::ErrorKind::NotFound,
                "is the Docker daemon installed and running",
            ),
            (io::ErrorKind::ConnectionRefused, "not listening"),
        ];
        for (kind, part) in cases {
            let said = describe_connect_error(socket, &io::Error::from(kind));
            assert!(said.contains(part) || said.contains("`docker`"), "{said}");
            assert!(said.contains("/var/run/docker.sock"), "{said}");
            assert!(!said.contains("hyper"), "{said}");
        }
    }
}
