//! Fuzzing the reader's parsers and everything behind them: mutated reports
//! through parse, summary, check (with a model) and the HTML page; mutated
//! config.json files through the KV model and fit. A case fails on a panic
//! (an overflow included: tests build with overflow checks).
//!
//! The seeds are tests/corpus/{reports,configs}. Cases per target:
//! KVSCOPE_FUZZ_CASES (default 300, the CI smoke run); the long run:
//! `KVSCOPE_FUZZ_CASES=1000000 cargo test --release --bin kvscope fuzz`.

use crate::check::{context::ModelCtx, context::Thresholds, job, kind::Severity};
use crate::kv::{fit, model, source};
use crate::load;
use crate::render::{html, summary};
use proptest::prelude::*;
use serde_json::{Number, Value};
use std::path::PathBuf;

fn cases() -> u32 {
    std::env::var("KVSCOPE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

fn corpus(kind: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// One change to a JSON document, or to its bytes.
#[derive(Clone, Debug)]
enum Mutation {
    /// Replace the `pick`-th value (depth-first) with `to`.
    Replace { pick: usize, to: Leaf },
    /// Remove the `pick`-th object member or array element.
    Remove { pick: usize },
    /// Duplicate the `pick`-th array element (longer arrays).
    Grow { pick: usize, times: u8 },
    /// Cut the serialized document at a fraction of its length.
    Truncate { at: u16 },
    /// Overwrite one byte of the serialized document.
    Byte { at: u16, to: u8 },
}

#[derive(Clone, Debug)]
enum Leaf {
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    EmptyArray,
    EmptyObject,
}

fn leaf() -> impl Strategy<Value = Leaf> {
    prop_oneof![
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(i64::MIN),
            Just(i64::MAX),
            any::<i64>()
        ]
        .prop_map(Leaf::Int),
        prop_oneof![
            Just(u64::MAX),
            Just(u64::MAX - 1),
            Just(1u64 << 63),
            any::<u64>()
        ]
        .prop_map(Leaf::Uint),
        prop_oneof![
            Just(f64::MAX),
            Just(-f64::MAX),
            Just(1e-300),
            Just(0.5),
            Just(-0.0),
            any::<f64>().prop_filter("finite", |f| f.is_finite())
        ]
        .prop_map(Leaf::Float),
        prop_oneof![
            Just(String::new()),
            Just("kvscope.report.v1".to_string()),
            Just("request 1 start tokens=18446744073709551615".to_string()),
            Just("request 1 done".to_string()),
            Just("serve".to_string()),
            Just("cudaMalloc".to_string()),
            Just("nope".to_string()),
            "\\PC{0,40}"
        ]
        .prop_map(Leaf::Str),
        any::<bool>().prop_map(Leaf::Bool),
        Just(Leaf::Null),
        Just(Leaf::EmptyArray),
        Just(Leaf::EmptyObject),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => (any::<usize>(), leaf()).prop_map(|(pick, to)| Mutation::Replace { pick, to }),
        2 => any::<usize>().prop_map(|pick| Mutation::Remove { pick }),
        1 => (any::<usize>(), 1u8..50).prop_map(|(pick, times)| Mutation::Grow { pick, times }),
        1 => any::<u16>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<u16>(), any::<u8>()).prop_map(|(at, to)| Mutation::Byte { at, to }),
    ]
}

fn leaf_value(l: &Leaf) -> Value {
    match l {
        Leaf::Int(i) => Value::from(*i),
        Leaf::Uint(u) => Value::from(*u),
        Leaf::Float(f) => Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Leaf::Str(s) => Value::from(s.as_str()),
        Leaf::Bool(b) => Value::from(*b),
        Leaf::Null => Value::Null,
        Leaf::EmptyArray => Value::Array(vec![]),
        Leaf::EmptyObject => Value::Object(Default::default()),
    }
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

/// The `n`-th value depth-first (0 is the root).
fn nth(v: &mut Value, n: &mut usize) -> Option<*mut Value> {
    if *n == 0 {
        return Some(v as *mut Value);
    }
    *n -= 1;
    match v {
        Value::Array(a) => a.iter_mut().find_map(|c| nth(c, n)),
        Value::Object(o) => o.values_mut().find_map(|c| nth(c, n)),
        _ => None,
    }
}

fn mutate(seed: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(seed).unwrap();
    let mut bytes_muts = Vec::new();
    for m in muts {
        let total = count(&doc);
        let at = |pick: usize| pick % total;
        match m {
            Mutation::Replace { pick, to } => {
                let mut n = at(*pick);
                if let Some(p) = nth(&mut doc, &mut n) {
                    // SAFETY: p points into `doc`, borrowed by nothing else.
                    unsafe { *p = leaf_value(to) };
                }
            }
            Mutation::Remove { pick } | Mutation::Grow { pick, .. } => {
                let mut n = at(*pick);
                let Some(p) = nth(&mut doc, &mut n) else {
                    continue;
                };
                // SAFETY: as above.
                let target = unsafe { &mut *p };
                match (target, m) {
                    (Value::Array(a), Mutation::Remove { pick }) if !a.is_empty() => {
                        a.remove(pick % a.len());
                    }
                    (Value::Object(o), Mutation::Remove { pick }) if !o.is_empty() => {
                        let k = o.keys().nth(pick % o.len()).cloned().unwrap_or_default();
                        o.remove(&k);
                    }
                    (Value::Array(a), Mutation::Grow { times, .. }) if !a.is_empty() => {
                        let first = a[0].clone();
                        a.extend(std::iter::repeat_n(first, *times as usize));
                    }
                    _ => {}
                }
            }
            Mutation::Truncate { .. } | Mutation::Byte { .. } => bytes_muts.push(m.clone()),
        }
    }
    let mut bytes = serde_json::to_vec(&doc).unwrap();
    for m in bytes_muts {
        match m {
            Mutation::Truncate { at } => {
                let cut = bytes.len() * at as usize / (u16::MAX as usize + 1);
                bytes.truncate(cut);
            }
            Mutation::Byte { at, to } if !bytes.is_empty() => {
                let i = at as usize % bytes.len();
                bytes[i] = to;
            }
            _ => {}
        }
    }
    bytes
}

fn model_ctx() -> ModelCtx {
    let m = source::preset("llama-3.1-8b").unwrap();
    ModelCtx::new(
        m,
        fit::FitInput {
            context: 4096,
            concurrency: 4,
            ..fit::FitInput::default()
        },
    )
}

/// Everything the reader does with a report.
fn read_report(bytes: &[u8], ctx: &ModelCtx) {
    let Ok(r) = load::parse(bytes) else { return };
    let _ = summary::render(&r, 10);
    let with = job::check(
        vec![("a".into(), r.clone())],
        Some(ctx),
        Thresholds::default(),
        Severity::Critical,
    );
    let _ = html::render(&r, &with);
    let two = job::check(
        vec![("a".into(), r.clone()), ("b".into(), r)],
        None,
        Thresholds::default(),
        Severity::Info,
    );
    let _ = two;
}

/// Everything the reader does with a config.json.
fn read_config(bytes: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let Ok(m) = model::from_config("fuzz", &v, None) else {
        return;
    };
    for (tp, pp, context, concurrency) in [
        (1, 1, 4096, 8),
        (2, 1, 1, 1),
        (8, 2, 131_072, 64),
        (3, 1, u64::MAX, u64::MAX),
    ] {
        let _ = fit::fit(
            &m,
            &fit::FitInput {
                context,
                concurrency,
                par: crate::kv::cache::Parallel { tp, pp },
                ..fit::FitInput::default()
            },
        );
    }
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(cases()))]

    #[test]
    fn fuzz_reports(seed in 0usize..64, muts in prop::collection::vec(mutation(), 1..6)) {
        let seeds = corpus("reports");
        let ctx = model_ctx();
        read_report(&mutate(&seeds[seed % seeds.len()], &muts), &ctx);
    }

    #[test]
    fn fuzz_configs(seed in 0usize..64, muts in prop::collection::vec(mutation(), 1..6)) {
        let seeds = corpus("configs");
        read_config(&mutate(&seeds[seed % seeds.len()], &muts));
    }
}

#[test]
fn the_corpus_reads_cleanly() {
    let ctx = model_ctx();
    for seed in corpus("reports") {
        assert!(load::parse(&seed).is_ok());
        read_report(&seed, &ctx);
    }
    for seed in corpus("configs") {
        let v: Value = serde_json::from_slice(&seed).unwrap();
        assert!(model::from_config("seed", &v, None).is_ok());
    }
}
