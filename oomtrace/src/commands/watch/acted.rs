//! Joins the kills a userspace OOM killer's log tells to the kernel's records of its signals
//! (`--killer-log`). earlyoom prints its `sending` line just before it signals, systemd-oomd
//! its `Killed` line just after, and the line and the signal's record reach the watch by
//! different roads, in either order: a logged kill waits here for its signal, and a signal's
//! event is held for at most [`LOG_WAIT`] for its line.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use oomtrace_core::attribution::{
    acted_on::{ActedOn, Killer, LoggedKill},
    userspace_killer::UserspaceOomKill,
};

/// How long a kill's event waits for its line: earlyoom writes it before it signals and
/// systemd-oomd right after, so only the log's own road (a syslog daemon's buffering) can
/// take longer.
pub(super) const LOG_WAIT: Duration = Duration::from_secs(1);
/// How long a logged kill waits for its signal's record, and how many wait at once.
const KEPT_FOR: Duration = Duration::from_secs(10);
const KEPT: usize = 64;

#[derive(Debug, Default)]
pub struct LoggedKills {
    /// Whether a log is followed at all: without one, no event waits.
    pub followed: bool,
    told: VecDeque<(Instant, LoggedKill)>,
}

impl LoggedKills {
    pub fn add(&mut self, kill: LoggedKill, now: Instant) {
        self.told
            .retain(|(at, _)| now.duration_since(*at) < KEPT_FOR);
        if self.told.len() == KEPT {
            self.told.pop_front();
        }
        self.told.push_back((now, kill));
    }

    /// What the logged kill that `kill` records says it acted on, taken so that no other
    /// event gets it.
    pub fn take_for(&mut self, kill: &UserspaceOomKill) -> Option<ActedOn> {
        let at = self
            .told
            .iter()
            .position(|(_, logged)| logged.is_of(kill))?;
        self.told.remove(at).map(|(_, logged)| logged.acted_on())
    }

    /// Whether `kill` may still get its line: a followed log, a kill by a killer whose lines
    /// are read, none joined yet.
    pub fn awaited_by(&self, kill: &UserspaceOomKill) -> bool {
        self.followed && kill.acted_on.is_none() && Killer::named(&kill.killer.name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oomtrace_core::{
        attribution::acted_on::Logged, source::userspace_log::earlyoom::EarlyoomLog,
        testing::userspace_kill,
    };

    fn logged(victim: u32) -> LoggedKill {
        let line =
            format!("sending SIGTERM to process {victim} uid 0 \"hog\": badness 9, VmRSS 1 MiB");
        let kill = EarlyoomLog::default().feed(&line).expect("a kill");
        LoggedKill {
            writer_pid: None,
            kill: Logged::Earlyoom(kill),
        }
    }

    fn signalled(killer: &str, victim: u32) -> UserspaceOomKill {
        userspace_kill(killer, "SIGTERM", victim)
    }

    /// A logged kill goes to its own signal's event once; an earlyoom kill waits only while a
    /// log is followed and nothing was joined to it yet; old lines are forgotten.
    #[test]
    fn a_logged_kill_is_joined_once_and_only_earlyoom_kills_wait() {
        let now = Instant::now();
        let mut kills = LoggedKills::default();
        assert!(
            !kills.awaited_by(&signalled("earlyoom", 900)),
            "no log followed"
        );
        kills.followed = true;
        kills.add(logged(900), now);
        assert_eq!(kills.take_for(&signalled("earlyoom", 901)), None);
        let mut event = signalled("earlyoom", 900);
        assert!(kills.awaited_by(&event));
        event.acted_on = kills.take_for(&event);
        assert!(event.acted_on.is_some());
        assert!(!kills.awaited_by(&event), "joined");
        assert_eq!(
            kills.take_for(&signalled("earlyoom", 900)),
            None,
            "taken once"
        );
        assert!(kills.awaited_by(&signalled("systemd-oomd", 900)));
        assert!(
            !kills.awaited_by(&signalled("oomd", 900)),
            "oomd's log is not read"
        );

        kills.add(logged(902), now);
        kills.add(logged(903), now + KEPT_FOR);
        assert_eq!(kills.take_for(&signalled("earlyoom", 902)), None, "too old");
        assert!(kills.take_for(&signalled("earlyoom", 903)).is_some());
    }
}
