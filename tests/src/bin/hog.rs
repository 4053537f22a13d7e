//! A memory hog for oomtrace's end-to-end tests: joins a cgroup, sets its oom_score_adj,
//! prints `joined`, then touches memory until the OOM killer stops it.
//!
//! usage: hog [--procs FILE] [--oom-score-adj N] [--mib N] [--child] [--name NAME]
//!            [--name-hex HEX] [--keep-touching]
//!
//! `--name` renames the hog's thread (its comm) to NAME, escape bytes included: a victim
//! controls its own name, and the tests check how oomtrace shows one. `--name-hex` gives the
//! name as lowercase hex, for bytes that are not UTF-8, which an argument of a test's
//! `&str` list cannot hold.
//!
//! A hog that has touched all its memory without being killed lingers until its stdin ends,
//! then exits 3. The tests hold its stdin: they decide how long it lives, not a timer, and a
//! hog they forget ends with them.
//!
//! With `--keep-touching` it never lingers: it touches its memory again, page by page, until
//! it is killed. Under `memory.high` that keeps the cgroup reclaiming, the memory pressure a
//! userspace OOM killer acts on (tests/tests/oom_kill/systemd_oomd.rs).
//!
//! With `--child` the hog forks: the child (renamed `hog-child`) allocates while the parent
//! waits for it, prints `child <pid>` as soon as it exists and `child-signal <n>` when it
//! dies, and exits 0 itself: the exit-0-but-OOMKilled shape.

use std::io::{Read as _, Write as _};

struct Args {
    procs: Option<String>,
    oom_score_adj: Option<i32>,
    mib: usize,
    child: bool,
    name: Option<Vec<u8>>,
    keep_touching: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        procs: None,
        oom_score_adj: None,
        mib: 256,
        child: false,
        name: None,
        keep_touching: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--procs" => args.procs = Some(value()?),
            "--oom-score-adj" => {
                args.oom_score_adj = Some(value()?.parse().map_err(|e| format!("{e}"))?)
            }
            "--mib" => args.mib = value()?.parse().map_err(|e| format!("{e}"))?,
            "--child" => args.child = true,
            "--keep-touching" => args.keep_touching = true,
            "--name" => args.name = Some(value()?.into_bytes()),
            "--name-hex" => args.name = Some(from_hex(&value()?)?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("hog: {e}");
        std::process::exit(2)
    });
    if let Some(procs) = &args.procs {
        // Writing "0" moves the writer itself, which works on v1 and v2 alike.
        std::fs::write(procs, "0").unwrap_or_else(|e| fail(&format!("join {procs}: {e}")));
    }
    if let Some(adj) = args.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .unwrap_or_else(|e| fail(&format!("set oom_score_adj: {e}")));
    }
    if let Some(name) = &args.name {
        let mut comm = [0u8; 16];
        let len = name.len().min(15);
        comm[..len].copy_from_slice(&name[..len]);
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) };
    }
    // The tests read this before they go on: the hog is in its cgroup, with its score.
    println!("joined");
    let _ = std::io::stdout().flush();
    if args.child {
        // SAFETY: single-threaded here; the child only renames itself and allocates.
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => fail("fork failed"),
            0 => {
                // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
                unsafe { libc::prctl(libc::PR_SET_NAME, c"hog-child".as_ptr()) };
                allocate(args.mib, args.keep_touching);
            }
            child => {
                println!("child {child}");
                let _ = std::io::stdout().flush();
                let mut status = 0;
                // SAFETY: waits for our own child.
                unsafe { libc::waitpid(child, &mut status, 0) };
                if libc::WIFSIGNALED(status) {
                    println!("child-signal {}", libc::WTERMSIG(status));
                } else {
                    println!("child-exit {}", libc::WEXITSTATUS(status));
                }
                std::process::exit(0);
            }
        }
    } else {
        allocate(args.mib, args.keep_touching);
    }
}

/// Touches `mib` MiB page by page, then lingers until stdin ends, or touches it all again and
/// again with `keep_touching`; an OOM kill ends it first.
fn allocate(mib: usize, keep_touching: bool) -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::with_capacity(mib);
    for _ in 0..mib {
        let mut chunk = vec![0u8; 1 << 20];
        for page in chunk.chunks_mut(4096) {
            page[0] = 1;
        }
        chunks.push(chunk);
    }
    std::hint::black_box(&chunks);
    if keep_touching {
        loop {
            for page in chunks.iter_mut().flat_map(|chunk| chunk.chunks_mut(4096)) {
                page[0] = page[0].wrapping_add(1);
            }
            std::hint::black_box(&chunks);
        }
    }
    // A group-kill member allocates little and must still be alive when another member's
    // allocation triggers the OOM: it waits for that, or for the test to let go of it.
    let mut byte = [0u8; 1];
    while matches!(std::io::stdin().read(&mut byte), Ok(1..)) {}
    // Not killed: the limit was not enforced. Exit with a code the tests recognise.
    std::process::exit(3)
}

fn from_hex(hex: &str) -> Result<Vec<u8>, String> {
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("--name-hex {hex:?} is not pairs of hex digits"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|at| {
            u8::from_str_radix(&hex[at..at + 2], 16).map_err(|e| format!("--name-hex {hex:?}: {e}"))
        })
        .collect()
}

fn fail(message: &str) -> ! {
    eprintln!("hog: {message}");
    std::process::exit(2)
}
