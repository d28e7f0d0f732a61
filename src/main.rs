//! kvscope, the reader. Compiles the shared report schema itself and never
//! links the shim library, so no hook symbol is part of this binary.

// Every unsafe block says why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

mod check;
mod cli;
mod device;
mod engine;
mod kv;
mod load;
mod render;
// Shared with the shim (src/lib.rs), which uses the parts the reader does not.
#[allow(dead_code)]
mod report;
mod units;

#[cfg(test)]
mod fuzz;

fn main() {
    // Output piped into `head` that stops reading ends the program quietly,
    // as it ends `cat` (Rust ignores SIGPIPE, and printing then panics).
    // SAFETY: restoring a default disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    std::process::exit(cli::main());
}
