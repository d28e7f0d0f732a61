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
            let gone: Vec<&String> = pids
                .iter()
                .filter(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
                .collect();
            if gone.len() == pids.len() {
                format!(
                    "  (no process {} on this host: nothing to wait for)",
                    pids.join(", ")
                )
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

pub fn run(o: &Options) -> Result<(), String> {
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
        if o.count.is_some_and(|c| shown >= c) {
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
