//! The machine form of a check result: one JSON object, `kvscope.check.v1`.

use crate::check::result::CheckResult;

pub fn render(r: &CheckResult) -> Result<String, String> {
    serde_json::to_string_pretty(r).map_err(|e| e.to_string())
}
