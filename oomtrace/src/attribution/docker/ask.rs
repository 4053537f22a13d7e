//! One-off questions to Docker, for commands that run once and follow no events.

use std::{collections::HashMap, path::Path};

use bollard::{API_DEFAULT_VERSION, Docker};

use super::{
    cache::{Cache, apply_event},
    connect::describe_connect_error,
    inspect::inspect_into,
};

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
