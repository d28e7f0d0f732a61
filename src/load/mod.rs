//! Report I/O, the reader's first stage (load -> check -> render): report
//! files straight into the typed report (a million live allocations stay
//! within a second and well under a GiB), refused in one line when the file
//! is something else or claims implausible figures (`validate`).

#[cfg(test)]
mod drift;
mod read;
mod validate;

pub use read::read_bounded;

use crate::report::{Report, SCHEMA};
use serde::Deserialize;
use std::path::Path;

/// Just the schema field, for telling what a file is when it does not parse.
#[derive(Deserialize)]
struct Head {
    schema: Option<String>,
}

/// Far above any report the shim writes (a million live rows is ~60 MB):
/// a larger file is something else, and is refused before it is read (a
/// pipe, once that many bytes were read; a device, at once).
pub const MAX_REPORT_BYTES: u64 = 1 << 30;

/// A report file, or what is wrong with it in one line (naming the file).
pub fn load(path: &Path) -> Result<Report, String> {
    let bytes = read_bounded(path, MAX_REPORT_BYTES, "a report")?;
    parse(&bytes).map_err(|what| format!("{}: {what}", path.display()))
}

/// A report from its bytes, or what is wrong with them in one line.
pub fn parse(bytes: &[u8]) -> Result<Report, String> {
    let unsupported =
        |s: &str| format!("report schema '{s}' is not supported (this kvscope reads {SCHEMA})");
    let no_schema = || "not a kvscope report (no \"schema\" field)".to_string();
    match serde_json::from_slice::<Report>(bytes) {
        Ok(r) if r.schema == SCHEMA => match validate::validate(&r) {
            Ok(()) => Ok(r),
            Err(e) => Err(format!("implausible report: {e}")),
        },
        Ok(r) if r.schema.is_empty() => Err(no_schema()),
        Ok(r) => Err(unsupported(&r.schema)),
        Err(e) => match serde_json::from_slice::<Head>(bytes) {
            // Valid JSON of another shape (an array, a number, a "schema"
            // that is no string) is not a report, but it is JSON.
            Err(_) if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() => Err(
                "not a kvscope report (JSON, but not an object with a \"schema\" string)"
                    .to_string(),
            ),
            Err(_) => Err(format!("not JSON ({e})")),
            Ok(Head { schema: Some(s) }) if s != SCHEMA => Err(unsupported(&s)),
            Ok(Head { schema: None }) => Err(no_schema()),
            Ok(_) => Err(format!("malformed report: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    /// JSON that is not a report is called so; only broken JSON is "not JSON".
    #[test]
    fn json_of_another_shape_is_not_called_not_json() {
        for other in ["[1,2]", "42", "\"kvscope\"", "{\"schema\":5}", "null"] {
            let e = parse(other.as_bytes()).unwrap_err();
            assert!(e.starts_with("not a kvscope report"), "{other}: {e}");
        }
        for broken in ["[1,2", "", "{\"schema\":", "\u{ff}"] {
            let e = parse(broken.as_bytes()).unwrap_err();
            assert!(e.starts_with("not JSON"), "{broken:?}: {e}");
        }
    }
}
