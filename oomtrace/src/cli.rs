//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::loader::AttachMode;

/// Catch every OOM kill on this host and say which process, in which container, was killed.
#[derive(Debug, Parser)]
#[command(name = "oomtrace", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub watch: WatchArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Say whether this host can be traced, how, and what a richer mode lacks.
    Check {
        #[command(flatten)]
        kernel: KernelArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Write one JSON object per line on stdout instead of a human line.
    #[arg(long)]
    pub json: bool,

    /// Also append JSON lines to FILE, flushed line by line.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Talk to the Docker Engine at PATH for container names.
    #[arg(long, value_name = "PATH", default_value = crate::docker::DEFAULT_SOCKET)]
    pub docker_socket: PathBuf,

    /// Do not ask any container runtime; containers are still identified from their cgroup.
    #[arg(long)]
    pub no_enrich: bool,

    /// Report only kills in this container (name or id prefix); repeatable.
    #[arg(long = "container", value_name = "NAME_OR_ID_PREFIX")]
    pub containers: Vec<String>,

    /// Report only kills of this process id; repeatable.
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Report only kills of processes with this name; repeatable.
    #[arg(long = "comm", value_name = "NAME")]
    pub comms: Vec<String>,

    #[command(flatten)]
    pub kernel: KernelArgs,
}

#[derive(Debug, clap::Args)]
pub struct KernelArgs {
    /// Use only this attach mode instead of the richest that works.
    #[arg(long, value_enum, value_name = "MODE")]
    pub attach: Option<AttachMode>,

    /// Read kernel BTF from FILE instead of /sys/kernel/btf/vmlinux.
    #[arg(long, value_name = "FILE", hide = true)]
    pub btf: Option<PathBuf>,
}
