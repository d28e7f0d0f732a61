//! `kvscope exporter`: `/metrics` over HTTP, and/or a file for
//! node_exporter's textfile collector. One thread answers, one request at a
//! time, each page built from a fresh scan of the state directory (no cache
//! to go stale); it wakes at least every `TICK` to notice Ctrl-C or SIGTERM
//! and to rewrite the textfile.

use super::expose::{self, Format};
use super::metrics::{self, Context};
use super::scan::{self, Scan};
use super::stop;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tiny_http::{Header, Method, Response, Server};

const TICK: Duration = Duration::from_millis(250);

pub struct Options {
    pub listen: Option<String>,
    pub state_dir: PathBuf,
    pub textfile: Option<PathBuf>,
    /// How often the textfile is rewritten.
    pub interval: Duration,
    /// Write the textfile (or print the page) once and end.
    pub once: bool,
    pub hostname: Option<String>,
    pub model_name: Option<String>,
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length.
    if unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) } != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The page now. A missing state directory is no process, not an error
/// (nothing under the shim has started yet).
pub fn page(o: &Options, format: Format) -> String {
    let started = Instant::now();
    let scan = if o.state_dir.exists() {
        scan::scan(&o.state_dir, true).unwrap_or_else(|e| {
            eprintln!("kvscope exporter: warning: {e}");
            Scan::default()
        })
    } else {
        Scan::default()
    };
    let host = o.hostname.clone().unwrap_or_else(hostname);
    let cx = Context {
        hostname: &host,
        hostname_forced: o.hostname.is_some(),
        model_name: o.model_name.as_deref(),
        now_unix_ms: now_unix_ms(),
        scan_seconds: started.elapsed().as_secs_f64(),
    };
    expose::render(&metrics::collect(&scan, &cx), format)
}

/// Writes the textfile atomically (node_exporter may read it at any time).
fn write_textfile(o: &Options, path: &Path) -> Result<(), String> {
    let body = page(o, Format::Prometheus);
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(body.as_bytes()))
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn header(k: &str, v: &str) -> Option<Header> {
    Header::from_bytes(k.as_bytes(), v.as_bytes()).ok()
}

fn answer(o: &Options, req: tiny_http::Request) {
    let method_ok = matches!(req.method(), Method::Get | Method::Head);
    let path = req.url().split('?').next().unwrap_or("").to_string();
    let response = match (method_ok, path.as_str()) {
        (false, _) => Response::from_string("only GET\n").with_status_code(405),
        (true, "/metrics") => {
            let accept = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Accept"))
                .map(|h| h.value.as_str().to_string());
            let format = Format::from_accept(accept.as_deref());
            let mut r = Response::from_string(page(o, format));
            if let Some(h) = header("Content-Type", format.content_type()) {
                r = r.with_header(h);
            }
            r
        }
        (true, "/") => Response::from_string("kvscope exporter: see /metrics\n"),
        _ => Response::from_string("not found\n").with_status_code(404),
    };
    let _ = req.respond(response);
}

pub fn run(o: &Options) -> Result<(), String> {
    stop::install();
    if o.once {
        match &o.textfile {
            Some(p) => return write_textfile(o, p),
            None => {
                print!("{}", page(o, Format::Prometheus));
                return Ok(());
            }
        }
    }
    let server = match &o.listen {
        Some(addr) => {
            let s =
                Server::http(addr.as_str()).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let shown = s
                .server_addr()
                .to_ip()
                .map_or_else(|| addr.clone(), |a| a.to_string());
            println!("kvscope exporter: serving http://{shown}/metrics");
            let _ = std::io::stdout().flush();
            Some(s)
        }
        None => None,
    };
    let mut next_file = Instant::now();
    let mut warned = false;
    while !stop::requested() {
        if let Some(p) = &o.textfile {
            if Instant::now() >= next_file {
                next_file = Instant::now() + o.interval;
                if let Err(e) = write_textfile(o, p) {
                    if !warned {
                        eprintln!("kvscope exporter: warning: {e}");
                        warned = true;
                    }
                }
            }
        }
        match &server {
            Some(s) => {
                if let Ok(Some(req)) = s.recv_timeout(TICK) {
                    answer(o, req);
                }
            }
            None => std::thread::sleep(TICK),
        }
    }
    if let Some(p) = &o.textfile {
        let _ = std::fs::remove_file(p); // its processes are no longer watched
    }
    Ok(())
}
