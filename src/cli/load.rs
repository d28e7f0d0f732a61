//! Reading report files.

use super::{CliError, Result};
use crate::report::{Report, SCHEMA};
use std::path::Path;

pub fn load(path: &Path) -> Result<Report> {
    let bytes =
        std::fs::read(path).map_err(|e| CliError::input(format!("{}: {e}", path.display())))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| CliError::input(format!("{}: not JSON ({e})", path.display())))?;
    match value.get("schema").and_then(|s| s.as_str()) {
        Some(SCHEMA) => {}
        Some(other) => {
            return Err(CliError::input(format!(
                "{}: report schema '{other}' is not supported (this kvscope reads {SCHEMA})",
                path.display()
            )))
        }
        None => {
            return Err(CliError::input(format!(
                "{}: not a kvscope report (no \"schema\" field)",
                path.display()
            )))
        }
    }
    serde_json::from_value(value)
        .map_err(|e| CliError::input(format!("{}: malformed report: {e}", path.display())))
}
