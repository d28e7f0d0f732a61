//! `kvscope watch`: the live view. On a terminal it redraws in place
//! (cursor home, clear, the cursor hidden until the end); piped, it prints
//! the lines of each refresh with the time in front, so that `grep` and
//! `head` work (`main` restores SIGPIPE's default: `head` ends it quietly).
//! Ctrl-C ends it with status 0 and the terminal as it was.

use super::scan::{self, Scan};
use super::stop;
use super::view::{self, History};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Options {
    pub pids: Vec<u32>,
    pub state_dir: PathBuf,
    pub interval: Duration,
    /// Refreshes before ending (None: until Ctrl-C).
    pub count: Option<u64>,
}

fn is_tty() -> bool {
    // SAFETY: isatty has no preconditions.
    unsafe { libc::isatty(1) == 1 }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn clock(ms: u64) -> String {
    let s = ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn read(o: &Options) -> Result<Scan, String> {
    if !o.state_dir.exists() {
        return Ok(Scan::default());
    }
    let mut s = scan::scan(&o.state_dir, false)?;
    if !o.pids.is_empty() {
        s.live.retain(|st| o.pids.contains(&st.pid));
    }
    Ok(s)
}

/// One refresh as text: a title, the header, the lines.
fn frame(o: &Options, scan: &Scan, history: &History, now: u64) -> Vec<String> {
    let mut out = vec![format!(
        "kvscope watch  {} UTC  {} process(es) in {}",
        clock(now),
        scan.live.len(),
        o.state_dir.display()
    )];
    out.push(view::HEADER.to_string());
    let lines = view::lines(&scan.live, history);
    if lines.is_empty() {
        out.push(if o.pids.is_empty() {
            "  (no process under the shim publishes a state here yet)".to_string()
        } else {
            let pids: Vec<String> = o.pids.iter().map(|p| p.to_string()).collect();
            if all_gone(&o.pids) {
                format!("  (process {} ended)", pids.join(", "))
            } else {
                format!(
                    "  (waiting for pid {} to publish its state)",
                    pids.join(", ")
                )
            }
        });
    }
    out.extend(lines);
    out
}

/// None of `pids` is a running process on this host (any more): absent, or
/// a zombie its parent has not reaped yet.
fn all_gone(pids: &[u32]) -> bool {
    !pids.is_empty() && pids.iter().all(|&p| !running(p))
}

fn running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": the state follows the last ')' (comm may hold any byte).
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// Watches until Ctrl-C, `count` refreshes, or (when given PIDs) until every
/// one of them has ended. PIDs none of which is on this host are refused.
pub fn run(o: &Options) -> Result<(), String> {
    if all_gone(&o.pids) {
        let pids: Vec<String> = o.pids.iter().map(|p| p.to_string()).collect();
        return Err(format!(
            "no process {} on this host (kvscope watch with no PID shows every process under the shim)",
            pids.join(", ")
        ));
    }
    stop::install();
    let tty = is_tty();
    let mut stdout = std::io::stdout().lock();
    if tty {
        let _ = write!(stdout, "\x1b[?25l");
    }
    let mut history = History::default();
    let mut shown = 0u64;
    let result = loop {
        let scan = match read(o) {
            Ok(s) => s,
            Err(e) => break Err(e),
        };
        let now = now_ms();
        history.add(&scan.live, now);
        let lines = frame(o, &scan, &history, now);
        let written = if tty {
            write!(stdout, "\x1b[H\x1b[2J{}\r\n", lines.join("\r\n\x1b[K"))
        } else {
            let t = clock(now);
            lines
                .iter()
                .skip(1)
                .try_for_each(|l| writeln!(stdout, "{t} {l}"))
        };
        if written.and_then(|_| stdout.flush()).is_err() {
            break Ok(()); // the reader went away
        }
        shown += 1;
        // The processes watched have all ended: their last frame is shown.
        if o.count.is_some_and(|c| shown >= c) || all_gone(&o.pids) {
            break Ok(());
        }
        let until = Instant::now() + o.interval;
        while Instant::now() < until && !stop::requested() {
            std::thread::sleep(Duration::from_millis(50));
        }
        if stop::requested() {
            break Ok(());
        }
    };
    if tty {
        let _ = write!(stdout, "\x1b[?25h\r\n");
        let _ = stdout.flush();
    }
    result
}
