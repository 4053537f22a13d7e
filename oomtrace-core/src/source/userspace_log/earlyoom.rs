//! earlyoom's record of a kill: the lines it prints on stderr (which its systemd unit sends to
//! the journal) each time it acts, in this order within one poll of its main loop:
//!
//! ```text
//! mem avail:    45 of   481 MiB ( 9.48%), swap free:    0 of    0 MiB ( 0.00%)
//! low memory! at or below SIGTERM limits: mem 10.00%, swap 10.00%
//! sending SIGTERM to process 123 uid 0 "hog": badness 1000, VmRSS 400 MiB
//! ```
//!
//! The formats are those of its source from 1.7 (Debian bookworm's) to 1.9, quoted in
//! `tests/fixtures/earlyoom-formats.txt`; only the `sending` line changed between them. A
//! `mem avail` line alone is also the periodic report it prints on stdout, and only the one
//! just before a `low memory!` line is what a kill acted on.

use super::{Percent, number, plain, scan};

/// Which of its two signals earlyoom sent: SIGTERM below its first limits, SIGKILL below the
/// second (or after SIGTERM, once memory fell below those while it waited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillSignal {
    Term,
    Kill,
}

impl KillSignal {
    pub fn name(self) -> &'static str {
        match self {
            Self::Term => "SIGTERM",
            Self::Kill => "SIGKILL",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "SIGTERM" => Some(Self::Term),
            "SIGKILL" => Some(Self::Kill),
            _ => None,
        }
    }
}

/// `mem avail: %5lld of %5lld MiB (%5.2lf%%), swap free: %4lld of %4lld MiB (%5.2lf%%)`
/// (main.c's `print_mem_stats` in 1.7, meminfo.c's since 1.8): the machine's available memory
/// (MemAvailable) and free swap, as earlyoom read them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemStats {
    pub mem_avail_mib: u64,
    pub mem_total_mib: u64,
    pub mem_avail: Percent,
    pub swap_free_mib: u64,
    pub swap_total_mib: u64,
    /// 0.00 % on a machine without swap, where earlyoom counts swap as exhausted.
    pub swap_free: Percent,
}

/// `low memory! at or below SIGTERM limits: mem %5.2lf%%, swap %5.2lf%%`: the limits the
/// memory and swap of the [`MemStats`] just before it were at or below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub signal: KillSignal,
    pub mem: Percent,
    pub swap: Percent,
}

/// `sending SIGTERM to process %d uid %d "%s": ...`, the line kill.c's `kill_process` prints
/// just before it signals the victim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sending {
    pub signal: KillSignal,
    pub pid: u32,
    pub uid: Option<u32>,
    /// The victim's name, from its `/proc/PID/comm`; `None` where the line could be split
    /// into a name and what follows it in more than one way.
    pub name: Option<String>,
    /// What earlyoom ranked the victim by: `badness` in 1.7, `oom_score` since 1.8.
    pub score: Option<i64>,
    /// The victim's oom_score_adj, printed since 1.9.
    pub oom_score_adj: Option<i64>,
    pub vm_rss_mib: Option<u64>,
    /// The victim's command line, printed since 1.8.
    pub cmdline: Option<String>,
}

/// One kill as earlyoom recorded it: whom it signalled, and what it acted on, where the lines
/// before said so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EarlyoomKill {
    pub sending: Sending,
    /// The memory and swap it found at or below its limits.
    pub stats: Option<MemStats>,
    pub limits: Option<Limits>,
}

/// Reads earlyoom's lines in order and gives each kill with what it acted on.
#[derive(Debug, Default)]
pub struct EarlyoomLog {
    /// The last `mem avail` line, until the next line says whether it was a kill's.
    stats: Option<MemStats>,
    /// The last `low memory!` line and the `mem avail` line just before it.
    acting: Option<(Limits, Option<MemStats>)>,
}

impl EarlyoomLog {
    /// The kill `line` reports, with the memory situation the lines before it gave.
    pub fn feed(&mut self, line: &str) -> Option<EarlyoomKill> {
        let line = plain(line);
        if let Some(stats) = parse_mem_stats(line) {
            self.stats = Some(stats);
            return None;
        }
        if let Some(limits) = parse_limits(line) {
            self.acting = Some((limits, self.stats.take()));
            return None;
        }
        // Selecting the victim takes long enough for memory to come back, and then it kills
        // nothing: the lines before belong to no kill.
        if line == "memory situation has recovered while selecting victim" {
            self.acting = None;
            self.stats = None;
            return None;
        }
        let sending = parse_sending(line)?;
        let (limits, stats) = match self.acting.take() {
            // Printed in the same poll as the kill, for the same signal.
            Some((limits, stats)) if limits.signal == sending.signal => (Some(limits), stats),
            _ => (None, None),
        };
        self.stats = None;
        Some(EarlyoomKill {
            sending,
            stats,
            limits,
        })
    }
}

pub fn parse_mem_stats(line: &str) -> Option<MemStats> {
    let fields = scan(
        plain(line),
        &[
            "mem avail: ",
            " of ",
            " MiB (",
            "%), swap free: ",
            " of ",
            " MiB (",
            "%)",
        ],
    )?;
    Some(MemStats {
        mem_avail_mib: number(fields[0])?,
        mem_total_mib: number(fields[1])?,
        mem_avail: Percent::parse(fields[2])?,
        swap_free_mib: number(fields[3])?,
        swap_total_mib: number(fields[4])?,
        swap_free: Percent::parse(fields[5])?,
    })
}

pub fn parse_limits(line: &str) -> Option<Limits> {
    let fields = scan(
        plain(line),
        &["low memory! at or below ", " limits: mem ", "%, swap ", "%"],
    )?;
    Some(Limits {
        signal: KillSignal::from_name(fields[0])?,
        mem: Percent::parse(fields[1])?,
        swap: Percent::parse(fields[2])?,
    })
}

/// earlyoom prints the victim's comm, at most 15 bytes, which a caller that read the line
/// lossily may have turned into up to 45 (U+FFFD for each byte that is not UTF-8). A split that
/// would make the name longer is not the name's end.
const MAX_NAME_BYTES: usize = 45;

/// The `sending` line of any version from 1.7 to 1.9; `None` for its startup self-test
/// (`sending 0 (no-op signal)`, printed only with `-d`) or any other line.
pub fn parse_sending(line: &str) -> Option<Sending> {
    let rest = plain(line).strip_prefix("sending ")?;
    let (signal, rest) = rest.split_once(" to process ")?;
    let signal = KillSignal::from_name(signal)?;
    let (pid, rest) = rest.split_once(" uid ")?;
    let pid = u32::try_from(number(pid)?).ok()?;
    let (uid, rest) = rest.split_once(" \"")?;
    // `%d` of a uid_t: (uid_t)-1 prints as -1, which is no uid.
    let uid = number(uid).and_then(|uid| u32::try_from(uid).ok());
    // The name is in quotes but not escaped: it ends where the fields after it begin, and a
    // name holding `": badness ` itself would make more than one end possible.
    let mut splits = rest
        .match_indices("\": ")
        .filter(|(at, _)| *at <= MAX_NAME_BYTES)
        .filter_map(|(at, sep)| {
            let tail = tail(&rest[at + sep.len()..])?;
            Some((&rest[..at], tail))
        });
    let first = splits.next();
    let unique = splits.next().is_none();
    match first {
        Some((name, tail)) => Some(Sending {
            signal,
            pid,
            uid,
            name: unique.then(|| name.to_string()),
            score: unique.then_some(tail.score).flatten(),
            oom_score_adj: unique.then_some(tail.oom_score_adj).flatten(),
            vm_rss_mib: unique.then_some(tail.vm_rss_mib).flatten(),
            cmdline: if unique { tail.cmdline } else { None },
        }),
        // The victim is named by its pid whatever follows.
        None => Some(Sending {
            signal,
            pid,
            uid,
            name: None,
            score: None,
            oom_score_adj: None,
            vm_rss_mib: None,
            cmdline: None,
        }),
    }
}

struct Tail {
    score: Option<i64>,
    oom_score_adj: Option<i64>,
    vm_rss_mib: Option<u64>,
    cmdline: Option<String>,
}

/// What follows the name, in each version's shape:
/// 1.7 `badness %d, VmRSS %lld MiB`;
/// 1.8 `oom_score %d, VmRSS %lld MiB, cmdline "%s"`;
/// 1.9 `oom_score %d, oom_score_adj %d, VmRSS %lld MiB, cmdline "%s"`.
fn tail(text: &str) -> Option<Tail> {
    if let Some(fields) = scan(text, &["badness ", ", VmRSS ", " MiB"]) {
        return Some(Tail {
            score: Some(signed(fields[0])?),
            oom_score_adj: None,
            vm_rss_mib: Some(number(fields[1])?),
            cmdline: None,
        });
    }
    let (score, rest) = text.strip_prefix("oom_score ")?.split_once(", ")?;
    let (oom_score_adj, rest) = match rest.strip_prefix("oom_score_adj ") {
        Some(rest) => {
            let (adj, rest) = rest.split_once(", ")?;
            (Some(signed(adj)?), rest)
        }
        None => (None, rest),
    };
    let (rss, cmdline) = rest
        .strip_prefix("VmRSS ")?
        .split_once(" MiB, cmdline \"")?;
    Some(Tail {
        score: Some(signed(score)?),
        oom_score_adj,
        vm_rss_mib: Some(number(rss)?),
        // The command line is last, so it ends at the line's last quote whatever it holds.
        cmdline: Some(cmdline.strip_suffix('"')?.to_string()),
    })
}

fn signed(text: &str) -> Option<i64> {
    match text.strip_prefix('-') {
        Some(magnitude) => i64::try_from(number(magnitude)?).ok().map(|n| -n),
        None => i64::try_from(number(text)?).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMATS: &str = include_str!("../../../tests/fixtures/earlyoom-formats.txt");

    fn pct(hundredths: u64) -> Percent {
        Percent { hundredths }
    }

    /// The fixture's lines, in order, without its comments.
    fn fixture_lines(fixture: &str) -> Vec<&str> {
        fixture
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect()
    }

    fn sending(
        signal: KillSignal,
        pid: u32,
        name: &str,
        score: i64,
        adj: Option<i64>,
        rss: u64,
        cmdline: Option<&str>,
    ) -> Sending {
        Sending {
            signal,
            pid,
            uid: Some(0),
            name: Some(name.into()),
            score: Some(score),
            oom_score_adj: adj,
            vm_rss_mib: Some(rss),
            cmdline: cmdline.map(String::from),
        }
    }

    /// Each line the fixture renders from a format of earlyoom's source, read back.
    #[test]
    fn reads_every_format_of_its_source() {
        let lines = fixture_lines(FORMATS);
        let stats = MemStats {
            mem_avail_mib: 45,
            mem_total_mib: 481,
            mem_avail: pct(948),
            swap_free_mib: 0,
            swap_total_mib: 0,
            swap_free: pct(0),
        };
        let big = MemStats {
            mem_avail_mib: 5091,
            mem_total_mib: 9823,
            mem_avail: pct(5183),
            swap_free_mib: 1023,
            swap_total_mib: 2047,
            swap_free: pct(4998),
        };
        assert_eq!(parse_mem_stats(lines[0]), Some(stats));
        assert_eq!(parse_mem_stats(lines[1]), Some(big));
        assert_eq!(
            parse_limits(lines[2]),
            Some(Limits {
                signal: KillSignal::Term,
                mem: pct(1000),
                swap: pct(1000),
            })
        );
        assert_eq!(
            parse_limits(lines[3]),
            Some(Limits {
                signal: KillSignal::Kill,
                mem: pct(500),
                swap: pct(10_000),
            })
        );
        use KillSignal::{Kill, Term};
        assert_eq!(
            parse_sending(lines[4]),
            Some(sending(Term, 7378, "tail", 156, None, 4962, None))
        );
        assert_eq!(
            parse_sending(lines[5]),
            Some(sending(
                Kill,
                7378,
                "tail",
                156,
                None,
                4962,
                Some("tail /dev/zero")
            ))
        );
        assert_eq!(
            parse_sending(lines[6]),
            Some(sending(
                Term,
                7378,
                "tail",
                856,
                Some(300),
                4962,
                Some("tail /dev/zero")
            ))
        );
        assert_eq!(lines.len(), 7, "a line the table above does not check");
    }

    /// What the real binary printed when it killed a hog in a kernel-matrix guest: its banner,
    /// its startup self-test finding no victim, then the kill.
    #[test]
    fn reads_what_debian_s_earlyoom_printed_in_a_guest() {
        let real = include_str!("../../../tests/fixtures/earlyoom-1.7-guest-stderr.txt");
        let mut log = EarlyoomLog::default();
        let kills: Vec<EarlyoomKill> = fixture_lines(real)
            .into_iter()
            .filter_map(|l| log.feed(l))
            .collect();
        assert_eq!(
            kills,
            [EarlyoomKill {
                sending: Sending {
                    signal: KillSignal::Term,
                    pid: 103,
                    uid: Some(0),
                    name: Some("hog".into()),
                    score: Some(1663),
                    oom_score_adj: None,
                    vm_rss_mib: Some(233),
                    cmdline: None,
                },
                stats: Some(MemStats {
                    mem_avail_mib: 189,
                    mem_total_mib: 470,
                    mem_avail: pct(4029),
                    swap_free_mib: 0,
                    swap_total_mib: 0,
                    swap_free: pct(0),
                }),
                limits: Some(Limits {
                    signal: KillSignal::Term,
                    mem: pct(4400),
                    swap: pct(1000),
                }),
            }]
        );
    }

    #[test]
    fn a_name_or_command_line_holding_the_separators_is_read_right_or_not_at_all() {
        let cases: [(&str, Option<&str>, Option<&str>); 5] = [
            // Its own quotes and spaces are part of the name.
            (
                r#"sending SIGTERM to process 9 uid 0 "a "b" c": badness 5, VmRSS 1 MiB"#,
                Some(r#"a "b" c"#),
                None,
            ),
            // A command line may hold anything: it is last.
            (
                r#"sending SIGTERM to process 9 uid 0 "py": oom_score 5, VmRSS 1 MiB, cmdline "py -c "x": oom_score 1""#,
                Some("py"),
                Some(r#"py -c "x": oom_score 1"#),
            ),
            // What follows 1.7's name is fixed to the line's end: one end only.
            (
                r#"sending SIGTERM to process 9 uid 0 "x": badness 1": badness 5, VmRSS 1 MiB"#,
                Some(r#"x": badness 1"#),
                None,
            ),
            // Two ends are possible: the name is unknown, the pid still known.
            (
                r#"sending SIGTERM to process 9 uid 0 "x": oom_score 1, VmRSS 1 MiB, cmdline "a": oom_score 5, VmRSS 1 MiB, cmdline "b""#,
                None,
                None,
            ),
            // A future shape of what follows: the pid still names the victim.
            (
                r#"sending SIGTERM to process 9 uid 0 "x": rank 1"#,
                None,
                None,
            ),
        ];
        for (line, name, cmdline) in cases {
            let sending = parse_sending(line).expect(line);
            assert_eq!(sending.pid, 9, "{line}");
            assert_eq!(sending.name.as_deref(), name, "{line}");
            assert_eq!(sending.cmdline.as_deref(), cmdline, "{line}");
        }
    }

    #[test]
    fn other_lines_are_no_kill() {
        for line in [
            "",
            "earlyoom v1.7",
            "mem total:  481 MiB, swap total:    0 MiB",
            "sending SIGTERM when mem <= 10.00% and swap <= 10.00%,",
            "sending 0 (no-op signal) to process 1 uid 0 \"init\": badness 0, VmRSS 1 MiB",
            "sending SIGHUP to process 9 uid 0 \"x\": badness 1, VmRSS 1 MiB",
            "sending SIGTERM to process -9 uid 0 \"x\": badness 1, VmRSS 1 MiB",
            "escalating to SIGKILL after 0.5 seconds",
            "process exited after 0.1 seconds",
            "mem avail: 45 of 481 MiB (9.5%), swap free: 0 of 0 MiB (0.00%)",
        ] {
            assert_eq!(parse_sending(line), None, "{line:?}");
            assert_eq!(EarlyoomLog::default().feed(line), None, "{line:?}");
        }
    }

    /// Only the `mem avail` line just before the `low memory!` line is what the kill acted on;
    /// a kill whose poll printed none, or the other signal's limits, acted on nothing known.
    #[test]
    fn a_kill_takes_the_memory_situation_of_its_own_poll() {
        let report = "mem avail:   300 of   481 MiB (62.37%), swap free:    0 of    0 MiB ( 0.00%)";
        let stats = "mem avail:    45 of   481 MiB ( 9.48%), swap free:    0 of    0 MiB ( 0.00%)";
        let term = "low memory! at or below SIGTERM limits: mem 10.00%, swap 10.00%";
        let kill = "low memory! at or below SIGKILL limits: mem  5.00%, swap  5.00%";
        let sending = "sending SIGTERM to process 9 uid 0 \"hog\": badness 1000, VmRSS 400 MiB";
        let recovered = "memory situation has recovered while selecting victim";
        let cases: [(&[&str], Option<u64>, bool); 6] = [
            (&[report, stats, term, sending], Some(45), true),
            // Coloured, as on a terminal.
            (
                &[
                    "\u{1b}[33mmem avail:    45 of   481 MiB ( 9.48%), swap free:    0 of    0 MiB ( 0.00%)\n",
                    "\u{1b}[0m\u{1b}[33mlow memory! at or below SIGTERM limits: mem 10.00%, swap 10.00%\n",
                    "\u{1b}[0m\u{1b}[33msending SIGTERM to process 9 uid 0 \"hog\": badness 1000, VmRSS 400 MiB\n",
                ],
                Some(45),
                true,
            ),
            (&[term, sending], None, true),
            (&[stats, sending], None, false),
            (&[stats, kill, sending], None, false),
            (&[stats, term, recovered, sending], None, false),
        ];
        for (lines, avail, limits) in cases {
            let mut log = EarlyoomLog::default();
            let kills: Vec<EarlyoomKill> = lines.iter().filter_map(|l| log.feed(l)).collect();
            assert_eq!(kills.len(), 1, "{lines:?}");
            let kill = &kills[0];
            assert_eq!(kill.sending.pid, 9);
            assert_eq!(kill.sending.name.as_deref(), Some("hog"));
            assert_eq!(kill.stats.map(|s| s.mem_avail_mib), avail, "{lines:?}");
            assert_eq!(kill.limits.is_some(), limits, "{lines:?}");
        }
        // A second kill does not inherit the first one's situation.
        let mut log = EarlyoomLog::default();
        for line in [stats, term, sending] {
            log.feed(line);
        }
        let second = log.feed(sending).expect("a kill");
        assert_eq!((second.stats, second.limits), (None, None));
    }
}
