//! `--container` values checked against what Docker knows, said once each: a name Docker
//! cannot resolve because it is away, and a value that matches no container it knows. Neither
//! stops the watch; the filter keeps applying as documented.

use crate::attribution::docker::{Cache, Status};

/// What has been said, so each warning is given once.
#[derive(Debug, Default)]
pub struct NameCheck {
    said_unreachable: bool,
    checked: bool,
}

impl NameCheck {
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
                for value in unknown_to(cache, wanted) {
                    crate::say!(
                        "--container {} matches no container Docker knows: no name equals it and no id starts with it",
                        crate::output::escape::visible(value)
                    );
                }
            }
            _ => {}
        }
    }
}

/// The `--container` values that match neither a name nor an id prefix in `cache`.
fn unknown_to<'a>(cache: &Cache, wanted: &'a [String]) -> Vec<&'a str> {
    let known = cache.all();
    wanted
        .iter()
        .map(|value| value.trim_start_matches('/'))
        .filter(|value| {
            !known.iter().any(|(id, meta)| {
                meta.name.as_deref() == Some(*value) || (!value.is_empty() && id.starts_with(value))
            })
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
        let cache = Cache::default();
        let attributes: HashMap<String, String> = [("name".to_owned(), "web".to_owned())].into();
        apply_event(&cache, "create", ID, &attributes);
        let wanted: Vec<String> = ["web", "/web", "28f29", ID, "db", "28f3", "we", ""]
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(unknown_to(&cache, &wanted), ["db", "28f3", "we", ""]);
    }
}
