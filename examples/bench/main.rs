//! kvscope's benchmarks: `cargo run --release --example bench [NAME...]`.
//!
//! Every benchmark measures its baseline in the same run, prints the median
//! of several runs, the ratio, the target and PASS or the shortfall. Nothing
//! here is asserted in a test: these are measurements. Names: preload,
//! record, scaling, memory, report, startup (default: all).

mod common;
mod preload;
mod process;
mod table;

use common::{native, RUNS};
use std::path::Path;

fn main() {
    let all = [
        "preload",
        "pluggable",
        "record",
        "scaling",
        "memory",
        "report",
        "startup",
    ];
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let wanted: Vec<&str> = if wanted.is_empty() {
        all.to_vec()
    } else {
        wanted.iter().map(String::as_str).collect()
    };
    if !Path::new(&native("bench_client")).exists() {
        eprintln!("bench_client missing: cargo build --release");
        std::process::exit(2);
    }
    println!(
        "kvscope benchmarks on {} cores; medians of {RUNS} runs unless said",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    for w in wanted {
        match w {
            "preload" => preload::preload(),
            "pluggable" => preload::pluggable(),
            "record" => table::record(),
            "scaling" => table::scaling(),
            "memory" => table::memory(),
            "report" => process::report(),
            "startup" => process::startup(),
            other => {
                eprintln!("unknown benchmark {other}; choose from {}", all.join(", "));
                std::process::exit(2);
            }
        }
    }
}
