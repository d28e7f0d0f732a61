//! What the hooks record. Every function here runs inside the host process
//! on its allocation path: no locks but a table shard's, no allocation, no
//! syscalls, except on failures and in the first out-of-memory post-mortem.

use super::counters::{self, lane, ThreadBlock};
use super::events::{EventRec, Op};
use super::failures::FailureRec;
use super::state::{self, Anomalies, Shim};
use super::table::{Entry, Table};
use super::tls::{self, Tls};
use super::vmm::{Handle, Undo};
use super::{clock, writer};
use crate::report::{Api, Space};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::*;

/// Runs recording code; a panic in it is swallowed, never crosses into C.
#[inline]
pub fn protect<R>(f: impl FnOnce() -> R) -> Option<R> {
    catch_unwind(AssertUnwindSafe(f)).ok()
}

/// The thread recording a call: its state and its counter block.
#[derive(Clone, Copy)]
pub struct Recorder {
    pub tls: &'static Tls,
    pub block: &'static ThreadBlock,
}

/// One hooked call. Records only when the shim is on and this is the
/// outermost hook of the thread; nested hooks (the runtime's own driver
/// calls) pass through after one thread-local read, so an allocation counts once.
pub struct Call {
    shim: Option<&'static Shim>,
    rec: Option<Recorder>,
    api: Api,
    /// When the call began: read before the real call, so that the clock's
    /// latency overlaps it. Allocations are stamped with the time they were asked for.
    ticks: u64,
}

impl Call {
    #[inline]
    pub fn begin(api: Api) -> Call {
        let t = tls::get();
        if t.depth.get() != 0 {
            return Call {
                shim: None,
                rec: None,
                api,
                ticks: 0,
            };
        }
        let Some(shim) = state::get() else {
            return Call {
                shim: None,
                rec: None,
                api,
                ticks: 0,
            };
        };
        t.depth.set(1);
        let block = counters::block_of(t);
        block.count_call(api);
        Call {
            shim: Some(shim),
            rec: Some(Recorder { tls: t, block }),
            api,
            ticks: clock::ticks(),
        }
    }

    pub fn recording(&self) -> Option<&'static Shim> {
        self.shim
    }

    /// After an allocating call: record it, or its failure. `device` maps the
    /// thread's current device to the allocation's.
    #[inline]
    pub fn allocated(
        &self,
        rc: i32,
        address: impl FnOnce() -> u64,
        size: impl FnOnce() -> u64,
        device: impl FnOnce(u32) -> u32,
        stream: u64,
    ) {
        let (Some(shim), Some(r)) = (self.shim, self.rec) else {
            return;
        };
        let api = self.api;
        protect(|| {
            let device = device(r.tls.device.get());
            if rc == 0 {
                let a = address();
                if a != 0 {
                    track_alloc(
                        &shim.table,
                        &shim.anomalies,
                        r,
                        self.ticks,
                        api,
                        device,
                        a,
                        size(),
                        stream,
                    );
                    shim.devices.mark_seen(device);
                }
            } else {
                note_failure(shim, r, api, device, size(), rc, true);
            }
        });
    }

    /// Before a free: take the allocation out of the table.
    #[inline]
    pub fn free_begin(&self, address: u64) -> Option<Entry> {
        let (Some(shim), Some(r)) = (self.shim, self.rec) else {
            return None;
        };
        if address == 0 {
            return None;
        }
        protect(|| track_free(&shim.table, r, self.ticks, self.api, address)).flatten()
    }

    /// After a free: put the allocation back if the call failed; count frees
    /// of unknown pointers.
    #[inline]
    pub fn free_end(&self, address: u64, removed: Option<Entry>, rc: i32) {
        let (Some(shim), Some(r)) = (self.shim, self.rec) else {
            return;
        };
        if address == 0 {
            return;
        }
        let api = self.api;
        protect(|| match removed {
            Some(e) if rc != 0 => {
                shim.table.insert(e, r.block.index);
                r.block.unfree(lane(e.api().space(), e.device()), e.size());
                note_failure(shim, r, api, e.device(), e.size(), rc, false);
            }
            Some(_) => {}
            None => {
                if rc != 0 && shim.table.recently_freed(address) {
                    shim.anomalies.double_frees.fetch_add(1, Relaxed);
                } else {
                    shim.anomalies.untracked_frees.fetch_add(1, Relaxed);
                }
                if rc != 0 {
                    note_failure(shim, r, api, r.tls.device.get(), 0, rc, false);
                }
            }
        });
    }

    /// A free of a pointer the table does not hold, not passed on (pluggable mode).
    pub fn unknown_free(&self, address: u64) {
        let Some(shim) = self.shim else { return };
        protect(|| {
            if shim.table.recently_freed(address) {
                shim.anomalies.double_frees.fetch_add(1, Relaxed);
            } else {
                shim.anomalies.untracked_frees.fetch_add(1, Relaxed);
            }
        });
    }

    /// A failed call that allocates nothing the table tracks (VMM calls).
    pub fn failed_plain(&self, rc: i32, device: u32, size: u64) {
        if let (Some(shim), Some(r), true) = (self.shim, self.rec, rc != 0) {
            let api = self.api;
            protect(|| note_failure(shim, r, api, device, size, rc, api.allocates()));
        }
    }

    pub fn recorder(&self) -> Option<Recorder> {
        self.rec
    }

    pub fn device(&self) -> u32 {
        self.rec.map_or_else(tls::device, |r| r.tls.device.get())
    }
}

impl Drop for Call {
    #[inline]
    fn drop(&mut self) {
        if let Some(r) = self.rec {
            r.tls.depth.set(0);
        }
    }
}

/// An allocation: into the table, the thread's counters and its flight recorder.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn track_alloc(
    table: &Table,
    anomalies: &Anomalies,
    r: Recorder,
    ticks: u64,
    api: Api,
    device: u32,
    address: u64,
    size: u64,
    stream: u64,
) {
    let b = r.block;
    let thread = r.tls.tid();
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
    if let Some(old) = table.insert(e, b.index) {
        b.free(lane(old.api().space(), old.device()), old.size());
        anomalies.replaced.fetch_add(1, Relaxed);
    }
    b.alloc(lane(api.space(), device), size);
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

/// A free of a tracked allocation, recorded before the real free.
#[inline]
pub fn track_free(table: &Table, r: Recorder, ticks: u64, api: Api, address: u64) -> Option<Entry> {
    let e = table.remove(address, r.block.index)?;
    let b = r.block;
    b.free(lane(e.api().space(), e.device()), e.size());
    let ev = EventRec {
        ticks,
        op: Op::Free,
        api,
        device: e.device(),
        address,
        size: e.size(),
        code: 0,
        thread: r.tls.tid(),
    };
    b.ring.push(b.is_shared(), &ev);
    Some(e)
}

#[allow(clippy::too_many_arguments)]
fn note_failure(
    shim: &Shim,
    r: Recorder,
    api: Api,
    device: u32,
    size: u64,
    code: i32,
    allocating: bool,
) {
    let ticks = clock::ticks();
    let thread = r.tls.tid();
    if allocating {
        r.block.count_failure(lane(api.space(), device));
    }
    shim.failures.record(FailureRec {
        ticks,
        api,
        device,
        size,
        code,
        thread,
    });
    r.block.ring.push(
        r.block.is_shared(),
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
pub fn vmm_create(shim: &Shim, r: Recorder, handle: u64, device: u32, size: u64) {
    let b = r.block;
    let h = Handle {
        size,
        device,
        released: false,
        maps: 0,
        ticks: clock::ticks(),
        seq: b.next_seq(),
        thread: r.tls.tid(),
    };
    if let Some(old) = shim.vmm.create(handle, h) {
        b.free(lane(Space::Device, old.device), old.size);
        shim.anomalies.replaced.fetch_add(1, Relaxed);
    }
    b.alloc(lane(Space::Device, device), size);
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
pub fn vmm_destroyed(r: Recorder, undo: &Undo, api: Api) {
    let b = r.block;
    for (handle, h) in undo.destroyed() {
        b.free(lane(Space::Device, h.device), h.size);
        let ev = EventRec {
            ticks: clock::ticks(),
            op: Op::Free,
            api,
            device: h.device,
            address: *handle,
            size: h.size,
            code: 0,
            thread: r.tls.tid(),
        };
        b.ring.push(b.is_shared(), &ev);
    }
}

/// A failed release or unmap: the memory did not go back after all.
pub fn vmm_undo(shim: &Shim, r: Recorder, undo: &Undo) {
    shim.vmm.undo(undo);
    for (_, h) in undo.destroyed() {
        r.block.unfree(lane(Space::Device, h.device), h.size);
    }
}
