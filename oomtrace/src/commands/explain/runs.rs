//! A container's runs: from one start to its exit, with the kills in between. An exit a watch
//! recorded closes a run at a known time; Docker's own state closes the latest one. Which
//! kills belong to a run is said only where no run boundary can be missing in between.

use std::time::SystemTime;

use super::evidence::{DockerView, Evidence};

/// How a run ended, as a watch recorded it or Docker says now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    pub exit_code: Option<i64>,
    pub oom_killed: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// `None`: still running, or its end is not known.
    pub end: Option<End>,
    /// Indices into the evidence's kills; `None` when which of them belong to this run is
    /// not known.
    pub kills: Option<Vec<usize>>,
    /// The index of the exit a watch recorded for it, whose `killed_by` says who ended it.
    pub exit: Option<usize>,
}

pub fn split(evidence: &Evidence) -> Vec<Run> {
    let kills = &evidence.kills;
    let in_window = |after: Option<SystemTime>, until: Option<SystemTime>| -> Option<Vec<usize>> {
        // A run whose exit time is unknown cannot be told apart from the next one.
        let until = until?;
        Some(
            kills
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    r.time
                        .is_some_and(|t| t <= until && after.is_none_or(|a| t > a))
                })
                .map(|(i, _)| i)
                .collect(),
        )
    };
    let mut runs = Vec::new();
    let mut previous: Option<SystemTime> = None;
    for (index, exit) in evidence.exits.iter().enumerate() {
        runs.push(Run {
            end: Some(End {
                exit_code: exit.exit_code,
                oom_killed: exit.runtime_oom_killed,
            }),
            // The watch counted the run's kills; a window holding others (kills from while no
            // watch ran, perhaps of an earlier run whose exit nobody recorded) is not trusted.
            kills: in_window(previous, exit.time).filter(|k| k.len() == exit.kills.len()),
            exit: Some(index),
        });
        previous = exit.time.or(previous);
    }
    let rest: Vec<usize> = kills
        .iter()
        .enumerate()
        .filter(|(_, r)| match (r.time, previous) {
            (Some(t), Some(p)) => t > p,
            (_, None) => true,
            (None, Some(_)) => false,
        })
        .map(|(i, _)| i)
        .collect();
    match &evidence.docker {
        DockerView::Present(meta) => {
            let docker_end = End {
                exit_code: meta.last_exit,
                oom_killed: meta.last_oom_killed,
            };
            let stopped = meta.running == Some(false);
            let last = evidence.exits.last();
            // Docker counts a restart when it decides on it, before the exit is reported, so
            // the last recorded exit and Docker's state agree on the count when they are one.
            let same_as_last = last.is_some_and(|e| {
                stopped
                    && e.restart_count.is_some()
                    && e.restart_count == meta.container.restart_count
                    && e.exit_code == meta.last_exit
                    && e.runtime_oom_killed == meta.last_oom_killed
            });
            if same_as_last && rest.is_empty() {
                return runs;
            }
            // Never restarted and no exit recorded: one run, every kill in it.
            let only_run = last.is_none() && meta.container.restart_count == Some(0);
            runs.push(Run {
                end: (stopped && !same_as_last).then_some(docker_end),
                kills: only_run.then_some(rest),
                exit: None,
            });
        }
        _ if !rest.is_empty() => runs.push(Run {
            end: None,
            kills: Some(rest),
            exit: None,
        }),
        _ => {}
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::super::{
        evidence::DockerView,
        tests::{docker, evidence, exit, kill, restart_loop},
    };
    use super::*;

    #[test]
    fn a_run_s_kills_are_known_only_where_no_boundary_can_be_missing() {
        let killed = |main| End {
            exit_code: Some(if main { 137 } else { 0 }),
            oom_killed: Some(true),
        };
        let e = restart_loop();
        let runs = split(&e);
        assert_eq!(
            runs.len(),
            4,
            "Docker's state is the last exit recorded: {runs:?}"
        );
        assert_eq!(runs[1].kills, Some(vec![1]));
        assert_eq!(runs[3].end, Some(killed(true)));

        // Never restarted, no exit recorded: every kill is in the one run Docker ended.
        let e = evidence(vec![kill(1, 0, None)], vec![], docker(false, 0, true, 0));
        let runs = split(&e);
        assert_eq!(runs.len(), 1);
        assert_eq!(
            (runs[0].end.clone(), runs[0].kills.clone()),
            (Some(killed(false)), Some(vec![0]))
        );

        // Restarted, nothing recorded: which run a kill ended is not known.
        let e = evidence(vec![kill(1, 0, None)], vec![], docker(false, 137, true, 2));
        assert_eq!(split(&e)[0].kills, None);

        // A recorded exit whose watch counted fewer kills than its window holds.
        let e = evidence(
            vec![kill(1, 0, None), kill(2, 3, Some(false))],
            vec![exit(5, 0, 0, 1)],
            DockerView::Gone,
        );
        assert_eq!(split(&e)[0].kills, None);
    }
}
