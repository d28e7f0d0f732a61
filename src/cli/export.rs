//! `kvscope export --memory-viz OUT.pickle REPORT`: a report as PyTorch's
//! memory snapshot, for pytorch.org/memory_viz.

use super::error::{refuse_overwrite, CliError, Result};
use crate::load::load;
use crate::render::memory_viz;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Write PyTorch's memory snapshot (a pickle) here: open it in
    /// pytorch.org/memory_viz.
    #[arg(long, value_name = "OUT.pickle", required = true)]
    pub memory_viz: PathBuf,
    /// The report to export.
    pub report: PathBuf,
}

pub fn run(a: &ExportArgs) -> Result<i32> {
    refuse_overwrite("--memory-viz", &a.memory_viz, &a.report, "snapshot.pickle")?;
    // Before the work: the pickle would be written whole beside the
    // directory, then fail to take its place ("/": "Device or resource busy").
    if a.memory_viz.is_dir() {
        return Err(CliError::input(format!(
            "--memory-viz {}: a directory; give a file name (e.g. {})",
            a.memory_viz.display(),
            a.memory_viz.join("snapshot.pickle").display()
        )));
    }
    let r = load(&a.report)?;
    let w = write(&r, &a.memory_viz)
        .map_err(|e| CliError::input(format!("{}: {e}", a.memory_viz.display())))?;
    println!(
        "{}: {} segments, {} trace events (open it in https://pytorch.org/memory_viz)",
        a.memory_viz.display(),
        w.segments,
        w.trace_events
    );
    Ok(0)
}

/// Written to a temporary file beside `out`, then renamed: never half a pickle.
fn write(r: &crate::report::Report, out: &Path) -> std::io::Result<memory_viz::Written> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let tmp = out.with_file_name(format!(".{name}.tmp"));
    let result = (|| {
        let (mut f, w) = memory_viz::write(r, BufWriter::new(super::private::create_file(&tmp)?))?;
        f.flush()?;
        std::fs::rename(&tmp, out)?;
        Ok(w)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
