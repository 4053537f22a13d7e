//! What an inspect tells about one container: its details, into the cache, and how its last
//! run ended, which makes an exit Docker announced a [`Lifecycle`] fact.

use std::time::SystemTime;

use bollard::Docker;

use super::cache::LABELS;
use crate::attribution::runtime::{Cache, Death, Lifecycle};

/// What the cache knew of a run before its death was announced (the announcement clears it).
#[derive(Debug, Default)]
pub(super) struct BeforeDeath {
    pub main_pid: Option<u32>,
    pub oom_event_seen: Option<bool>,
    pub oom_kill_disabled: Option<bool>,
}

impl BeforeDeath {
    pub fn of(cache: &Cache, id: &str) -> Self {
        let meta = cache.lookup(id);
        Self {
            main_pid: meta.as_ref().and_then(|m| m.container.main_pid),
            oom_event_seen: meta.as_ref().map(|m| m.oom_event_seen),
            oom_kill_disabled: meta.and_then(|m| m.oom_kill_disabled),
        }
    }
}

/// What an inspect says about how a container's last run ended.
#[derive(Debug, Default)]
pub(super) struct RunEnd {
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
    /// The inspect describes that run only if the run it saw both started and ended no later
    /// than the announcement: a container restarting at once may already be in its next run,
    /// or past it (Docker starts the next run only after it announced the exit), and that
    /// run's count or OOMKilled must not be given as this one's. A run's start is not compared
    /// with its end: Docker takes `FinishedAt` from containerd's exit time and `StartedAt` once
    /// the start returns, so a process that exits at once can end "before" it started.
    pub(super) fn facts_of_exit(
        self,
        id: String,
        time: Option<SystemTime>,
        exit_code: Option<i64>,
        before: BeforeDeath,
    ) -> Lifecycle {
        // Docker keeps `Running` true while it restarts a container.
        let ended = self.running == Some(false) || self.restarting == Some(true);
        let same_run = match (self.started_at, self.finished_at, time) {
            (Some(started), Some(finished), Some(announced)) => {
                ended && started <= announced && finished <= announced
            }
            _ => false,
        };
        let restarted_since = match (self.started_at, time) {
            (Some(started), Some(announced)) => started > announced,
            _ => false,
        };
        Lifecycle::Died(Death {
            id,
            time,
            exit_code: exit_code.or(self.exit_code.filter(|_| same_run)),
            // Docker sets OOMKilled on the run's `oom` event, which came before the exit (and
            // tells a container removed before it could be inspected).
            oom_killed: self
                .oom_killed
                .filter(|_| same_run)
                .or(before.oom_event_seen),
            restart_count: self.restart_count.filter(|_| same_run),
            restarting: if same_run {
                self.restarting
            } else {
                restarted_since.then_some(true)
            },
            main_pid: before.main_pid,
            runtime_saw_oom: before.oom_event_seen == Some(true),
            oom_kill_disabled: before.oom_kill_disabled,
        })
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
pub(super) async fn inspect_into(docker: &Docker, cache: &Cache, id: &str) -> RunEnd {
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
    let oom_kill_disabled = host.and_then(|h| h.oom_kill_disable);
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
    let running = end.running;
    cache.upsert(id, |meta| {
        meta.oom_kill_disabled = oom_kill_disabled;
        meta.running = running;
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
    use std::time::Duration;

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
            BeforeDeath {
                oom_event_seen,
                ..BeforeDeath::default()
            },
        ) {
            Lifecycle::Died(Death {
                exit_code,
                oom_killed,
                restart_count,
                restarting,
                ..
            }) => (exit_code, oom_killed, restart_count, restarting),
            Lifecycle::Started { .. } => panic!("an exit"),
        };
        // Stopped for good, seen as it ended: all of it.
        assert_eq!(
            facts(end(false, false, 5, 9), Some(true)),
            (Some(137), Some(true), Some(2), Some(false))
        );
        // A process that exits at once: Docker's FinishedAt (containerd's exit time) can
        // come before its StartedAt (taken once the start returned). Still this run.
        assert_eq!(
            facts(end(false, false, 9, 8), Some(false)),
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
}
