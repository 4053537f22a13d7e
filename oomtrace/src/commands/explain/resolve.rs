//! Which container `explain CONTAINER` means, the way Docker resolves a reference: a full id,
//! then an exact name, then an id prefix, over the containers Docker knows now and the ones
//! the journal and the kernel log name.

use std::time::SystemTime;

/// A container some source knows of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    pub id: String,
    pub name: Option<String>,
    /// When a record last mentioned it; `None` for Docker's list.
    pub seen: Option<SystemTime>,
    /// From Docker's list: it exists now.
    pub docker: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The container, and the other containers that had the name asked for.
    One {
        id: String,
        same_name: Vec<String>,
    },
    None,
    /// An id prefix of several containers: their ids, sorted.
    Ambiguous(Vec<String>),
}

pub fn resolve(wanted: &str, known: &[Known]) -> Resolution {
    let wanted = wanted.trim_start_matches('/');
    if wanted.is_empty() {
        return Resolution::None;
    }
    if known.iter().any(|k| k.id == wanted) {
        return Resolution::One {
            id: wanted.to_owned(),
            same_name: Vec::new(),
        };
    }
    let named: Vec<&Known> = known
        .iter()
        .filter(|k| k.name.as_deref() == Some(wanted))
        .collect();
    // Docker's container of that name is the one it means now; without one, the newest of
    // the containers that had it (a name is unique among the containers that exist at once).
    let chosen = named
        .iter()
        .find(|k| k.docker)
        .copied()
        .or_else(|| named.iter().copied().max_by_key(|k| newest(known, &k.id)));
    if let Some(chosen) = chosen {
        let mut others: Vec<&Known> = named
            .iter()
            .copied()
            .filter(|k| k.id != chosen.id)
            .collect();
        others.sort_by_key(|k| std::cmp::Reverse(newest(known, &k.id)));
        let mut same_name: Vec<String> = Vec::new();
        for other in others {
            if !same_name.contains(&other.id) {
                same_name.push(other.id.clone());
            }
        }
        return Resolution::One {
            id: chosen.id.clone(),
            same_name,
        };
    }
    let mut ids: Vec<String> = known
        .iter()
        .filter(|k| k.id.starts_with(wanted))
        .map(|k| k.id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    match ids.len() {
        0 => Resolution::None,
        1 => Resolution::One {
            id: ids.remove(0),
            same_name: Vec::new(),
        },
        _ => Resolution::Ambiguous(ids),
    }
}

/// The last time any record mentioned the container `id`.
fn newest(known: &[Known], id: &str) -> Option<SystemTime> {
    known
        .iter()
        .filter(|k| k.id == id)
        .filter_map(|k| k.seen)
        .max()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ID, at};
    use super::*;

    #[test]
    fn a_container_is_found_as_docker_finds_it() {
        let other = "4f2c99".to_owned() + &"0".repeat(58);
        let old = "77".repeat(32);
        let k = |id: &str, name: Option<&str>, secs: Option<u64>, docker: bool| Known {
            id: id.into(),
            name: name.map(str::to_owned),
            seen: secs.and_then(at),
            docker,
        };
        let known = vec![
            k(ID, Some("web"), None, true),
            k(&old, Some("web"), Some(5), false),
            k(&other, Some("db"), Some(1), false),
            k(&"aa".repeat(32), Some("gone"), Some(1), false),
            k(&"ab".repeat(32), Some("gone"), Some(9), false),
        ];
        let one = |id: &str, same: &[&str]| Resolution::One {
            id: id.into(),
            same_name: same.iter().map(|s| s.to_string()).collect(),
        };
        let cases = [
            ("web", one(ID, &[&old])),
            ("/web", one(ID, &[&old])),
            ("db", one(&other, &[])),
            // Without Docker's, the newest container that had the name.
            ("gone", one(&"ab".repeat(32), &[&"aa".repeat(32)])),
            ("4f2c5", one(ID, &[])),
            (ID, one(ID, &[])),
            (
                "4f2c",
                Resolution::Ambiguous(vec![ID.into(), other.clone()]),
            ),
            ("77", one(&old, &[])),
            ("nosuch", Resolution::None),
            ("", Resolution::None),
        ];
        for (wanted, want) in cases {
            assert_eq!(resolve(wanted, &known), want, "{wanted:?}");
        }
    }
}
