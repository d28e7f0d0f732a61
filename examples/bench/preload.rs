//! The hooks' cost to the host: a cudaMalloc+cudaFree pair under
//! LD_PRELOAD, and the pluggable allocator's pair.

use crate::common::*;
use std::path::PathBuf;
use std::process::Command;

/// Added cost of a cudaMalloc + cudaFree pair through LD_PRELOAD, one
/// thread; and, in the same rounds, the cost of caller capture (this build
/// against the same source built with `KVSCOPE_NO_CALLER=1`, built here
/// first) and of a stack for every allocation. With
/// KVSCOPE_BENCH_BASELINE=/path/to/another/libkvscope.so, that build runs
/// too, to compare two builds of the shim.
pub fn preload() {
    // Many short rounds, each running every build once in turn: the VM's
    // speed drifts by tens of percent over minutes, so each round's
    // difference is taken (paired), and the median of those is the figure.
    const ROUNDS: usize = 11;
    let args = ["pairs", "500000", "4096", "1"];
    let stack_args = ["pairs", "50000", "4096", "1"];
    let older = std::env::var_os("KVSCOPE_BENCH_BASELINE").map(PathBuf::from);
    let no_caller = no_caller_lib();
    let (mut base, mut shim, mut old, mut plain) = (vec![], vec![], vec![], vec![]);
    let (mut stacked, mut exact) = (Vec::new(), Vec::new());
    let pair_ns =
        |lib: &PathBuf| figure(&client_with(&args, Some(lib.clone()), &[]), "ns_per_pair");
    for _ in 0..ROUNDS {
        base.push(figure(&client(&args, false, &[]), "ns_per_pair"));
        shim.push(figure(&client(&args, true, &[]), "ns_per_pair"));
        if let Some(lib) = &older {
            old.push(pair_ns(lib));
        }
        if let Some(lib) = &no_caller {
            plain.push(pair_ns(lib));
        }
        // No background thread publishes the time: every allocation and free reads the clock.
        exact.push(figure(
            &client(&args, true, &[("KVSCOPE_SAMPLE_MS", "0")]),
            "ns_per_pair",
        ));
        // Every allocation keeps a native stack: the worst case of KVSCOPE_STACK_MIN.
        stacked.push(figure(
            &client(&stack_args, true, &[("KVSCOPE_STACK_MIN", "1")]),
            "ns_per_pair",
        ));
    }
    let added = Estimate::of(&shim, &base);
    let (b, s) = (median(base.clone()), median(shim.clone()));
    println!(
        "preload   added per cudaMalloc+cudaFree pair, 1 thread: {} (medians: with shim {s:.1} ns, without {b:.1} ns, x{:.2})  target <= 40 ns by both  {}",
        added.words(ROUNDS),
        s / b,
        added.verdict(40.0)
    );
    println!(
        "preload   with a clock read on every allocation and free instead of the published time (KVSCOPE_SAMPLE_MS=0: no background thread publishes it): {:+.1} ns per pair against the default",
        Estimate::of(&exact, &shim).median
    );
    match no_caller {
        Some(_) => {
            let capture = Estimate::of(&shim, &plain);
            println!(
                "preload   of which caller capture (against the same source built with KVSCOPE_NO_CALLER=1): {}  target <= 5 ns by both  {}",
                capture.words(ROUNDS),
                capture.verdict(5.0)
            );
        }
        None => println!("preload   caller capture: not measured (the KVSCOPE_NO_CALLER=1 build failed; see above)"),
    }
    println!(
        "preload   with a stack for every allocation (KVSCOPE_STACK_MIN=1, the default keeps them for 64 MiB and up): {:+.1} ns per pair against the default",
        Estimate::of(&stacked, &shim).median
    );
    if let Some(lib) = older {
        println!(
            "preload   this build against {}: {:+.1} ns per pair (median of paired rounds; {s:.1} ns against {:.1} ns)",
            lib.display(),
            Estimate::of(&shim, &old).median,
            median(old.clone())
        );
    }
}

/// Two estimates of one added cost from paired rounds: the median of the
/// rounds' differences, and the difference of the fastest rounds. A PASS
/// needs both (a run whose baseline rounds were slowed once printed 26 ns by
/// the median against 60 by the fastest rounds).
struct Estimate {
    median: f64,
    fastest: f64,
}

impl Estimate {
    fn of(with: &[f64], without: &[f64]) -> Estimate {
        let least = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        Estimate {
            median: median(with.iter().zip(without).map(|(x, y)| x - y).collect()),
            fastest: least(with) - least(without),
        }
    }

    fn words(&self, rounds: usize) -> String {
        format!(
            "{:.1} ns by the median of {rounds} paired rounds, {:.1} ns by the fastest rounds",
            self.median, self.fastest
        )
    }

    fn verdict(&self, target: f64) -> String {
        let worse = self.median.max(self.fastest);
        verdict(worse <= target, || format!("{:.1} ns over", worse - target))
    }
}

/// The shim built from this source with `KVSCOPE_NO_CALLER=1` (plain hooks
/// that pass 0 for the caller), in its own target folder beside this one;
/// cargo rebuilds it only when the source changed.
fn no_caller_lib() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/examples/bench -> target/bench-no-caller
    let dir = exe.parent()?.parent()?.parent()?.join("bench-no-caller");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "preload   building the shim with KVSCOPE_NO_CALLER=1 into {} (the baseline of caller capture)",
        dir.display()
    );
    let built = Command::new(cargo)
        .args(["build", "--release", "--lib", "--quiet"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("KVSCOPE_NO_CALLER", "1")
        .env("CARGO_TARGET_DIR", &dir)
        .status()
        .is_ok_and(|s| s.success());
    let lib = dir.join("release/libkvscope.so");
    (built && lib.exists()).then_some(lib)
}

/// The pluggable allocator against the driver calls it makes inside
/// (stream-ordered allocation on a pool that keeps freed memory, as PyTorch's
/// cudaMallocAsync backend does), on the stand-in's pools, alternating runs:
/// the difference is what kvscope adds to every tensor allocation.
pub fn pluggable() {
    let pairs = "1000000";
    let lib = shim_lib();
    let lib = lib.to_str().unwrap_or_default();
    for threads in ["1", "2"] {
        let (mut base, mut plug) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            base.push(figure(
                &client(&["async", pairs, "4096", threads], false, &[]),
                "ns_per_pair",
            ));
            plug.push(figure(
                &client(&["async", pairs, "4096", threads, lib], false, &[]),
                "ns_per_pair",
            ));
        }
        let (b, p) = (median(base), median(plug));
        let added = p - b;
        // Two threads contend on the stand-in driver's one lock (its pools
        // are a global list): the figure shows that contention, not kvscope's.
        let target = if threads == "1" {
            format!(
                "target <= +40 ns  {}",
                verdict(added <= 40.0, || format!("{:.1} ns over", added - 40.0))
            )
        } else {
            "(no target: the stand-in's global lock dominates both)".into()
        };
        println!(
            "pluggable kvscope_malloc+kvscope_free pair, {threads} thread(s): {p:.1} ns/pair/thread vs cuMemAllocFromPoolAsync+cuMemFreeAsync {b:.1} ns (x{:.2}, {added:+.1} ns)  {target}",
            p / b
        );
    }
}
