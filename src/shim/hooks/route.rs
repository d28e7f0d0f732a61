//! Hands out hooks in place of the real driver functions a program asks
//! for (cuGetProcAddress, cudaGetDriverEntryPoint, dlsym on libcuda).
//!
//! The real function pointer decides which hook: the one whose real
//! function it is. Matched by address against the hooks' real slots and the
//! exported symbols of the library it comes from; failing that, by the
//! driver's documented rule for the requested name, version and flags
//! (`cuMemAlloc` at >= 3020 is `cuMemAlloc_v2`; the per-thread default
//! stream flag selects `_ptsz`). A pointer no hook can take is returned
//! untouched and noted in the report: a missed hook, never a wrong one.

use super::Hook;
use crate::shim::cuda::{loader, PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM};
use crate::shim::lifecycle;
use std::ffi::{c_void, CStr};

fn is_hook(hooks: &[Hook], p: *mut c_void) -> bool {
    hooks.iter().any(|h| std::ptr::eq(h.addr, p))
}

fn take(h: &Hook, real: *mut c_void) -> Option<*mut c_void> {
    (h.real.offer(real) == Some(real)).then_some(h.addr as *mut c_void)
}

/// The hook for a symbol a program looked up by its exact name (dlsym).
pub fn by_name(hooks: &[Hook], name: &CStr, real: *mut c_void) -> *mut c_void {
    if real.is_null() || is_hook(hooks, real) {
        return real;
    }
    let Some(h) = hooks.iter().find(|h| h.real.name == name) else {
        return real;
    };
    take(h, real).unwrap_or_else(|| {
        unrouted(name.to_string_lossy().as_ref());
        real
    })
}

/// The variant the driver hands out for a base name, per its versioning rules.
fn variant(base: &str, version: i32, flags: u64) -> String {
    match base {
        "cuMemAlloc" | "cuMemFree" | "cuMemAllocPitch" | "cuMemAllocHost" | "cuCtxCreate"
            if version >= 3020 =>
        {
            format!("{base}_v2")
        }
        "cuGetProcAddress" if version >= 12000 => "cuGetProcAddress_v2".into(),
        "cuMemAllocAsync" | "cuMemFreeAsync" | "cuMemAllocFromPoolAsync"
            if flags & PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM != 0 =>
        {
            format!("{base}_ptsz")
        }
        _ => base.into(),
    }
}

/// The hook for a driver function looked up by base name and version.
pub fn entry_point(
    hooks: &[Hook],
    base: &CStr,
    version: i32,
    flags: u64,
    real: *mut c_void,
) -> *mut c_void {
    if real.is_null() || is_hook(hooks, real) {
        return real;
    }
    let Ok(base_s) = base.to_str() else {
        return real;
    };
    let is_candidate = |h: &&Hook| {
        let n = h.real.name.to_bytes();
        n.strip_prefix(base_s.as_bytes())
            .is_some_and(|rest| matches!(rest, b"" | b"_v2" | b"_ptsz"))
    };
    let candidates: Vec<&Hook> = hooks.iter().filter(is_candidate).collect();
    if candidates.is_empty() {
        return real;
    }
    if let Some(h) = candidates.iter().find(|h| h.real.current() == real) {
        return h.addr as *mut c_void;
    }
    if let Some(lib) = library_of(real) {
        for h in &candidates {
            // SAFETY: lib is open until it drops.
            if unsafe { loader::lookup(lib.0, h.real.name) } == real {
                if let Some(hook) = take(h, real) {
                    return hook;
                }
            }
        }
    }
    let want = variant(base_s, version, flags);
    if let Some(h) = candidates
        .iter()
        .find(|h| h.real.name.to_bytes() == want.as_bytes())
    {
        if let Some(hook) = take(h, real) {
            return hook;
        }
    }
    unrouted(&format!("{base_s}@{version}/{flags}"));
    real
}

/// A dlopen handle (closed on drop) of the loaded library that contains `p`.
struct LibHandle(*mut c_void);

impl Drop for LibHandle {
    fn drop(&mut self) {
        // SAFETY: a handle from dlopen.
        unsafe { libc::dlclose(self.0) };
    }
}

fn library_of(p: *mut c_void) -> Option<LibHandle> {
    // SAFETY: Dl_info is plain data; all-zero is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: info is a valid out-parameter.
    if unsafe { libc::dladdr(p, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is NUL-terminated; NOLOAD never loads anything new.
    let path = unsafe { CStr::from_ptr(info.dli_fname) }.to_owned();
    // SAFETY: a NUL-terminated path of an object already loaded.
    let h = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
    (!h.is_null()).then_some(LibHandle(h))
}

fn unrouted(what: &str) {
    if let Some(shim) = lifecycle::peek() {
        shim.track.note_unrouted(what);
        shim.config
            .log(&format!("driver entry point {what} handed out unhooked"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_follow_the_driver_rules() {
        assert_eq!(variant("cuMemAlloc", 3020, 0), "cuMemAlloc_v2");
        assert_eq!(variant("cuMemAlloc", 2000, 0), "cuMemAlloc");
        assert_eq!(variant("cuMemAllocAsync", 11020, 2), "cuMemAllocAsync_ptsz");
        assert_eq!(variant("cuMemAllocAsync", 11020, 1), "cuMemAllocAsync");
        assert_eq!(variant("cuGetProcAddress", 12000, 0), "cuGetProcAddress_v2");
        assert_eq!(variant("cuGetProcAddress", 11030, 0), "cuGetProcAddress");
        assert_eq!(variant("cuMemCreate", 10020, 2), "cuMemCreate");
    }
}
