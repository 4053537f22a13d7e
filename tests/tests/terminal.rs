//! The human view as a person sees it: oomtrace runs in a real terminal (a tmux pane 120
//! columns wide), a real container's child is OOM-killed, and the pane is read back. The line
//! layout and the escaping are checked on the screen, not in a string.

use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use oomtrace_tests::{
    Hog, MemCgroup,
    docker::{Containers, KILLED, docker, docker_code, docker_ready, inspect, run_idle},
    oomtrace_bin, run_within, serial,
};

const WIDTH: usize = 120;
/// Any one tmux command; they answer in milliseconds.
const TMUX_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the screen may take to show what oomtrace wrote.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(30);

fn hog_path() -> std::path::PathBuf {
    oomtrace_tests::hog_bin(env!("CARGO_BIN_EXE_hog"))
}

/// A tmux server of the test's own (its own socket), killed when the test ends.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A detached session `WIDTH`×50 running `command` in its only pane; the pane stays after
    /// the command exits so its last words can be read.
    fn start(command: &str) -> Self {
        let tmux = Self {
            socket: format!("oomtrace-e2e-{}", std::process::id()),
        };
        tmux.run(&["kill-server"]);
        tmux.ok(&[
            "new-session",
            "-d",
            "-s",
            "watch",
            "-x",
            &WIDTH.to_string(),
            "-y",
            "50",
            command,
        ]);
        tmux.ok(&["set-option", "-t", "watch", "remain-on-exit", "on"]);
        tmux
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new("tmux");
        // A fixed TERM and no user config: the screen must not depend on who runs the test.
        command
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env("TERM", "xterm-256color");
        run_within(&mut command, TMUX_TIMEOUT)
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The pane's text as shown, one entry a screen row, with the attributes (`-e`) so that a
    /// colour a victim's name tried to set would be seen.
    fn screen(&self) -> Vec<String> {
        self.ok(&["capture-pane", "-p", "-e", "-J", "-t", "watch"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The screen once `shown` holds for it.
    ///
    /// tmux gives no notification that a pane changed; the screen is read again every 50 ms
    /// until it shows what the test waits for, or the deadline.
    fn wait_for(&self, what: &str, shown: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            let screen = self.screen();
            if shown(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {what}:\n{}",
                screen.join("\n")
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn tmux_ready(test: &str) -> bool {
    if !docker_ready(test) {
        return false;
    }
    let version = run_within(Command::new("tmux").arg("-V"), TMUX_TIMEOUT);
    assert!(
        version.status.success(),
        "{test} needs tmux, which `cargo xtask setup` installs"
    );
    true
}

/// The seed 000 story on a screen: a child OOM-killed in a container whose main process lives
/// on and then exits 0. The facts fit one row of 120 columns, the meaning follows indented,
/// the exit is its own line, and a hostile process name shows as text, not as a colour.
#[test]
fn a_kill_and_its_container_s_exit_as_the_terminal_shows_them() {
    let test = "a_kill_and_its_container_s_exit_as_the_terminal_shows_them";
    if !tmux_ready(test) {
        return;
    }
    let _serial = serial();
    let mut containers = Containers::default();
    let name = containers.name("tmux");
    run_idle(&name, "32m");
    let main = inspect(&name);
    let tmux = Tmux::start(&format!("{} --no-journal", oomtrace_bin().display()));
    tmux.wait_for("the ready line", |s| {
        s.iter().any(|l| l.contains("watching for OOM kills"))
    });

    let (code, stderr) = docker_code(&[
        "exec",
        &name,
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=200M",
        "count=1",
    ]);
    assert_eq!(code, Some(KILLED), "dd must be OOM-killed: {stderr}");
    let screen = tmux.wait_for("the kill", |s| {
        s.iter()
            .any(|l| l.contains(&name) && l.contains("dd (pid "))
    });
    let at = screen
        .iter()
        .position(|l| l.contains(&name) && l.contains("dd (pid "))
        .expect("the facts row");
    let facts = &screen[at];
    assert!(facts.chars().count() <= WIDTH, "the facts wrap: {facts:?}");
    assert!(facts.contains("limit 32.0 MiB"), "{facts}");
    let meaning = &screen[at + 1];
    assert!(
        meaning.starts_with("    not the container's main process")
            && meaning.contains("entered the container from outside, as docker exec does"),
        "{meaning}"
    );
    assert!(
        meaning.contains(&format!("pid {}", main.pid)),
        "the main process by its pid: {meaning}"
    );
    // stdout is a terminal: the breakdown line follows.
    assert!(screen[at + 2].starts_with("    "), "{}", screen[at + 2]);

    docker(&["stop", "--time", "10", &name]);
    let screen = tmux.wait_for("the container's exit", |s| {
        s.iter()
            .any(|l| l.contains(&format!("container {name} exited 0")))
    });
    let exit = screen
        .iter()
        .find(|l| l.contains(&format!("container {name} exited 0")))
        .expect("exit row");
    assert!(exit.contains("(Docker: OOMKilled=true)"), "{exit}");
    assert!(exit.contains("after dd (pid "), "{exit}");

    // A name that tries to colour the screen red and ring its bell.
    let cgroup = MemCgroup::create("tmux-escape", 32);
    let mut hog = Hog::spawn(&hog_path(), &cgroup, 500, &["--name", "\x1b[31mred\x07"]);
    hog.expect_oom_killed();
    let screen = tmux.wait_for("the escaped name", |s| {
        s.iter().any(|l| l.contains("\\x1b[31mred\\x07 (pid "))
    });
    assert!(
        !screen.iter().any(|l| l.contains("\x1b[31m")),
        "the name's escape sequence reached the terminal:\n{}",
        screen.join("\n")
    );

    // SIGINT from the keyboard: the summary, as the person sees it.
    tmux.ok(&["send-keys", "-t", "watch", "C-c"]);
    let screen = tmux.wait_for("the summary", |s| {
        s.iter().any(|l| l.contains("OOM kills reported"))
    });
    let summary = screen
        .iter()
        .find(|l| l.contains("OOM kills reported"))
        .expect("summary");
    // The terminal echoes the keypress (`^C`) before it.
    assert!(
        summary.contains("oomtrace: 2 OOM kills reported, 0 events dropped"),
        "{summary}"
    );
    eprintln!("the screen at the end:\n{}", screen.join("\n"));
}
