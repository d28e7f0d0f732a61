//! What each artifact exports, checked against the table of hooked
//! functions (`src/report/hooked.rs`, compiled into this test): libkvscope.so
//! exports exactly its rows, the stand-in CUDA libraries implement every
//! routed row (as the real ones do), the reader binary defines none of them.

mod common;
use common::*;
use std::process::Command;

#[path = "../src/report/hooked.rs"]
#[allow(dead_code)]
mod hooked;

/// (symbol, library) of every row, and the own exports with library "kvscope".
macro_rules! rows {
    (
        recorded { $($variant:ident : $sym:ident ($($args:tt)*) $lib:ident $space:ident [$($flag:ident)*] => $how:ident $params:tt;)* }
        own { $($own:ident : $own_sym:ident $own_space:ident [$($own_flag:ident)*] => $own_mod:ident;)* }
        observed { $($obs:ident ($($oargs:tt)*) $olib:ident => $omod:ident;)* }
        exported { $($exp:ident => $emod:ident;)* }
    ) => {
        &[
            $((stringify!($sym), stringify!($lib)),)*
            $((stringify!($own_sym), "kvscope"),)*
            $((stringify!($obs), stringify!($olib)),)*
            $((stringify!($exp), "kvscope"),)*
        ]
    };
}

const ROWS: &[(&str, &str)] = hooked::hooked_functions!(rows);

fn exported() -> Vec<&'static str> {
    ROWS.iter().map(|r| r.0).collect()
}

#[test]
fn the_table_lists_each_symbol_once() {
    let mut names = exported();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        n,
        "a symbol appears twice in src/report/hooked.rs"
    );
    assert!(n > 50, "{n} rows");
}

#[test]
fn the_stand_in_implements_every_routed_row() {
    let runtime = defined_symbols(&native("libcudart.so.12"), true);
    let driver = defined_symbols(&native("libcuda.so.1"), true);
    for (sym, lib) in ROWS {
        let defined = match *lib {
            "Runtime" => &runtime,
            "Driver" => &driver,
            _ => continue,
        };
        assert!(
            defined
                .iter()
                .any(|d| d == sym || d.split('@').next() == Some(sym)),
            "the stand-in {lib} does not define {sym}: the tests could not exercise its hook"
        );
    }
}

fn defined_symbols(path: &std::path::Path, dynamic: bool) -> Vec<String> {
    let mut cmd = Command::new("nm");
    if dynamic {
        cmd.arg("-D");
    }
    let out = cmd
        .arg("--defined-only")
        .arg(path)
        .output()
        .expect("nm (binutils) is needed");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(String::from)
        .collect()
}

#[test]
fn the_shim_exports_exactly_its_hooks_and_api() {
    let mut got = defined_symbols(&shim_lib(), true);
    got.sort();
    let mut want: Vec<String> = exported().iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
}

/// The newest glibc symbol version the shim may need: the README states it
/// (a serving container's distribution must have at least this glibc).
const NEWEST_GLIBC: (u32, u32) = (2, 34);

#[test]
fn the_shim_needs_no_newer_glibc_than_the_readme_says() {
    let out = Command::new("nm")
        .args(["-D", "--undefined-only"])
        .arg(shim_lib())
        .output()
        .expect("nm (binutils) is needed");
    let text = String::from_utf8_lossy(&out.stdout);
    let newest = text
        .split("GLIBC_")
        .skip(1)
        .filter_map(|v| {
            let v: String = v
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut n = v.split('.').map(|x| x.parse::<u32>().unwrap_or(0));
            Some((n.next()?, n.next().unwrap_or(0)))
        })
        .max()
        .expect("glibc symbols");
    assert!(
        newest <= NEWEST_GLIBC,
        "the shim needs GLIBC_{}.{}",
        newest.0,
        newest.1
    );
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let stated = format!("GLIBC_{}.{}", NEWEST_GLIBC.0, NEWEST_GLIBC.1);
    assert!(readme.contains(&stated), "the README must state {stated}");
}

#[test]
fn the_reader_binary_defines_no_hook() {
    let syms = defined_symbols(&kvscope_bin(), false);
    for hook in exported() {
        assert!(
            !syms.iter().any(|s| s == hook),
            "kvscope defines {hook}: it would capture its own calls"
        );
    }
}
