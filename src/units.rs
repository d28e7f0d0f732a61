//! Byte sizes: parsing what users type, printing what people read.

/// Parses `80GiB`, `80GB`, `81920MiB`, `1.5 TiB` or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.parse().map_err(|_| {
        format!("'{s}' is not a size (examples: 80GiB, 80GB, 81920MiB, 1073741824)")
    })?;
    let mul: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        u => {
            return Err(format!(
                "'{s}': unknown unit '{u}' (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ))
        }
    };
    let bytes = v * mul;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("'{s}' is too large"));
    }
    Ok(bytes.round() as u64)
}

/// A GPU's memory as people paste it: `80GiB`, `80GB` (SI, 74.5 GiB) or
/// `81559MiB` (what nvidia-smi prints for an H100 80GB). A bare number is
/// refused: `80` would be 80 bytes, and nobody means that.
pub fn parse_gpu_mem(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "'{s}' has no unit: write {t}GiB, {t}GB (SI: 1 GB = 10^9 bytes) or MiB as nvidia-smi prints it (an H100 80GB is 81559MiB)"
        ));
    }
    let n = parse_size(s)?;
    if n == 0 {
        return Err(format!("'{s}' is no memory at all"));
    }
    Ok(n)
}

/// `12.3 GiB`, `512 MiB`, `100 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if v >= 100.0 {
        format!("{v:.0} {}", UNITS[u])
    } else if v >= 10.0 {
        format!("{v:.1} {}", UNITS[u])
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// A size in bytes, as findings keep it: an integer for machines, printed
/// as `bytes()` for people. A type of its own so a count of tokens or
/// requests is never printed as a size, nor a size as a count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub u64);

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&bytes(self.0))
    }
}

/// Signed sizes, for growth.
pub fn signed_bytes(n: i64) -> String {
    if n < 0 {
        format!("-{}", bytes(n.unsigned_abs()))
    } else {
        format!("+{}", bytes(n as u64))
    }
}

/// `1,234,567`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Milliseconds as `850 ms`, `12.4 s`, `3.2 min`.
pub fn duration_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 120_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{:.1} min", ms / 60_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_size("80GiB"), Ok(80 << 30));
        assert_eq!(parse_size("80GB"), Ok(80_000_000_000));
        assert_eq!(parse_size("81920MiB"), Ok(80 << 30));
        assert_eq!(parse_size("1073741824"), Ok(1 << 30));
        assert_eq!(parse_size("1.5 GiB"), Ok(3 << 29));
        assert!(parse_size("-1GiB").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").is_err());
    }

    #[test]
    fn gpu_memory_needs_a_unit() {
        assert_eq!(parse_gpu_mem("81559MiB"), Ok(81_559 << 20));
        assert_eq!(parse_gpu_mem("80GB"), Ok(80_000_000_000));
        assert_eq!(parse_gpu_mem("80 GiB"), Ok(80 << 30));
        let e = parse_gpu_mem("80").unwrap_err();
        assert!(
            e.contains("no unit") && e.contains("80GiB") && e.contains("81559MiB"),
            "{e}"
        );
        assert!(parse_gpu_mem("0GiB").is_err());
    }

    #[test]
    fn prints_readably() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(80 << 30), "80.0 GiB");
        assert_eq!(bytes(512 << 20), "512 MiB");
        assert_eq!(signed_bytes(-(64 << 20)), "-64.0 MiB");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(duration_ms(12_400.0), "12.4 s");
        assert_eq!(Bytes(3 << 29).to_string(), "1.50 GiB");
    }
}
