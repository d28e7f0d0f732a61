//! Callers: raw return addresses, as the hooks kept them, resolved to the
//! file (and symbol) they lie in. Off the hot path: the background thread
//! resolves the callers of new events at each sample (a library can be
//! unloaded later, and its addresses with it), a report those still unknown.
//! Each address is resolved once and cached for the life of the process.

use crate::report::CallSite;
use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::{Mutex, OnceLock};

fn cache() -> &'static Mutex<HashMap<u64, CallSite>> {
    static CACHE: OnceLock<Mutex<HashMap<u64, CallSite>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// What the dynamic loader knows of `address`.
fn resolve(address: u64) -> CallSite {
    // SAFETY: Dl_info is plain data (pointers), valid all zero.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables and fills `info`, or
    // returns 0. Asked for the byte before the return address: the call
    // instruction itself, in the calling function even when the call ends it.
    let found =
        unsafe { libc::dladdr(address.wrapping_sub(1) as *const libc::c_void, &mut info) } != 0;
    let text = |p: *const libc::c_char| {
        // SAFETY: dladdr's strings are NUL-terminated and live while the object is loaded.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    if !found {
        return CallSite {
            address,
            file: "?".into(),
            symbol: None,
            offset: 0,
        };
    }
    CallSite {
        address,
        file: text(info.dli_fname)
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| "?".into()),
        symbol: text(info.dli_sname),
        offset: address.wrapping_sub(info.dli_fbase as u64),
    }
}

/// Resolves the addresses not seen before (0, unknown, is skipped).
pub fn note(addresses: impl IntoIterator<Item = u64>) {
    let Ok(mut c) = cache().lock() else {
        return;
    };
    for a in addresses {
        if a != 0 && !c.contains_key(&a) {
            c.insert(a, resolve(a));
        }
    }
}

/// The file of `address`, resolved through the cache.
fn file_of(address: u64) -> String {
    match cache().lock() {
        Ok(mut c) => c
            .entry(address)
            .or_insert_with(|| resolve(address))
            .file
            .clone(),
        Err(_) => resolve(address).file,
    }
}

/// The shim's own file (libkvscope.so, wherever it was loaded from).
pub fn own_file() -> String {
    resolve(own_file as *const () as usize as u64 + 1).file
}

/// The frames of a stack that are not the shim's own, as indexes of `ix`.
pub fn foreign_frames(ix: &mut Index, frames: &[u64], own: &str) -> Vec<u32> {
    frames
        .iter()
        .filter(|&&a| a != 0 && file_of(a) != own)
        .filter_map(|&a| ix.of(a))
        .collect()
}

/// The call sites of a report, in order of first use, and each address's index.
#[derive(Default)]
pub struct Index {
    pub sites: Vec<CallSite>,
    at: HashMap<u64, u32>,
}

impl Index {
    /// The index of `address` (None for 0: no caller captured).
    pub fn of(&mut self, address: u64) -> Option<u32> {
        if address == 0 {
            return None;
        }
        if let Some(&i) = self.at.get(&address) {
            return Some(i);
        }
        let site = match cache().lock() {
            Ok(mut c) => c.entry(address).or_insert_with(|| resolve(address)).clone(),
            Err(_) => resolve(address),
        };
        let i = self.sites.len() as u32;
        self.sites.push(site);
        self.at.insert(address, i);
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn here() -> u64 {
        here as *const () as usize as u64 + 1
    }

    #[test]
    fn resolves_an_address_to_its_file_once() {
        let a = here();
        let mut ix = Index::default();
        assert_eq!(ix.of(0), None);
        assert_eq!(ix.of(a), Some(0));
        assert_eq!(ix.of(a), Some(0));
        assert_eq!(ix.sites.len(), 1);
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_str().unwrap();
        assert!(ix.sites[0].file.ends_with(name), "{:?}", ix.sites[0]);
        // The C library's malloc lies in libc.
        ix.of(libc::malloc as *const () as usize as u64 + 1);
        assert!(
            ix.sites[1].file_name().starts_with("libc"),
            "{:?}",
            ix.sites[1]
        );
        assert_eq!(ix.sites[1].symbol.as_deref(), Some("malloc"));
    }
}
