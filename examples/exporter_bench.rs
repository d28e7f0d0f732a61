//! The exporter's cost: `cargo build --release && cargo run --release
//! --example exporter_bench [PROCESSES]` (default 32).
//!
//! Starts PROCESSES stand-in clients under the shim (each holding 16 MiB on
//! a simulated device and publishing its state every 200 ms), then a
//! `kvscope exporter` on loopback, and measures a scrape's time (median
//! and 90th percentile of 50, client side) and the exporter's memory (VmRSS
//! and VmHWM), against the same figures with no process (the baseline, same
//! run). Nothing is asserted: these are measurements, printed with targets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SCRAPES: usize = 50;
/// Targets: a scrape well under Prometheus' default 10 s timeout and
/// under a 1 s interval; the exporter small beside a serving process.
const TARGET_SCRAPE_MS: f64 = 50.0;
const TARGET_RSS_MIB: f64 = 32.0;

fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>/examples")
        .to_path_buf()
}

fn shim_lib() -> PathBuf {
    let d = profile_dir();
    [d.join("libkvscope.so"), d.join("deps/libkvscope.so")]
        .into_iter()
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
        .expect("libkvscope.so not built: cargo build --release")
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn holders(n: usize, state: &Path, out: &Path) -> Vec<Kill> {
    let client = PathBuf::from(env!("KVSCOPE_NATIVE_DIR")).join("signals");
    (0..n)
        .map(|_| {
            Kill(
                Command::new(&client)
                    .arg("wait")
                    .env("LD_PRELOAD", shim_lib())
                    .env("KVSCOPE_STATE_DIR", state)
                    .env("KVSCOPE_OUT", out)
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("the signals client"),
            )
        })
        .collect()
}

fn wait_files(state: &Path, n: usize) {
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        let have = std::fs::read_dir(state)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".state.json"))
                    .count()
            })
            .unwrap_or(0);
        if have >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{n} state files not there after 60 s");
}

fn exporter(state: &Path) -> (Kill, SocketAddr) {
    let mut c = Command::new(profile_dir().join("kvscope"))
        .args(["exporter", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state)
        .stdout(Stdio::piped())
        .spawn()
        .expect("kvscope exporter (cargo build --release first)");
    let mut line = String::new();
    BufReader::new(c.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .and_then(|s| s.strip_suffix("/metrics"))
        .and_then(|s| s.parse().ok())
        .expect("the exporter's address");
    (Kill(c), addr)
}

fn scrape(addr: SocketAddr) -> usize {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = Vec::new();
    s.read_to_end(&mut body).unwrap();
    body.len()
}

fn status_kib(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0)
}

struct Figures {
    median_ms: f64,
    p90_ms: f64,
    page_bytes: usize,
    rss_mib: f64,
    hwm_mib: f64,
}

fn measure(n: usize, root: &Path) -> Figures {
    let state = root.join(format!("state-{n}"));
    let _procs = holders(n, &state, root);
    if n > 0 {
        wait_files(&state, n);
    }
    let (e, addr) = exporter(&state);
    for _ in 0..3 {
        scrape(addr);
    }
    let mut times = Vec::new();
    let mut page_bytes = 0;
    for _ in 0..SCRAPES {
        let t = Instant::now();
        page_bytes = scrape(addr);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let pid = e.0.id();
    Figures {
        median_ms: times[times.len() / 2],
        p90_ms: times[times.len() * 9 / 10],
        page_bytes,
        rss_mib: status_kib(pid, "VmRSS:") / 1024.0,
        hwm_mib: status_kib(pid, "VmHWM:") / 1024.0,
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("PROCESSES: a number"))
        .unwrap_or(32);
    let root = std::env::temp_dir().join(format!("kvscope-exporter-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let base = measure(0, &root);
    let many = measure(n, &root);
    let _ = std::fs::remove_dir_all(&root);
    let row = |what: &str, f: &Figures| {
        println!(
            "{what:<14} scrape median {:>7.2} ms  p90 {:>7.2} ms  page {:>7} bytes  RSS {:>6.1} MiB  peak RSS {:>6.1} MiB",
            f.median_ms, f.p90_ms, f.page_bytes, f.rss_mib, f.hwm_mib
        );
    };
    row("0 processes", &base);
    row(&format!("{n} processes"), &many);
    let verdict = |ok: bool| if ok { "PASS" } else { "SHORT" };
    println!(
        "scrape: {:.2} ms for {n} processes ({:.1}x the empty page; target < {TARGET_SCRAPE_MS} ms): {}",
        many.median_ms,
        many.median_ms / base.median_ms.max(1e-3),
        verdict(many.median_ms < TARGET_SCRAPE_MS)
    );
    println!(
        "exporter memory: peak {:.1} MiB with {n} processes (+{:.1} MiB over none; target < {TARGET_RSS_MIB} MiB): {}",
        many.hwm_mib,
        many.hwm_mib - base.hwm_mib,
        verdict(many.hwm_mib < TARGET_RSS_MIB)
    );
}
