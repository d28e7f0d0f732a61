//! Requests from outside (`kvscope mark PID`, `kvscope dump PID`): files
//! in this process's control directory (see `report::control`), applied by
//! the background thread. Only plain files of this user, in directories of
//! this user that nobody else can write to.

use super::writer::Writer;
use crate::report::control;
use crate::shim::track::markers::Source;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Applies requests left in our control directory: `*.mark` files hold a
/// label, `*.dump` files a reason. Each is removed once applied.
pub fn poll_requests(w: &Writer) {
    // SAFETY: getpid has no preconditions.
    let dir = control::dir_for(&w.config.ctl_dir, unsafe { libc::getpid() } as u32);
    let base_ok = std::fs::symlink_metadata(&w.config.ctl_dir)
        .is_ok_and(|m| m.is_dir() && control::trusted(&m));
    let dir_ok = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && control::trusted(&m));
    if !base_ok || !dir_ok {
        return;
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    // Plain files of this user only: never a symlink, never another user's;
    // never a hidden one (a request being written, renamed into place when
    // whole: taken half-written, it lost its label and its poster's rename
    // failed).
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
        .filter(|e| {
            e.path()
                .symlink_metadata()
                .is_ok_and(|m| m.is_file() && m.uid() == control::uid())
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files {
        apply_request(w, &f);
    }
}

fn apply_request(w: &Writer, f: &Path) {
    let kind = f.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !matches!(kind, "mark" | "dump") {
        return;
    }
    let text = std::fs::read_to_string(f).unwrap_or_default();
    let text = text.trim();
    let _ = std::fs::remove_file(f);
    match kind {
        "mark" => {
            let label = if text.is_empty() { "mark" } else { text };
            let m = w.track.markers.add(label, Source::External);
            w.timeline.sample(Some(m.label), false);
        }
        _ => {
            w.write_dump(Some(if text.is_empty() {
                "external request".into()
            } else {
                text.to_string()
            }));
        }
    }
}
