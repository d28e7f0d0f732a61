//! What the hooks record. Every function here runs inside the host process
//! on its allocation path: no locks but a table shard's, no allocation, no
//! syscalls, except on failures and in the first out-of-memory post-mortem.

use super::counters::{self, lane};
use super::events::{EventRec, Op};
use super::failures::FailureRec;
use super::state::{self, Shim};
use super::table::Entry;
use super::tls::{self, Depth};
use super::vmm::{Handle, Undo};
use super::{clock, writer};
use crate::report::Api;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::*;

/// Runs recording code; a panic in it is swallowed, never crosses into C.
#[inline]
pub fn protect<R>(f: impl FnOnce() -> R) -> Option<R> {
    catch_unwind(AssertUnwindSafe(f)).ok()
}

/// One hooked call. Records only when the shim is on and this is the
/// outermost hook of the thread; nested hooks (the runtime's own driver
/// calls) pass through, so an allocation counts once.
pub struct Call {
    shim: Option<&'static Shim>,
    api: Api,
    _depth: Option<Depth>,
}

impl Call {
    #[inline]
    pub fn begin(api: Api) -> Call {
        let Some(shim) = state::get() else {
            return Call {
                shim: None,
                api,
                _depth: None,
            };
        };
        let depth = Depth::enter();
        if !depth.outer {
            return Call {
                shim: None,
                api,
                _depth: Some(depth),
            };
        }
        protect(|| counters::current().count_call(api));
        Call {
            shim: Some(shim),
            api,
            _depth: Some(depth),
        }
    }

    pub fn recording(&self) -> Option<&'static Shim> {
        self.shim
    }

    /// After an allocating call: record it, or its failure.
    #[inline]
    pub fn allocated(
        &self,
        rc: i32,
        address: impl FnOnce() -> u64,
        size: impl FnOnce() -> u64,
        device: u32,
        stream: u64,
    ) {
        let Some(shim) = self.shim else { return };
        let api = self.api;
        protect(|| {
            if rc == 0 {
                let a = address();
                if a != 0 {
                    alloc(shim, api, device, a, size(), stream);
                }
            } else {
                failed(shim, api, device, size(), rc);
            }
        });
    }

    /// Before a free: take the allocation out of the table.
    #[inline]
    pub fn free_begin(&self, address: u64) -> Option<Entry> {
        let shim = self.shim?;
        if address == 0 {
            return None;
        }
        protect(|| free(shim, self.api, address)).flatten()
    }

    /// After a free: put the allocation back if the call failed; count frees
    /// of unknown pointers.
    #[inline]
    pub fn free_end(&self, address: u64, removed: Option<Entry>, rc: i32) {
        let Some(shim) = self.shim else { return };
        if address == 0 {
            return;
        }
        let api = self.api;
        protect(|| match removed {
            Some(e) if rc != 0 => {
                unfree(shim, e);
                note_failure(shim, api, e.device(), e.size(), rc, false);
            }
            Some(_) => {}
            None => {
                if rc != 0 && shim.table.recently_freed(address) {
                    shim.anomalies.double_frees.fetch_add(1, Relaxed);
                } else {
                    shim.anomalies.untracked_frees.fetch_add(1, Relaxed);
                }
                if rc != 0 {
                    note_failure(shim, api, tls::device(), 0, rc, false);
                }
            }
        });
    }

    /// A failed call that allocates nothing the table tracks (VMM calls).
    pub fn failed_plain(&self, rc: i32, device: u32, size: u64) {
        if let (Some(shim), true) = (self.shim, rc != 0) {
            let api = self.api;
            protect(|| note_failure(shim, api, device, size, rc, api.allocates()));
        }
    }
}

#[inline]
pub fn alloc(shim: &Shim, api: Api, device: u32, address: u64, size: u64, stream: u64) {
    let b = counters::current();
    let ticks = clock::ticks();
    let thread = tls::tid();
    let e = Entry::new(
        address,
        size,
        api,
        device,
        stream,
        ticks,
        b.next_seq(),
        thread,
    );
    if let Some(old) = shim.table.insert(e) {
        b.free(lane(old.api().space(), old.device()), old.size());
        shim.anomalies.replaced.fetch_add(1, Relaxed);
    }
    b.alloc(lane(api.space(), device), size);
    shim.devices.mark_seen(device);
    b.ring.push(
        b.is_shared(),
        &EventRec {
            ticks,
            op: Op::Alloc,
            api,
            device,
            address,
            size,
            code: 0,
            thread,
        },
    );
}

#[inline]
pub fn free(shim: &Shim, api: Api, address: u64) -> Option<Entry> {
    let e = shim.table.remove(address)?;
    let b = counters::current();
    b.free(lane(e.api().space(), e.device()), e.size());
    let ev = EventRec {
        ticks: clock::ticks(),
        op: Op::Free,
        api,
        device: e.device(),
        address,
        size: e.size(),
        code: 0,
        thread: tls::tid(),
    };
    b.ring.push(b.is_shared(), &ev);
    Some(e)
}

/// The real free failed: the allocation is still there.
fn unfree(shim: &Shim, e: Entry) {
    shim.table.insert(e);
    counters::current().unfree(lane(e.api().space(), e.device()), e.size());
}

fn failed(shim: &Shim, api: Api, device: u32, size: u64, rc: i32) {
    note_failure(shim, api, device, size, rc, true);
}

fn note_failure(shim: &Shim, api: Api, device: u32, size: u64, code: i32, allocating: bool) {
    let b = counters::current();
    let ticks = clock::ticks();
    let thread = tls::tid();
    if allocating {
        b.count_failure(lane(api.space(), device));
    }
    shim.failures.record(FailureRec {
        ticks,
        api,
        device,
        size,
        code,
        thread,
    });
    b.ring.push(
        b.is_shared(),
        &EventRec {
            ticks,
            op: Op::Fail,
            api,
            device,
            address: 0,
            size,
            code,
            thread,
        },
    );
    // cudaErrorMemoryAllocation and CUDA_ERROR_OUT_OF_MEMORY are both 2.
    if allocating && code == 2 && !shim.oom_written.swap(true, AcqRel) {
        writer::write_oom(
            shim,
            writer::OomContext {
                ticks,
                api,
                device,
                size,
                code,
                thread,
            },
        );
    }
}

/// A physical VMM handle created: live device memory.
pub fn vmm_create(shim: &Shim, handle: u64, device: u32, size: u64) {
    let b = counters::current();
    let h = Handle {
        size,
        device,
        released: false,
        maps: 0,
        ticks: clock::ticks(),
        seq: b.next_seq(),
        thread: tls::tid(),
    };
    if let Some(old) = shim.vmm.create(handle, h) {
        b.free(lane(crate::report::Space::Device, old.device), old.size);
        shim.anomalies.replaced.fetch_add(1, Relaxed);
    }
    b.alloc(lane(crate::report::Space::Device, device), size);
    shim.devices.mark_seen(device);
    let ev = EventRec {
        ticks: h.ticks,
        op: Op::Alloc,
        api: Api::CuMemCreate,
        device,
        address: handle,
        size,
        code: 0,
        thread: h.thread,
    };
    b.ring.push(b.is_shared(), &ev);
}

/// Handles whose memory a release or unmap gave back.
pub fn vmm_destroyed(undo: &Undo, api: Api) {
    let b = counters::current();
    for (handle, h) in undo.destroyed() {
        b.free(lane(crate::report::Space::Device, h.device), h.size);
        let ev = EventRec {
            ticks: clock::ticks(),
            op: Op::Free,
            api,
            device: h.device,
            address: *handle,
            size: h.size,
            code: 0,
            thread: tls::tid(),
        };
        b.ring.push(b.is_shared(), &ev);
    }
}

/// A failed release or unmap: the memory did not go back after all.
pub fn vmm_undo(shim: &Shim, undo: &Undo) {
    shim.vmm.undo(undo);
    let b = counters::current();
    for (_, h) in undo.destroyed() {
        b.unfree(lane(crate::report::Space::Device, h.device), h.size);
    }
}
