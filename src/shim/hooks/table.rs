//! The hooks, generated from the table of hooked functions in
//! `report/hooked.rs`: for every `recorded` and `observed` row, the slot of
//! its real function (`slot::<symbol>`) and the exported hook; then the
//! routing rows (`HOOKS`) and the list of exported symbols (`EXPORTS`).
#![allow(clippy::missing_safety_doc)]
// The safety contract of every hook is CUDA's: the caller passes what the
// real function expects, and gets its behaviour.

use super::real::{real_fn, Real};
use super::{call, out, outermost, pool_device, Hook};
use crate::report::Api;
use crate::shim::cuda::loader::Lib;
use crate::shim::cuda::{Extent, PitchedPtr, ERROR_SYMBOL_NOT_FOUND};
use crate::shim::track::table::Entry;
use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void};

type Stream = *mut c_void;
type Pool = *mut c_void;
type Ctx = *mut c_void;

/// The real function of `$sym` with its C signature; without one, the hook
/// returns what CUDA returns for a missing symbol.
macro_rules! real_or_return {
    ($sym:ident, $($ty:ty),*) => {
        match real_fn!(slot::$sym, unsafe extern "C" fn($($ty),*) -> i32) {
            Some(f) => f,
            None => return ERROR_SYMBOL_NOT_FOUND,
        }
    };
}

/// The exported hook of an allocation or a free, in a module of the
/// symbol's name: a trampoline that hands the caller over (`caller.rs`), and
/// `entered`, which is thin: it finds the real function and the thread's
/// state; a call reached from inside another hook (the runtime's own driver
/// calls) records nothing and jumps straight to the real function (a tail
/// call, no `Call`). Only the outermost call goes on to `recorded`, kept out
/// of line so that the pass-through path does not pay for its frame;
/// `recorded` runs `$body` with the outermost `Call` named `$call` and the
/// real function named `$real`.
macro_rules! thin_hook {
    ($variant:ident $sym:ident ($($arg:ident : $ty:ty),*) |$call:ident, $real:ident| $body:block) => {
        #[allow(non_snake_case)]
        pub mod $sym {
            use super::*;

            crate::shim::hooks::caller::with_caller!($sym($($arg: $ty),*) -> i32 => entered);

            unsafe extern "C" fn entered($($arg: $ty,)* caller: u64) -> i32 {
                let Some(real) = real_fn!(slot::$sym, unsafe extern "C" fn($($ty),*) -> i32, loaded) else {
                    // SAFETY: the caller's arguments, passed through untouched.
                    return unsafe { first($($arg,)* caller) };
                };
                let t = crate::shim::track::tls::get();
                if t.depth.get() != 0 {
                    // SAFETY: the caller's arguments, passed through untouched.
                    return unsafe { real($($arg),*) };
                }
                // SAFETY: the caller's arguments, passed through untouched
                // (and in the registers they came in: the same order).
                unsafe { recorded($($arg,)* caller, real, t) }
            }

            /// Before the real function is known: looks it up, then goes
            /// on as any call. Out of line, and every call in `entered` is a
            /// tail call, so `entered` saves nothing.
            #[cold]
            #[inline(never)]
            unsafe extern "C" fn first($($arg: $ty,)* caller: u64) -> i32 {
                if slot::$sym.get().is_none() {
                    return ERROR_SYMBOL_NOT_FOUND;
                }
                // SAFETY: the caller's arguments, passed through untouched.
                unsafe { entered($($arg,)* caller) }
            }

            #[allow(unused_unsafe)] // most sizes read no out-pointer
            #[allow(clippy::too_many_arguments)] // the hook's, and three more
            #[inline(never)]
            unsafe extern "C" fn recorded(
                $($arg: $ty,)*
                caller: u64,
                $real: unsafe extern "C" fn($($ty),*) -> i32,
                t: &'static crate::shim::track::tls::Tls,
            ) -> i32 {
                let $call = outermost(Api::$variant, t, caller);
                $body
            }
        }
        pub use $sym::$sym;
    };
}

/// The exported hook of one row.
macro_rules! hook {
    // An allocation whose address the real call writes through `out`.
    // `size` and `stream` are evaluated after a successful call; `device`
    // maps the thread's current device to the allocation's.
    (alloc $variant:ident $sym:ident ($($arg:ident : $ty:ty),*)
        (out = $out:expr, size = $size:expr, device = $device:expr, stream = $stream:expr)) => {
        thin_hook!($variant $sym ($($arg: $ty),*) |call, real| {
            // SAFETY: the caller's arguments, passed through untouched.
            let rc = unsafe { real($($arg),*) };
            call.allocated(
                rc,
                // SAFETY: after a successful call the out-pointer holds the address.
                || unsafe { out($out) } as u64,
                // SAFETY: evaluated after a successful call, which filled the
                // out-pointers the size is read from (the pitch).
                || unsafe { $size } as u64,
                $device,
                $stream as u64,
            );
            rc
        });
    };
    // A free: the address is an argument, taken out of the table before the
    // real free (the address can be reused at once).
    (free $variant:ident $sym:ident ($($arg:ident : $ty:ty),*) (address = $addr:expr)) => {
        thin_hook!($variant $sym ($($arg: $ty),*) |call, real| {
            let address = $addr as u64;
            let mut taken = Entry::default();
            let removed = call.free_begin(address, &mut taken).then_some(&taken);
            // SAFETY: the caller's arguments, passed through untouched.
            let rc = unsafe { real($($arg),*) };
            call.free_end(address, removed, rc);
            rc
        });
    };
    // A recorded call with a handler: `hooks::$module::$sym(call, real, args)`.
    (custom $variant:ident $sym:ident ($($arg:ident : $ty:ty),*) ($module:ident)) => {
        #[allow(non_snake_case)]
        pub mod $sym {
            use super::*;

            crate::shim::hooks::caller::with_caller!($sym($($arg: $ty),*) -> i32 => entered);

            unsafe extern "C" fn entered($($arg: $ty,)* caller: u64) -> i32 {
                let real = real_or_return!($sym, $($ty),*);
                let call = call(Api::$variant, caller);
                // SAFETY: the caller's arguments, passed through untouched.
                let real = || unsafe { real($($arg),*) };
                // SAFETY: the handler reads the arguments as the real function would.
                unsafe { crate::shim::hooks::$module::$sym(call, real, $($arg),*) }
            }
        }
        pub use $sym::$sym;
    };
    // How driver functions are handed out: the handler routes them through
    // the rows of this table.
    (observed $sym:ident ($($arg:ident : $ty:ty),*) (entry)) => {
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $sym($($arg: $ty),*) -> i32 {
            let real = real_or_return!($sym, $($ty),*);
            // SAFETY: the caller's arguments, passed through untouched.
            let real = || unsafe { real($($arg),*) };
            // SAFETY: the handler reads the arguments as the real function would.
            unsafe { super::entry::$sym(HOOKS, real, $($arg),*) }
        }
    };
    // A call that records no memory: `hooks::$module::$sym(real, args)`.
    (observed $sym:ident ($($arg:ident : $ty:ty),*) ($module:ident)) => {
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $sym($($arg: $ty),*) -> i32 {
            let real = real_or_return!($sym, $($ty),*);
            // SAFETY: the caller's arguments, passed through untouched.
            let real = || unsafe { real($($arg),*) };
            // SAFETY: the handler reads the arguments as the real function would.
            unsafe { super::$module::$sym(real, $($arg),*) }
        }
    };
}

macro_rules! define_hooks {
    (
        recorded { $($variant:ident : $sym:ident ($($arg:ident : $ty:ty),*) $lib:ident $space:ident [$($flag:ident)*] => $how:ident $params:tt;)* }
        own { $($own:ident : $own_sym:ident $own_space:ident [$($own_flag:ident)*] => $own_mod:ident;)* }
        observed { $($obs:ident ($($oarg:ident : $oty:ty),*) $olib:ident => $omod:ident;)* }
        exported { $($exp:ident => $emod:ident;)* }
    ) => {
        /// The real function behind each hook, named by its symbol.
        #[allow(non_upper_case_globals)]
        pub mod slot {
            use super::{Lib, Real};
            $(pub static $sym: Real = Real::new(real_name!($sym), Lib::$lib);)*
            $(pub static $obs: Real = Real::new(real_name!($obs), Lib::$olib);)*
        }

        $(hook!($how $variant $sym ($($arg: $ty),*) $params);)*
        $(hook!(observed $obs ($($oarg: $oty),*) ($omod));)*

        /// Every hook the router may hand out in place of a real function.
        pub static HOOKS: &[Hook] = &[
            $(Hook { real: &slot::$sym, addr: $sym as *const c_void },)*
            $(Hook { real: &slot::$obs, addr: $obs as *const c_void },)*
        ];

        /// Every symbol libkvscope.so exports (the `dlsym` hook is below).
        pub const EXPORTS: &[&str] = &[
            $(stringify!($sym),)* $(stringify!($own_sym),)* $(stringify!($obs),)* $(stringify!($exp),)*
        ];
    };
}

/// A `&'static CStr` from an identifier, at compile time.
macro_rules! real_name {
    ($name:ident) => {
        match std::ffi::CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()) {
            Ok(c) => c,
            Err(_) => panic!("bad symbol name"),
        }
    };
}

crate::report::hooked::hooked_functions!(define_hooks);

/// dlsym for every handle but RTLD_NEXT: the real lookup, then the hook for
/// a hooked CUDA name.
extern "C" fn dlsym_routed(handle: *mut c_void, symbol: *const c_char) -> *mut c_void {
    // SAFETY: the caller's arguments, as dlsym takes them.
    unsafe { super::entry::dlsym_routed(HOOKS, handle, symbol) }
}

/// dlsym. RTLD_NEXT lookups are resolved relative to the caller's object,
/// which the real dlsym finds from its return address: so for them this is
/// a bare tail jump into the real dlsym, leaving the caller's return address
/// in place. Everything else goes through `dlsym_routed`. (Here rather than
/// in `entry` because it needs the routing rows of this table.)
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void {
    core::arch::naked_asm!(
        "cmp rdi, -1",
        "je 2f",
        "jmp {routed}",
        "2:",
        "push rdi",
        "push rsi",
        "sub rsp, 8",
        "call {real}",
        "add rsp, 8",
        "pop rsi",
        "pop rdi",
        "test rax, rax",
        "jz 3f",
        "jmp rax",
        "3:",
        "ret",
        routed = sym dlsym_routed,
        real = sym super::entry::real_dlsym_address,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every recorded entry point can be handed out by the router in place
    /// of its real function (cuGetProcAddress, dlsym): a missing row would
    /// leave it unrouted, silently.
    #[test]
    fn every_api_has_a_routed_exported_hook() {
        for api in Api::ALL {
            assert!(
                EXPORTS.contains(&api.name()),
                "{} is not exported",
                api.name()
            );
            let routed = HOOKS
                .iter()
                .find(|h| h.real.name.to_str() == Ok(api.name()));
            assert_eq!(routed.is_some(), !api.pluggable(), "{} routing", api.name());
        }
    }

    #[test]
    fn routing_rows_are_distinct_hooks() {
        for (i, a) in HOOKS.iter().enumerate() {
            assert!(!a.addr.is_null());
            for b in &HOOKS[i + 1..] {
                assert_ne!(a.real.name, b.real.name);
                assert!(!std::ptr::eq(a.addr, b.addr), "{:?}", a.real.name);
            }
        }
    }
}
