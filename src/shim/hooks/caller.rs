//! The caller of a hook: its return address, read from the hook's own frame.
//!
//! Rust has no stable return-address intrinsic, so the crate is built with
//! frame pointers (`-C force-frame-pointers=yes` in `.cargo/config.toml`):
//! then every hook's prologue pushes the frame pointer right below the
//! return address, and reading the caller is one load, `[rbp + 8]`, valid
//! whatever the caller was built with (CUDA libraries and PyTorch keep no
//! frame pointers; that only matters to the unwinder of deeper stacks). Built
//! without the flag (`build.rs` checks), `rbp` may be anything: no caller.
//!
//! Kept raw on the hot path; `output/callers.rs` resolves it to a file and
//! a symbol off it.

/// The return address of the hook this expands in (0 when unknown). Must
/// expand in the exported hook itself, never in a function it calls.
macro_rules! return_address {
    () => {{
        #[cfg(all(kvscope_frame_pointers, target_arch = "x86_64"))]
        let ra: u64 = {
            let ra: u64;
            // SAFETY: with frame pointers, rbp holds this function's frame:
            // the saved rbp, and above it the return address. A read of the
            // own stack frame.
            unsafe {
                core::arch::asm!(
                    "mov {ra}, qword ptr [rbp + 8]",
                    ra = out(reg) ra,
                    options(nostack, readonly, preserves_flags)
                )
            };
            ra
        };
        #[cfg(all(kvscope_frame_pointers, target_arch = "aarch64"))]
        let ra: u64 = {
            let ra: u64;
            // SAFETY: with frame pointers, x29 holds this function's frame
            // record: the saved x29, then the return address.
            unsafe {
                core::arch::asm!(
                    "ldr {ra}, [x29, #8]",
                    ra = out(reg) ra,
                    options(nostack, readonly, preserves_flags)
                )
            };
            ra
        };
        #[cfg(not(all(
            kvscope_frame_pointers,
            any(target_arch = "x86_64", target_arch = "aarch64")
        )))]
        let ra: u64 = 0;
        ra
    }};
}

pub(crate) use return_address;
