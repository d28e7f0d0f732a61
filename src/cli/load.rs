//! Reading report files: straight into the typed report (a million live
//! allocations stay within a second and well under a GiB), with a clear
//! word when the file is something else.

use super::{CliError, Result};
use crate::report::{Report, SCHEMA};
use serde::Deserialize;
use std::path::Path;

/// Just the schema field, for telling what a file is when it does not parse.
#[derive(Deserialize)]
struct Head {
    schema: Option<String>,
}

pub fn load(path: &Path) -> Result<Report> {
    let bytes =
        std::fs::read(path).map_err(|e| CliError::input(format!("{}: {e}", path.display())))?;
    let bad = |what: String| CliError::input(format!("{}: {what}", path.display()));
    match serde_json::from_slice::<Report>(&bytes) {
        Ok(r) if r.schema == SCHEMA => Ok(r),
        Ok(r) if r.schema.is_empty() => {
            Err(bad("not a kvscope report (no \"schema\" field)".into()))
        }
        Ok(r) => Err(bad(format!(
            "report schema '{}' is not supported (this kvscope reads {SCHEMA})",
            r.schema
        ))),
        Err(e) => match serde_json::from_slice::<Head>(&bytes) {
            Err(_) => Err(bad(format!("not JSON ({e})"))),
            Ok(Head { schema: Some(s) }) if s != SCHEMA => Err(bad(format!(
                "report schema '{s}' is not supported (this kvscope reads {SCHEMA})"
            ))),
            Ok(Head { schema: None }) => {
                Err(bad("not a kvscope report (no \"schema\" field)".into()))
            }
            Ok(_) => Err(bad(format!("malformed report: {e}"))),
        },
    }
}
