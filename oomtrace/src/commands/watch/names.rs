//! `--container` values checked against what Docker knows, and what a `--since` replay read
//! from the journal and the kernel log, said once each: a name Docker cannot resolve because
//! it is away, and a value that matches no container any of them knows. Neither stops the
//! watch; the filter keeps applying as documented.

use crate::attribution::runtime::{Cache, Status};
use oomtrace_core::output::filter::names_container;

/// What has been said, so each warning is given once.
#[derive(Debug, Default)]
pub struct NameCheck {
    said_unreachable: bool,
    checked: bool,
    /// Containers (id, name) a replay found in the journal and the kernel log.
    replayed: Option<Vec<(String, Option<String>)>>,
}

impl NameCheck {
    /// Adds the containers a `--since` replay named: a removed container's kills are found by
    /// the name the journal kept.
    pub fn also_known(&mut self, containers: Vec<(String, Option<String>)>) {
        self.replayed.get_or_insert_default().extend(containers);
    }

    /// Called whenever Docker's status changes.
    pub fn on_status(&mut self, status: Status, cache: &Cache, wanted: &[String]) {
        if wanted.is_empty() {
            return;
        }
        match status {
            Status::Unavailable if !self.said_unreachable => {
                self.said_unreachable = true;
                crate::say!(
                    "Docker cannot be reached, so --container cannot match containers by name; ids still match by prefix"
                );
            }
            Status::Synced if !self.checked => {
                self.checked = true;
                let mut known = names_in(cache);
                known.extend(self.replayed.iter().flatten().cloned());
                let sources = if self.replayed.is_some() {
                    "Docker knows, nor any the journal and the kernel log name since --since"
                } else {
                    "Docker knows"
                };
                for value in unknown_to(&known, wanted) {
                    crate::say!(
                        "--container {} matches no container {sources}: no name equals it and no id starts with it",
                        oomtrace_core::output::escape::visible(value)
                    );
                }
            }
            _ => {}
        }
    }
}

fn names_in(cache: &Cache) -> Vec<(String, Option<String>)> {
    cache
        .all()
        .into_iter()
        .map(|(id, meta)| (id, meta.container.name))
        .collect()
}

/// The `--container` values that match neither a name nor an id prefix of the `known`
/// containers (id, name).
fn unknown_to<'a>(known: &[(String, Option<String>)], wanted: &'a [String]) -> Vec<&'a str> {
    wanted
        .iter()
        .map(|value| value.trim_start_matches('/'))
        .filter(|value| {
            !known
                .iter()
                .any(|(id, name)| names_container(value, id, name.as_deref()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::attribution::docker::apply_event;

    const ID: &str = "28f2911322e9cf8d7eea222431152098e1c7ebcde906d565c5bc446494e64604";

    #[test]
    fn values_matching_a_name_or_an_id_prefix_are_known() {
        let cache = Cache::new("docker");
        let attributes: HashMap<String, String> = [("name".to_owned(), "web".to_owned())].into();
        apply_event(&cache, "create", ID, &attributes);
        let wanted: Vec<String> = ["web", "/web", "28f29", ID, "db", "28f3", "we", ""]
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(
            unknown_to(&names_in(&cache), &wanted),
            ["db", "28f3", "we", ""]
        );
        // A container removed before the watch, named by the journal.
        let mut known = names_in(&cache);
        known.push(("9a1b".into(), Some("db".into())));
        assert_eq!(unknown_to(&known, &wanted), ["28f3", "we", ""]);
    }
}
