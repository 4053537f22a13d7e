//! How much of everything a run measures: the full bench, or the smoke run CI does, and which
//! of its phases.

use std::time::Duration;

/// A measurement of its own, which `--only` can run alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// Exec to ready, per tool and attach mode.
    Ready,
    /// RSS, idle CPU, and the handler's run time over kills.
    Memory,
    /// Kill to line, one kill at a time.
    Latency,
    /// Every cgroup OOMing at once.
    Storm,
    /// A million signals oomtrace must not pay for, and a few it must record.
    Signals,
}

impl Phase {
    pub const ALL: [Self; 5] = [
        Self::Ready,
        Self::Memory,
        Self::Latency,
        Self::Storm,
        Self::Signals,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Memory => "memory",
            Self::Latency => "latency",
            Self::Storm => "storm",
            Self::Signals => "signals",
        }
    }
}

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
    /// The signal storm: SIGUSR1 to a host process, the anchor's passes too.
    pub signals_non_fatal: u64,
    /// SIGTERM and SIGHUP to a host process that survives them.
    pub signals_fatal_to_host: u64,
    /// SIGTERM to a pid namespace's PID 1, which oomtrace records.
    pub signals_to_container_init: u64,
    /// The phases this run takes, in the order run.
    pub phases: Vec<Phase>,
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
            signals_non_fatal: 1_000_000,
            signals_fatal_to_host: 100_000,
            signals_to_container_init: 1_000,
            phases: Phase::ALL.to_vec(),
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
            signals_non_fatal: 100_000,
            signals_fatal_to_host: 10_000,
            signals_to_container_init: 100,
            phases: Phase::ALL.to_vec(),
        }
    }

    /// Only `phases` of this run, in the bench's own order; all of them if none is named.
    pub fn only(mut self, phases: &[Phase]) -> Self {
        if !phases.is_empty() {
            self.phases.retain(|phase| phases.contains(phase));
        }
        self
    }

    pub fn runs(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }

    /// Whether some phases were left out: then no budget of theirs is judged.
    pub fn is_partial(&self) -> bool {
        self.phases.len() < Phase::ALL.len()
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
        assert!(c.signals_non_fatal >= 1_000_000);
        assert!(c.signals_fatal_to_host >= 100_000);
        assert!(c.signals_to_container_init >= 1_000);
        assert!(!c.is_partial());
    }

    #[test]
    fn only_keeps_the_bench_s_order() {
        let c = Config::full().only(&[Phase::Storm, Phase::Ready]);
        assert_eq!(c.phases, [Phase::Ready, Phase::Storm]);
        assert!(c.is_partial() && c.runs(Phase::Storm) && !c.runs(Phase::Latency));
        assert_eq!(Config::smoke().only(&[]).phases, Phase::ALL);
    }
}
