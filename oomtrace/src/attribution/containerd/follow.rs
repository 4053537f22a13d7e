//! A watch's view of containerd: the cache kept in step with containerd's events in every
//! namespace, reconnecting when containerd goes away, and the starts and exits of tasks.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use containerd_client::{
    events,
    tonic::Streaming,
    types::{Envelope, v1::Process},
};
use futures_util::FutureExt as _;
use prost::Message as _;

use super::{connect::Api, describe::meta_of};
use crate::attribution::{
    following::{self, Enricher, Follow, Link},
    runtime::{Cache, Death, Lifecycle},
};

/// How long containerd gets to answer one call before it counts as away.
const CALL_WAIT: Duration = Duration::from_secs(5);

/// Starts the background task that keeps the cache in step with containerd, reconnecting
/// with back-off whenever it goes away.
pub fn start(socket: PathBuf) -> Enricher {
    following::start(
        Cache::new("containerd"),
        Containerd {
            socket,
            namespaces: Vec::new(),
        },
    )
}

/// containerd, followed through its socket.
struct Containerd {
    socket: PathBuf,
    /// The namespaces containerd listed, where an unknown id is looked for.
    namespaces: Vec<String>,
}

impl Follow for Containerd {
    async fn session(&mut self, link: &mut Link<'_>) -> String {
        let mut session = Session {
            socket: &self.socket,
            namespaces: &mut self.namespaces,
            link,
        };
        session.run().await
    }

    fn unavailable(&self, why: &str) -> String {
        format!(
            "containerd enrichment is unavailable ({why}); Kubernetes containers are reported by id and pod uid until containerd answers at {}",
            self.socket.display()
        )
    }
}

struct Session<'s, 'l> {
    socket: &'s Path,
    namespaces: &'s mut Vec<String>,
    link: &'s mut Link<'l>,
}

impl Session<'_, '_> {
    /// One connection: subscribe, list what exists, then follow events until the stream
    /// ends. Returns why it ended.
    async fn run(&mut self) -> String {
        let api = match Api::connect(self.socket, CALL_WAIT).await {
            Ok(api) => api,
            Err(why) => return why,
        };
        // Subscribed before the listing, so that nothing created in between is missed: the
        // request goes out, on the same connection, ahead of the listing's. Its answer comes
        // with the first event, so it is awaited beside everything else.
        let subscribing = api.subscribe();
        tokio::pin!(subscribing);
        let mut stream = match (&mut subscribing).now_or_never() {
            Some(Ok(stream)) => Some(stream),
            Some(Err(why)) => return format!("the event stream failed: {why}"),
            None => None,
        };
        if let Err(why) = self.list(&api).await {
            return why;
        }
        let socket = self.socket;
        self.link.synced(|| {
            format!(
                "containerd answers again at {}: Kubernetes containers are named",
                socket.display()
            )
        });
        loop {
            let subscribed = stream.is_some();
            tokio::select! {
                answer = &mut subscribing, if !subscribed => match answer {
                    Ok(events) => stream = Some(events),
                    Err(why) => return format!("the event stream failed: {why}"),
                },
                envelope = next_event(stream.as_mut()) => match envelope {
                    Ok(Some(envelope)) => self.apply(&api, envelope).await,
                    Ok(None) => return "the event stream ended".to_owned(),
                    Err(status) => return format!("the event stream failed: {}", status.message()),
                },
                Some(id) = self.link.requests.recv() => self.look_up(&api, &id).await,
            }
        }
    }

    /// Every container in every namespace, and the main pid of each running task. Applied
    /// only once all of it is read: a containerd that stops halfway leaves no container named
    /// without the pid its task would have given.
    async fn list(&mut self, api: &Api) -> Result<(), String> {
        let namespaces = api.namespaces().await?;
        let mut listed = Vec::with_capacity(namespaces.len());
        for namespace in &namespaces {
            let containers = api.containers(namespace).await?;
            let tasks = api.tasks(namespace).await?;
            listed.push((namespace, containers, tasks));
        }
        for (namespace, containers, tasks) in listed {
            for container in containers {
                self.remember(&container, namespace, None);
            }
            for process in tasks {
                if let Some(container) = task_container(&process) {
                    self.link.cache.upsert(container, |slot| {
                        slot.container.main_pid = Some(process.pid);
                    });
                }
            }
        }
        *self.namespaces = namespaces;
        Ok(())
    }

    /// A container the cache did not know: looked for in every namespace.
    async fn look_up(&mut self, api: &Api, id: &str) {
        if let Some(known) = self.link.cache.lookup(id) {
            // Known, but its task's start not followed yet (events are applied in turn): the
            // task says the pid.
            if known.container.main_pid.is_none()
                && known.running != Some(false)
                && let Some(namespace) = known.namespace.as_deref()
                && let Some(pid) = api.task_pid(namespace, id).await
            {
                self.link
                    .cache
                    .upsert(id, |meta| meta.container.main_pid = Some(pid));
            }
            return;
        }
        if let Ok(namespaces) = api.namespaces().await {
            *self.namespaces = namespaces;
        }
        for namespace in self.namespaces.iter() {
            if let Ok(Some(container)) = api.container(namespace, id).await {
                // A kill can come before the task's start event: its task says the pid.
                let main_pid = api.task_pid(namespace, id).await;
                self.remember(&container, namespace, main_pid);
                return;
            }
        }
    }

    fn remember(
        &self,
        container: &containerd_client::services::v1::Container,
        namespace: &str,
        main_pid: Option<u32>,
    ) {
        let meta = meta_of(container, namespace);
        self.link.cache.upsert(&container.id, |slot| {
            let kept = (slot.container.main_pid, slot.oom_event_seen);
            *slot = meta;
            slot.container.main_pid = main_pid.or(kept.0);
            slot.oom_event_seen = kept.1;
        });
    }

    async fn apply(&mut self, api: &Api, envelope: Envelope) {
        let Some(payload) = envelope.event.as_ref().map(|any| any.value.as_slice()) else {
            return;
        };
        let namespace = envelope.namespace.as_str();
        match envelope.topic.as_str() {
            "/containers/create" | "/containers/update" => {
                let id = match envelope.topic.as_str() {
                    "/containers/create" => events::ContainerCreate::decode(payload).map(|e| e.id),
                    _ => events::ContainerUpdate::decode(payload).map(|e| e.id),
                };
                if let Ok(id) = id
                    && let Ok(Some(container)) = api.container(namespace, &id).await
                {
                    self.remember(&container, namespace, None);
                }
                if !self.namespaces.iter().any(|n| n == namespace) {
                    self.namespaces.push(namespace.to_owned());
                }
            }
            "/containers/delete" => {
                if let Ok(deleted) = events::ContainerDelete::decode(payload) {
                    self.link.cache.mark_removed(&deleted.id);
                }
            }
            "/tasks/start" => {
                if let Ok(started) = events::TaskStart::decode(payload) {
                    if self.link.cache.lookup(&started.container_id).is_none()
                        && let Ok(Some(container)) =
                            api.container(namespace, &started.container_id).await
                    {
                        self.remember(&container, namespace, None);
                    }
                    self.link.cache.upsert(&started.container_id, |meta| {
                        meta.container.main_pid = Some(started.pid).filter(|&pid| pid > 0);
                        meta.running = Some(true);
                        meta.oom_event_seen = false;
                    });
                    let _ = self.link.lifecycle.send(Lifecycle::Started {
                        id: started.container_id,
                    });
                }
            }
            "/tasks/oom" => {
                if let Ok(oom) = events::TaskOom::decode(payload) {
                    self.link
                        .cache
                        .upsert(&oom.container_id, |meta| meta.oom_event_seen = true);
                }
            }
            "/tasks/exit" => {
                if let Ok(exit) = events::TaskExit::decode(payload)
                    && let Some(died) = self.died(exit)
                {
                    let _ = self.link.lifecycle.send(died);
                }
            }
            _ => {}
        }
    }

    /// The exit of a task's init process: its container's run ended. An exec'd process's
    /// exit (its own id) is not.
    fn died(&self, exit: events::TaskExit) -> Option<Lifecycle> {
        if exit.id != exit.container_id {
            return None;
        }
        let meta = self.link.cache.lookup(&exit.container_id);
        // The pid stays: it was this run's PID 1, which is what a report about a kill in this
        // run arriving after the exit needs. kubelet starts a new container for the next run;
        // a task started again in the same container brings its own pid at its start.
        self.link
            .cache
            .upsert(&exit.container_id, |meta| meta.running = Some(false));
        Some(Lifecycle::Died(Death {
            id: exit.container_id,
            time: exit.exited_at.and_then(|t| timestamp(t.seconds, t.nanos)),
            exit_code: Some(i64::from(exit.exit_status)),
            // containerd keeps no OOMKilled flag of its own.
            oom_killed: None,
            // kubelet makes a new container for every restart: the count it gave this one
            // is this run's.
            restart_count: meta.as_ref().and_then(|m| m.container.restart_count),
            restarting: None,
            main_pid: Some(exit.pid).filter(|&pid| pid > 0),
            runtime_saw_oom: meta.is_some_and(|m| m.oom_event_seen),
            oom_kill_disabled: None,
        }))
    }
}

/// The container whose init process `process` is, from a task listing. containerd 1.6 lists
/// a task's init process by the container's id and leaves `container_id` empty; later
/// versions may fill it. A process that has not started (pid 0) has no pid to give.
fn task_container(process: &Process) -> Option<&str> {
    let container = match process.container_id.as_str() {
        "" => process.id.as_str(),
        id if id == process.id => id,
        _ => return None,
    };
    (process.pid > 0 && !container.is_empty()).then_some(container)
}

/// The next event, once subscribed; never before.
async fn next_event(
    stream: Option<&mut Streaming<Envelope>>,
) -> Result<Option<Envelope>, containerd_client::tonic::Status> {
    match stream {
        Some(stream) => stream.message().await,
        None => std::future::pending().await,
    }
}

/// A protobuf timestamp as a time; `None` for the zero time or one out of range.
fn timestamp(seconds: i64, nanos: i32) -> Option<SystemTime> {
    let seconds = u64::try_from(seconds).ok().filter(|&s| s > 0)?;
    let nanos = u32::try_from(nanos).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_listing_names_the_container_of_each_init_process() {
        let process = |container_id: &str, id: &str, pid| Process {
            container_id: container_id.into(),
            id: id.into(),
            pid,
            ..Process::default()
        };
        let cases = [
            // containerd 1.6: the init process by the container's id, no container id.
            (process("", "c1", 40), Some("c1")),
            (process("c1", "c1", 40), Some("c1")),
            // An exec'd process.
            (process("c1", "exec-1", 41), None),
            (process("", "c1", 0), None),
            (process("", "", 40), None),
        ];
        for (process, want) in cases {
            assert_eq!(task_container(&process), want, "{process:?}");
        }
    }

    #[test]
    fn timestamps_before_the_epoch_or_zero_are_no_time() {
        assert_eq!(timestamp(0, 0), None);
        assert_eq!(timestamp(-5, 0), None);
        assert_eq!(timestamp(10, -1), None);
        assert_eq!(
            timestamp(10, 5),
            Some(SystemTime::UNIX_EPOCH + Duration::new(10, 5))
        );
    }
}
