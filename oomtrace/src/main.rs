//! oomtrace: catch every OOM kill on this host and say which process, in which container,
//! was killed and why.

mod btf;
mod check;
mod cli;
mod container;
mod docker;
mod enrich;
mod filter;
mod layout;
mod loader;
mod plan;
mod preflight;
mod render;
mod report;
mod sink;
mod tracefs;
mod watch;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // A bug must still end in one line, not a backtrace in the middle of an incident.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("oomtrace: internal error, please report it: {info}");
    }));
    let cli = cli::Cli::parse();
    match cli.command {
        Some(cli::Command::Check { kernel }) => check::run(&kernel),
        None => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("oomtrace: cannot start the event loop: {err}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(watch::run(cli.watch)) {
                Ok(code) => code,
                Err(err) => {
                    eprintln!("oomtrace: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
