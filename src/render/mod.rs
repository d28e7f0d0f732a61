//! The reader's last stage (load -> check -> render): the forms people and
//! machines read. `text`, `json` and `html` render one `CheckResult`;
//! `summary` renders a report on its own; `memory_viz` writes one as
//! PyTorch's memory snapshot (a `pickle`).

pub mod finding;
mod growth;
pub mod html;
pub mod json;
pub mod memory_viz;
mod pickle;
pub mod plan;
pub mod stacks;
pub mod summary;
pub mod text;
pub mod who;
mod words;
