//! Who the kernel wakes when a record is written. The OOM path writes the record from the CPU
//! that is killing, and then prints `Killed process` to the console with the victim's task
//! lock held: for milliseconds on a serial console, with nothing else able to run on that
//! CPU. A reader the scheduler places there waits for the print, however idle the other CPUs.
//!
//! So the event loop is never in the ring buffers' wait queues itself. Two waker threads are,
//! each allowed on half of the CPUs this process may use: whichever CPU the kill runs on, one
//! of them is woken elsewhere, and wakes the event loop from there. Blocked in `epoll_wait`,
//! they cost nothing while no record comes.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    sync::Arc,
};

use tokio::sync::Notify;

/// Wakes the event loop when any of the watched descriptors becomes readable.
pub struct Wakers {
    pub written: Arc<Notify>,
}

impl Wakers {
    /// Starts the waker threads on `fds`: two on a host with two CPUs or more, one otherwise.
    pub fn start(fds: &[BorrowedFd<'_>]) -> io::Result<Self> {
        let written = Arc::new(Notify::new());
        // Without the list (more CPUs than a cpu_set_t holds), one waker that can run anywhere.
        for cpus in halves(&allowed_cpus().unwrap_or_default()) {
            let epoll = epoll_on(fds)?;
            let written = Arc::clone(&written);
            std::thread::Builder::new()
                .name("ring-waker".into())
                .stack_size(64 * 1024)
                .spawn(move || {
                    // Best effort: an affinity refused leaves a waker that can run anywhere.
                    set_affinity(&cpus);
                    wait_and_wake(&epoll, &written);
                })?;
        }
        Ok(Self { written })
    }
}

fn wait_and_wake(epoll: &OwnedFd, written: &Notify) {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
    loop {
        // SAFETY: the epoll fd is ours and `events` has room for its length.
        let n = unsafe {
            libc::epoll_wait(
                epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                -1,
            )
        };
        if n > 0 {
            // Stores a permit when the event loop is not waiting: no record is missed.
            written.notify_one();
        } else if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// An epoll instance of its own, edge-triggered on each fd: one wake-up per write, never a
/// spin while the event loop has not read yet.
fn epoll_on(fds: &[BorrowedFd<'_>]) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the fd is checked before it is owned.
    let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd that nothing else owns.
    let epoll = unsafe { OwnedFd::from_raw_fd(raw) };
    for fd in fds {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: 0,
        };
        // SAFETY: both fds are open; `event` is valid for the call.
        if unsafe {
            libc::epoll_ctl(
                epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut event,
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(epoll)
}

/// The CPUs this process may run on.
fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is an empty set, which sched_getaffinity fills.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid for its size.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: the index is within the set's size.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// The CPUs in two halves, or whole when there is only one (or none known).
fn halves(cpus: &[usize]) -> Vec<Vec<usize>> {
    if cpus.len() < 2 {
        return vec![cpus.to_vec()];
    }
    let (first, second) = cpus.split_at(cpus.len() / 2);
    vec![first.to_vec(), second.to_vec()]
}

/// Keeps the calling thread on `cpus`; no CPUs known leaves it anywhere.
fn set_affinity(cpus: &[usize]) {
    if cpus.is_empty() {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: the CPU came from the allowed set, so it is within the set's size.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is valid for its size; 0 is the calling thread.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_cpus_so_that_every_one_is_in_exactly_one_half() {
        for (cpus, want) in [
            (vec![], vec![vec![]]),
            (vec![3], vec![vec![3]]),
            (vec![0, 1], vec![vec![0], vec![1]]),
            (vec![0, 1, 2, 5, 7], vec![vec![0, 1], vec![2, 5, 7]]),
        ] {
            assert_eq!(halves(&cpus), want, "{cpus:?}");
        }
    }
}
