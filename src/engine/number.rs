//! Numbers as engines print them: `34,952`, `4.80`, `15.5432 GiB`, `1.42 GB`.

/// The text after `key` in `line`, if `key` is in it.
pub fn after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.find(key).map(|i| &line[i + key.len()..])
}

/// A number at the start of `s` (thousands separators allowed), and the rest.
pub fn number(s: &str) -> Option<(f64, &str)> {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == ',' || c == '.'))
        .unwrap_or(s.len());
    let digits: String = s[..end].chars().filter(|&c| c != ',').collect();
    let digits = digits.trim_end_matches('.');
    let v: f64 = digits.parse().ok()?;
    v.is_finite().then_some((v, &s[end..]))
}

/// A whole count at the start of `s`.
pub fn count(s: &str) -> Option<(u64, &str)> {
    let (v, rest) = number(s)?;
    (v.fract() == 0.0 && (0.0..1e18).contains(&v)).then_some((v as u64, rest))
}

/// A size at the start of `s`: a number and its unit. The engines' `GB`
/// is 2^30 bytes (SGLang divides by `GB = 1024 * 1024 * 1024`, vLLM V0
/// printed `GB` for `GiB_bytes`), so GB and GiB are read alike.
pub fn size(s: &str) -> Option<(u64, &str)> {
    let (v, rest) = number(s)?;
    let r = rest.trim_start();
    let (mul, n) = [
        ("GiB", 1u64 << 30),
        ("GB", 1 << 30),
        ("MiB", 1 << 20),
        ("MB", 1 << 20),
    ]
    .iter()
    .find(|(u, _)| r.starts_with(u))
    .map(|(u, m)| (*m, u.len()))?;
    let bytes = v * mul as f64;
    (bytes >= 0.0 && bytes < u64::MAX as f64).then_some((bytes.round() as u64, &r[n..]))
}

/// The size right after `key`.
pub fn size_after(line: &str, key: &str) -> Option<u64> {
    size(after(line, key)?).map(|(b, _)| b)
}

/// The count right after `key`.
pub fn count_after(line: &str, key: &str) -> Option<u64> {
    count(after(line, key)?).map(|(n, _)| n)
}
