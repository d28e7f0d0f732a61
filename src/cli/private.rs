//! What the reader writes from reports is as private as the reports the shim
//! writes (0600 files in 0700 folders, before the umask): a page or a
//! snapshot shows the same command line, settings and sizes.

use super::error::{CliError, Result};
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Creates `dir` (and its parents) 0700; one that exists is left as it is.
pub fn create_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CliError::input(format!("cannot create {}: {e}", dir.display())))
}

/// Creates (or truncates) `path`, 0600 when it is new.
pub fn create_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Writes `data` to `path` (see `create_file`).
pub fn write(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    create_file(path)
        .and_then(|mut f| f.write_all(data))
        .map_err(|e| CliError::input(format!("{}: {e}", path.display())))
}
