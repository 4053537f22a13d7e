//! How much of everything a run measures: the full bench, or the smoke run CI does.

use std::time::Duration;

/// How much of everything a run measures.
#[derive(Clone, Debug)]
pub struct Config {
    pub smoke: bool,
    /// Starts per tool and attach mode.
    pub ready_runs: usize,
    /// Idle time before RSS is read.
    pub idle_rss: Duration,
    /// The idle window CPU ticks are counted over, after `idle_rss`.
    pub idle_cpu: Duration,
    /// Kills before the first after-kills RSS reading, and in all.
    pub warm_kills: usize,
    pub memory_kills: usize,
    /// Kills timed per tool, and the rounds they are split into.
    pub latency_kills: usize,
    pub latency_rounds: usize,
    pub storm: Duration,
    /// Cgroups OOMing at once in the storm and in the memory phase's kills.
    pub storm_cgroups: usize,
}

impl Config {
    pub fn full() -> Self {
        Self {
            smoke: false,
            ready_runs: 20,
            idle_rss: Duration::from_secs(10),
            idle_cpu: Duration::from_secs(60),
            warm_kills: 100,
            memory_kills: 1000,
            latency_kills: 200,
            latency_rounds: 4,
            storm: Duration::from_secs(30),
            storm_cgroups: 8,
        }
    }

    /// A minute or so: enough to run every measurement, too little for any budget to mean
    /// anything.
    pub fn smoke() -> Self {
        Self {
            smoke: true,
            ready_runs: 3,
            idle_rss: Duration::from_secs(1),
            idle_cpu: Duration::from_secs(2),
            warm_kills: 5,
            memory_kills: 20,
            latency_kills: 10,
            latency_rounds: 2,
            storm: Duration::from_secs(3),
            storm_cgroups: 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_bench_measures_what_the_issue_asks() {
        let c = Config::full();
        assert!(c.ready_runs >= 20);
        assert_eq!(c.idle_rss, Duration::from_secs(10));
        assert_eq!(c.idle_cpu, Duration::from_secs(60));
        assert!(c.memory_kills >= 1000 && c.warm_kills < c.memory_kills);
        assert!(c.latency_kills >= 200);
        assert_eq!(c.storm, Duration::from_secs(30));
    }
}
