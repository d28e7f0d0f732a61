//! Reading an input file (a report, a model config) by the bytes actually
//! read, never by the size it claims: a device or a pipe claims 0 bytes and
//! may never end. A regular file is read up to the limit; a pipe or FIFO
//! (`kvscope report <(cat r.json)`) too, given up after a silence; a device
//! or socket is refused in one line, unread.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a pipe or FIFO may stay silent before it is given up.
pub const SILENCE: Duration = Duration::from_secs(10);

/// The whole of `path`, refused in one line (naming it) when it holds
/// `limit` bytes or more, or is not a file or a pipe. `what` is what it
/// should hold ("a report"), for the messages.
pub fn read_bounded(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    read_with(path, limit, what, SILENCE)
}

pub(super) fn read_with(
    path: &Path,
    limit: u64,
    what: &str,
    silence: Duration,
) -> Result<Vec<u8>, String> {
    let name = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{name}: {e}"))?;
    let ft = meta.file_type();
    let too_large =
        |n: u64| format!("{name}: {n} bytes is too large for {what} (the limit is {limit})");
    if ft.is_file() {
        if meta.len() >= limit {
            return Err(too_large(meta.len()));
        }
        let f = File::open(path).map_err(|e| format!("{name}: {e}"))?;
        let mut buf = Vec::with_capacity(meta.len() as usize);
        // A file that grows while it is read stops at the limit all the same.
        f.take(limit)
            .read_to_end(&mut buf)
            .map_err(|e| format!("{name}: {e}"))?;
        if buf.len() as u64 >= limit {
            return Err(too_large(buf.len() as u64));
        }
        return Ok(buf);
    }
    if ft.is_fifo() {
        return read_stream(path, limit, what, silence);
    }
    let kind = if ft.is_dir() {
        "a directory"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(format!(
        "{name}: {kind}, not {what} (give a file, or a pipe that ends)"
    ))
}

/// A pipe or FIFO: opened without waiting for a writer, read until its end,
/// the limit, a first byte that cannot start JSON, or `silence` without data.
fn read_stream(path: &Path, limit: u64, what: &str, silence: Duration) -> Result<Vec<u8>, String> {
    let name = path.display();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("{name}: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    let mut last = Instant::now();
    loop {
        match (&f).read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                if (buf.len() + n) as u64 >= limit {
                    return Err(format!(
                        "{name}: more than {limit} bytes is too large for {what} (the limit is {limit})"
                    ));
                }
                buf.extend_from_slice(&chunk[..n]);
                last = Instant::now();
                // JSON starts with `{`: anything else is known not to be one now.
                if buf.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{')
                    && buf.iter().any(|b| !b.is_ascii_whitespace())
                {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let left = silence.saturating_sub(last.elapsed());
                if left.is_zero() {
                    return Err(format!(
                        "{name}: nothing arrived for {} s (a pipe or FIFO must deliver {what} and end)",
                        silence.as_secs_f64()
                    ));
                }
                let mut p = libc::pollfd {
                    fd: f.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd; a timeout in milliseconds.
                unsafe { libc::poll(&mut p, 1, left.as_millis().clamp(1, 60_000) as i32) };
            }
            Err(e) => return Err(format!("{name}: {e}")),
        }
    }
    if buf.is_empty() {
        return Err(format!(
            "{name}: empty (nothing was written to the pipe or FIFO)"
        ));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("kvscope-read-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn devices_are_refused_unread() {
        let t = Instant::now();
        let e = read_bounded(Path::new("/dev/zero"), 100, "a report").unwrap_err();
        assert!(e.contains("a character device, not a report"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(1));
        let e = read_bounded(Path::new("/"), 100, "a report").unwrap_err();
        assert!(e.contains("a directory"), "{e}");
    }

    #[test]
    fn files_are_read_up_to_the_limit() {
        let d = scratch("files");
        let p = d.join("f.json");
        std::fs::write(&p, "{}").unwrap();
        assert_eq!(read_bounded(&p, 3, "x").unwrap(), b"{}");
        let e = read_bounded(&p, 2, "x").unwrap_err();
        assert!(e.contains("too large"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn fifos_are_read_to_their_end_or_given_up() {
        let d = scratch("fifo");
        // Nobody writes: one line at once, not a wait.
        let idle = d.join("idle");
        mkfifo(&idle);
        let e = read_with(&idle, 100, "x", Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        // A writer that delivers, late, and ends.
        let ok = d.join("ok");
        mkfifo(&ok);
        let w = ok.clone();
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(w).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            f.write_all(b"{\"a\": 1}").unwrap();
        });
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(read_with(&ok, 100, "x", SILENCE).unwrap(), b"{\"a\": 1}");
        writer.join().unwrap();
        // A writer that never ends: the limit, whatever it claims.
        let endless = d.join("endless");
        mkfifo(&endless);
        let w = endless.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(w).unwrap();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if f.write_all(b"{{{{{{{{").is_err() {
                    break;
                }
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        let e = read_with(&endless, 1 << 20, "x", SILENCE).unwrap_err();
        assert!(e.contains("too large"), "{e}");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }
}
