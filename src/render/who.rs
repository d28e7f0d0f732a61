//! Who allocated the live memory, as every form shows it (the text summary
//! and the HTML page): live bytes per calling file, with the symbols that
//! called, and the stacks of the largest allocations. One place, so that the
//! forms cannot disagree on grouping, order or which frames are shown.

use crate::report::{CallSite, Report, StackRow};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Live memory of one calling file on one device (a `live.by_caller` total).
#[derive(Debug, PartialEq, Serialize)]
pub struct CallerLine<'a> {
    pub device: u32,
    /// The file's name without its directories; "?" when unknown.
    pub file: &'a str,
    /// The exported symbols in that file that made live allocations on that
    /// device (sorted; empty where none is known: static functions, stripped
    /// files, or rows the report did not list).
    pub symbols: Vec<&'a str>,
    pub count: u64,
    pub bytes: u64,
}

/// The report knows who called: a shim built without caller capture, and
/// reports older than callers, have no call sites (and every total is "?").
pub fn known(r: &Report) -> bool {
    !r.callers.is_empty()
}

/// Live memory by calling file, largest first (the order the report keeps,
/// bytes first where a report was not in it): at most `limit` lines, and
/// none when the report has no callers.
pub fn by_caller(r: &Report, limit: usize) -> Vec<CallerLine<'_>> {
    if !known(r) {
        return Vec::new();
    }
    let mut totals: Vec<_> = r.live.by_caller.iter().collect();
    // Stable: ties keep the report's order.
    totals.sort_by_key(|t| std::cmp::Reverse(t.bytes));
    totals.truncate(limit);
    let symbols = symbols(r);
    totals
        .into_iter()
        .map(|t| CallerLine {
            device: t.device,
            file: &t.caller,
            symbols: symbols
                .get(&(t.device, t.caller.as_str()))
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default(),
            count: t.count,
            bytes: t.bytes,
        })
        .collect()
}

/// The symbols that made the listed live rows, per device and file. A
/// million rows come down to a few (device, call site) pairs first.
fn symbols(r: &Report) -> BTreeMap<(u32, &str), BTreeSet<&str>> {
    let pairs: HashSet<(u32, u32)> = r
        .live
        .allocations
        .iter()
        .filter_map(|a| Some((a.device, a.caller?)))
        .collect();
    let mut out: BTreeMap<(u32, &str), BTreeSet<&str>> = BTreeMap::new();
    for (device, i) in pairs {
        let Some(site) = r.callers.get(i as usize) else {
            continue;
        };
        if let Some(s) = &site.symbol {
            out.entry((device, site.file_name()))
                .or_default()
                .insert(s.as_str());
        }
    }
    out
}

/// The native stack of a big live allocation, its frames resolved.
pub struct Stack<'a> {
    pub row: &'a StackRow,
    /// Innermost first; the shim's own frames were left out when it was taken.
    pub frames: Vec<&'a CallSite>,
}

/// The stacks of the largest live allocations that have one (the report
/// keeps them largest first), at most `limit`.
pub fn stacks(r: &Report, limit: usize) -> Vec<Stack<'_>> {
    r.stacks
        .iter()
        .take(limit)
        .map(|row| Stack {
            row,
            frames: frames(r, &row.frames),
        })
        .collect()
}

/// The call sites at `indexes` in `callers` (an index out of range is
/// skipped: a damaged report still renders).
pub fn frames<'a>(r: &'a Report, indexes: &[u32]) -> Vec<&'a CallSite> {
    indexes
        .iter()
        .filter_map(|&i| r.callers.get(i as usize))
        .collect()
}

/// A frame on one line, as debuggers write it: `file!symbol`, or
/// `file+0xoffset` without a symbol.
pub fn frame_line(site: &CallSite) -> String {
    match &site.symbol {
        Some(s) => format!("{}!{s}", site.file_name()),
        None => format!("{}+{:#x}", site.file_name(), site.offset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Api, CallerTotal, LiveAlloc};

    fn site(file: &str, symbol: Option<&str>) -> CallSite {
        CallSite {
            address: 0x1000,
            file: file.into(),
            symbol: symbol.map(String::from),
            offset: 0x20,
        }
    }

    fn row(device: u32, size: u64, caller: Option<u32>) -> LiveAlloc {
        LiveAlloc {
            device,
            address: size,
            size,
            api: Api::CudaMalloc,
            stream: 0,
            t_ms: 0.0,
            seq: 0,
            thread: 0,
            phase: 0,
            caller,
        }
    }

    fn total(device: u32, caller: &str, bytes: u64) -> CallerTotal {
        CallerTotal {
            device,
            caller: caller.into(),
            count: 1,
            bytes,
        }
    }

    #[test]
    fn callers_are_largest_first_with_their_symbols_per_device() {
        let mut r = Report {
            callers: vec![
                site("/usr/lib/libcublas.so.12", Some("cublasCreate")),
                site("/usr/lib/libcublas.so.12", Some("cublasLtInit")),
                site("/opt/app", None),
            ],
            ..Report::default()
        };
        r.live.allocations = vec![
            row(0, 64, Some(0)),
            row(0, 32, Some(1)),
            row(1, 16, Some(0)),
            row(0, 8, Some(2)),
            row(0, 4, None),
        ];
        r.live.by_caller = vec![
            total(0, "app", 8),
            total(0, "libcublas.so.12", 96),
            total(1, "libcublas.so.12", 16),
            total(0, "?", 4),
        ];
        let lines = by_caller(&r, 3);
        let got: Vec<(u32, &str, Vec<&str>, u64)> = lines
            .iter()
            .map(|l| (l.device, l.file, l.symbols.clone(), l.bytes))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    0,
                    "libcublas.so.12",
                    vec!["cublasCreate", "cublasLtInit"],
                    96
                ),
                (1, "libcublas.so.12", vec!["cublasCreate"], 16),
                (0, "app", vec![], 8),
            ]
        );
    }

    #[test]
    fn no_callers_no_lines() {
        let mut r = Report::default();
        r.live.by_caller = vec![total(0, "?", 4)];
        assert!(!known(&r));
        assert!(by_caller(&r, 8).is_empty());
    }

    #[test]
    fn frames_read_as_file_bang_symbol_and_skip_bad_indexes() {
        let r = Report {
            callers: vec![
                site("/x/libwhoplug.so", Some("who_lib_allocate")),
                site("/x/who_app", None),
            ],
            stacks: vec![StackRow {
                device: 0,
                address: 1,
                size: 10 << 20,
                frames: vec![0, 7, 1],
            }],
            ..Report::default()
        };
        let s = stacks(&r, 5);
        let lines: Vec<String> = s[0].frames.iter().map(|&f| frame_line(f)).collect();
        assert_eq!(lines, ["libwhoplug.so!who_lib_allocate", "who_app+0x20"]);
    }
}
