//! What the soak checks of what it saw, and its report.

use std::time::Duration;

use super::outcome::{DockerHog, END_RSS_KIB, Outcome};

/// The bench's budget for peak RSS (VmHWM, bench/report.rs).
const PEAK_RSS_KIB: u64 = 12 * 1024;
/// How much RSS may grow from the end of the first wave (every path warm: enrichment, both
/// outputs) to the end of the last. oomtrace's Docker cache keeps a removed container for five
/// minutes, so RSS rises until the first ones age out: by 0.3 MiB over 300 containers, and by
/// 0.9 MiB over 1500, where it stayed for the last 20 waves. A leak per container outgrows
/// this; the cache's bound does not.
const GROWTH_KIB: u64 = 2 * 1024;
/// tmpfs allocates whole pages: a file keeps taking lines into its last page after the
/// filler has taken every free one.
const PAGE: u64 = 4096;

/// One check: what it asks, whether it held, and what was seen.
struct Check {
    what: &'static str,
    passed: bool,
    seen: String,
}

impl Outcome {
    pub(super) fn passed(&self) -> bool {
        self.checks().iter().all(|c| c.passed)
    }

    fn checks(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        let mut check = |what, passed, seen: String| checks.push(Check { what, passed, seen });

        // The hog's own end is the ground truth: SIGKILL (137) is what the OOM killer sends
        // and nothing else here does. Docker's OOMKilled flag is not: it comes from a
        // separate OOM event that can lose the race with the exit and stay false.
        let not_killed: Vec<String> = self
            .hogs
            .iter()
            .filter(|h| h.exit_code != "137")
            .map(|h| format!("{} exited {}", h.name, h.exit_code))
            .collect();
        check(
            "every hog was killed (exit 137)",
            not_killed.is_empty(),
            summarise(self.hogs.len(), &not_killed),
        );

        let count = |id: &str| self.reports.get(id).map_or(0, Vec::len);
        let not_once: Vec<String> = self
            .hogs
            .iter()
            .filter(|h| count(&h.id) != 1)
            .map(|h| format!("{} reported {} times", h.name, count(&h.id)))
            .collect();
        check(
            "every kill reported exactly once",
            not_once.is_empty(),
            summarise(self.hogs.len(), &not_once),
        );

        let misnamed: Vec<String> = self
            .hogs
            .iter()
            .flat_map(|h| {
                let reported = self.reports.get(&h.id).into_iter().flatten();
                reported
                    .filter(|name| name.as_deref() != Some(h.name.as_str()))
                    .map(|name| format!("{} reported as {name:?}", h.name))
            })
            .collect();
        check(
            "every report names the killed container",
            misnamed.is_empty(),
            summarise(self.hogs.len(), &misnamed),
        );

        let flagged_unreported: Vec<String> = self
            .hogs
            .iter()
            .filter(|h| h.oom_killed && count(&h.id) == 0)
            .map(|h| h.name.clone())
            .collect();
        let flagged = self.hogs.iter().filter(|h| h.oom_killed).count();
        check(
            "every container Docker says was OOM-killed was reported",
            flagged_unreported.is_empty(),
            format!(
                "{}; Docker's OOMKilled was true for {flagged} of the {} killed",
                summarise(flagged, &flagged_unreported),
                self.hogs.len()
            ),
        );

        let idle_reported: Vec<&String> = self
            .idle_ids
            .iter()
            .filter(|id| self.reports.contains_key(*id))
            .collect();
        check(
            "no kill reported in a container that had none",
            idle_reported.is_empty(),
            format!(
                "{} of {} idle containers",
                idle_reported.len(),
                self.idle_ids.len()
            ),
        );

        let after_fill: Vec<&DockerHog> = self.hogs.iter().filter(|h| h.after_fill).collect();
        let reported_after = after_fill.iter().filter(|h| count(&h.id) > 0).count();
        check(
            "stdout kept reporting after the --output disk filled",
            !after_fill.is_empty() && reported_after == after_fill.len(),
            format!("{reported_after} of {} later kills", after_fill.len()),
        );

        check(
            "oomtrace ran to the end and exited 0 on SIGINT",
            self.died.is_none() && self.exited_cleanly,
            match self.died {
                Some(wave) => format!("gone after wave {wave} ({})", self.exit),
                None => self.exit.clone(),
            },
        );

        let panics: Vec<&String> = self
            .stderr
            .iter()
            .filter(|l| l.contains("panicked"))
            .collect();
        check(
            "no panic",
            panics.is_empty(),
            panics.first().map_or("none".into(), |l| l.to_string()),
        );

        let full = format!("cannot write to {}", self.output_path);
        let warnings = self.stderr.iter().filter(|l| l.contains(&full)).count();
        let again = format!("writing to {} again", self.output_path);
        let recovered = self.stderr.iter().filter(|l| l.contains(&again)).count();
        check(
            "one warning about the full --output disk, which stayed full",
            warnings == 1 && recovered == 0,
            format!("{warnings} `cannot write`, {recovered} `writing again`"),
        );

        let (dropped_ok, dropped) = self.drops();
        check(
            "no event dropped but the lines the full disk refused",
            dropped_ok,
            dropped,
        );

        let (output_ok, output) = self.output_check();
        check(
            "--output held whole lines up to the fill",
            output_ok,
            output,
        );

        let m = self.memory;
        let (warm, end) = (
            self.rss_by_wave.first().copied(),
            self.rss_by_wave.last().copied(),
        );
        check(
            "RSS did not grow with the containers",
            warm.zip(end)
                .is_some_and(|(warm, end)| end <= warm + GROWTH_KIB),
            format!(
                "{} after the first wave, {} after the last (slack {}); by wave: {}",
                warm.map_or("?".into(), mib),
                end.map_or("?".into(), mib),
                mib(GROWTH_KIB),
                self.rss_by_wave
                    .iter()
                    .map(|&kib| format!("{:.1}", kib as f64 / 1024.0))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        );
        check(
            "RSS within the bench's budget",
            m.samples > 0
                && m.hwm <= PEAK_RSS_KIB
                && self.settled_rss.is_some_and(|rss| rss <= END_RSS_KIB),
            format!(
                "VmHWM {} (budget {}), VmRSS at rest after the last wave {} (budget {}); highest sampled {} in {} samples",
                mib(m.hwm),
                mib(PEAK_RSS_KIB),
                self.settled_rss.map_or("?".into(), mib),
                mib(END_RSS_KIB),
                mib(m.peak_rss),
                m.samples
            ),
        );
        checks
    }

    /// The summary line's drops: only `not written to <--output>` may be there.
    fn drops(&self) -> (bool, String) {
        let Some(summary) = self
            .stderr
            .iter()
            .rev()
            .find(|l| l.contains("reported") && l.contains("dropped"))
        else {
            return (false, "no summary line".into());
        };
        let refused = format!("not written to {}", self.output_path);
        let ok = match summary.split_once(" dropped (") {
            None => summary.contains(" 0 events dropped"),
            Some((_, why)) => why
                .split_once(')')
                .map(|(why, _)| why)
                .unwrap_or(why)
                .split(", ")
                .all(|part| part.split_once(' ').is_some_and(|(_, why)| why == refused)),
        };
        (ok, summary.trim_start_matches("oomtrace: ").to_owned())
    }

    /// The `--output` file: whole JSON lines, the soak's kills from before the fill in it, and
    /// after the fill no more than its last page took.
    fn output_check(&self) -> (bool, String) {
        let whole = self
            .output
            .split_terminator('\n')
            .all(|l| l.starts_with('{') && l.ends_with('}'))
            && (self.output.is_empty() || self.output.ends_with('\n'));
        let held = |h: &&DockerHog| self.output.contains(&format!("\"id\":\"{}\"", h.id));
        let before = self
            .hogs
            .iter()
            .filter(|h| !h.after_fill)
            .filter(held)
            .count();
        let after = self
            .hogs
            .iter()
            .filter(|h| h.after_fill)
            .filter(held)
            .count();
        let length = self.output.len() as u64;
        let room = self.output_at_fill.next_multiple_of(PAGE);
        (
            whole && before > 0 && length <= room,
            format!(
                "{} lines, {}; {before} of the soak's kills before the fill, {after} after in \
                 the last page's room ({} bytes at the fill, {length} at the end)",
                self.output.lines().count(),
                if whole { "all whole" } else { "NOT all whole" },
                self.output_at_fill,
            ),
        )
    }

    pub(super) fn report(&self, elapsed: Duration) -> String {
        let named_once = self
            .hogs
            .iter()
            .filter(|h| {
                self.reports.get(&h.id).is_some_and(|names| {
                    names.len() == 1 && names[0].as_deref() == Some(h.name.as_str())
                })
            })
            .count();
        let mut out = format!(
            "soak: {} containers in {} waves, {} OOM-killed, in {:.0} s\n",
            self.containers,
            self.waves,
            self.hogs.len(),
            elapsed.as_secs_f64()
        );
        out += &format!(
            "soak: Docker restarted after wave {} (down {:.1} s); --output's disk filled after wave {}\n",
            self.restart_after + 1,
            self.downtime.as_secs_f64(),
            self.fill_after + 1
        );
        out += &format!(
            "soak: {named_once} of {} kills reported once and named; {} lines on stdout\n",
            self.hogs.len(),
            self.stdout_lines
        );
        for check in self.checks() {
            let verdict = if check.passed { "ok  " } else { "FAIL" };
            out += &format!("soak: {verdict} {}: {}\n", check.what, check.seen);
        }
        out += if self.passed() {
            "soak: passed"
        } else {
            "soak: FAILED"
        };
        out
    }
}

/// `all N` or the first few problems and how many there were.
fn summarise(total: usize, problems: &[String]) -> String {
    if problems.is_empty() {
        return format!("all {total}");
    }
    let shown: Vec<&str> = problems.iter().take(5).map(String::as_str).collect();
    format!("{} of {total}: {}", problems.len(), shown.join("; "))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_drops_of_the_summary() {
        let outcome = |summary: &str| Outcome {
            output_path: "/t/out.jsonl".into(),
            stderr: vec![summary.into()],
            ..Outcome::default()
        };
        let clean = "oomtrace: 12 OOM kills reported, 0 events dropped; the kernel counted 12";
        assert!(outcome(clean).drops().0);
        let full = "oomtrace: 12 OOM kills reported, 7 events dropped (7 not written to /t/out.jsonl); the kernel counted 12";
        assert!(outcome(full).drops().0);
        let ring = "oomtrace: 12 OOM kills reported, 9 events dropped (2 found the kernel's ring buffer full, 7 not written to /t/out.jsonl)";
        assert!(!outcome(ring).drops().0);
        assert!(!outcome("oomtrace: watching for OOM kills").drops().0);
    }
}
