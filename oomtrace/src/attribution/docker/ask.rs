//! One-off questions to Docker, for commands that run once and follow no events: each is run
//! to its end on an event loop of its own, within [`WAIT`].

use std::{collections::HashMap, path::Path, time::Duration};

use bollard::query_parameters::ListContainersOptions;

use crate::attribution::runtime::Cache;

use super::{
    cache::apply_event,
    connect::{client, connect},
    inspect::inspect_into,
};

/// How long Docker gets to answer a question.
pub const WAIT: Duration = Duration::from_secs(10);

/// Runs one question to Docker to its end, within `wait`.
pub fn ask<T>(
    socket: &Path,
    wait: Duration,
    question: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the event loop: {e}"))?;
    runtime.block_on(async {
        tokio::time::timeout(wait, question)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "{} did not answer within {} s",
                    socket.display(),
                    wait.as_secs()
                ))
            })
    })
}

/// Every container Docker knows, running or not: its id and name.
pub async fn containers(socket: &Path) -> Result<Vec<(String, Option<String>)>, String> {
    let listed = connect(socket, 5)
        .await?
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

/// What Docker says now about the containers `ids` (those it still knows), and about the
/// containers named `names`: for `history` and `explain`, which run once and do not follow
/// events. An error says why Docker could not be asked.
pub async fn inspect_now(socket: &Path, ids: &[String], names: &[String]) -> Result<Cache, String> {
    let docker = connect(socket, 5).await?;
    let cache = Cache::new("docker");
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

/// The Engine's version, or why it cannot be asked: for `oomtrace check`.
pub async fn version(socket: &Path) -> Result<String, String> {
    let version = client(socket, 3)
        .await?
        .version()
        .await
        .map_err(|e| format!("{} does not answer as a Docker API: {e}", socket.display()))?;
    Ok(version
        .version
        .unwrap_or_else(|| "of unknown version".into()))
}
