//! One version number: the crate's (Cargo.toml) is the wheel's (pyproject.toml
//! takes it from Cargo.toml), the shim's in every report (`shim.version`,
//! CARGO_PKG_VERSION), the reader's (`kvscope --version`), the Python
//! helper's (`kvscope.__version__`), and the CHANGELOG has an entry for it.
//! The installed wheel is checked against the same number by .ci/wheel-test.

mod common;
use common::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn read(rel: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_reader_says_the_crate_version() {
    let out = kvscope(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("kvscope {VERSION}")
    );
}

#[test]
fn the_python_helper_has_the_crate_version() {
    let init = read("python/kvscope/__init__.py");
    let versions: Vec<&str> = init
        .lines()
        .filter_map(|l| l.strip_prefix("__version__ = "))
        .collect();
    assert_eq!(
        versions,
        [format!("\"{VERSION}\"")],
        "python/kvscope/__init__.py"
    );
}

#[test]
fn the_wheel_takes_the_crate_version() {
    let py = read("pyproject.toml");
    assert!(
        py.contains("dynamic = [\"version\"]"),
        "pyproject.toml: the version comes from Cargo.toml"
    );
    assert!(
        !py.lines().any(|l| l.trim_start().starts_with("version")),
        "pyproject.toml: no version of its own"
    );
}

#[test]
fn the_changelog_has_an_entry_for_the_version() {
    let log = read("CHANGELOG.md");
    let entries: Vec<&str> = log.lines().filter(|l| l.starts_with("## ")).collect();
    assert!(
        entries.first().is_some_and(
            |e| e.starts_with(&format!("## {VERSION} ")) || *e == format!("## {VERSION}")
        ),
        "the newest CHANGELOG entry is not {VERSION}: {entries:?}"
    );
}
