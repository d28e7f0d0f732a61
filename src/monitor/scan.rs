//! Reads the state directory: every state file whose writer still holds
//! its lock. A file whose lock can be taken belongs to a process that died
//! without its exit handler (SIGKILL, a crash): stale, whatever PID
//! namespace it was in, and removed when `remove_stale` allows.

use crate::report::state::{self, State, STATE_SCHEMA};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A state file larger than this is not one the shim wrote.
const MAX_STATE_BYTES: u64 = 4 << 20;

#[derive(Debug, Default)]
pub struct Scan {
    /// Live processes, by pid then start time.
    pub live: Vec<State>,
    pub stale: u64,
    /// Files skipped: another owner, not a plain file, unreadable or not a state.
    pub skipped: u64,
}

enum Entry {
    Live(Box<State>),
    Stale,
    Skipped,
}

/// The live states in `dir`; an error only when the directory cannot be read.
pub fn scan(dir: &Path, remove_stale: bool) -> Result<Scan, String> {
    let owner = std::fs::metadata(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .uid();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out = Scan::default();
    for e in entries.flatten() {
        let name = e.file_name();
        if !state::is_state_file(&name.to_string_lossy()) {
            continue;
        }
        match read_one(&e.path(), owner, remove_stale) {
            Entry::Live(s) => out.live.push(*s),
            Entry::Stale => out.stale += 1,
            Entry::Skipped => out.skipped += 1,
        }
    }
    out.live.sort_by_key(|s| (s.pid, s.start_unix_ms));
    Ok(out)
}

fn read_one(path: &Path, owner: u32, remove_stale: bool) -> Entry {
    // Only plain files of the directory's owner: another user could plant one.
    let plain = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.uid() == owner);
    if !plain {
        return Entry::Skipped;
    }
    let Ok(mut f) = state::open(path) else {
        return Entry::Skipped; // removed meanwhile, or not ours to read
    };
    if state::stale(&f, path) {
        if remove_stale {
            let _ = std::fs::remove_file(path);
        }
        return Entry::Stale;
    }
    parse(&mut f).map_or(Entry::Skipped, |s| Entry::Live(Box::new(s)))
}

fn parse(f: &mut File) -> Option<State> {
    let mut body = Vec::new();
    f.take(MAX_STATE_BYTES).read_to_end(&mut body).ok()?;
    let s: State = serde_json::from_slice(&body).ok()?;
    (s.schema == STATE_SCHEMA).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    fn write_state(dir: &Path, pid: u32) -> std::path::PathBuf {
        let p = dir.join(state::file_name(pid, 1));
        let s = State {
            schema: STATE_SCHEMA.into(),
            pid,
            ..State::default()
        };
        let mut f = File::create(&p).unwrap();
        f.write_all(&serde_json::to_vec(&s).unwrap()).unwrap();
        p
    }

    #[test]
    fn a_locked_file_is_live_an_unlocked_one_stale() {
        let dir = std::env::temp_dir().join(format!("kvscope-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let live = write_state(&dir, 10);
        let held = File::open(&live).unwrap();
        // SAFETY: a valid descriptor.
        assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
        let stale = write_state(&dir, 11);
        std::fs::write(dir.join(state::file_name(12, 1)), b"{not json").unwrap();
        let s = scan(&dir, true).unwrap();
        assert_eq!(s.live.iter().map(|s| s.pid).collect::<Vec<_>>(), [10]);
        assert_eq!(
            (s.stale, s.skipped),
            (2, 0),
            "unlocked garbage is stale too"
        );
        assert!(!stale.exists(), "a stale file is removed");
        assert!(live.exists());
        drop(held);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
