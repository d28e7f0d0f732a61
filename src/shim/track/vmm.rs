//! Virtual memory bookkeeping: reserved address ranges, physical handles and
//! the mappings between them, tracked separately. A handle's memory counts as
//! live device memory from cuMemCreate until it is released *and* unmapped,
//! which is when the driver gives it back.
//!
//! Releases, unmaps and address frees are recorded before the real call
//! (another thread may reuse the handle or range at once) and undone if the
//! real call fails.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle {
    pub size: u64,
    pub device: u32,
    pub released: bool,
    pub maps: u64,
    pub ticks: u64,
    pub seq: u64,
    pub thread: u32,
    /// The return address of the outermost hook that made it (0: unknown).
    pub caller: u64,
}

#[derive(Default)]
struct State {
    reserved: BTreeMap<u64, u64>,
    handles: HashMap<u64, Handle>,
    /// va -> (size, handle)
    maps: BTreeMap<u64, (u64, u64)>,
}

/// What a recorded release or unmap changed, to put back if the call fails.
#[derive(Debug, Default)]
pub struct Undo {
    released: Option<u64>,
    unmapped: Vec<(u64, u64, u64)>,
    destroyed: Vec<(u64, Handle)>,
    unreserved: Option<(u64, u64)>,
}

impl Undo {
    /// Handles whose memory went back to the driver: (handle, record).
    pub fn destroyed(&self) -> &[(u64, Handle)] {
        &self.destroyed
    }
}

#[derive(Default)]
pub struct Vmm {
    state: Mutex<State>,
}

pub struct Snapshot {
    pub reservations: Vec<(u64, u64, u64)>,
    pub handles: Vec<(u64, Handle, Option<u64>)>,
    pub reserved_bytes: u64,
    pub physical_bytes: u64,
    pub mapped_bytes: u64,
}

impl Vmm {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }

    pub fn reserve(&self, va: u64, size: u64) {
        self.with(|s| s.reserved.insert(va, size));
    }

    pub fn address_free_begin(&self, va: u64) -> Undo {
        let mut undo = Undo::default();
        self.with(|s| undo.unreserved = s.reserved.remove(&va).map(|size| (va, size)));
        undo
    }

    /// Returns false when the handle was already known (a missed release).
    pub fn create(&self, handle: u64, h: Handle) -> Option<Handle> {
        self.with(|s| s.handles.insert(handle, h)).flatten()
    }

    pub fn release_begin(&self, handle: u64) -> Undo {
        let mut undo = Undo::default();
        self.with(|s| {
            if let Some(h) = s.handles.get_mut(&handle) {
                if !h.released {
                    h.released = true;
                    undo.released = Some(handle);
                    if h.maps == 0 {
                        let h = *h;
                        s.handles.remove(&handle);
                        undo.destroyed.push((handle, h));
                    }
                }
            }
        });
        undo
    }

    pub fn map(&self, va: u64, size: u64, handle: u64) {
        self.with(|s| {
            s.maps.insert(va, (size, handle));
            if let Some(h) = s.handles.get_mut(&handle) {
                h.maps += 1;
            }
        });
    }

    pub fn unmap_begin(&self, va: u64, size: u64) -> Undo {
        let mut undo = Undo::default();
        self.with(|s| {
            let end = va.saturating_add(size);
            let hit: Vec<u64> = s.maps.range(va..end).map(|(k, _)| *k).collect();
            for k in hit {
                let Some((sz, handle)) = s.maps.remove(&k) else {
                    continue;
                };
                undo.unmapped.push((k, sz, handle));
                if let Some(h) = s.handles.get_mut(&handle) {
                    h.maps = h.maps.saturating_sub(1);
                    if h.released && h.maps == 0 {
                        let h = *h;
                        s.handles.remove(&handle);
                        undo.destroyed.push((handle, h));
                    }
                }
            }
        });
        undo
    }

    /// Puts back what a failed release, unmap or address free took away.
    pub fn undo(&self, undo: &Undo) {
        self.with(|s| {
            for (handle, h) in &undo.destroyed {
                s.handles.insert(*handle, *h);
            }
            for (va, size, handle) in &undo.unmapped {
                s.maps.insert(*va, (*size, *handle));
                if let Some(h) = s.handles.get_mut(handle) {
                    h.maps += 1;
                }
            }
            if let Some(handle) = undo.released {
                if let Some(h) = s.handles.get_mut(&handle) {
                    h.released = false;
                }
            }
            if let Some((va, size)) = undo.unreserved {
                s.reserved.insert(va, size);
            }
        });
    }

    pub fn snapshot(&self) -> Snapshot {
        self.with(|s| {
            let mut first_va: HashMap<u64, u64> = HashMap::new();
            for (va, (_, handle)) in &s.maps {
                first_va.entry(*handle).or_insert(*va);
            }
            let reservations = s
                .reserved
                .iter()
                .map(|(&va, &size)| {
                    let mapped = s
                        .maps
                        .range(va..va.saturating_add(size))
                        .map(|(_, (sz, _))| *sz)
                        .sum();
                    (va, size, mapped)
                })
                .collect();
            let mut handles: Vec<_> = s
                .handles
                .iter()
                .map(|(&k, &h)| (k, h, first_va.get(&k).copied()))
                .collect();
            handles.sort_by_key(|(k, _, _)| *k);
            Snapshot {
                reservations,
                reserved_bytes: s.reserved.values().sum(),
                physical_bytes: s.handles.values().map(|h| h.size).sum(),
                mapped_bytes: s.maps.values().map(|(sz, _)| *sz).sum(),
                handles,
            }
        })
        .unwrap_or(Snapshot {
            reservations: Vec::new(),
            handles: Vec::new(),
            reserved_bytes: 0,
            physical_bytes: 0,
            mapped_bytes: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(size: u64) -> Handle {
        Handle {
            size,
            device: 0,
            released: false,
            maps: 0,
            ticks: 0,
            seq: 0,
            thread: 0,
            caller: 0,
        }
    }

    #[test]
    fn memory_lives_until_released_and_unmapped() {
        let v = Vmm::default();
        v.reserve(0x1000_0000, 64 << 20);
        v.create(1, h(20 << 20));
        v.map(0x1000_0000, 20 << 20, 1);
        assert!(v.release_begin(1).destroyed().is_empty(), "still mapped");
        assert_eq!(v.snapshot().physical_bytes, 20 << 20);
        let undo = v.unmap_begin(0x1000_0000, 20 << 20);
        assert_eq!(undo.destroyed().len(), 1);
        assert_eq!(v.snapshot().physical_bytes, 0);
        v.undo(&undo);
        let s = v.snapshot();
        assert_eq!(
            (s.physical_bytes, s.mapped_bytes, s.reserved_bytes),
            (20 << 20, 20 << 20, 64 << 20)
        );
    }
}
