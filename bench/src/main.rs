//! `oomtrace-bench`: oomtrace measured against its peer (`bench`), and run through the
//! conditions it exists to watch (`soak`). `cargo xtask bench` and `cargo xtask soak` build it
//! with oomtrace and the hog into `target/release/`, set up the host, and run it from there.

mod bench;
mod console;
mod proc;
mod soak;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use console::progress;

#[derive(Parser)]
#[command(about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// oomtrace against a bpftrace one-liner on the same kills: ready time, memory, idle CPU,
    /// latency, a storm, handler cost, size; and a signal storm against the same signals with
    /// no oomtrace. Prints a table and the budgets, and writes target/bench/results.json (see
    /// BENCHMARKS.md).
    Bench {
        /// The short run `cargo xtask test` does: every measurement, no budget enforced.
        #[arg(long, conflicts_with = "profile")]
        smoke: bool,
        /// Record oomtrace's start-up with perf instead.
        #[arg(long)]
        profile: bool,
        /// Run only these phases (comma-separated), and judge only their budgets.
        #[arg(long, value_enum, value_delimiter = ',', conflicts_with = "profile")]
        only: Vec<bench::Phase>,
    },
    /// Containers start and stop in waves, a third OOM-killed, while a release oomtrace
    /// watches; Docker restarts midway and the --output disk fills. Logs in target/soak.
    Soak {
        /// How many containers in all.
        #[arg(long, default_value_t = soak::DEFAULT_CONTAINERS, value_parser = clap::value_parser!(u64).range(3..))]
        containers: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let target = target_dir();
    let result = match cli.command {
        Command::Bench {
            smoke,
            profile,
            only,
        } => bench::command(&target, smoke, profile, &only),
        Command::Soak { containers } => soak::command(&target, containers as usize),
    };
    result.unwrap_or_else(|err| {
        progress(format_args!("error: {err:#}"));
        ExitCode::FAILURE
    })
}

/// The cargo target directory this binary was built into (`target/release/oomtrace-bench`),
/// where the results and logs go and oomtrace and the hog were built beside it.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of this program");
    exe.ancestors()
        .nth(2)
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn parses_its_arguments() {
        Cli::command().debug_assert();
        let parse = |args: &[&str]| Cli::try_parse_from([&["oomtrace-bench"], args].concat());
        assert!(matches!(
            parse(&["bench"]).map(|c| c.command),
            Ok(Command::Bench {
                smoke: false,
                profile: false,
                ..
            })
        ));
        assert!(matches!(
            parse(&["bench", "--smoke"]).map(|c| c.command),
            Ok(Command::Bench { smoke: true, .. })
        ));
        assert!(matches!(
            parse(&["bench", "--profile"]).map(|c| c.command),
            Ok(Command::Bench { profile: true, .. })
        ));
        assert!(matches!(
            parse(&["bench", "--smoke", "--only", "storm,ready"]).map(|c| c.command),
            Ok(Command::Bench { smoke: true, only, .. })
                if only == [bench::Phase::Storm, bench::Phase::Ready]
        ));
        assert!(parse(&["bench", "--only", "nothing"]).is_err());
        assert!(parse(&["bench", "--profile", "--only", "storm"]).is_err());
        assert!(parse(&["bench", "--fast"]).is_err());
        assert!(parse(&["bench", "--smoke", "--profile"]).is_err());
        assert!(matches!(
            parse(&["soak"]).map(|c| c.command),
            Ok(Command::Soak { containers: 300 })
        ));
        assert!(matches!(
            parse(&["soak", "--containers", "30"]).map(|c| c.command),
            Ok(Command::Soak { containers: 30 })
        ));
        assert!(parse(&["soak", "--containers", "2"]).is_err());
        assert!(parse(&["soak", "--containers", "x"]).is_err());
    }
}
