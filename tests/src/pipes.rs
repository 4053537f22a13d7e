//! Reading a child's pipes with deadlines: one line at a time on the test's own thread, or every
//! line by a thread of its own that hands them over as they arrive.

use std::{
    fs::File,
    io::{BufRead as _, BufReader, Read, Write as _},
    os::fd::AsRawFd,
    panic::AssertUnwindSafe,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

use crate::process::{PIPE_GRACE, readable_within};

/// One line from `reader`, without its line break, waiting at most `timeout` for it: a child
/// that stays silent fails the test, naming `what`, instead of hanging it. `None` at the end
/// of the stream.
pub fn read_line_within<R: Read + AsRawFd>(
    reader: &mut BufReader<R>,
    timeout: Duration,
    what: &str,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let mut line = Vec::new();
    loop {
        if reader.buffer().is_empty() && !readable_within(reader.get_ref().as_raw_fd(), deadline) {
            panic!(
                "{what}: no complete line within {timeout:?} (so far {:?})",
                String::from_utf8_lossy(&line)
            );
        }
        // At most one read(2), which poll said will not block.
        let available = reader
            .fill_buf()
            .unwrap_or_else(|e| panic!("{what}: read failed: {e}"));
        if available.is_empty() {
            return (!line.is_empty()).then(|| String::from_utf8_lossy(&line).into_owned());
        }
        if let Some(end) = available.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&available[..end]);
            reader.consume(end + 1);
            return Some(String::from_utf8_lossy(&line).into_owned());
        }
        let taken = available.len();
        line.extend_from_slice(available);
        reader.consume(taken);
    }
}

/// The lines a child writes to one pipe, taken by a thread as they arrive and handed to the
/// test under a Condvar. A line the thread cannot take (bad JSON, a failed read, a panic)
/// is recorded and fails the test the next time the test thread looks: a panic in the thread
/// itself would fail nothing.
pub struct PipeLines<T> {
    what: String,
    shared: Arc<Shared<T>>,
    thread: Option<thread::JoinHandle<()>>,
}

struct Shared<T> {
    state: Mutex<PipeState<T>>,
    changed: Condvar,
}

struct PipeState<T> {
    lines: Vec<T>,
    /// The first line the reader could not take, with why.
    error: Option<String>,
    /// The pipe reached its end, or the reader gave up.
    done: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, PipeState<T>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<T: Clone + Send + 'static> PipeLines<T> {
    /// Starts the reader. `take` turns a line (without its line break) into a `T` or says why
    /// it cannot.
    pub fn spawn(
        what: impl Into<String>,
        pipe: impl Read + Send + 'static,
        take: impl Fn(Vec<u8>) -> Result<T, String> + Send + 'static,
    ) -> Self {
        Self::start(what, pipe, None, take)
    }

    /// [`spawn`](Self::spawn), also writing every line as it came into `log`: the record of a
    /// long run, there to be read even if the run fails before it ends.
    pub fn spawn_logged(
        what: impl Into<String>,
        pipe: impl Read + Send + 'static,
        log: File,
        take: impl Fn(Vec<u8>) -> Result<T, String> + Send + 'static,
    ) -> Self {
        Self::start(what, pipe, Some(log), take)
    }

    fn start(
        what: impl Into<String>,
        pipe: impl Read + Send + 'static,
        log: Option<File>,
        take: impl Fn(Vec<u8>) -> Result<T, String> + Send + 'static,
    ) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(PipeState {
                lines: Vec::new(),
                error: None,
                done: false,
            }),
            changed: Condvar::new(),
        });
        let sink = Arc::clone(&shared);
        let thread = thread::spawn(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                read_lines(pipe, log.as_ref(), &take, &sink)
            }));
            let mut state = sink.lock();
            if let Err(panic) = outcome {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                state
                    .error
                    .get_or_insert_with(|| format!("its reader thread panicked: {message}"));
            }
            state.done = true;
            drop(state);
            sink.changed.notify_all();
        });
        Self {
            what: what.into(),
            shared,
            thread: Some(thread),
        }
    }

    /// Waits until `enough` holds for the lines so far, the pipe ends, or `deadline` passes,
    /// and returns the lines so far. Panics, naming the line, if the reader met one it could
    /// not take.
    pub fn wait_until(&self, deadline: Instant, enough: impl Fn(&[T]) -> bool) -> Vec<T> {
        let mut state = self.shared.lock();
        loop {
            if let Some(error) = state.error.clone() {
                drop(state);
                panic!("{}: {error}", self.what);
            }
            let now = Instant::now();
            if state.done || now >= deadline || enough(&state.lines) {
                return state.lines.clone();
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// The lines so far, without waiting.
    pub fn snapshot(&self) -> Vec<T> {
        self.wait_until(Instant::now(), |_| true)
    }

    /// [`finish`](Self::finish) for a pipe whose writer has exited: it reaches its end at once.
    pub fn finish_after_exit(self) -> Vec<T> {
        self.finish(PIPE_GRACE)
    }

    /// Every line the pipe carried, once it has ended (the child exited or closed it); joins
    /// the reader. Panics if the pipe is still open after `timeout`.
    pub fn finish(mut self, timeout: Duration) -> Vec<T> {
        let lines = self.wait_until(Instant::now() + timeout, |_| false);
        if !self.shared.lock().done {
            panic!(
                "{} is still open {timeout:?} after its writer was expected to end",
                self.what
            );
        }
        if let Some(thread) = self.thread.take()
            && let Err(panic) = thread.join()
        {
            std::panic::resume_unwind(panic);
        }
        lines
    }
}

fn read_lines<T>(
    pipe: impl Read,
    mut log: Option<&File>,
    take: &impl Fn(Vec<u8>) -> Result<T, String>,
    shared: &Shared<T>,
) {
    let publish = |taken: Result<T, String>| {
        let mut state = shared.lock();
        match taken {
            Ok(item) => state.lines.push(item),
            // The first error is the one that explains.
            Err(why) => {
                state.error.get_or_insert(why);
            }
        }
        drop(state);
        shared.changed.notify_all();
    };
    let mut reader = BufReader::new(pipe);
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                if let Some(file) = log.as_mut()
                    && let Err(e) = file.write_all(&line)
                {
                    publish(Err(format!("cannot copy a line into its log: {e}")));
                    log = None;
                }
                if line.ends_with(b"\n") {
                    line.pop();
                    if line.ends_with(b"\r") {
                        line.pop();
                    }
                }
                // After a line it cannot take, the reader goes on reading, so the writer never
                // blocks on a full pipe.
                publish(take(line));
            }
            Err(e) => return publish(Err(format!("read failed: {e}"))),
        }
    }
}
