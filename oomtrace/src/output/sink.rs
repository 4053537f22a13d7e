//! Sinks: where rendered reports go. Each destination is written by a thread of its own
//! behind a bounded queue, so a reader that does not keep up (a paused terminal, a stuck
//! pipe, a slow disk) never holds up the event loop, its signals or the Docker cache. A line
//! that finds its queue full is dropped and counted, never lost silently; every line is
//! written with one `write` as soon as its thread takes it, so a crash loses nothing already
//! written.
//!
//! Lines are rendered once on the event loop and shared between destinations as [`Bytes`].
//! Stdout, when it is a pipe, takes a line straight from the event loop when that cannot block
//! or overtake a queued one, so a report does not wait for a thread to wake.

use std::{
    io::{self, Write as _},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, SyncSender, TrySendError},
    },
    thread,
    time::Instant,
};

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedSender;

use super::{
    journal::Journal,
    line_file::{LineFile, Output},
};

/// Lines a destination may have waiting: a storm's worth, a few hundred KiB at most.
const QUEUE_LINES: usize = 1024;

/// One rendered line, and whether it reports a kill (the summary counts those written).
#[derive(Clone, Debug)]
pub struct Line {
    pub bytes: Bytes,
    pub kill: bool,
}

/// What the writer threads tell the event loop.
#[derive(Debug)]
pub enum SinkEvent {
    /// Stdout's reader went away (`oomtrace --json | head -1`): a normal way to stop.
    StdoutClosed,
    /// Stdout failed for another reason; nothing more can be shown.
    StdoutFailed(io::Error),
}

/// One destination's thread and queue.
pub(super) struct Destination {
    name: String,
    queue: Option<SyncSender<Line>>,
    /// Disconnects when the thread ends.
    done: Option<mpsc::Receiver<()>>,
    /// Lines taken by the thread and written whole, and the kills among them.
    written: Arc<AtomicU64>,
    kills_written: Arc<AtomicU64>,
    /// Lines handed to the queue.
    queued: u64,
    /// Lines refused because the queue was full.
    refused: u64,
    /// Lines refused or failed so far, read live by the metrics.
    lost: Arc<AtomicU64>,
    /// Stdout as a pipe: a line may be written straight from the event loop.
    direct: bool,
}

/// A destination's thread's side: the lines queued for it, and the counters it moves.
struct Writer {
    lines: mpsc::Receiver<Line>,
    written: Arc<AtomicU64>,
    kills_written: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
    /// Dropped when the thread ends, which disconnects [`Destination::done`].
    _finished: mpsc::Sender<()>,
}

impl Writer {
    /// Counts `line` as written whole.
    fn wrote(&self, line: &Line) {
        // Release: `write_now` takes an equal count for an empty queue, and writes after it.
        self.written.fetch_add(1, Ordering::Release);
        if line.kill {
            self.kills_written.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Destination {
    /// Starts a thread named `thread` that runs `write` over what this destination queues.
    fn spawn(
        name: String,
        thread: &str,
        direct: bool,
        write: impl FnOnce(Writer) + Send + 'static,
    ) -> Self {
        let (queue, lines) = mpsc::sync_channel::<Line>(QUEUE_LINES);
        let (finished, done) = mpsc::channel::<()>();
        let written = Arc::new(AtomicU64::new(0));
        let kills_written = Arc::new(AtomicU64::new(0));
        let lost = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            lines,
            written: Arc::clone(&written),
            kills_written: Arc::clone(&kills_written),
            lost: Arc::clone(&lost),
            _finished: finished,
        };
        let spawned = thread::Builder::new()
            .name(thread.into())
            .stack_size(64 * 1024)
            .spawn(move || write(writer));
        Self {
            name,
            queue: Some(queue),
            done: spawned.ok().map(|_| done),
            written,
            kills_written,
            queued: 0,
            refused: 0,
            lost,
            direct,
        }
    }

    fn send(&mut self, line: Line) {
        if self.direct && self.write_now(&line) {
            return;
        }
        let Some(queue) = &self.queue else {
            self.refuse();
            return;
        };
        match queue.try_send(line) {
            Ok(()) => self.queued += 1,
            Err(TrySendError::Full(_)) => self.refuse(),
            // The thread ended (stdout closed): the event loop is told separately.
            Err(TrySendError::Disconnected(_)) => self.refuse(),
        }
    }

    /// Writes `line` to stdout from the event loop when that cannot block and cannot overtake
    /// a queued line: the queue is empty, and the pipe has room for the whole line (POSIX
    /// writes up to PIPE_BUF bytes to a pipe whole or not at all). That saves the writer
    /// thread's wake-up on the way to the reader. Anything else goes through the queue.
    fn write_now(&mut self, line: &Line) -> bool {
        if self.queue.is_none()
            || line.bytes.len() > libc::PIPE_BUF
            || self.written.load(Ordering::Acquire) != self.queued
            || !writable_now(1)
        {
            return false;
        }
        // The writer thread is idle, its buffer flushed; the lock keeps it so meanwhile.
        let _idle = io::stdout().lock();
        // SAFETY: writes our own bytes to fd 1.
        let n = unsafe { libc::write(1, line.bytes.as_ptr().cast(), line.bytes.len()) };
        if usize::try_from(n) != Ok(line.bytes.len()) {
            // Nothing written (a pipe's write of this size is whole or nothing): the thread
            // writes it, and meets the same error if there is one.
            return false;
        }
        self.queued += 1;
        self.written.fetch_add(1, Ordering::Release);
        if line.kill {
            self.kills_written.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    fn refuse(&mut self) {
        self.refused += 1;
        self.lost.fetch_add(1, Ordering::Relaxed);
    }

    /// Closes the queue and waits until `deadline` for the thread to write what is queued.
    /// Returns the lines that were queued but never written.
    fn finish(&mut self, deadline: Instant) -> u64 {
        self.queue = None;
        if let Some(done) = self.done.take() {
            let _ = done.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        }
        self.queued
            .saturating_sub(self.written.load(Ordering::Relaxed))
    }
}

/// How many lines each destination lost, for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    /// `(destination, lines)` for every destination that lost any.
    pub by_destination: Vec<(String, u64)>,
    /// Kills stdout wrote whole.
    pub kills_shown: u64,
}

impl Losses {
    pub fn total(&self) -> u64 {
        self.by_destination.iter().map(|(_, n)| n).sum()
    }
}

/// The kind of destination (`stdout`, `output`, `journal`) and its count of lines lost so far.
pub type LossCounter = (&'static str, Arc<AtomicU64>);

/// Where reports go in this run.
pub struct Sinks {
    stdout: Destination,
    files: Vec<Destination>,
    /// Every report, shown or filtered: the record `history` and `explain` read.
    journal: Option<Destination>,
}

impl Sinks {
    /// Starts the stdout thread, one per `--output` file and the journal's; `events` hears
    /// of stdout closing.
    pub fn start(
        outputs: &[PathBuf],
        journal: Option<&Path>,
        events: UnboundedSender<SinkEvent>,
    ) -> Result<Self, String> {
        let mut files = Vec::new();
        for path in outputs {
            let file = Output::open(path)
                .map_err(|e| format!("cannot open --output {}: {e}", path.display()))?;
            files.push(spawn_writer(
                path.clone(),
                Box::new(file),
                "reports still go to stdout",
            ));
        }
        let journal = journal.and_then(|path| match Journal::open(path) {
            Ok(journal) => Some(spawn_writer(
                path.to_owned(),
                Box::new(journal),
                "reports still go out, but history and explain will not have them",
            )),
            Err(err) => {
                crate::say!(
                    "cannot keep the journal at {} ({err}); reports still go out, but history and explain will have only the kernel log",
                    path.display()
                );
                None
            }
        });
        Ok(Self {
            stdout: spawn_stdout(events),
            files,
            journal,
        })
    }

    /// Keeps `json` in the journal, whether or not the filters show it.
    pub fn record(&mut self, json: &Bytes, kill: bool) {
        if let Some(journal) = &mut self.journal {
            journal.send(Line {
                bytes: json.clone(),
                kill,
            });
        }
    }

    /// Every destination's count of lines lost so far, for the metrics to read while the watch
    /// runs; the summary counts from [`Self::finish`], which also knows what never left a queue.
    pub fn loss_counters(&self) -> Vec<LossCounter> {
        let files = self.files.iter().map(|d| ("output", Arc::clone(&d.lost)));
        let journal = self
            .journal
            .iter()
            .map(|d| ("journal", Arc::clone(&d.lost)));
        files
            .chain(journal)
            .chain([("stdout", Arc::clone(&self.stdout.lost))])
            .collect()
    }

    /// Queues `json` for every file, and `shown` (the JSON line or the human one) for stdout.
    pub fn send(&mut self, json: &Bytes, shown: Bytes, kill: bool) {
        for file in &mut self.files {
            file.send(Line {
                bytes: json.clone(),
                kill,
            });
        }
        self.stdout.send(Line { bytes: shown, kill });
    }

    /// Closes every queue, gives the threads until `deadline` to write what is queued, and
    /// says what was lost.
    pub fn finish(mut self, deadline: Instant) -> Losses {
        let mut losses = Losses::default();
        let journal = self.journal.as_mut().into_iter();
        for destination in self
            .files
            .iter_mut()
            .chain(journal)
            .chain([&mut self.stdout])
        {
            let lost = destination.refused + destination.finish(deadline);
            if lost > 0 {
                losses.by_destination.push((destination.name.clone(), lost));
            }
        }
        losses.kills_shown = self.stdout.kills_written.load(Ordering::Relaxed);
        losses
    }
}

fn spawn_stdout(events: UnboundedSender<SinkEvent>) -> Destination {
    let hangup_events = events.clone();
    // Nothing may be written to notice that stdout's reader is gone: poll says so at once.
    thread::Builder::new()
        .name("stdout-hangup".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            if wait_for_hangup(1) {
                let _ = hangup_events.send(SinkEvent::StdoutClosed);
            }
        })
        .ok();
    Destination::spawn("stdout".into(), "stdout", is_pipe(1), move |writer| {
        let stdout = io::stdout();
        for line in writer.lines.iter() {
            let mut out = stdout.lock();
            match out.write_all(&line.bytes).and_then(|()| out.flush()) {
                Ok(()) => writer.wrote(&line),
                Err(err) => {
                    writer.lost.fetch_add(1, Ordering::Relaxed);
                    let _ = events.send(if err.kind() == io::ErrorKind::BrokenPipe {
                        SinkEvent::StdoutClosed
                    } else {
                        SinkEvent::StdoutFailed(err)
                    });
                    return;
                }
            }
        }
    })
}

/// Whether `fd` is a pipe. Not a terminal, whose writes can block part-way when it is paused,
/// nor a file, which a full disk can leave with half a line.
fn is_pipe(fd: i32) -> bool {
    // SAFETY: fstat fills the struct for an fd we hold.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut stat) } != 0 {
        return false;
    }
    stat.st_mode & libc::S_IFMT == libc::S_IFIFO
}

/// Whether a write to `fd` would not block now: for a pipe, PIPE_BUF bytes of room.
fn writable_now(fd: i32) -> bool {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let ready = unsafe { libc::poll(&mut pollfd, 1, 0) };
    ready == 1
        && pollfd.revents & libc::POLLOUT != 0
        && pollfd.revents & (libc::POLLERR | libc::POLLHUP) == 0
}

/// Blocks until `fd` hangs up (a pipe whose reader closed, a terminal that went away, a
/// socket shut down). Returns false for what never hangs up (a file, /dev/null) only if poll
/// itself fails.
fn wait_for_hangup(fd: i32) -> bool {
    let mut pollfd = libc::pollfd {
        fd,
        // No events asked for: poll still reports POLLERR and POLLHUP, and nothing else.
        events: 0,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, no timeout.
        let ready = unsafe { libc::poll(&mut pollfd, 1, -1) };
        if ready > 0 {
            return pollfd.revents & (libc::POLLERR | libc::POLLHUP) != 0;
        }
        if ready < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return false;
        }
    }
}

/// A thread appending every line it is given to `file`, saying once per failure spell (a
/// full disk fills, then frees) that it cannot, and again when it can.
fn spawn_writer(
    path: PathBuf,
    mut file: Box<dyn LineFile>,
    meanwhile: &'static str,
) -> Destination {
    let name = path.display().to_string();
    Destination::spawn(name, "output-file", false, move |writer| {
        // The longest line refused in the current failure spell; 0 when not failing.
        let mut refused_len = 0;
        for line in writer.lines.iter() {
            match file.append(&line.bytes) {
                Ok(()) => {
                    writer.wrote(&line);
                    // A short line can still fit in a full file's last block: the spell is
                    // over only when a line as long as any refused one fits.
                    if refused_len > 0 && line.bytes.len() >= refused_len {
                        refused_len = 0;
                        crate::say!("writing to {} again", path.display());
                    }
                }
                Err(err) => {
                    writer.lost.fetch_add(1, Ordering::Relaxed);
                    // One warning per failure spell (a full disk fills once, then frees);
                    // reports still go to stdout.
                    let failing = refused_len > 0;
                    refused_len = refused_len.max(line.bytes.len());
                    if !failing {
                        crate::say!(
                            "cannot write to {} ({err}); {meanwhile}, and the lines lost are counted",
                            path.display()
                        );
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_and_counts() {
        let (queue, _lines) = mpsc::sync_channel::<Line>(2);
        let mut destination = Destination {
            name: "test".into(),
            queue: Some(queue),
            done: None,
            written: Arc::new(AtomicU64::new(0)),
            kills_written: Arc::new(AtomicU64::new(0)),
            queued: 0,
            refused: 0,
            lost: Arc::new(AtomicU64::new(0)),
            direct: false,
        };
        for _ in 0..5 {
            destination.send(Line {
                bytes: Bytes::from_static(b"x\n"),
                kill: true,
            });
        }
        assert_eq!((destination.queued, destination.refused), (2, 3));
        assert_eq!(destination.lost.load(Ordering::Relaxed), 3);
        // Nothing took the two queued lines: they count as lost too.
        assert_eq!(destination.finish(Instant::now()), 2);
    }

    #[test]
    fn poll_reports_a_pipe_whose_reader_closed() {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two fds into the array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: closes the read end we own.
        unsafe { libc::close(fds[0]) };
        assert!(wait_for_hangup(fds[1]));
        // SAFETY: closes the write end we own.
        unsafe { libc::close(fds[1]) };
    }
}
