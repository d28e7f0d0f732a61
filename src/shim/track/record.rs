//! What the hooks record. Every function here runs inside the host process
//! on its allocation path: no locks but a table shard's, no allocation, no
//! syscalls, except on failures and in the capture of the first
//! out-of-memory failure.

use super::counters::{self, lane, ThreadBlock};
use super::devices::clamp;
use super::events::{EventRec, Op};
use super::failures::Failure;
use super::table::{Entry, Table};
use super::tls::{self, Tls};
use super::vmm::{Handle, Undo};
use super::{clock, oom, stacks, Anomalies, Tracker};
use crate::report::{Api, Space};
use crate::shim::cuda::{driver, ERROR_OUT_OF_MEMORY};
use std::sync::atomic::Ordering::*;

use super::guard::protect;

/// The thread recording a call: its state and its counter block.
#[derive(Clone, Copy)]
pub struct Recorder {
    pub tls: &'static Tls,
    pub block: &'static ThreadBlock,
    /// The return address of the outermost hook (0: unknown), raw.
    pub caller: u64,
}

impl Recorder {
    /// An exact stamp, off the hot path (failures, VMM calls): the clock,
    /// after the thread's earlier stamps and so before its later ones, and
    /// published (`clock::exact_after`).
    fn exact_stamp(self) -> u64 {
        let t = clock::exact_after(self.tls.ticks.get());
        self.tls.ticks.set(t);
        t
    }

    /// An event into the thread's flight recorder.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn event(self, ticks: u64, op: Op, api: Api, device: u32, address: u64, size: u64, code: i32) {
        let thread = self.tls.tid();
        let e = EventRec {
            ticks,
            op,
            api,
            device,
            address,
            size,
            code,
            thread,
            caller: self.caller,
        };
        self.block.ring.push(self.block.is_shared(), &e);
    }
}

/// One hooked call. Records only when the shim is on and this is the
/// outermost hook of the thread; nested hooks (the runtime's own driver
/// calls) pass through after one thread-local read, so an allocation counts once.
pub struct Call {
    shim: Option<&'static Tracker>,
    rec: Option<Recorder>,
    api: Api,
    /// A free's stamp (`clock::stamp`): no clock read while the time is
    /// published. An allocation's is taken with its address (`clock::alloc_stamp`).
    ticks: u64,
}

impl Call {
    /// Begins a call of `api` made from `caller` (the hook's return
    /// address); `tracker` gives the shim's state, starting the shim on first
    /// use (asked only for an outermost call). A nested call's caller is the
    /// runtime's: the outermost one's is what is kept.
    #[inline]
    pub fn begin(
        api: Api,
        caller: u64,
        tracker: impl FnOnce() -> Option<&'static Tracker>,
    ) -> Call {
        let t = tls::get();
        if t.depth.get() != 0 {
            return Call::idle(api);
        }
        Call::outermost(api, t, caller, tracker)
    }

    /// Begins the outermost hooked call of thread `t` (the hook checked its
    /// depth): takes the thread's counter block and stamps the call.
    #[inline(always)]
    pub fn outermost(
        api: Api,
        t: &'static Tls,
        caller: u64,
        tracker: impl FnOnce() -> Option<&'static Tracker>,
    ) -> Call {
        let Some(shim) = tracker() else {
            return Call::idle(api);
        };
        t.depth.set(1);
        let block = match counters::claimed(t) {
            Some(b) => b,
            // A thread's first call claims its counter block (allocates).
            None => match protect(|| counters::first_block(t)) {
                Some(b) => b,
                None => {
                    t.depth.set(0);
                    return Call::idle(api);
                }
            },
        };
        block.count_call(api);
        Call {
            shim: Some(shim),
            rec: Some(Recorder {
                tls: t,
                block,
                caller,
            }),
            api,
            // An allocation is stamped once it has its address (`allocated`).
            ticks: if api.allocates() {
                0
            } else {
                let now = clock::stamp(t.ticks.get());
                t.ticks.set(now);
                now
            },
        }
    }

    /// A call that records nothing (nested, or the shim is off).
    #[inline(always)]
    fn idle(api: Api) -> Call {
        Call {
            shim: None,
            rec: None,
            api,
            ticks: 0,
        }
    }

    pub fn recording(&self) -> Option<&'static Tracker> {
        self.shim
    }

    pub fn recorder(&self) -> Option<Recorder> {
        self.rec
    }

    pub fn api(&self) -> Api {
        self.api
    }

    pub fn device(&self) -> u32 {
        self.rec.map_or_else(tls::device, |r| r.tls.device.get())
    }

    /// After an allocating call: record it, or its failure. `device` maps the
    /// thread's current device to the allocation's. The common case, a
    /// successful allocation, runs unprotected: it cannot panic (guard.rs).
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
        let device = clamp(device(r.tls.device.get()));
        if rc != 0 {
            return failed(shim, r, api, device, size(), rc, true);
        }
        let a = address();
        if a == 0 {
            return;
        }
        let alloc = Alloc {
            api,
            device,
            address: a,
            size: size(),
            stream,
        };
        shim.devices.mark_seen(device);
        let ticks = clock::alloc_stamp(r.tls.ticks.get(), a);
        r.tls.ticks.set(ticks);
        track_alloc(&shim.table, &shim.anomalies, r, ticks, alloc);
        if alloc.size >= shim.settings.stack_min {
            keep_stack(shim, r, a, alloc.size, device);
        }
    }

    /// Before a free: take the allocation out of the table, into `out`
    /// (the caller's, for `free_end`); false when the table did not hold it.
    #[inline(always)]
    pub fn free_begin(&self, address: u64, out: &mut Entry) -> bool {
        let (Some(shim), Some(r)) = (self.shim, self.rec) else {
            return false;
        };
        if address == 0 || !track_free(&shim.table, r, self.ticks, self.api, address, out) {
            return false;
        }
        if out.size() >= shim.settings.stack_min {
            drop_stack(shim, address);
        }
        true
    }

    /// After a free: put the allocation back if the call failed; count frees
    /// of unknown pointers. `removed`: what `free_begin` took out.
    #[inline]
    pub fn free_end(&self, address: u64, removed: Option<&Entry>, rc: i32) {
        let (Some(shim), Some(r)) = (self.shim, self.rec) else {
            return;
        };
        // The common case, a tracked free that succeeded, has nothing left to do.
        if address == 0 || (removed.is_some() && rc == 0) {
            return;
        }
        free_settled(shim, r, self.api, address, removed.copied(), rc);
    }

    /// A free of a pointer the table does not hold, not passed on (pluggable mode).
    pub fn unknown_free(&self, address: u64) {
        if let Some(shim) = self.shim {
            protect(|| count_unknown_free(shim, address, true));
        }
    }

    /// A failed call that allocates nothing the table tracks (VMM calls).
    pub fn failed_plain(&self, rc: i32, device: u32, size: u64) {
        if let (Some(shim), Some(r), true) = (self.shim, self.rec, rc != 0) {
            let api = self.api;
            protect(|| note_failure(shim, r, api, device, size, rc, api.allocates()));
        }
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

/// A failed call, recorded off the hot path.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn failed(
    shim: &Tracker,
    r: Recorder,
    api: Api,
    device: u32,
    size: u64,
    rc: i32,
    allocating: bool,
) {
    protect(|| note_failure(shim, r, api, device, size, rc, allocating));
}

/// A native stack for a big allocation; after the table insert: no shim
/// lock is held.
#[cold]
#[inline(never)]
fn keep_stack(shim: &Tracker, r: Recorder, address: u64, size: u64, device: u32) {
    protect(|| {
        let stack = stacks::capture(size, device, r.caller);
        shim.stacks.insert(address, stack)
    });
}

#[cold]
#[inline(never)]
fn drop_stack(shim: &Tracker, address: u64) {
    protect(|| shim.stacks.remove(address));
}

/// A free that failed or that the table could not match.
#[cold]
#[inline(never)]
fn free_settled(
    shim: &Tracker,
    r: Recorder,
    api: Api,
    address: u64,
    removed: Option<Entry>,
    rc: i32,
) {
    protect(|| match removed {
        Some(e) if rc != 0 => {
            shim.table.insert(e, r.block.index, !r.block.is_shared());
            r.block.unfree(lane(e.api().space(), e.device()), e.size());
            note_failure(shim, r, api, e.device(), e.size(), rc, false);
        }
        Some(_) => {}
        None => {
            count_unknown_free(shim, address, rc != 0);
            if rc != 0 {
                note_failure(shim, r, api, r.tls.device.get(), 0, rc, false);
            }
        }
    });
}

/// A free the table could not match: a double free when the address was
/// freed lately and the real call refused it, else an untracked pointer.
fn count_unknown_free(shim: &Tracker, address: u64, refused: bool) {
    if refused && shim.table.recently_freed(address) {
        shim.anomalies.double_frees.fetch_add(1, Relaxed);
    } else {
        shim.anomalies.untracked_frees.fetch_add(1, Relaxed);
    }
}

/// One successful allocation, as a hook saw it.
#[derive(Clone, Copy, Debug)]
pub struct Alloc {
    pub api: Api,
    pub device: u32,
    pub address: u64,
    pub size: u64,
    pub stream: u64,
}

/// An allocation: into the table, the thread's counters and its flight recorder.
#[inline(always)]
pub fn track_alloc(table: &Table, anomalies: &Anomalies, r: Recorder, ticks: u64, a: Alloc) {
    let b = r.block;
    let thread = r.tls.tid();
    let e = Entry::new(
        a.address,
        a.size,
        a.api,
        a.device,
        a.stream,
        ticks,
        b.next_seq(),
        thread,
        r.caller,
    );
    if let Some(old) = table.insert(e, b.index, !b.is_shared()) {
        b.free(lane(old.api().space(), old.device()), old.size());
        anomalies.replaced.fetch_add(1, Relaxed);
    }
    b.alloc(lane(a.api.space(), a.device), a.size);
    r.event(ticks, Op::Alloc, a.api, a.device, a.address, a.size, 0);
}

/// A free of a tracked allocation, recorded before the real free: the
/// entry goes to `out`; false when the table does not hold the address.
#[inline(always)]
pub fn track_free(
    table: &Table,
    r: Recorder,
    ticks: u64,
    api: Api,
    address: u64,
    out: &mut Entry,
) -> bool {
    if !table.take(address, r.block.index, !r.block.is_shared(), out) {
        return false;
    }
    // A free sorts after the allocation it frees, whichever thread made it:
    // the other thread's stamps can be ahead of this one's. The thread's own
    // stamps keep increasing after it.
    let ticks = if out.ticks < ticks {
        ticks
    } else {
        let after = out.ticks + 1;
        r.tls.ticks.set(after);
        after
    };
    clock::freed(address, ticks);
    let (device, size) = (out.device(), out.size());
    r.block.free(lane(out.space(), device), size);
    r.event(ticks, Op::Free, api, device, address, size, 0);
    true
}

/// A failed call; the first out-of-memory failure of an allocating call is
/// captured here, on the failing thread, for its post-mortem.
#[allow(clippy::too_many_arguments)]
fn note_failure(
    shim: &Tracker,
    r: Recorder,
    api: Api,
    device: u32,
    size: u64,
    code: i32,
    allocating: bool,
) {
    let ticks = r.exact_stamp();
    let device = clamp(device);
    shim.devices.mark_seen(device);
    if allocating {
        r.block.count_failure(lane(api.space(), device));
    }
    let failure = Failure {
        ticks,
        api,
        device,
        size,
        code,
        thread: r.tls.tid(),
    };
    shim.failures.record(failure);
    r.event(ticks, Op::Fail, api, device, 0, size, code);
    if allocating && code == ERROR_OUT_OF_MEMORY && shim.oom.count() {
        // Free memory now, from the failing thread (its context is current):
        // once the host recovers (frees its cache, retries) it is gone.
        let mem_info = shim
            .settings
            .device_query
            .then(driver::mem_info_current)
            .flatten();
        let events = shim.settings.events;
        shim.oom.store(oom::capture(
            &shim.table,
            &shim.vmm,
            events,
            failure,
            mem_info,
        ));
        shim.oom_captured();
    }
}

/// A physical VMM handle created: live device memory.
pub fn vmm_create(shim: &Tracker, r: Recorder, handle: u64, device: u32, size: u64) {
    let b = r.block;
    let device = clamp(device);
    let h = Handle {
        size,
        device,
        released: false,
        maps: 0,
        ticks: r.exact_stamp(),
        seq: b.next_seq(),
        thread: r.tls.tid(),
        caller: r.caller,
    };
    shim.devices.mark_seen(device);
    if let Some(old) = shim.vmm.create(handle, h) {
        b.free(lane(Space::Device, old.device), old.size);
        shim.anomalies.replaced.fetch_add(1, Relaxed);
    }
    b.alloc(lane(Space::Device, device), size);
    r.event(
        h.ticks,
        Op::Alloc,
        Api::CuMemCreate,
        device,
        handle,
        size,
        0,
    );
}

/// Handles whose memory a release or unmap gave back.
pub fn vmm_destroyed(r: Recorder, undo: &Undo, api: Api) {
    for (handle, h) in undo.destroyed() {
        r.block.free(lane(Space::Device, h.device), h.size);
        r.event(r.exact_stamp(), Op::Free, api, h.device, *handle, h.size, 0);
    }
}

/// A failed release or unmap: the memory did not go back after all.
pub fn vmm_undo(shim: &Tracker, r: Recorder, undo: &Undo) {
    shim.vmm.undo(undo);
    for (_, h) in undo.destroyed() {
        r.block.unfree(lane(Space::Device, h.device), h.size);
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
