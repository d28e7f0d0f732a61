//! The facts about the process a report carries. Its launch facts and
//! kvscope's own settings come from the configuration read at start (the
//! environment is never read again); the command line, executable and host
//! name are read when a report is written.

use crate::report::Process;
use crate::shim::config::Config;
use crate::shim::track::clock;

pub fn process(config: &Config) -> Process {
    let cmdline = std::fs::read("/proc/self/cmdline")
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    let hostname = hostname();
    let run_id = config.run_id.clone().unwrap_or_else(|| {
        format!(
            "{}-{pid}-{}",
            hostname.as_deref().unwrap_or("host"),
            clock::start_unix_ms()
        )
    });
    Process {
        run_id: Some(run_id),
        pid,
        // SAFETY: getppid has no preconditions.
        ppid: unsafe { libc::getppid() } as u32,
        cmdline,
        exe: std::fs::read_link("/proc/self/exe")
            .ok()
            .map(|p| p.display().to_string()),
        hostname,
        start_unix_ms: clock::start_unix_ms(),
        launch: config.launch.clone(),
        env: config.env.clone(),
    }
}

pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length.
    if unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) } != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}
