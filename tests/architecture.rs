//! Architecture rules for `src/`, checked from the source text (std only).
//!
//! 1. No import cycles among modules. Every `.rs` file under `src/` is a
//!    module named by its path (`src/shim/hooks/entry.rs` is
//!    `shim::hooks::entry`, `src/shim/hooks/mod.rs` is `shim::hooks`); the two
//!    crate roots (`src/lib.rs`, `src/main.rs`) only declare modules and are
//!    left out. A module depends on another when it names it by path, in a
//!    `use` or inline in code. Every strongly connected group of more than one
//!    module is a cycle, unless it is one of the deliberate ties below.
//!    Parent and child count like any other pair: a `mod.rs` that calls
//!    `entry::HOOKS` depends on its child, and a child that takes
//!    `super::NOT_FOUND` depends on its parent, so the two form a cycle. Shared
//!    items that children need belong in a module of their own.
//! 2. No `.rs` file under `src/` is longer than [`MAX_LINES`] lines.
//!
//! The scanner is a small tokenizer, not a Rust parser: it sees paths as
//! written, after comments, string and char literals and `#[cfg(test)]`
//! modules are removed. The `scanner` tests at the end pin what it finds, so a
//! broken scanner fails there instead of passing the rules vacuously.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

/// The longest a source file may be.
const MAX_LINES: usize = 500;

/// Module groups that may depend on each other on purpose: the per-thread
/// counters and the thread-local block that owns them. Listed both where they
/// are now and under `shim::track::`, where the refactor may move them.
const ALLOWED_TIES: &[&[&str]] = &[
    &["shim::counters", "shim::tls"],
    &["shim::track::counters", "shim::track::tls"],
];

// ---------------------------------------------------------------------------
// The rules
// ---------------------------------------------------------------------------

#[test]
fn no_import_cycles_among_modules() {
    let crate_ = Crate::load(&src_dir());
    let graph = crate_.graph();
    // A scanner that finds nothing would pass; the crate has dozens of edges.
    let edges: usize = graph.values().map(BTreeMap::len).sum();
    assert!(
        graph.len() > 10 && edges > 20,
        "the scan of src/ found {} modules, {edges} edges",
        graph.len()
    );
    let mut failures = Vec::new();
    for group in strongly_connected(&graph) {
        if group.len() < 2 {
            continue;
        }
        if allowed(&group) {
            eprintln!("deliberate tie, allowed: {{{}}}", group.join(", "));
            continue;
        }
        failures.push(describe_group(&graph, &group));
    }
    assert!(
        failures.is_empty(),
        "import cycles among modules in src/ ({} group(s)); break every cycle \
         listed (each edge names the file and line that creates it):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn no_source_file_over_the_line_limit() {
    let mut over = Vec::new();
    for file in rust_files(&src_dir()) {
        let text = fs::read_to_string(&file).unwrap();
        let lines = text.lines().count();
        if lines > MAX_LINES {
            over.push(format!("  {}: {} lines", display(&file), lines));
        }
    }
    assert!(
        over.is_empty(),
        "source files over {MAX_LINES} lines; split them:\n{}",
        over.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Files and module names
// ---------------------------------------------------------------------------

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// A path relative to the crate root, for messages.
fn display(file: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    file.strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string()
}

/// Every `.rs` file under `dir`, sorted, so messages are stable.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The module a file under `src/` is, by its path: `shim/hooks/mod.rs` and
/// `shim/hooks.rs` are both `shim::hooks`; the crate roots `lib.rs` and
/// `main.rs` are the root, "". The crate has two roots that declare the same
/// modules, so one name per file is enough to treat the tree as one crate.
fn module_name(rel: &Path) -> String {
    let mut segs: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if segs.last().is_some_and(|s| s == "mod") {
        segs.pop();
    }
    if segs.len() == 1 && (segs[0] == "lib" || segs[0] == "main") {
        segs.clear();
    }
    segs.join("::")
}

fn parent(module: &str) -> Option<&str> {
    if module.is_empty() {
        None
    } else {
        Some(module.rsplit_once("::").map_or("", |(p, _)| p))
    }
}

fn join(base: &str, seg: &str) -> String {
    if base.is_empty() {
        seg.to_string()
    } else {
        format!("{base}::{seg}")
    }
}

// ---------------------------------------------------------------------------
// Stripping: comments and literals must not look like paths
// ---------------------------------------------------------------------------

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// The source with comments (line, block, nested block, doc) and string,
/// byte-string, raw-string and char literals blanked out. Newlines are kept so
/// line numbers stay right; everything else removed becomes a space. Without
/// this a doc comment such as "`crate::shim::state` owns ..." or a message
/// string would count as a dependency.
fn strip_comments_and_literals(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, s: &[char]| {
        for &ch in s {
            out.push(if ch == '\n' { '\n' } else { ' ' });
        }
    };
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(k).copied().unwrap_or('\0');
        // Line comment (also `///` and `//!`).
        if at(i) == '/' && at(i + 1) == '/' {
            let end = (i..c.len()).find(|&k| c[k] == '\n').unwrap_or(c.len());
            blank(&mut out, &c[i..end]);
            i = end;
            continue;
        }
        // Block comment; Rust's nest.
        if at(i) == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            let mut k = i;
            while k < c.len() {
                if at(k) == '/' && at(k + 1) == '*' {
                    depth += 1;
                    k += 2;
                } else if at(k) == '*' && at(k + 1) == '/' {
                    depth -= 1;
                    k += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    k += 1;
                }
            }
            let k = k.min(c.len());
            blank(&mut out, &c[i..k]);
            i = k;
            continue;
        }
        // Raw string: r"..", r#".."#, br"..", cr"..": no escapes, ends at a
        // quote followed by as many hashes as it began with.
        let word_start = i == 0 || !is_ident_char(at(i - 1));
        let raw_at = if at(i) == 'r' && word_start {
            Some(i + 1)
        } else if (at(i) == 'b' || at(i) == 'c') && at(i + 1) == 'r' && word_start {
            Some(i + 2)
        } else {
            None
        };
        if let Some(mut k) = raw_at {
            let mut hashes = 0;
            while at(k) == '#' {
                hashes += 1;
                k += 1;
            }
            if at(k) == '"' {
                k += 1;
                loop {
                    if k >= c.len() {
                        break;
                    }
                    if c[k] == '"' && (1..=hashes).all(|h| at(k + h) == '#') {
                        k += 1 + hashes;
                        break;
                    }
                    k += 1;
                }
                let k = k.min(c.len());
                blank(&mut out, &c[i..k]);
                i = k;
                continue;
            }
        }
        // String (the b"" and c"" prefix letter is left as harmless text).
        if at(i) == '"' {
            let mut k = i + 1;
            while k < c.len() && c[k] != '"' {
                k += if c[k] == '\\' { 2 } else { 1 };
            }
            let k = (k + 1).min(c.len());
            blank(&mut out, &c[i..k]);
            i = k;
            continue;
        }
        // Char literal, not a lifetime: 'x', '\n', '\'', '\u{..}'.
        if at(i) == '\'' {
            let end = if at(i + 1) == '\\' {
                (i + 3..c.len()).find(|&k| c[k] == '\'').map(|k| k + 1)
            } else if at(i + 2) == '\'' {
                Some(i + 3)
            } else {
                None // a lifetime or label: 'a, 'static, 'outer:
            };
            if let Some(end) = end {
                blank(&mut out, &c[i..end]);
                i = end;
                continue;
            }
        }
        out.push(c[i]);
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Tok {
    text: String,
    line: usize,
}

/// Identifiers (with `$crate` kept whole, as macro bodies write it), `::` as
/// one token, numbers as one token, every other punctuation character alone.
/// This is all the path scanner needs to see.
fn tokenize(stripped: &str) -> Vec<Tok> {
    let c: Vec<char> = stripped.chars().collect();
    let mut toks = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if is_ident_char(ch)
            || (ch == '$' && c.get(i + 1).is_some_and(|&n| is_ident_char(n)))
        {
            let start = i;
            i += 1;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            toks.push(Tok {
                text: c[start..i].iter().collect(),
                line,
            });
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            toks.push(Tok {
                text: "::".into(),
                line,
            });
            i += 2;
        } else {
            toks.push(Tok {
                text: ch.to_string(),
                line,
            });
            i += 1;
        }
    }
    toks
}

fn tok(toks: &[Tok], i: usize) -> &str {
    toks.get(i).map_or("", |t| t.text.as_str())
}

fn is_ident(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c == '_' || c == '$' || c.is_alphabetic())
}

/// Index of the bracket that closes the one at `open` (`(`, `[` or `{`).
fn matching_close(toks: &[Tok], open: usize) -> usize {
    let (o, c) = match tok(toks, open) {
        "(" => ("(", ")"),
        "[" => ("[", "]"),
        _ => ("{", "}"),
    };
    let mut depth = 0;
    for (k, t) in toks.iter().enumerate().skip(open) {
        if t.text == o {
            depth += 1;
        } else if t.text == c {
            depth -= 1;
            if depth == 0 {
                return k;
            }
        }
    }
    toks.len()
}

/// Index of the bracket that opens the one at `close`, searching backwards.
fn matching_open(toks: &[Tok], close: usize) -> Option<usize> {
    let (o, c) = match tok(toks, close) {
        ")" => ("(", ")"),
        "]" => ("[", "]"),
        _ => ("{", "}"),
    };
    let mut depth = 0;
    for k in (0..=close).rev() {
        if toks[k].text == c {
            depth += 1;
        } else if toks[k].text == o {
            depth -= 1;
            if depth == 0 {
                return Some(k);
            }
        }
    }
    None
}

/// Where the outer attributes of the item whose keyword is at `kw` begin, and
/// whether one of them is `#[cfg(test)]`. Walks back over a visibility
/// (`pub`, `pub(crate)`) and then over `#[...]` groups, so
/// `#[cfg(test)] #[allow(x)] pub(crate) mod m;` is recognised.
fn attributes_before(toks: &[Tok], kw: usize) -> (usize, bool) {
    let mut j = kw;
    if j > 0 && tok(toks, j - 1) == ")" {
        if let Some(o) = matching_open(toks, j - 1) {
            if o > 0 && tok(toks, o - 1) == "pub" {
                j = o - 1;
            }
        }
    } else if j > 0 && tok(toks, j - 1) == "pub" {
        j -= 1;
    }
    let mut test = false;
    while j > 0 && tok(toks, j - 1) == "]" {
        let Some(o) = matching_open(toks, j - 1) else {
            break;
        };
        if o == 0 || tok(toks, o - 1) != "#" {
            break;
        }
        let inner: Vec<&str> = toks[o + 1..j - 1].iter().map(|t| t.text.as_str()).collect();
        test |= inner == ["cfg", "(", "test", ")"];
        j = o - 1;
    }
    (j, test)
}

/// `mod name;` declarations in a file, with whether each is `#[cfg(test)]`.
/// A file declared that way (`src/kv/tests.rs`, `src/fuzz.rs`) is a unit-test
/// module: it may reach anywhere, so it is not part of the graph.
fn mod_declarations(toks: &[Tok]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for k in 0..toks.len() {
        if tok(toks, k) == "mod" && is_ident(tok(toks, k + 1)) && tok(toks, k + 2) == ";" {
            out.push((tok(toks, k + 1).to_string(), attributes_before(toks, k).1));
        }
    }
    out
}

/// The tokens without `#[cfg(test)] mod name { ... }` blocks (attributes
/// included): unit tests may look anywhere, and `use super::*` in them is not
/// a dependency of the module they test.
fn without_test_modules(toks: &[Tok]) -> Vec<Tok> {
    let mut drop = vec![false; toks.len()];
    for k in 0..toks.len() {
        if tok(toks, k) == "mod" && is_ident(tok(toks, k + 1)) && tok(toks, k + 2) == "{" {
            let (start, test) = attributes_before(toks, k);
            if test {
                let end = matching_close(toks, k + 2).min(toks.len() - 1);
                drop[start..=end].iter_mut().for_each(|d| *d = true);
            }
        }
    }
    toks.iter()
        .zip(drop)
        .filter(|(_, d)| !d)
        .map(|(t, _)| t.clone())
        .collect()
}

/// `#![cfg(test)]` as the file's inner attribute: the whole file is test code.
fn file_is_test_only(toks: &[Tok]) -> bool {
    let head: Vec<&str> = toks.iter().take(64).map(|t| t.text.as_str()).collect();
    head.windows(7)
        .any(|w| w == ["#", "!", "[", "cfg", "(", "test", ")"])
}

// ---------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------

/// A path as written, with the line of its last segment.
#[derive(Clone, Debug)]
struct RawPath {
    segs: Vec<String>,
    line: usize,
    in_use: bool,
}

/// Reads one use tree at `*i`, appending its leaf paths (prefix included) to
/// `out`: `a::b::c`, `a::{b, c::{d, e}}`, `a::*`, `a::{self, b}`, `x as y`.
/// Each leaf of a brace group is its own path, with its own line, so a
/// multi-line `use` reports the line of the name that makes the edge.
fn use_tree(toks: &[Tok], i: &mut usize, prefix: &[String], out: &mut Vec<RawPath>) {
    let mut path = prefix.to_vec();
    let mut line = toks.get(*i).map_or(0, |t| t.line);
    loop {
        let t = tok(toks, *i);
        match t {
            "{" => {
                *i += 1;
                while *i < toks.len() && tok(toks, *i) != "}" {
                    let before = *i;
                    use_tree(toks, i, &path, out);
                    if tok(toks, *i) == "," {
                        *i += 1;
                    }
                    if *i == before {
                        *i += 1; // not a use tree; never loop forever
                    }
                }
                *i += 1;
                return;
            }
            "*" => {
                *i += 1;
                out.push(RawPath {
                    segs: path,
                    line,
                    in_use: true,
                });
                return;
            }
            "::" => {
                if path.is_empty() {
                    path.push("::".into()); // `use ::name`: an extern crate
                }
                *i += 1;
            }
            _ if is_ident(t) => {
                path.push(t.to_string());
                line = toks[*i].line;
                *i += 1;
                if tok(toks, *i) == "::" {
                    *i += 1;
                    continue;
                }
                if tok(toks, *i) == "as" {
                    *i += 2;
                }
                out.push(RawPath {
                    segs: path,
                    line,
                    in_use: true,
                });
                return;
            }
            _ => return,
        }
    }
}

/// Every path in the tokens that could name a module of this crate: the
/// leaves of `use` statements, and inline paths in code that start with
/// `crate`, `$crate`, `super` or `self`, or with a name followed by `::`
/// (possibly a child module; `resolve` decides). A lone `super` in
/// `pub(super)` has no `::` and is not a path; `pub(in crate::x)` is a
/// visibility, not a use, and is skipped.
fn paths(toks: &[Tok]) -> Vec<RawPath> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = tok(toks, i);
        if t == "use" {
            i += 1;
            use_tree(toks, &mut i, &[], &mut out);
            continue;
        }
        let starts_path =
            is_ident(t) && tok(toks, i + 1) == "::" && (i == 0 || tok(toks, i - 1) != "::");
        let in_visibility = i >= 3
            && tok(toks, i - 1) == "in"
            && tok(toks, i - 2) == "("
            && tok(toks, i - 3) == "pub";
        if !starts_path || in_visibility {
            i += 1;
            continue;
        }
        let mut segs = vec![t.to_string()];
        let mut line = toks[i].line;
        i += 1;
        while tok(toks, i) == "::" && is_ident(tok(toks, i + 1)) {
            segs.push(tok(toks, i + 1).to_string());
            line = toks[i + 1].line;
            i += 2;
        }
        out.push(RawPath {
            segs,
            line,
            in_use: false,
        });
    }
    out
}

/// The module a path names, from inside module `current`, or None when it
/// names no module of this crate other than `current` and the roots.
///
/// `crate`/`$crate` start at the root, `self` at `current`, each leading
/// `super` one level up (`super::super::x`); a bare first segment is a child
/// of `current` when such a module exists (`entry::HOOKS` in
/// `shim/hooks/mod.rs`, `use context::X` in `check/mod.rs`), otherwise an
/// extern crate, a type or a local item. The result is the LONGEST prefix of
/// the path that is a module: `crate::shim::record::protect` is
/// `shim::record`, and `super::NOT_FOUND` from `shim/hooks/driver.rs` is
/// `shim::hooks`.
fn resolve(current: &str, segs: &[String], modules: &BTreeSet<String>) -> Option<String> {
    let mut rest = segs;
    let mut base = match segs.first().map(String::as_str)? {
        "crate" | "$crate" => {
            rest = &segs[1..];
            String::new()
        }
        "self" | "super" => {
            let mut base = current.to_string();
            while let Some(first) = rest.first() {
                match first.as_str() {
                    "self" => {}
                    "super" => base = parent(&base)?.to_string(),
                    _ => break,
                }
                rest = &rest[1..];
            }
            base
        }
        first if modules.contains(&join(current, first)) => current.to_string(),
        _ => return None,
    };
    let mut best = base.clone();
    for seg in rest {
        if seg == "self" {
            continue;
        }
        base = join(&base, seg);
        if modules.contains(&base) {
            best = base.clone();
        }
    }
    (!best.is_empty() && best != current && modules.contains(&best)).then_some(best)
}

/// One place that creates an edge.
#[derive(Clone, Debug)]
struct Site {
    file: String,
    line: usize,
    path: String,
}

/// What module `current` depends on, from its source text: each target
/// module with where it is named. Comments, literals and `#[cfg(test)]`
/// modules are removed first; self-references are not edges.
fn scan(current: &str, src: &str, modules: &BTreeSet<String>) -> Vec<(String, usize, String)> {
    let toks = without_test_modules(&tokenize(&strip_comments_and_literals(src)));
    let mut out = Vec::new();
    for p in paths(&toks) {
        if let Some(target) = resolve(current, &p.segs, modules) {
            let mut text = p.segs.join("::");
            if p.in_use {
                // `use a::b::{self, X}` reads better as written than as `a::b::self`.
                text = match text.strip_suffix("::self") {
                    Some(head) => format!("use {head}::{{self}}"),
                    None => format!("use {text}"),
                };
            }
            out.push((target, p.line, text));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The crate as a graph
// ---------------------------------------------------------------------------

/// Edges: module -> module -> the sites that make the edge.
type Graph = BTreeMap<String, BTreeMap<String, Vec<Site>>>;

struct SourceFile {
    rel: String,
    module: String,
    text: String,
}

struct Crate {
    files: Vec<SourceFile>,
    /// Modules in the graph: every file's module but the roots and test code.
    modules: BTreeSet<String>,
}

impl Crate {
    /// Reads `src/`, names each file's module and leaves out unit-test
    /// modules: those declared `#[cfg(test)] mod x;` by every parent that
    /// declares them (or `#![cfg(test)]` inside), and everything below them.
    fn load(src: &Path) -> Crate {
        let files: Vec<SourceFile> = rust_files(src)
            .into_iter()
            .map(|f| SourceFile {
                rel: display(&f),
                module: module_name(f.strip_prefix(src).unwrap()),
                text: fs::read_to_string(&f).unwrap(),
            })
            .collect();
        let mut decls: BTreeMap<String, Vec<bool>> = BTreeMap::new();
        let mut test_only: BTreeSet<String> = BTreeSet::new();
        for f in &files {
            let toks = tokenize(&strip_comments_and_literals(&f.text));
            if file_is_test_only(&toks) {
                test_only.insert(f.module.clone());
            }
            for (name, test) in mod_declarations(&toks) {
                decls.entry(join(&f.module, &name)).or_default().push(test);
            }
        }
        test_only.extend(
            decls
                .iter()
                .filter(|(_, t)| t.iter().all(|&t| t))
                .map(|(m, _)| m.clone()),
        );
        let under_test = |m: &str| {
            let mut cur = Some(m);
            while let Some(c) = cur {
                if test_only.contains(c) {
                    return true;
                }
                cur = parent(c);
            }
            false
        };
        let modules = files
            .iter()
            .map(|f| f.module.clone())
            .filter(|m| !m.is_empty() && !under_test(m))
            .collect();
        Crate { files, modules }
    }

    fn graph(&self) -> Graph {
        let mut g: Graph = self
            .modules
            .iter()
            .map(|m| (m.clone(), BTreeMap::new()))
            .collect();
        for f in self
            .files
            .iter()
            .filter(|f| self.modules.contains(&f.module))
        {
            for (target, line, path) in scan(&f.module, &f.text, &self.modules) {
                let site = Site {
                    file: f.rel.clone(),
                    line,
                    path,
                };
                g.get_mut(&f.module)
                    .unwrap()
                    .entry(target)
                    .or_default()
                    .push(site);
            }
        }
        g
    }
}

// ---------------------------------------------------------------------------
// Cycles
// ---------------------------------------------------------------------------

/// Tarjan's strongly connected components. Two modules are in one component
/// exactly when each reaches the other, so every component of more than one
/// module holds a cycle and every cycle lies inside one component.
fn strongly_connected(g: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.g[v].keys().map(String::as_str) {
            if !s.g.contains_key(w) {
                continue;
            }
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            comp.sort();
            s.out.push(comp);
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// Whether every module of a group is inside one deliberate tie.
fn allowed(group: &[String]) -> bool {
    ALLOWED_TIES
        .iter()
        .any(|tie| group.iter().all(|m| tie.contains(&m.as_str())))
}

/// Cycles that together use every edge inside a component: for each edge
/// u -> v not yet on a listed cycle, the shortest way back v ~> u. A
/// component is not always one simple cycle, and listing only its members
/// would not say which `use` to remove; this lists every edge that takes part,
/// each inside a cycle it closes. Cycles entirely inside a deliberate tie are
/// left out.
fn covering_cycles(g: &Graph, group: &[String]) -> Vec<Vec<String>> {
    let inside: BTreeSet<&str> = group.iter().map(String::as_str).collect();
    let succ = |v: &str| -> Vec<&str> {
        g[v].keys()
            .map(String::as_str)
            .filter(|w| inside.contains(w))
            .collect()
    };
    let mut covered: BTreeSet<(String, String)> = BTreeSet::new();
    let mut cycles: Vec<Vec<String>> = Vec::new();
    for &u in &inside {
        for v in succ(u) {
            if covered.contains(&(u.to_string(), v.to_string())) {
                continue;
            }
            // Shortest path v ~> u (breadth first).
            let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
            let mut queue = VecDeque::from([v]);
            let mut seen = BTreeSet::from([v]);
            while let Some(x) = queue.pop_front() {
                if x == u {
                    break;
                }
                for y in succ(x) {
                    if seen.insert(y) {
                        prev.insert(y, x);
                        queue.push_back(y);
                    }
                }
            }
            let mut back = vec![u];
            while *back.last().unwrap() != v {
                back.push(prev[back.last().unwrap()]);
            }
            back.reverse(); // v .. u
            let mut cycle: Vec<String> = std::iter::once(u)
                .chain(back.iter().copied().take(back.len() - 1))
                .map(String::from)
                .collect();
            // u, v, ..., (back to u): rotate to start at the smallest name.
            let start = (0..cycle.len()).min_by_key(|&k| &cycle[k]).unwrap();
            cycle.rotate_left(start);
            for k in 0..cycle.len() {
                covered.insert((cycle[k].clone(), cycle[(k + 1) % cycle.len()].clone()));
            }
            if !allowed(&cycle) && !cycles.contains(&cycle) {
                cycles.push(cycle);
            }
        }
    }
    cycles.sort_by(|a, b| a.len().cmp(&b.len()).then(a.cmp(b)));
    cycles
}

/// The failure text for one component: its members, then each cycle as
/// `a -> b -> c -> a` with the file and line of every edge.
fn describe_group(g: &Graph, group: &[String]) -> String {
    let mut s = format!("cycle group {{{}}}:\n", group.join(", "));
    for cycle in covering_cycles(g, group) {
        let mut names = cycle.clone();
        names.push(cycle[0].clone());
        s += &format!("  {}\n", names.join(" -> "));
        for pair in names.windows(2) {
            let sites = &g[&pair[0]][&pair[1]];
            let first = &sites[0];
            let more = if sites.len() > 1 {
                format!(" (+{} more)", sites.len() - 1)
            } else {
                String::new()
            };
            s += &format!(
                "      {} -> {}: {}:{}  `{}`{}\n",
                pair[0], pair[1], first.file, first.line, first.path, more
            );
        }
    }
    s
}

// ---------------------------------------------------------------------------
// The scanner's own tests, on small in-memory sources
// ---------------------------------------------------------------------------

mod scanner {
    use super::*;

    fn modules(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    const MODS: &[&str] = &[
        "a",
        "a::b",
        "a::b::c",
        "a::b::d",
        "a::e",
        "shim",
        "shim::hooks",
        "shim::hooks::entry",
        "shim::hooks::driver",
        "shim::route",
        "shim::record",
        "shim::state",
        "report",
    ];

    /// (target, line) pairs the scanner finds, sorted.
    fn deps(current: &str, src: &str) -> Vec<(String, usize)> {
        let mut v: Vec<(String, usize)> = scan(current, src, &modules(MODS))
            .into_iter()
            .map(|(t, l, _)| (t, l))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn targets(current: &str, src: &str) -> BTreeSet<String> {
        deps(current, src).into_iter().map(|(t, _)| t).collect()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        modules(names)
    }

    #[test]
    fn module_names_follow_file_paths() {
        assert_eq!(
            module_name(Path::new("shim/hooks/entry.rs")),
            "shim::hooks::entry"
        );
        assert_eq!(module_name(Path::new("shim/hooks/mod.rs")), "shim::hooks");
        assert_eq!(module_name(Path::new("lib.rs")), "");
        assert_eq!(module_name(Path::new("main.rs")), "");
        assert_eq!(module_name(Path::new("units.rs")), "units");
    }

    #[test]
    fn plain_use_resolves_to_the_longest_module_prefix() {
        let src = "use crate::shim::record::protect;\nuse crate::report::Api;\n";
        assert_eq!(
            deps("shim::hooks::entry", src),
            [("report".into(), 2), ("shim::record".into(), 1)]
        );
    }

    #[test]
    fn super_item_resolves_to_the_parent_module() {
        // super::NOT_FOUND from shim/hooks/driver.rs is shim::hooks.
        assert_eq!(
            targets("shim::hooks::driver", "use super::{Hook, NOT_FOUND};"),
            set(&["shim::hooks"])
        );
        // From a mod.rs, super is one level further up.
        assert_eq!(
            targets("shim::hooks", "use super::state;"),
            set(&["shim::state"])
        );
    }

    #[test]
    fn nested_brace_groups_over_several_lines() {
        let src = "use super::{\n    self,\n    b::{c, d::Thing},\n    e as renamed,\n};\n";
        assert_eq!(
            deps("a::x", src),
            [
                ("a".into(), 2),
                ("a::b::c".into(), 3),
                ("a::b::d".into(), 3),
                ("a::e".into(), 4)
            ]
        );
        let src = "use crate::{\n  a::b::{\n    c::{self, X},\n  },\n  shim::{route, state},\n};";
        assert_eq!(
            deps("report", src),
            [
                ("a::b::c".into(), 3),
                ("shim::route".into(), 5),
                ("shim::state".into(), 5)
            ]
        );
    }

    #[test]
    fn globs_and_self() {
        assert_eq!(
            targets("shim::record", "use crate::report::*;"),
            set(&["report"])
        );
        assert_eq!(targets("a", "use self::b::c;"), set(&["a::b::c"]));
        assert_eq!(
            targets("a::b", "use self::c;\nfn f() { self::d::g(); }"),
            set(&["a::b::c", "a::b::d"])
        );
    }

    #[test]
    fn inline_paths_in_code() {
        let src =
            "fn f() {\n    let s = crate::shim::state::peek();\n    super::route::by_name(x);\n}\n";
        assert_eq!(
            deps("shim::record", src),
            [("shim::route".into(), 3), ("shim::state".into(), 2)]
        );
        // A path broken over lines reports the line of its last segment.
        let src = "fn f() { crate::shim\n    ::record::protect(|| 1) }";
        assert_eq!(deps("report", src), [("shim::record".into(), 2)]);
        // $crate in macro bodies is crate.
        assert_eq!(
            targets(
                "a",
                "macro_rules! m { () => { $crate::shim::state::get() } }"
            ),
            set(&["shim::state"])
        );
    }

    #[test]
    fn super_super() {
        assert_eq!(
            targets("a::b::c", "fn f() { super::super::e::go(); }"),
            set(&["a::e"])
        );
        assert_eq!(
            targets("a::b::c", "use super::super::super::report;"),
            set(&["report"])
        );
        assert_eq!(targets("a::b::c", "use super::d;"), set(&["a::b::d"]));
    }

    #[test]
    fn bare_child_paths_from_a_parent() {
        // shim/hooks/mod.rs calls entry::HOOKS without a prefix.
        let src = "pub mod entry;\npub fn all() { entry::HOOKS.iter() }\n";
        assert_eq!(deps("shim::hooks", src), [("shim::hooks::entry".into(), 2)]);
        // 2018 paths: `use b::X` in a/mod.rs is the child a::b.
        assert_eq!(targets("a", "use b::X;\nuse std::fmt;"), set(&["a::b"]));
        // Names that are not children are not modules of this crate.
        assert_eq!(
            targets(
                "a::b",
                "use std::ffi::CStr;\nfn f() { Api::from_name(x); libc::free(p); }"
            ),
            set(&[])
        );
    }

    #[test]
    fn declarations_visibility_and_self_references_are_not_edges() {
        let src = "pub mod c;\nmod d;\npub(super) fn f() {}\npub(in crate::shim) fn g() {}\n\
                   fn h() { self::h(); crate::a::b::h(); super::super::a::b::x(); }";
        assert_eq!(targets("a::b", src), set(&[]));
    }

    #[test]
    fn comments_and_strings_are_ignored() {
        let src = r###"
//! `crate::shim::state` owns the process-wide state.
/// Calls super::route::by_name.
// use crate::report::Api;
/* use crate::shim::record; /* nested: crate::shim::route */ still comment crate::a */
fn f() -> &'static str {
    let _ = "crate::shim::state::peek()";
    let _ = r#"use super::route; "quoted" crate::a::e"#;
    let _ = b"crate::report";
    let _ = '"'; let _ = '\''; let _ = '\u{22}';
    let _ = "escaped \" crate::a::b";
    crate::report::ok()
}
"###;
        assert_eq!(deps("shim::record", src), [("report".into(), 12)]);
    }

    #[test]
    fn lifetimes_are_not_char_literals() {
        let src = "fn f<'a>(x: &'a str) -> &'a u8 { crate::report::g(x) }\nfn h() { 'outer: loop { super::state::s(); break 'outer; } }";
        assert_eq!(
            targets("shim::record", src),
            set(&["report", "shim::state"])
        );
    }

    #[test]
    fn cfg_test_modules_are_ignored() {
        let src = "use super::state;\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::shim::route;\n    \
                   #[test]\n    fn t() { crate::report::x(); let _ = \"}\"; }\n}\n";
        assert_eq!(deps("shim::record", src), [("shim::state".into(), 1)]);
        // Other attributes between, and code after the block, still count.
        let src = "#[cfg(test)]\n#[allow(unused)]\npub(crate) mod tests { use crate::report; }\nfn f() { crate::report::y(); }";
        assert_eq!(deps("shim::record", src), [("report".into(), 4)]);
        // cfg(not(test)) is not test code.
        assert_eq!(
            targets(
                "shim::record",
                "#[cfg(not(test))]\nmod real { use crate::report; }"
            ),
            set(&["report"])
        );
    }

    #[test]
    fn test_only_module_files_are_recognised() {
        let toks = tokenize(&strip_comments_and_literals(
            "pub mod cache;\n#[cfg(test)]\nmod tests;\n// #[cfg(test)]\nmod json;\n#[cfg(test)]\n#[path = \"x\"]\npub(crate) mod fuzz;",
        ));
        assert_eq!(
            mod_declarations(&toks),
            [
                ("cache".into(), false),
                ("tests".into(), true),
                ("json".into(), false),
                ("fuzz".into(), true)
            ]
        );
        assert!(file_is_test_only(&tokenize(
            "//! doc\n#![cfg(test)]\nuse super::*;"
        )));
        assert!(!file_is_test_only(&tokenize(
            "#![allow(dead_code)]\nuse super::*;"
        )));
    }

    fn graph(edges: &[(&str, &str)]) -> Graph {
        let mut g = Graph::new();
        for (a, b) in edges {
            g.entry(a.to_string())
                .or_default()
                .entry(b.to_string())
                .or_default()
                .push(Site {
                    file: format!("src/{a}.rs"),
                    line: 1,
                    path: b.to_string(),
                });
            g.entry(b.to_string()).or_default();
        }
        g
    }

    #[test]
    fn components_and_covering_cycles() {
        let g = graph(&[
            ("a", "b"),
            ("b", "c"),
            ("c", "a"),
            ("c", "b"),
            ("c", "d"),
            ("d", "e"),
            ("x", "y"),
            ("y", "x"),
        ]);
        let big: Vec<Vec<String>> = strongly_connected(&g)
            .into_iter()
            .filter(|c| c.len() > 1)
            .collect();
        assert_eq!(big, [vec!["a", "b", "c"], vec!["x", "y"]]);
        let cycles = covering_cycles(&g, &big[0]);
        assert_eq!(cycles, [vec!["b", "c"], vec!["a", "b", "c"]]);
        let text = describe_group(&g, &big[0]);
        assert!(text.contains("a -> b -> c -> a"), "{text}");
        assert!(text.contains("c -> a: src/c.rs:1"), "{text}");
        // An acyclic graph has only single-module components.
        let dag = graph(&[("a", "b"), ("b", "c"), ("a", "c")]);
        assert!(strongly_connected(&dag).iter().all(|c| c.len() == 1));
    }

    #[test]
    fn the_deliberate_tie_is_allowed_and_nothing_larger() {
        assert!(allowed(&["shim::counters".into(), "shim::tls".into()]));
        assert!(allowed(&[
            "shim::track::counters".into(),
            "shim::track::tls".into()
        ]));
        assert!(!allowed(&[
            "shim::counters".into(),
            "shim::state".into(),
            "shim::tls".into()
        ]));
        assert!(!allowed(&[
            "shim::counters".into(),
            "shim::track::tls".into()
        ]));
        // Inside a larger group the tie's own 2-cycle is not listed, the rest is.
        let g = graph(&[
            ("shim::counters", "shim::tls"),
            ("shim::tls", "shim::counters"),
            ("shim::tls", "shim::state"),
            ("shim::state", "shim::counters"),
        ]);
        let group: Vec<String> = ["shim::counters", "shim::state", "shim::tls"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            covering_cycles(&g, &group),
            [vec!["shim::counters", "shim::tls", "shim::state"]]
        );
    }
}
