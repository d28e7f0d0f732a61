//! The caller of a hook: its return address, handed over by a trampoline.
//!
//! Rust has no stable return-address intrinsic, and CUDA libraries and
//! PyTorch keep no frame pointers. So an exported hook that records a caller
//! is a two-instruction naked trampoline (`with_caller!`): it copies the
//! return address (x86_64: the word at `rsp`; aarch64: `x30`) into the
//! argument register after the hook's own arguments, and jumps to the hook's
//! body, an `extern "C"` function with one more parameter, `caller`. The
//! jump leaves the stack as the caller made it: stack-passed arguments stay
//! where the body expects them, and the body returns straight to the caller.
//! That is the whole cost of caller capture (no frame pointer anywhere), and
//! it is valid whatever the caller was built with.
//!
//! Built with `KVSCOPE_NO_CALLER=1` in the environment (`build.rs`), the
//! hooks are plain functions that pass 0: the baseline that the benchmark
//! measures capture against. Other architectures also pass 0.
//!
//! Kept raw on the hot path; `output/callers.rs` resolves it to a file and
//! a symbol off it.

use crate::shim::cuda::Extent;

/// How many argument registers of the C calling convention an argument of
/// this type takes (0: passed on the stack), so that the trampoline knows
/// the register after the arguments'.
pub trait Regs {
    const N: usize;
}

impl<T> Regs for *mut T {
    const N: usize = 1;
}
impl<T> Regs for *const T {
    const N: usize = 1;
}
macro_rules! one_register {
    ($($t:ty),*) => { $(impl Regs for $t { const N: usize = 1; })* };
}
one_register!(usize, isize, u64, i64, u32, i32);

/// 24 bytes by value: SysV x86_64 passes it in memory (no register), AAPCS64
/// copies it and passes a pointer (one register).
impl Regs for Extent {
    const N: usize = if cfg!(target_arch = "x86_64") { 0 } else { 1 };
}

/// Argument registers: rdi, rsi, rdx, rcx, r8, r9; x0 to x7.
const ARGUMENT_REGISTERS: usize = if cfg!(target_arch = "x86_64") { 6 } else { 8 };

/// The index of the register the caller goes in, given the registers the
/// arguments take; a hook whose caller would not fit in a register does not
/// compile.
pub const fn register_after(taken: usize) -> usize {
    assert!(
        taken < ARGUMENT_REGISTERS,
        "no argument register left for the caller"
    );
    taken
}

/// Exports `$sym` with the C signature given, as a trampoline into
/// `$body`, which takes the same arguments and then `caller: u64`.
macro_rules! with_caller {
    ($(#[$m:meta])* $sym:ident ($($arg:ident : $ty:ty),*) -> $ret:ty => $body:path) => {
        $(#[$m])*
        #[cfg(all(target_arch = "x86_64", not(kvscope_no_caller)))]
        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $sym($($arg: $ty),*) -> $ret {
            core::arch::naked_asm!(
                ".if {n} == 0",
                "mov rdi, qword ptr [rsp]",
                ".elseif {n} == 1",
                "mov rsi, qword ptr [rsp]",
                ".elseif {n} == 2",
                "mov rdx, qword ptr [rsp]",
                ".elseif {n} == 3",
                "mov rcx, qword ptr [rsp]",
                ".elseif {n} == 4",
                "mov r8, qword ptr [rsp]",
                ".else",
                "mov r9, qword ptr [rsp]",
                ".endif",
                "jmp {body}",
                n = const $crate::shim::hooks::caller::register_after(
                    0 $(+ <$ty as $crate::shim::hooks::caller::Regs>::N)*
                ),
                body = sym $body,
            )
        }

        $(#[$m])*
        #[cfg(all(target_arch = "aarch64", not(kvscope_no_caller)))]
        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $sym($($arg: $ty),*) -> $ret {
            core::arch::naked_asm!(
                "mov x{n}, x30",
                "b {body}",
                n = const $crate::shim::hooks::caller::register_after(
                    0 $(+ <$ty as $crate::shim::hooks::caller::Regs>::N)*
                ),
                body = sym $body,
            )
        }

        $(#[$m])*
        #[cfg(any(
            kvscope_no_caller,
            not(any(target_arch = "x86_64", target_arch = "aarch64"))
        ))]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $sym($($arg: $ty),*) -> $ret {
            // SAFETY: the caller's arguments, passed through.
            unsafe { $body($($arg,)* 0) }
        }
    };
}

pub(crate) use with_caller;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    #[inline(never)]
    unsafe extern "C" fn seen(a: u64, b: *mut u8, extent: Extent, c: u32, caller: u64) -> u64 {
        // The arguments arrive untouched, the struct included.
        assert_eq!((a, b as usize, c), (7, 8, 9));
        assert_eq!((extent.width, extent.height, extent.depth), (1, 2, 3));
        caller
    }

    with_caller!(kvscope_test_trampoline(a: u64, b: *mut u8, extent: Extent, c: u32) -> u64 => seen);

    #[inline(never)]
    fn call_it() -> (u64, usize) {
        let extent = Extent {
            width: 1,
            height: 2,
            depth: 3,
        };
        let f: unsafe extern "C" fn(u64, *mut u8, Extent, u32) -> u64 =
            black_box(kvscope_test_trampoline);
        // SAFETY: the trampoline's own signature.
        let caller = unsafe { f(7, 8 as *mut u8, extent, 9) };
        (caller, call_it as *const () as usize)
    }

    /// The body gets the arguments untouched and, after them, the return
    /// address of the call: inside the calling function.
    #[test]
    fn the_body_gets_the_arguments_and_the_return_address() {
        let (caller, function) = call_it();
        if cfg!(any(
            kvscope_no_caller,
            not(any(target_arch = "x86_64", target_arch = "aarch64"))
        )) {
            assert_eq!(caller, 0);
            return;
        }
        let caller = caller as usize;
        assert!(
            caller > function && caller < function + 4096,
            "{caller:#x} is not inside call_it at {function:#x}"
        );
    }
}
