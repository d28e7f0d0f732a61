//! The KV model against figures derived by hand (the arithmetic is in the
//! comments), and against the published parameter counts of the shared models.
//! One file per part of the model; the helpers in `support`.

mod attention;
mod budget;
mod corpus;
mod layer_plans;
mod names;
mod support;
mod weights;
mod probe;
