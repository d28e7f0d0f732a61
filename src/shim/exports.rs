//! kvscope's own C API, for programs that want to help (Python through
//! ctypes: `ctypes.CDLL(None).kvscope_mark(b"serving")` when preloaded).
//! Strings are NUL-terminated or null.
#![allow(clippy::missing_safety_doc)]

use super::lifecycle;
use super::signals::StopMask;
use super::track::clock;
use super::track::counters::{fold, lane};
use super::track::devices::FrameworkCounters;
use super::track::guard::protect;
use super::track::markers::Source;
use crate::report::Space;
use std::ffi::{c_char, c_int, CStr};

fn text(p: *const c_char) -> Option<String> {
    // SAFETY: a NUL-terminated string from the caller, or null.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// Marks a point in time (a phase boundary) with a label; the timeline gets
/// a point at once. Null means "mark".
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kvscope_mark(label: *const c_char) {
    let Some(shim) = lifecycle::get() else { return };
    // The markers and the timeline are what a final report reads.
    let _mask = StopMask::block();
    protect(|| {
        let m = shim
            .track
            .markers
            .add(text(label).as_deref().unwrap_or("mark"), Source::Api);
        shim.timeline().sample(Some(m.label), false);
    });
}

/// Writes a report now. Returns 0 when it was written, -1 otherwise.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kvscope_dump(reason: *const c_char) -> c_int {
    let Some(shim) = lifecycle::get() else {
        return -1;
    };
    match protect(|| shim.writer.write_dump(text(reason))) {
        Some(Some(_)) => 0,
        _ => -1,
    }
}

/// Live device bytes the shim tracks on `device` (all entry points).
#[unsafe(no_mangle)]
pub extern "C" fn kvscope_live_bytes(device: c_int) -> u64 {
    if device < 0 || lifecycle::get().is_none() {
        return 0;
    }
    protect(|| fold(lane(Space::Device, device as u32)).live_bytes()).unwrap_or(0)
}

/// The framework allocator's own counters for `device` (PyTorch:
/// `torch.cuda.memory_allocated(device)` and `memory_reserved(device)`): every
/// later timeline point carries the latest, so the reader can judge tensors,
/// not segments. The Python helper calls it at every `mark()` and, under
/// `kvscope run` or `kvscope.watch_torch()`, every sample period. Cheap: a
/// spin lock and three stores; never starts the shim.
#[unsafe(no_mangle)]
pub extern "C" fn kvscope_framework_counters(device: c_int, allocated: u64, reserved: u64) {
    let Some(shim) = lifecycle::peek() else {
        return;
    };
    if device < 0 {
        return;
    }
    protect(|| {
        shim.track.devices.set_framework(
            device as u32,
            FrameworkCounters {
                allocated,
                reserved,
                ticks: clock::ticks(),
            },
        )
    });
}
