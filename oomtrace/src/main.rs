//! oomtrace: catch every OOM kill on this host and say which process, in which container,
//! was killed and why.

use std::process::ExitCode;

use clap::Parser as _;
use oomtrace::{
    cli,
    commands::{check, explain, history, watch},
};

fn main() -> ExitCode {
    // A bug must still end in one line, not a backtrace in the middle of an incident.
    std::panic::set_hook(Box::new(|info| {
        oomtrace::say!("internal error, please report it: {info}");
    }));
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return cli::refuse(err),
    };
    if let Some(problem) = cli.usage_problem() {
        oomtrace::say!("{problem}");
        return ExitCode::from(2);
    }
    match cli.command {
        Some(cli::Command::Check) => check::run(&cli.args),
        Some(cli::Command::History) => history::run(&cli.args),
        Some(cli::Command::Explain { container }) => explain::run(&cli.args, &container),
        None => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    oomtrace::say!("cannot start the event loop: {err}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(watch::run(cli.args)) {
                Ok(code) => code,
                Err(err) => {
                    oomtrace::say!("{err:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
