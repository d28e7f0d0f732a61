//! The real functions behind the hooks. Each hook has one slot for its
//! real function, filled either by `dlsym(RTLD_NEXT, name)` on first use or
//! by the router when a driver entry point handed out through
//! cuGetProcAddress / cudaGetDriverEntryPoint / dlsym is mapped to the hook.

use crate::shim::cuda::loader::{lookup, lookup_loaded, Lib};
use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicPtr, Ordering::*};

/// The real function behind one hook.
pub struct Real {
    pub name: &'static CStr,
    pub lib: Lib,
    ptr: AtomicPtr<c_void>,
}

impl Real {
    pub const fn new(name: &'static CStr, lib: Lib) -> Real {
        Real {
            name,
            lib,
            ptr: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// The real function: the next definition after the shim in load order,
    /// or the one in a loaded CUDA library; looked up once.
    #[inline]
    pub fn get(&self) -> Option<*mut c_void> {
        let p = self.ptr.load(Acquire);
        if !p.is_null() {
            return Some(p);
        }
        self.resolve()
    }

    /// The real function when already looked up: one load, and no call
    /// on the way (a hook's pass-through keeps its arguments in place).
    #[inline(always)]
    pub fn loaded(&self) -> Option<*mut c_void> {
        let p = self.ptr.load(Acquire);
        (!p.is_null()).then_some(p)
    }

    #[cold]
    fn resolve(&self) -> Option<*mut c_void> {
        // SAFETY: RTLD_NEXT is always a valid handle.
        let mut p = unsafe { lookup(libc::RTLD_NEXT, self.name) };
        if p.is_null() {
            p = lookup_loaded(self.lib, self.name);
        }
        if p.is_null() {
            return None;
        }
        self.offer(p)
    }

    /// Takes `p` as the real function unless the slot already holds another
    /// one; returns what the slot holds.
    pub fn offer(&self, p: *mut c_void) -> Option<*mut c_void> {
        match self
            .ptr
            .compare_exchange(std::ptr::null_mut(), p, AcqRel, Acquire)
        {
            Ok(_) => Some(p),
            Err(cur) => Some(cur),
        }
    }

    pub fn current(&self) -> *mut c_void {
        self.ptr.load(Acquire)
    }
}

/// Declares a real-function slot and reads it as a typed function pointer.
macro_rules! real_fn {
    ($slot:expr, $ty:ty) => {
        real_fn!($slot, $ty, get)
    };
    ($slot:expr, $ty:ty, $how:ident) => {
        match $slot.$how() {
            // SAFETY: the slot holds the real function of this hook's signature.
            Some(p) => Some(unsafe { std::mem::transmute::<*mut std::ffi::c_void, $ty>(p) }),
            None => None,
        }
    };
}
pub(crate) use real_fn;
