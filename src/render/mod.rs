//! The reader's last stage (load -> check -> render): the forms people and
//! machines read. `text`, `json` and `html` render one `CheckResult`;
//! `summary` renders a report on its own.

pub mod finding;
mod growth;
pub mod html;
pub mod json;
pub mod plan;
pub mod summary;
pub mod text;
mod words;
