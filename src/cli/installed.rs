//! Where `pip install kvscope` put the Python package, seen from the
//! installed `kvscope` binary. pip puts the binary in the scheme's `bin/`
//! (a venv's, `~/.local/bin`, `/usr/local/bin`, a conda env's) and the
//! package in that scheme's `lib/pythonX.Y/site-packages` (`dist-packages`
//! on Debian's system Python, `lib64` on Fedora's), or, for `pip install
//! --target DIR`, the binary in `DIR/bin` and the package in `DIR`. The
//! package holds the shim and, in a private folder never on a library path,
//! the demo's stand-in CUDA and simulator (the layout `.ci/wheel-build`
//! stages).

use std::path::{Path, PathBuf};

/// The package's folder of bundled native files, relative to the package.
pub const BUNDLED: &str = "_bundled";
/// The shim, relative to the bundled folder.
pub const SHIM: &str = "libkvscope.so";
/// The stand-in CUDA and serve_sim, relative to the bundled folder.
pub const STAND_IN: &str = "stand-in";

/// The bundled folders of kvscope packages installed beside `bin_dir`, the
/// one of this binary's own version first (two Python versions under one
/// prefix may each hold a kvscope; the binary on the PATH is the last one
/// installed, and its version names its own).
pub fn bundled_dirs(bin_dir: &Path) -> Vec<PathBuf> {
    let Some(prefix) = bin_dir.parent() else {
        return Vec::new();
    };
    // `pip install --target DIR`: the package sits in DIR itself.
    let mut sites = vec![prefix.to_path_buf()];
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(prefix.join(lib)) else {
            continue;
        };
        let mut pythons: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
            .map(|e| e.path())
            .collect();
        // Newest Python first, by number (by name, python3.12 < python3.9).
        pythons.sort_by_key(|p| std::cmp::Reverse(python_version(p)));
        for py in pythons {
            for site in ["site-packages", "dist-packages"] {
                sites.push(py.join(site));
            }
        }
    }
    let own = format!("kvscope-{}.dist-info", env!("CARGO_PKG_VERSION"));
    let mut found: Vec<(bool, PathBuf)> = sites
        .into_iter()
        .filter(|s| s.join("kvscope").join(BUNDLED).is_dir())
        .map(|s| (!s.join(&own).is_dir(), s.join("kvscope").join(BUNDLED)))
        .collect();
    // Stable: among packages of the same standing, the order above.
    found.sort_by_key(|(other_version, _)| *other_version);
    found.into_iter().map(|(_, d)| d).collect()
}

/// (major, minor) of a `pythonX.Y` folder; (0, 0) when it is not one.
fn python_version(dir: &Path) -> (u32, u32) {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let Some(v) = name.as_deref().and_then(|n| n.strip_prefix("python")) else {
        return (0, 0);
    };
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("kvscope-installed-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("bin")).unwrap();
        d
    }

    fn package(site: &Path, version: &str) -> PathBuf {
        let b = site.join("kvscope").join(BUNDLED);
        std::fs::create_dir_all(&b).unwrap();
        std::fs::create_dir_all(site.join(format!("kvscope-{version}.dist-info"))).unwrap();
        b
    }

    #[test]
    fn a_venv_and_a_target_install_are_found() {
        let venv = scratch("venv");
        let b = package(
            &venv.join("lib/python3.11/site-packages"),
            env!("CARGO_PKG_VERSION"),
        );
        assert_eq!(bundled_dirs(&venv.join("bin")), vec![b]);
        let target = scratch("target");
        let b = package(&target, env!("CARGO_PKG_VERSION"));
        assert_eq!(bundled_dirs(&target.join("bin")), vec![b]);
        let empty = scratch("empty");
        assert!(bundled_dirs(&empty.join("bin")).is_empty());
        for d in [venv, target, empty] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    #[test]
    fn the_own_version_wins_then_the_newest_python() {
        let prefix = scratch("prefix");
        let old = package(&prefix.join("lib/python3.12/dist-packages"), "0.0.1");
        let own = package(
            &prefix.join("lib/python3.9/site-packages"),
            env!("CARGO_PKG_VERSION"),
        );
        let other = package(&prefix.join("lib64/python3.10/site-packages"), "0.0.2");
        assert_eq!(bundled_dirs(&prefix.join("bin")), vec![own, old, other]);
        let _ = std::fs::remove_dir_all(prefix);
    }

    #[test]
    fn python_folders_are_ordered_by_number() {
        assert_eq!(python_version(Path::new("/x/python3.12")), (3, 12));
        assert_eq!(python_version(Path::new("/x/python3")), (3, 0));
        assert_eq!(python_version(Path::new("/x/other")), (0, 0));
        assert!(python_version(Path::new("python3.12")) > python_version(Path::new("python3.9")));
    }
}
