//! The Python site hook `kvscope run` gives the programs it starts: a
//! private folder put first on PYTHONPATH, holding a `sitecustomize.py` that
//! starts the PyTorch counter sampler in every Python process that has the
//! shim loaded (and chains any `sitecustomize` it shadows), and the sampler
//! itself. Both are the files of `python/`, compiled in, so the hook needs
//! no installed package. `KVSCOPE_TORCH=0` leaves PYTHONPATH alone.

use super::preload::env_flag;
use std::ffi::OsString;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

const SITECUSTOMIZE: &str = include_str!("../../python/site/sitecustomize.py");
const SAMPLER: &str = include_str!("../../python/kvscope/torch_counters.py");

/// The folder, removed when dropped.
pub struct SiteHook {
    dir: PathBuf,
}

impl Drop for SiteHook {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl SiteHook {
    /// Writes the folder in the temporary directory (0700, a fresh name);
    /// None when the hook is turned off or cannot be written (the run goes
    /// on without PyTorch's counters, saying so).
    pub fn install() -> Option<SiteHook> {
        // Turned off by the user (KVSCOPE_TORCH=0).
        if env_flag("KVSCOPE_TORCH") == Some(false) {
            return None;
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("kvscope-site-{}-{stamp}", std::process::id()));
        let written = std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .and_then(|_| std::fs::write(dir.join("sitecustomize.py"), SITECUSTOMIZE))
            .and_then(|_| std::fs::write(dir.join("kvscope_torch_counters.py"), SAMPLER));
        match written {
            Ok(()) => Some(SiteHook { dir }),
            Err(e) => {
                eprintln!(
                    "kvscope: warning: no PyTorch counters for this run: cannot write {}: {e}",
                    dir.display()
                );
                let _ = std::fs::remove_dir_all(&dir);
                None
            }
        }
    }

    /// PYTHONPATH with the hook's folder first.
    pub fn pythonpath(&self) -> OsString {
        prepend(&self.dir, std::env::var_os("PYTHONPATH"))
    }
}

fn prepend(dir: &Path, rest: Option<OsString>) -> OsString {
    let mut v = dir.as_os_str().to_owned();
    if let Some(rest) = rest.filter(|r| !r.is_empty()) {
        v.push(":");
        v.push(rest);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_goes_first_and_keeps_the_rest() {
        let d = Path::new("/tmp/h");
        assert_eq!(prepend(d, None), "/tmp/h");
        assert_eq!(prepend(d, Some("".into())), "/tmp/h");
        assert_eq!(prepend(d, Some("/a:/b".into())), "/tmp/h:/a:/b");
    }
}
