//! kvscope, the reader. Compiles the shared report schema itself and never
//! links the shim library, so no hook symbol is part of this binary.

mod report;

fn main() {
    let _ = report::SCHEMA;
}
