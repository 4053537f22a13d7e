//! Docker's events applied to the runtime cache ([`Cache`]): what each action tells about a
//! container.

use std::collections::HashMap;

use crate::attribution::runtime::{Cache, ContainerMeta};

/// Labels worth carrying into a report: who owns the container.
pub const LABELS: [&str; 5] = [
    "com.docker.compose.project",
    "com.docker.compose.service",
    "io.kubernetes.pod.name",
    "io.kubernetes.pod.namespace",
    "io.kubernetes.container.name",
];

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
                meta.running = None;
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
                meta.running = Some(false);
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
    use crate::attribution::runtime::MAX_ENTRIES;

    fn attrs(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn create_event_names_a_container_before_it_runs() {
        let cache = Cache::new("docker");
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
        let cache = Cache::new("docker");
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
    fn a_kill_waits_for_pid_1_only_while_a_run_may_still_give_it() {
        let cache = Cache::new("docker");
        let id = "cd".repeat(32);
        let inspected = |running, pid| {
            cache.upsert(&id, |meta| {
                meta.running = Some(running);
                meta.container.main_pid = pid;
            })
        };
        assert!(cache.awaits_main_pid(&id), "unknown");
        apply_event(&cache, "create", &id, &attrs(&[("name", "job")]));
        assert!(cache.awaits_main_pid(&id), "named, but PID 1 not given yet");
        apply_event(&cache, "start", &id, &attrs(&[]));
        assert!(cache.awaits_main_pid(&id), "started, not inspected yet");
        inspected(true, Some(4242));
        assert!(!cache.awaits_main_pid(&id));
        apply_event(&cache, "die", &id, &attrs(&[]));
        assert!(!cache.awaits_main_pid(&id), "dead: nothing more to give");
        apply_event(&cache, "start", &id, &attrs(&[]));
        assert!(
            cache.awaits_main_pid(&id),
            "the next run's PID 1 is not the last's"
        );
        inspected(false, None);
        assert!(!cache.awaits_main_pid(&id), "died before its inspect");
    }

    #[test]
    fn the_cache_is_bounded_and_gives_up_removed_containers_first() {
        let cache = Cache::new("docker");
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
        assert_eq!(cache.len(), MAX_ENTRIES);
        assert!(cache.lookup(&id(7)).is_none(), "the removed one went first");
        assert!(cache.lookup(&id(MAX_ENTRIES)).is_some());
    }
}
