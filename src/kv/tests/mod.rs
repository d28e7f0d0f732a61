//! The KV model against figures derived by hand (the arithmetic is in the
//! comments), and against the published parameter counts of the shared models.
//! One file per part of the model; the helpers in `support`.

/// A config of `configs/` as (file name, text).
macro_rules! config {
    ($file:literal) => {
        ($file, include_str!(concat!("configs/", $file)))
    };
}

/// A corpus case (see `support::Case`).
macro_rules! case {
    ($file:literal, $kv:expr, $published:expr, $tolerance:expr) => {
        Case {
            file: $file,
            text: include_str!(concat!("configs/", $file)),
            kv: $kv,
            published: $published,
            tolerance: $tolerance,
        }
    };
}

mod attention;
mod budget;
mod corpus;
mod corpus_dense;
mod corpus_llama4;
mod corpus_moe;
mod layer_plans;
mod names;
mod support;
mod weights;
