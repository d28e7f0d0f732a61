//! An owner-biased lock for one live-table shard: its owner thread (the
//! thread holding the shard's counter block) enters with plain stores and a
//! load, no atomic read-modify-write and no fence instruction; every other
//! thread takes a test-and-test-and-set lock and pays for both sides with an
//! asymmetric barrier, `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`.
//!
//! Why: a shard is touched by its owner on every allocation and free, and
//! by others rarely (a free of another thread's allocation, a report). The
//! `xchg` of a plain spin lock costs ~9 ns per lock/unlock on the stand-in's
//! VM, twice per cudaMalloc+cudaFree pair.
//!
//! The owner (`owned`): `busy = 1` (relaxed store), compiler fence,
//! `if lock` (acquire load) → `busy = 0` and take `lock` like everyone else;
//! else operate, `busy = 0` (release store). Another thread (`lock`: `take`,
//! `fence_owners`, `Held::settle`): `lock` by `xchg`, then one membarrier,
//! then wait while `busy`; operate; `lock = 0`.
//!
//! Why that excludes (Dekker's argument with an asymmetric barrier): the
//! owner stores `busy` then loads `lock`; the other side sets `lock` (a
//! locked instruction: visible on completion) then runs membarrier then
//! loads `busy`. membarrier returns only after every running thread of the
//! process has executed a full memory barrier (an IPI; a thread not running
//! passed one when it was switched out). Take the owner's position at that
//! barrier: if its `busy = 1` came before it, the store is visible when the
//! other side loads `busy` afterwards, and it waits; if it came after, the
//! owner's `lock` load comes after too and sees `lock = 1`, so the owner
//! backs off. Its critical section follows its acquire load of `lock` and
//! precedes its release of `busy`, so it cannot leak outside either. The
//! compiler fence only stops the compiler reordering the store and load:
//! the hardware's store→load reordering (x86's store buffer, arm64) is what
//! the barrier covers. Hand-over: the other side's release of `lock` is
//! read by the owner's acquire load; the owner's release of `busy` by the
//! other side's acquire load. The owner's own fallback takes `lock` without
//! the barrier: its `busy` is its own and already 0.
//!
//! When biasing is off, the owner takes `lock` like everyone else (the plain
//! spin lock of before): when registering for the barrier fails (old
//! kernel, seccomp: `available` is false), and always for the overflow
//! shard, whose block many threads share.
//!
//! Who owns: the caller says so (`owned = !block.is_shared()`). Two threads
//! never own a shard at once: a block is handed to a new thread only after
//! its old thread released it at exit (`counters::Owner`, release store of
//! `in_use` after the thread's last `busy = 0`, read by the new owner's
//! acquire CAS); hooks that run after that on the exiting thread use the
//! overflow block. Fork: the child is a pass-through (`lifecycle::in_child`),
//! it never touches the table, so a `busy` another thread left set in the
//! parent's copy does not matter. Signals: a hook reached from a signal
//! handler on the owner thread while that thread is inside its critical
//! section is nested (the interrupted hook holds the depth) and passes
//! through without touching the table; the shim's own stop handler
//! (`lifecycle::on_stop_signal`) never touches the table, it waits (bounded
//! by KVSCOPE_STOP_WAIT_MS) for the background thread, whose report waits
//! for the interrupted owner's `busy` exactly as it waited for the spin
//! lock that owner held before: no worse than the plain lock.

use super::spin::backoff;
use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{compiler_fence, AtomicBool, AtomicU8, Ordering::*};

const MEMBARRIER_CMD_GLOBAL: libc::c_int = 1;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 8;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 16;

const UNTRIED: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;
static BARRIER: AtomicU8 = AtomicU8::new(UNTRIED);

fn membarrier(cmd: libc::c_int) -> bool {
    // SAFETY: membarrier takes two integers and touches no user memory.
    unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            cmd,
            0 as libc::c_uint,
            0 as libc::c_int,
        ) == 0
    }
}

/// Can owners be biased: is this process registered for the expedited
/// private barrier? Registers on first call (the shim's start: the table is
/// made then); EPERM/ENOSYS/EINVAL leave biasing off for good.
pub fn available() -> bool {
    match BARRIER.load(Acquire) {
        ON => true,
        OFF => false,
        _ => {
            let on = membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
            BARRIER.store(if on { ON } else { OFF }, Release);
            on
        }
    }
}

/// The other side's barrier: after it, every owner either shows its `busy`
/// or sees `lock`. Registered, the expedited barrier does not fail; if it
/// ever did, the global one (RCU grace period, slow) gives the same
/// guarantee without registration.
fn fence_owners() {
    if !membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) {
        membarrier(MEMBARRIER_CMD_GLOBAL);
    }
}

pub struct OwnedLock<T> {
    lock: AtomicBool,
    /// The owner is inside (or entering) its critical section.
    busy: AtomicBool,
    /// Set at construction: the owner may take the fast path.
    biased: bool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `lock` and `busy` (module doc).
unsafe impl<T: Send> Sync for OwnedLock<T> {}
// SAFETY: owning the lock owns the value; T: Send lets it move threads.
unsafe impl<T: Send> Send for OwnedLock<T> {}

/// The owner's access: derefs to the value; its drop clears `busy` (fast
/// path) or `lock` (fallback), also if the operation unwinds.
pub struct Owned<'a, T> {
    lock: &'a OwnedLock<T>,
    flag: &'a AtomicBool,
}

impl<T> Deref for Owned<'_, T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: `owned` entered: `busy` set with nobody holding `lock`, or
        // `lock` taken (see `owned`).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for Owned<'_, T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Owned<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.flag.store(false, Release);
    }
}

impl<T> OwnedLock<T> {
    /// `biased` only where `available()` said so, and never for a lock
    /// whose owner is more than one thread.
    pub const fn new(value: T, biased: bool) -> Self {
        OwnedLock {
            lock: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            biased,
            value: UnsafeCell::new(value),
        }
    }

    /// The owner's access; anyone else calls `lock`. A guard rather than a
    /// closure, so that the owner's operation inlines into the hook.
    ///
    /// # Safety
    /// Only the lock's owner calls it: one thread at a time, never two at
    /// once (module doc: who owns).
    #[inline(always)]
    pub unsafe fn owned(&self) -> Owned<'_, T> {
        let fast = self.biased && self.enter_owned();
        if !fast {
            self.take_owned();
        }
        // fast: `busy` is set and nobody held `lock`, so others wait for
        // `busy` after their barrier (module doc); else `lock` is ours.
        Owned {
            lock: self,
            flag: if fast { &self.busy } else { &self.lock },
        }
    }

    /// The owner's plain-store entry: true when it is in, with `busy` set.
    #[inline(always)]
    fn enter_owned(&self) -> bool {
        self.busy.store(true, Relaxed);
        compiler_fence(SeqCst);
        if self.lock.load(Acquire) {
            self.busy.store(false, Release);
            return false;
        }
        true
    }

    /// The owner's fallback: its own `busy` is 0, so no barrier and no wait.
    #[cold]
    #[inline(never)]
    fn take_owned(&self) {
        std::mem::forget(self.take());
    }

    /// Exclusive access for anyone (the owner too, but it has `owned`):
    /// `lock`, the barrier, then the wait for the owner to be out.
    pub fn lock(&self) -> Guard<'_, T> {
        let held = self.take();
        if self.biased {
            fence_owners();
        }
        held.settle()
    }

    pub fn is_biased(&self) -> bool {
        self.biased
    }

    #[inline]
    fn take(&self) -> Held<'_, T> {
        if self.lock.swap(true, Acquire) {
            self.take_slow();
        }
        Held { lock: self }
    }

    #[cold]
    fn take_slow(&self) {
        let mut spins = 0u32;
        loop {
            while self.lock.load(Relaxed) {
                backoff(&mut spins);
            }
            if !self.lock.swap(true, Acquire) {
                return;
            }
        }
    }
}

/// `lock` taken, the owner not yet fenced nor waited for.
pub struct Held<'a, T> {
    lock: &'a OwnedLock<T>,
}

impl<'a, T> Held<'a, T> {
    /// Waits until the owner is out; only after a barrier that followed
    /// the taking of `lock` (as `lock` does).
    fn settle(self) -> Guard<'a, T> {
        let lock = self.lock;
        std::mem::forget(self);
        if lock.biased {
            let mut spins = 0u32;
            while lock.busy.load(Acquire) {
                backoff(&mut spins);
            }
        }
        Guard { lock }
    }
}

impl<T> Drop for Held<'_, T> {
    fn drop(&mut self) {
        self.lock.lock.store(false, Release);
    }
}

pub struct Guard<'a, T> {
    lock: &'a OwnedLock<T>,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds `lock` and the owner is out.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds `lock` and the owner is out.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.lock.store(false, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A counter only the lock protects, read and written in two steps with
    /// a yield between (a lost update shows as a wrong total).
    fn hammer(biased: bool) {
        let l = Arc::new(OwnedLock::new(0u64, biased));
        const OWNER: u64 = 200_000;
        const OTHER: u64 = 20_000;
        let others: Vec<_> = (0..3)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for i in 0..OTHER {
                        let mut g = l.lock();
                        let v = *g;
                        if i % 64 == 0 {
                            std::thread::yield_now();
                        }
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for _ in 0..OWNER {
            // SAFETY: this thread is the only one calling `owned`.
            let mut v = unsafe { l.owned() };
            // A read-modify-write long enough for others to land inside.
            let x = std::hint::black_box(*v);
            for _ in 0..16 {
                std::hint::spin_loop();
            }
            *v = x + 1;
        }
        for t in others {
            t.join().unwrap();
        }
        assert_eq!(*l.lock(), OWNER + 3 * OTHER);
    }

    #[test]
    fn owner_and_others_lose_no_update_unbiased() {
        hammer(false);
    }

    #[test]
    fn owner_and_others_lose_no_update_biased() {
        if !available() {
            eprintln!("membarrier unavailable here: biased mode not exercised");
            return;
        }
        hammer(true);
    }

    #[test]
    fn held_locks_keep_the_owner_out_until_released() {
        let biased = available();
        let l = Arc::new(OwnedLock::new(0u32, biased));
        let mut g = l.lock();
        let owner = {
            let l = l.clone();
            // SAFETY: the spawned thread is the only one calling `owned`.
            std::thread::spawn(move || *unsafe { l.owned() } += 1)
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        *g = 10; // the owner is waiting: its +1 comes after
        drop(g);
        owner.join().unwrap();
        assert_eq!(*l.lock(), 11);
    }
}
