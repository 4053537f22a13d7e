//! Command-line interface. Every option may be written before or after the command, and
//! applies wherever it is written; one that does not apply to the command, or that conflicts
//! with another, is refused with one sentence and exit status 2, never silently ignored.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};

use oomtrace_core::kernel::attach_mode::AttachMode;
use oomtrace_core::time::Since;

use crate::kernel::attach::AttachOptions;

/// `--attach`'s values, each with what it reads.
fn attach_modes() -> impl clap::builder::TypedValueParser<Value = AttachMode> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser as _};
    let values = AttachMode::ALL.map(|mode| PossibleValue::new(mode.name()).help(mode.reads()));
    PossibleValuesParser::new(values)
        .map(|name| AttachMode::from_name(&name).expect("clap accepts only the modes' names"))
}

const AFTER_HELP: &str = "\
Filters (--container, --pid, --comm) show only matching kills; kinds are ANDed, values of one
kind ORed. --container matches a container's name exactly, or its id by prefix; --pid is the
host pid (or thread id) of the killed process; --comm its name. --output receives only what
passes the filters.

Times in the human view are local (TZ, else /etc/localtime), with the date when not today;
JSON has RFC 3339 UTC. --since takes a duration (10m, 2h, 1d), an RFC 3339 time, a local
date or date and time (2026-11-25, 2026-11-25T14:00:00), or a Unix timestamp.

Exit status: 0 on success (a signal, --count, --timeout or a closed stdout ends a watch with
0), 1 when oomtrace cannot do its job, 2 for a usage error.";

/// Catch every OOM kill on this host and say which process, in which container, was killed,
/// and why.
#[derive(Debug, Parser)]
#[command(name = "oomtrace", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub args: Args,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Say whether this host can be traced, how, and what is missing.
    Check,
    /// List past OOM kills: the journal merged with the kernel log, oldest first.
    History,
    /// Tell one container's OOM story on one screen: what Docker says, what the kernel did,
    /// why, what it means, and what to change.
    #[command(
        after_help = "Works for a container long removed, from the journal and the kernel log, and says what \
                      it cannot know without them. --json prints one object.\n\nExit status: 0 when the \
                      story is told (a container never OOM-killed included), 1 when no container \
                      matches, 2 when CONTAINER is the start of several containers' ids."
    )]
    Explain {
        /// The container: its name, or its id or a prefix of it.
        container: String,
    },
}

/// Where reports come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// eBPF, or the kernel log when eBPF cannot be used.
    Auto,
    Ebpf,
    /// The kernel log (/dev/kmsg): only what the kernel prints.
    Kmsg,
}

/// Which `mark_victim` record layout to assume in tracepoint mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TracepointLayout {
    /// The one the kernel's tracefs format describes.
    #[default]
    Auto,
    /// Only the thread id, as before Linux 6.9: the rest comes from /proc.
    #[value(name = "pid-only")]
    PidOnly,
}

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// One JSON object per line instead of the human view.
    #[arg(long, short = 'j', global = true)]
    pub json: bool,

    /// Under each kill, the limited cgroup's memory breakdown and biggest processes (on by
    /// default when stdout is a terminal).
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,

    /// Also append JSON lines to FILE; repeatable.
    #[arg(long = "output", short = 'o', value_name = "FILE", global = true)]
    pub outputs: Vec<PathBuf>,

    /// Where kills are seen [default: auto].
    #[arg(long, value_enum, global = true)]
    pub backend: Option<Backend>,

    /// Use only this attach mode instead of the richest that works.
    #[arg(long, short = 'a', value_parser = attach_modes(), value_name = "MODE", global = true)]
    pub attach: Option<AttachMode>,

    /// In tracepoint mode, read only the thread id, as on kernels before 6.9 [default: auto].
    #[arg(long, value_enum, value_name = "LAYOUT", global = true)]
    pub tracepoint_layout: Option<TracepointLayout>,

    /// Read kernel BTF from FILE instead of /sys/kernel/btf/vmlinux.
    #[arg(long, value_name = "FILE", hide = true, global = true)]
    pub btf: Option<PathBuf>,

    /// Talk to the Docker Engine at PATH [default: DOCKER_HOST's unix socket, else
    /// /var/run/docker.sock].
    #[arg(long, value_name = "PATH", global = true)]
    pub docker_socket: Option<PathBuf>,

    /// Talk to containerd at PATH, for Kubernetes names [default: CONTAINERD_ADDRESS, else
    /// /run/containerd/containerd.sock].
    #[arg(long, value_name = "PATH", global = true)]
    pub containerd_socket: Option<PathBuf>,

    /// Ask no container runtime; containers are still identified from their cgroup.
    #[arg(long, global = true)]
    pub no_enrich: bool,

    /// Only kills in this container: its exact name, or its id or a prefix of it; repeatable.
    #[arg(
        long = "container",
        short = 'c',
        value_name = "NAME_OR_ID",
        global = true
    )]
    pub containers: Vec<String>,

    /// Only kills of this host pid (or thread id); repeatable.
    #[arg(long = "pid", short = 'p', value_name = "PID", global = true)]
    pub pids: Vec<u32>,

    /// Only kills of processes named NAME; repeatable.
    #[arg(long = "comm", value_name = "NAME", global = true)]
    pub comms: Vec<String>,

    /// Only kills since WHEN; a watch first prints them, then follows live.
    #[arg(long, short = 's', value_name = "WHEN", value_parser = Since::parse, global = true)]
    pub since: Option<Since>,

    /// Stop after N reports (exit 0).
    #[arg(long, short = 'n', value_name = "N", global = true)]
    pub count: Option<u64>,

    /// Stop after DURATION (exit 0), e.g. 30s, 10m, 1h.
    #[arg(long, short = 't', value_name = "DURATION", value_parser = parse_duration, global = true)]
    pub timeout: Option<Duration>,

    /// The journal oomtrace keeps every report in, and history and explain read
    /// [default: /var/lib/oomtrace/journal.jsonl].
    #[arg(long, value_name = "PATH", global = true)]
    pub journal: Option<PathBuf>,

    /// Keep no journal (watching), or do not read it (history, explain).
    #[arg(long, global = true)]
    pub no_journal: bool,

    /// Read the journal (for --since) but add nothing to it: the watch's reports go only to
    /// its own outputs.
    #[arg(long, global = true)]
    pub no_journal_write: bool,

    /// Serve Prometheus metrics at ADDR:PORT (a bare port binds 127.0.0.1; port 0 picks a
    /// free one, named on stderr). Kills are counted as shown: after the filters, without
    /// those --since replays.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen, global = true)]
    pub metrics_addr: Option<SocketAddr>,

    /// Leave oomtrace's own oom_score_adj alone (it sets -1000, so the OOM killer never picks
    /// the tracer).
    #[arg(long, global = true)]
    pub no_oom_protect: bool,

    /// Also watch this memory cgroup (its path in the memory hierarchy, as /proc/PID/cgroup
    /// gives it) for a stall at its limit, as containers are watched: an oom_stall event when
    /// it is stuck with its OOM killer off (v1) or held at memory.high or memory.max (v2).
    /// Repeatable.
    #[arg(long, value_name = "CGROUP", global = true)]
    pub stall_cgroup: Vec<String>,

    /// Follow a userspace OOM killer's log in FILE: earlyoom's stderr written to a file, or a
    /// syslog file with earlyoom's and systemd-oomd's tagged lines. Each of their kills then
    /// says what it acted on (`acted_on`): earlyoom's memory, swap and limits, systemd-oomd's
    /// cgroup and its pressure or swap use. Only lines written after the start are read; a
    /// rotated log is followed to its new file.
    #[arg(long, value_name = "FILE", global = true)]
    pub killer_log: Option<std::path::PathBuf>,
}

impl Args {
    /// What `check` and a watch ask of the kernel side.
    pub fn kernel(&self) -> AttachOptions {
        AttachOptions {
            attach: self.attach,
            pid_only: self.tracepoint_layout == Some(TracepointLayout::PidOnly),
            btf: self.btf.clone(),
        }
    }

    /// The options written on the command line, by name.
    fn given(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        let mut note = |name, set: bool| {
            if set {
                given.push(name);
            }
        };
        note("--json", self.json);
        note("--verbose", self.verbose);
        note("--output", !self.outputs.is_empty());
        note("--backend", self.backend.is_some());
        note("--attach", self.attach.is_some());
        note("--tracepoint-layout", self.tracepoint_layout.is_some());
        note("--btf", self.btf.is_some());
        note("--docker-socket", self.docker_socket.is_some());
        note("--containerd-socket", self.containerd_socket.is_some());
        note("--no-enrich", self.no_enrich);
        note("--container", !self.containers.is_empty());
        note("--pid", !self.pids.is_empty());
        note("--comm", !self.comms.is_empty());
        note("--since", self.since.is_some());
        note("--count", self.count.is_some());
        note("--timeout", self.timeout.is_some());
        note("--journal", self.journal.is_some());
        note("--no-journal", self.no_journal);
        note("--no-journal-write", self.no_journal_write);
        note("--metrics-addr", self.metrics_addr.is_some());
        note("--no-oom-protect", self.no_oom_protect);
        note("--stall-cgroup", !self.stall_cgroup.is_empty());
        note("--killer-log", self.killer_log.is_some());
        given
    }
}

/// Which options each command takes; a watch takes them all.
fn applies(command: Option<&Command>, option: &str) -> bool {
    const DOCKER: [&str; 2] = ["--docker-socket", "--no-enrich"];
    const JOURNAL: [&str; 2] = ["--journal", "--no-journal"];
    let takes: &[&str] = match command {
        None => return true,
        Some(Command::Check) => &[
            "--attach",
            "--tracepoint-layout",
            "--btf",
            "--containerd-socket",
        ],
        Some(Command::History) => &[
            "--json",
            "--verbose",
            "--since",
            "--container",
            "--pid",
            "--comm",
        ],
        Some(Command::Explain { .. }) => &["--json", "--since"],
    };
    let reads_journal = !matches!(command, Some(Command::Check));
    takes.contains(&option)
        || DOCKER.contains(&option)
        || (reads_journal && JOURNAL.contains(&option))
}

impl Cli {
    /// What cannot be done as written: one sentence, for exit status 2.
    pub fn usage_problem(&self) -> Option<String> {
        let a = &self.args;
        let name = match &self.command {
            None => "watching",
            Some(Command::Check) => "`oomtrace check`",
            Some(Command::History) => "`oomtrace history`",
            Some(Command::Explain { .. }) => "`oomtrace explain`",
        };
        if let Some(option) = a
            .given()
            .into_iter()
            .find(|option| !applies(self.command.as_ref(), option))
        {
            return Some(format!("{option} does not apply to {name}"));
        }
        if a.backend == Some(Backend::Kmsg) {
            let kernel_only = [
                ("--attach", a.attach.is_some()),
                ("--tracepoint-layout", a.tracepoint_layout.is_some()),
                ("--btf", a.btf.is_some()),
            ];
            if let Some((option, _)) = kernel_only.iter().find(|(_, given)| *given) {
                return Some(format!(
                    "{option} chooses how eBPF attaches, and --backend kmsg reads the kernel log instead: give one or the other"
                ));
            }
        }
        if a.tracepoint_layout == Some(TracepointLayout::PidOnly)
            && a.attach != Some(AttachMode::Tracepoint)
        {
            return Some(
                "--tracepoint-layout pid-only needs --attach tracepoint: tp_btf and raw_tp take the layout the kernel's BTF describes".into(),
            );
        }
        if a.no_enrich && a.docker_socket.is_some() {
            return Some(
                "--no-enrich asks no container runtime, and --docker-socket says where to ask Docker: give one or the other".into(),
            );
        }
        if a.no_enrich && a.containerd_socket.is_some() {
            return Some(
                "--no-enrich asks no container runtime, and --containerd-socket says where to ask containerd: give one or the other".into(),
            );
        }
        if a.no_journal && a.no_journal_write {
            return Some(
                "--no-journal already keeps no journal; --no-journal-write reads it without writing: give one or the other".into(),
            );
        }
        if a.no_journal && a.journal.is_some() {
            return Some(
                "--no-journal and --journal contradict each other: give one or the other".into(),
            );
        }
        if a.count == Some(0) {
            return Some("--count takes a number of reports, at least 1".into());
        }
        if a.timeout == Some(Duration::ZERO) {
            return Some("--timeout takes a duration longer than 0, e.g. 30s or 10m".into());
        }
        None
    }
}

/// What clap could not parse, as one line and exit status 2 (help and version go to stdout
/// with 0, as they should).
pub fn refuse(err: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = err.print();
        return std::process::ExitCode::SUCCESS;
    }
    crate::say!("{}", one_line(&err.to_string()));
    std::process::ExitCode::from(2)
}

/// clap's message without its blank lines, usage and pointer to --help, on one line.
fn one_line(rendered: &str) -> String {
    let parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information")
        })
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect();
    format!("{} (see oomtrace --help)", parts.join("; "))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|_| {
        format!("{text:?} is not a duration: give a number and a unit, e.g. 30s, 10m, 2h, 1d")
    })
}

/// `ADDR:PORT`, or a bare port on 127.0.0.1: metrics are not exposed beyond the host unless
/// asked for.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| {
        format!("{text:?} is not ADDR:PORT (e.g. 127.0.0.1:9633, 0.0.0.0:9633) or a port")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(args: &[&str]) -> Option<String> {
        let mut argv = vec!["oomtrace"];
        argv.extend(args);
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.usage_problem(),
            Err(err) => Some(format!("clap: {}", err.kind() as u8)),
        }
    }

    /// The findings behind this table: `--json history` printed human lines, `--container s0
    /// history` listed every container, `--backend kmsg --attach tp_btf` read the log
    /// without a word.
    #[test]
    fn an_option_applies_wherever_it_is_written_or_is_refused() {
        let ok: [&[&str]; 15] = [
            &["--json", "history"],
            &["history", "--json"],
            &["--container", "s0", "history"],
            &["history", "-c", "s0", "--since", "1h"],
            &["check", "--attach", "raw_tp"],
            &["--attach", "tracepoint", "--tracepoint-layout", "pid-only"],
            &["-j", "-n", "3", "-t", "10m"],
            &["explain", "web", "--json"],
            &["--backend", "kmsg", "--since", "2h"],
            &["history", "--no-journal"],
            &["--metrics-addr", "9633"],
            &["--verbose", "history"],
            &["--no-journal-write", "--since", "1h"],
            &["--containerd-socket", "/c.sock", "-j"],
            &["check", "--containerd-socket", "/c.sock"],
        ];
        for args in ok {
            assert_eq!(problem(args), None, "{args:?}");
        }
        let refused: [(&[&str], &str); 13] = [
            (
                &["check", "--json"],
                "--json does not apply to `oomtrace check`",
            ),
            (
                &["--output", "x", "history"],
                "--output does not apply to `oomtrace history`",
            ),
            (&["history", "--count", "3"], "--count does not apply"),
            (
                &["--attach", "tp_btf", "history"],
                "--attach does not apply",
            ),
            (
                &["explain", "web", "-c", "web"],
                "--container does not apply",
            ),
            (
                &["--backend", "kmsg", "--attach", "tp_btf"],
                "--backend kmsg reads the kernel log",
            ),
            (
                &["--tracepoint-layout", "pid-only"],
                "needs --attach tracepoint",
            ),
            (
                &["--no-enrich", "--docker-socket", "/x"],
                "give one or the other",
            ),
            (
                &["--no-enrich", "--containerd-socket", "/x"],
                "give one or the other",
            ),
            (
                &["history", "--containerd-socket", "/x"],
                "--containerd-socket does not apply to `oomtrace history`",
            ),
            (&["-n", "0"], "at least 1"),
            (
                &["history", "--no-journal-write"],
                "--no-journal-write does not apply to `oomtrace history`",
            ),
            (
                &["--no-journal", "--no-journal-write"],
                "give one or the other",
            ),
        ];
        for (args, want) in refused {
            let got = problem(args).unwrap_or_default();
            assert!(got.contains(want), "{args:?}: {got}");
        }
    }

    #[test]
    fn metrics_bind_to_localhost_unless_told_otherwise() {
        assert_eq!(parse_listen("9633"), Ok("127.0.0.1:9633".parse().unwrap()));
        assert_eq!(
            parse_listen("0.0.0.0:9633"),
            Ok("0.0.0.0:9633".parse().unwrap())
        );
        assert!(parse_listen("banana").unwrap_err().contains("ADDR:PORT"));
    }

    #[test]
    fn clap_s_errors_are_one_line() {
        let err = Cli::try_parse_from(["oomtrace", "--jsno"]).unwrap_err();
        let line = one_line(&err.to_string());
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.contains("'--jsno'") && line.contains("'--json'"),
            "{line}"
        );
        let err = Cli::try_parse_from(["oomtrace", "--since", "banana"]).unwrap_err();
        let line = one_line(&err.to_string());
        assert!(line.contains("is not a time"), "{line}");
        assert!(!line.contains("Usage"), "{line}");
    }

    #[test]
    fn typos_get_a_suggestion() {
        let err = Cli::try_parse_from(["oomtrace", "--jsno"]).unwrap_err();
        assert!(err.to_string().contains("--json"), "{err}");
        let err = Cli::try_parse_from(["oomtrace", "histroy"]).unwrap_err();
        assert!(err.to_string().contains("history"), "{err}");
    }
}
