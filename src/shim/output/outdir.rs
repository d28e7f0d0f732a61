//! The report directory, and writing a file into it safely: a temporary file
//! created exclusively (mode 0600, never through a symlink) in the directory
//! opened without following a symlink, then renamed into place. A directory
//! the shim creates is 0700; the fallback under /tmp must be ours and 0700.

use std::ffi::CString;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub const DEFAULT_DIR: &str = "kvscope-reports";

pub struct OutDir {
    pub path: PathBuf,
    fd: OwnedFd,
    /// Why the fallback was used, when it was.
    pub note: Option<String>,
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

fn err(what: &str, path: &Path) -> String {
    format!("{what} {}: {}", path.display(), io::Error::last_os_error())
}

/// Opens (creating it 0700 if missing) a directory, never through a symlink.
/// `private`: it must belong to us and be closed to others (shared /tmp).
fn open_dir(path: &Path, private: bool) -> Result<OwnedFd, String> {
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    }
    let c = cstr(path).map_err(|e| e.to_string())?;
    // SAFETY: c is NUL-terminated.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(err("cannot open directory", path));
    }
    // SAFETY: fd was just opened and is owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if private {
        // SAFETY: stat is plain data; all-zero is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd and out-pointer.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(err("cannot stat", path));
        }
        // SAFETY: getuid has no preconditions.
        if st.st_uid != unsafe { libc::getuid() } || st.st_mode & 0o077 != 0 {
            return Err(format!(
                "{} is not a private directory of this user",
                path.display()
            ));
        }
    }
    // SAFETY: valid fd and mode; W_OK on the directory itself.
    if unsafe { libc::faccessat(fd.as_raw_fd(), c".".as_ptr(), libc::W_OK, 0) } != 0 {
        return Err(err("cannot write to", path));
    }
    Ok(fd)
}

/// The fallback directory: kvscope-<uid> in $TMPDIR (or /tmp).
pub fn fallback_dir(tmp: &Path) -> PathBuf {
    // SAFETY: getuid has no preconditions.
    tmp.join(format!("kvscope-{}", unsafe { libc::getuid() }))
}

impl OutDir {
    /// The configured directory (KVSCOPE_OUT, else ./kvscope-reports), or
    /// the fallback in `tmp` when that cannot be written.
    pub fn prepare(configured: Option<&Path>, tmp: &Path) -> Result<OutDir, String> {
        let primary = match configured {
            Some(p) => p.to_path_buf(),
            None => std::env::current_dir()
                .unwrap_or_else(|_| PathBuf::from("."))
                .join(DEFAULT_DIR),
        };
        let first = match open_dir(&primary, false) {
            Ok(fd) => {
                return Ok(OutDir {
                    path: primary,
                    fd,
                    note: None,
                })
            }
            Err(e) => e,
        };
        let fb = fallback_dir(tmp);
        match open_dir(&fb, true) {
            Ok(fd) => Ok(OutDir {
                path: fb,
                fd,
                note: Some(first),
            }),
            Err(second) => Err(format!("{first}; fallback: {second}")),
        }
    }

    /// Writes `name` atomically through `fill`.
    pub fn write(
        &self,
        name: &str,
        fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<PathBuf> {
        // SAFETY: getpid has no preconditions.
        let tmp = format!(".{name}.{}.tmp", unsafe { libc::getpid() });
        let tmp_c = CString::new(tmp.as_bytes())?;
        let name_c = CString::new(name.as_bytes())?;
        let dir = self.fd.as_raw_fd();
        let open = || {
            // SAFETY: dir is open; names are NUL-terminated.
            unsafe {
                libc::openat(
                    dir,
                    tmp_c.as_ptr(),
                    libc::O_WRONLY
                        | libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o600,
                )
            }
        };
        let mut fd = open();
        if fd < 0 && io::Error::last_os_error().kind() == io::ErrorKind::AlreadyExists {
            // A stale temporary file of a dead process with our pid: replace it.
            // SAFETY: as above.
            unsafe { libc::unlinkat(dir, tmp_c.as_ptr(), 0) };
            fd = open();
        }
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just opened and is owned here.
        let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let done = {
            let _xfsz = XfszGuard::block();
            let mut w = BufWriter::with_capacity(1 << 20, file);
            fill(&mut w).and_then(|_| w.flush())
        };
        if let Err(e) = done {
            // SAFETY: as above.
            unsafe { libc::unlinkat(dir, tmp_c.as_ptr(), 0) };
            return Err(e);
        }
        // SAFETY: as above.
        if unsafe { libc::renameat(dir, tmp_c.as_ptr(), dir, name_c.as_ptr()) } != 0 {
            let e = io::Error::last_os_error();
            // SAFETY: as above.
            unsafe { libc::unlinkat(dir, tmp_c.as_ptr(), 0) };
            return Err(e);
        }
        Ok(self.path.join(name))
    }
}

/// A write past RLIMIT_FSIZE raises SIGXFSZ, whose default action ends the
/// process: the writing thread blocks it, and takes back one that the write
/// raised, so that the host sees only the failed report (EFBIG).
struct XfszGuard {
    old: libc::sigset_t,
    blocked: bool,
}

impl XfszGuard {
    fn block() -> XfszGuard {
        // SAFETY: sigset_t is plain data; the calls get valid pointers.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGXFSZ);
            let blocked = libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) == 0;
            XfszGuard { old, blocked }
        }
    }
}

impl Drop for XfszGuard {
    fn drop(&mut self) {
        if !self.blocked {
            return;
        }
        // SAFETY: as above; a zero timeout never waits.
        unsafe {
            let mut pending: libc::sigset_t = std::mem::zeroed();
            let was_blocked = libc::sigismember(&self.old, libc::SIGXFSZ) == 1;
            if !was_blocked
                && libc::sigpending(&mut pending) == 0
                && libc::sigismember(&pending, libc::SIGXFSZ) == 1
            {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGXFSZ);
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                libc::sigtimedwait(&set, std::ptr::null_mut(), &zero);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
        }
    }
}
