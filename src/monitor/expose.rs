//! The exposition formats: Prometheus text (0.0.4) and OpenMetrics 1.0
//! (asked for by the scraper's Accept header). The same samples; OpenMetrics
//! names a counter's family without `_total` and ends with `# EOF`.

use super::metrics::{Family, Kind, Sample, FAMILIES};
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Prometheus,
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the Accept header lists it, Prometheus text otherwise.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

fn escape(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn number(v: f64, out: &mut String) {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

fn family_name(f: &Family, format: Format) -> &'static str {
    match (format, f.kind) {
        (Format::OpenMetrics, Kind::Counter) => f.name.strip_suffix("_total").unwrap_or(f.name),
        _ => f.name,
    }
}

/// The page: each family that has samples, with its `# HELP` and `# TYPE`.
pub fn render(samples: &[Sample], format: Format) -> String {
    let mut out = String::with_capacity(samples.len() * 160 + 64);
    for f in FAMILIES {
        let mine: Vec<&Sample> = samples
            .iter()
            .filter(|s| std::ptr::eq(s.family, *f))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let name = family_name(f, format);
        let _ = write!(out, "# HELP {name} ");
        escape_help(f.help, &mut out);
        let kind = match f.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let _ = writeln!(out, "\n# TYPE {name} {kind}");
        for s in mine {
            out.push_str(f.name);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"");
                    escape(v, &mut out);
                    out.push('"');
                }
                out.push('}');
            }
            out.push(' ');
            number(s.value, &mut out);
            out.push('\n');
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::metrics::{FAILURES, LIVE_BYTES};
    use super::*;

    #[test]
    fn both_formats() {
        let samples = vec![
            Sample {
                family: &LIVE_BYTES,
                labels: vec![("pid", "7".into()), ("command", "a \"b\"\\\n".into())],
                value: 16777216.0,
            },
            Sample {
                family: &FAILURES,
                labels: vec![],
                value: 2.0,
            },
        ];
        let p = render(&samples, Format::Prometheus);
        assert!(p.contains("# TYPE kvscope_live_bytes gauge\n"), "{p}");
        assert!(
            p.contains("kvscope_live_bytes{pid=\"7\",command=\"a \\\"b\\\"\\\\\\n\"} 16777216\n"),
            "{p}"
        );
        assert!(p.contains("# TYPE kvscope_failures_total counter\nkvscope_failures_total 2\n"));
        assert!(!p.contains("# EOF"));
        let o = render(&samples, Format::OpenMetrics);
        assert!(
            o.contains("# TYPE kvscope_failures counter\nkvscope_failures_total 2\n"),
            "{o}"
        );
        assert!(o.ends_with("# EOF\n"));
        assert_eq!(
            Format::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::from_accept(None), Format::Prometheus);
    }
}
