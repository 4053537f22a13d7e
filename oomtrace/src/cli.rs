//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::kernel::loader::AttachMode;

/// Catch every OOM kill on this host and say which process, in which container, was killed.
#[derive(Debug, Parser)]
#[command(name = "oomtrace", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub watch: WatchArgs,
}

impl Cli {
    /// Flags that cannot work together: one sentence, for exit status 2.
    pub fn usage_problem(&self) -> Option<String> {
        let kernel = match &self.command {
            Some(Command::Check { kernel }) => kernel,
            _ => &self.watch.kernel,
        };
        (kernel.tracepoint_layout == TracepointLayout::PidOnly
            && kernel.attach != Some(AttachMode::Tracepoint))
        .then(|| {
            "--tracepoint-layout pid-only needs --attach tracepoint: tp_btf and raw_tp take the layout the kernel's BTF describes".to_owned()
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Say whether this host can be traced, how, and what a richer mode lacks.
    Check {
        #[command(flatten)]
        kernel: KernelArgs,
    },
    /// List the OOM kills still in the kernel's log buffer, oldest first.
    History {
        /// One JSON object per line instead of a human line.
        #[arg(long)]
        json: bool,

        /// Only kills in the last DURATION (e.g. 30s, 15m, 2h, 1d).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TracepointLayout {
    /// The one the kernel's tracefs format describes.
    Auto,
    /// Only the thread id, as before Linux 6.9: the rest comes from /proc.
    #[value(name = "pid-only")]
    PidOnly,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Write one JSON object per line on stdout instead of a human line.
    #[arg(long)]
    pub json: bool,

    /// Where reports come from.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: Backend,

    /// Also append JSON lines to FILE, flushed line by line.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Talk to the Docker Engine at PATH for container names [default: DOCKER_HOST's unix
    /// socket, else /var/run/docker.sock].
    #[arg(long, value_name = "PATH")]
    pub docker_socket: Option<PathBuf>,

    /// Under each kill, the limited cgroup's memory breakdown and biggest processes (always on
    /// when stdout is a terminal).
    #[arg(long, short = 'v')]
    pub verbose: bool,

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

    /// In tracepoint mode, read only the thread id, as on kernels before 6.9.
    #[arg(long, value_enum, default_value = "auto", value_name = "LAYOUT")]
    pub tracepoint_layout: TracepointLayout,

    /// Read kernel BTF from FILE instead of /sys/kernel/btf/vmlinux.
    #[arg(long, value_name = "FILE", hide = true)]
    pub btf: Option<PathBuf>,
}
