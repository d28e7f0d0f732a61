//! Finding functions in loaded libraries without going through the shim's
//! own `dlsym` hook: the C library's real `dlsym` comes from `dlvsym`, and
//! CUDA libraries that a `dlopen(RTLD_LOCAL)` put out of `RTLD_NEXT`'s reach
//! (Python extension modules load CUDA that way) are found by walking the
//! loaded objects.

use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicPtr, Ordering::*};

type DlsymFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;

static REAL_DLSYM: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

/// The C library's dlsym (never the hook).
pub fn dlsym_fn() -> Option<DlsymFn> {
    let mut p = REAL_DLSYM.load(Acquire);
    if p.is_null() {
        // glibc 2.34 moved dlsym into libc under a new version; older ones
        // have the architecture's base version.
        let versions: &[&CStr] = &[
            c"GLIBC_2.34",
            #[cfg(target_arch = "x86_64")]
            c"GLIBC_2.2.5",
            #[cfg(target_arch = "aarch64")]
            c"GLIBC_2.17",
        ];
        for v in versions {
            // SAFETY: constant, NUL-terminated strings.
            p = unsafe { libc::dlvsym(libc::RTLD_NEXT, c"dlsym".as_ptr(), v.as_ptr()) };
            if !p.is_null() {
                break;
            }
        }
        if p.is_null() {
            return None;
        }
        REAL_DLSYM.store(p, Release);
    }
    // SAFETY: p is the C library's dlsym, with this signature.
    Some(unsafe { std::mem::transmute::<*mut c_void, DlsymFn>(p) })
}

/// `dlsym(handle, name)` through the real dlsym.
///
/// # Safety
/// `handle` is RTLD_DEFAULT, RTLD_NEXT or a handle from dlopen not yet closed.
pub unsafe fn lookup(handle: *mut c_void, name: &CStr) -> *mut c_void {
    match dlsym_fn() {
        // SAFETY: name is NUL-terminated; the caller vouches for handle.
        Some(f) => unsafe { f(handle, name.as_ptr()) },
        None => std::ptr::null_mut(),
    }
}

/// The next definition of `name` after the shim (`RTLD_NEXT`), looked up
/// once and kept in `slot`; null when there is none. After the first call,
/// one atomic load: safe from a signal handler once resolved.
pub fn next_cached(slot: &AtomicPtr<c_void>, name: &CStr) -> *mut c_void {
    let p = slot.load(Acquire);
    if !p.is_null() {
        return p;
    }
    // SAFETY: RTLD_NEXT is always a valid handle.
    let p = unsafe { lookup(libc::RTLD_NEXT, name) };
    if !p.is_null() {
        slot.store(p, Release);
    }
    p
}

/// A function of a loaded library by name, as the function-pointer type `F`.
///
/// # Safety
/// As for [`lookup`]; and `F` is the symbol's true C signature.
pub unsafe fn function<F: Copy>(handle: *mut c_void, name: &CStr) -> Option<F> {
    const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<*mut c_void>()) };
    // SAFETY: the caller vouches for handle.
    let p = unsafe { lookup(handle, name) };
    // SAFETY: a non-null symbol address read as the caller's function type.
    (!p.is_null()).then(|| unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) })
}

/// Which library defines a hooked function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lib {
    Runtime,
    Driver,
}

impl Lib {
    /// The file name prefix of the library, as loaded by real programs.
    fn stem(self) -> &'static str {
        match self {
            Lib::Runtime => "libcudart.so",
            Lib::Driver => "libcuda.so",
        }
    }
}

/// A handle (dlopen NOLOAD: the caller closes it) to each loaded library
/// whose file name starts with the library's stem.
pub fn loaded(lib: Lib) -> Vec<*mut c_void> {
    struct Search {
        stem: &'static str,
        paths: Vec<std::ffi::CString>,
    }
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _: usize,
        data: *mut c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid info; data is our Search.
        let (info, search) = unsafe { (&*info, &mut *(data as *mut Search)) };
        if info.dlpi_name.is_null() {
            return 0;
        }
        // SAFETY: dlpi_name is NUL-terminated.
        let path = unsafe { CStr::from_ptr(info.dlpi_name) };
        let file = path
            .to_bytes()
            .rsplit(|&b| b == b'/')
            .next()
            .unwrap_or_default();
        if file.starts_with(search.stem.as_bytes()) {
            search.paths.push(path.to_owned());
        }
        0
    }
    let mut search = Search {
        stem: lib.stem(),
        paths: Vec::new(),
    };
    // SAFETY: the callback only reads what the loader hands it.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut search as *mut Search as *mut c_void) };
    search
        .paths
        .iter()
        // SAFETY: NOLOAD only returns a handle to an object already loaded.
        .map(|p| unsafe { libc::dlopen(p.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) })
        .filter(|h| !h.is_null())
        .collect()
}

/// `name` from an already-loaded CUDA library. Catches libraries that a
/// dlopen() with RTLD_LOCAL put out of RTLD_NEXT's reach (Python extension
/// modules load CUDA that way).
pub fn lookup_loaded(lib: Lib, name: &CStr) -> *mut c_void {
    let mut found: *mut c_void = std::ptr::null_mut();
    for h in loaded(lib) {
        if found.is_null() {
            // SAFETY: h is open until the dlclose below.
            found = unsafe { lookup(h, name) };
        }
        // SAFETY: h came from dlopen.
        unsafe { libc::dlclose(h) };
    }
    found
}
