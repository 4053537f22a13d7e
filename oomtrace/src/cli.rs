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
